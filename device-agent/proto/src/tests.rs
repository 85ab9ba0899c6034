use super::frame::HEAD_LEN;
use super::*;
use std::io::{self, Cursor, Read};
use std::time::Instant;

/// Hands out its bytes one at a time, the worst case of a split frame.
struct ByteAtATime(Vec<u8>, usize);

impl Read for ByteAtATime {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1 == self.0.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[self.1];
        self.1 += 1;
        Ok(1)
    }
}

fn hello_frame() -> Frame {
    Request::Hello(HelloRequest {
        protocol_major: 1,
        protocol_minor: 0,
        token: None,
    })
    .into_frame()
    .unwrap()
}

fn infer_frame() -> Frame {
    Request::Infer {
        header: InferRequest {
            handle: 3,
            shape: vec![1, 2],
        },
        data: vec![1.5, -2.0],
    }
    .into_frame()
    .unwrap()
}

fn read_all<R: Read>(reader: &mut FrameReader<R>) -> Vec<Result<Frame, String>> {
    let mut out = Vec::new();
    loop {
        match reader.read_frame() {
            Ok(Some(f)) => out.push(Ok(f)),
            Ok(None) => return out,
            Err(ProtoError::Io(e)) => panic!("io error {e}"),
            Err(e) => out.push(Err(format!("{e:?}"))),
        }
    }
}

#[test]
fn frame_layout_matches_the_documentation() {
    let frame = Frame {
        kind: 0x05,
        header: b"{}".to_vec(),
        blob: vec![0xAA],
    };
    let bytes = frame.encode().unwrap();
    assert_eq!(&bytes[..4], b"PDNA");
    assert_eq!(bytes[4], 0x05);
    assert_eq!(
        u32::from_le_bytes(bytes[5..9].try_into().unwrap()),
        4 + 2 + 1
    );
    assert_eq!(u32::from_le_bytes(bytes[9..13].try_into().unwrap()), 2);
    assert_eq!(&bytes[13..15], b"{}");
    assert_eq!(bytes[15], 0xAA);
    let crc = crc32fast::hash(&bytes[4..16]);
    assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), crc);
    assert_eq!(bytes.len(), FRAME_OVERHEAD + frame.payload_len());
}

#[test]
fn split_across_byte_sized_reads() {
    let frame = infer_frame();
    let mut bytes = frame.encode().unwrap();
    bytes.extend(hello_frame().encode().unwrap());
    let mut reader = FrameReader::new(ByteAtATime(bytes, 0));
    let got = read_all(&mut reader);
    assert_eq!(got, vec![Ok(frame), Ok(hello_frame())]);
}

#[test]
fn several_frames_in_one_read() {
    let frames = vec![hello_frame(), infer_frame(), hello_frame()];
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
    let mut reader = FrameReader::new(Cursor::new(bytes));
    let got = read_all(&mut reader);
    assert_eq!(got, frames.into_iter().map(Ok).collect::<Vec<_>>());
}

#[test]
fn oversize_is_reported_and_the_next_frame_still_decodes() {
    let mut bytes = MAGIC.to_vec();
    bytes.push(Kind::LoadModel as u8);
    bytes.extend((MAX_PAYLOAD_BYTES + 1).to_le_bytes());
    bytes.extend([0u8; 32]); // some of the "payload"
    bytes.extend(hello_frame().encode().unwrap());
    let mut reader = FrameReader::new(Cursor::new(bytes));
    match reader.read_frame() {
        Err(ProtoError::Oversize { len, max }) => {
            assert_eq!(len, u64::from(MAX_PAYLOAD_BYTES) + 1);
            assert_eq!(max, MAX_PAYLOAD_BYTES);
        }
        other => panic!("expected Oversize, got {other:?}"),
    }
    // The skipped payload is part of the same error: no Garbage report.
    assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
    assert_eq!(reader.read_frame().unwrap(), None);
}

#[test]
fn encoding_refuses_oversize_payloads() {
    let frame = Frame {
        kind: 2,
        header: Vec::new(),
        blob: vec![0; MAX_PAYLOAD_BYTES as usize],
    };
    assert!(matches!(frame.encode(), Err(ProtoError::Oversize { .. })));
}

#[test]
fn lower_cap_applies() {
    let bytes = infer_frame().encode().unwrap();
    let mut reader = FrameReader::with_max_payload(Cursor::new(bytes), 8);
    assert!(matches!(
        reader.read_frame(),
        Err(ProtoError::Oversize { max: 8, .. })
    ));
}

#[test]
fn a_lowered_cap_refuses_from_the_header_and_the_next_frame_decodes() {
    // What the agent does before Hello: a frame declaring 200 MiB is
    // refused from its 9-byte header, without reading (or holding) the
    // payload, and a small frame after it still decodes.
    let mut bytes = MAGIC.to_vec();
    bytes.push(Kind::LoadModel as u8);
    bytes.extend((200u32 << 20).to_le_bytes());
    bytes.extend(hello_frame().encode().unwrap());
    let mut reader = FrameReader::new(&bytes[..]);
    reader.set_max_payload(4096);
    assert_eq!(reader.max_payload(), 4096);
    match reader.read_frame() {
        Err(ProtoError::Oversize { len, max }) => {
            assert_eq!(len, 200 << 20);
            assert_eq!(max, 4096);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
    reader.set_max_payload(u32::MAX);
    assert_eq!(reader.max_payload(), MAX_PAYLOAD_BYTES);
}

#[test]
fn a_passed_deadline_stops_reading_and_keeps_what_was_buffered() {
    let bytes = hello_frame().encode().unwrap();
    let mut reader = FrameReader::new(ByteAtATime(bytes, 0));
    // Five bytes in, then the deadline passes: the next read is refused
    // even though the stream would go on giving bytes.
    for _ in 0..5 {
        reader.fill(1).unwrap();
    }
    reader.set_deadline(Some(Instant::now()));
    match reader.read_frame() {
        Err(ProtoError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.buffered(), 5);
    reader.set_deadline(None);
    assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
}

#[test]
fn truncated_frame_at_end_of_stream() {
    let bytes = infer_frame().encode().unwrap();
    let cut = bytes.len() - 3;
    let mut reader = FrameReader::new(ByteAtATime(bytes[..cut].to_vec(), 0));
    match reader.read_frame() {
        Err(ProtoError::Truncated { have, need }) => {
            assert_eq!(have, cut);
            assert_eq!(need, cut + 3);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert_eq!(reader.read_frame().unwrap(), None);
    // A header cut short is truncated too.
    let mut reader = FrameReader::new(Cursor::new(b"PDNA\x01\x02".to_vec()));
    assert!(matches!(
        reader.read_frame(),
        Err(ProtoError::Truncated { have: 6, .. })
    ));
    assert_eq!(reader.read_frame().unwrap(), None);
}

#[test]
fn a_frame_swallowed_by_a_damaged_length_at_the_end_is_still_found() {
    // A fake magic whose length runs past the end of the stream, then a
    // valid frame: the fake is reported truncated, the frame behind it
    // decodes, as it would mid-stream after a CRC mismatch.
    let mut bytes = b"PDNA\x04\x00\x01\x00\x00".to_vec();
    bytes.extend(hello_frame().encode().unwrap());
    let mut reader = FrameReader::new(Cursor::new(bytes));
    assert!(matches!(
        reader.read_frame(),
        Err(ProtoError::Truncated { .. })
    ));
    assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
    assert_eq!(reader.read_frame().unwrap(), None);
}

#[test]
fn clean_end_of_stream_is_none() {
    let mut reader = FrameReader::new(Cursor::new(Vec::new()));
    assert_eq!(reader.read_frame().unwrap(), None);
    assert_eq!(reader.read_frame().unwrap(), None);
}

#[test]
fn garbage_before_a_frame_is_reported_once_then_the_frame_decodes() {
    // A login banner with a partial magic in it, as ssh might print.
    let mut bytes = b"Welcome to Raspbian! PDN PD P\n".to_vec();
    let garbage = bytes.len();
    bytes.extend(hello_frame().encode().unwrap());
    for split in [false, true] {
        let got = if split {
            read_all(&mut FrameReader::new(ByteAtATime(bytes.clone(), 0)))
        } else {
            read_all(&mut FrameReader::new(Cursor::new(bytes.clone())))
        };
        assert_eq!(
            got,
            vec![
                Err(format!("Garbage {{ skipped: {garbage} }}")),
                Ok(hello_frame())
            ],
            "split reads: {split}"
        );
    }
}

#[test]
fn trailing_garbage_is_reported_at_end_of_stream() {
    let mut bytes = hello_frame().encode().unwrap();
    bytes.extend(b"xyzPD");
    let got = read_all(&mut FrameReader::new(Cursor::new(bytes)));
    assert_eq!(
        got,
        vec![Ok(hello_frame()), Err("Garbage { skipped: 5 }".to_string())]
    );
}

#[test]
fn bad_crc_is_reported_and_reading_resyncs() {
    let mut bad = infer_frame().encode().unwrap();
    let n = bad.len();
    bad[n - 6] ^= 0x40; // flip a bit in the blob
    let mut bytes = bad;
    bytes.extend(hello_frame().encode().unwrap());
    let mut reader = FrameReader::new(Cursor::new(bytes));
    assert!(matches!(
        reader.read_frame(),
        Err(ProtoError::BadCrc { .. })
    ));
    assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
    assert_eq!(reader.read_frame().unwrap(), None);
}

#[test]
fn lost_byte_then_stall_is_abandoned_and_resynced() {
    // A frame that lost a byte, followed by a good one: the reader takes
    // the good frame's first bytes as the bad frame's tail, fails the
    // CRC, and rescans to find the good frame intact.
    let mut bad = infer_frame().encode().unwrap();
    bad.remove(15);
    let mut bytes = bad;
    let good = hello_frame().encode().unwrap();
    bytes.extend(&good);
    bytes.extend(&good);
    let got = read_all(&mut FrameReader::new(Cursor::new(bytes)));
    assert!(
        got[0].as_ref().is_err_and(|e| e.starts_with("BadCrc")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .filter(|r| r.as_ref() == Ok(&hello_frame()))
            .count()
            >= 1,
        "{got:?}"
    );
}

#[test]
fn abandon_partial_reports_truncation() {
    let bytes = infer_frame().encode().unwrap();
    let mut reader = FrameReader::new(Cursor::new(bytes[..10].to_vec()));
    // Read what there is without hitting the end: one fill.
    reader.fill(HEAD_LEN).unwrap();
    assert!(reader.in_frame());
    assert!(matches!(
        reader.abandon_partial(),
        Some(ProtoError::Truncated { have: 10, .. })
    ));
    assert!(!reader.in_frame());
}

#[test]
fn unknown_kind_frames_decode_but_do_not_parse_as_messages() {
    let frame = Frame {
        kind: 0x7F,
        header: b"{}".to_vec(),
        blob: Vec::new(),
    };
    let bytes = frame.encode().unwrap();
    let got = FrameReader::new(Cursor::new(bytes))
        .read_frame()
        .unwrap()
        .unwrap();
    assert_eq!(got.kind, 0x7F);
    let err = Request::from_frame(got.clone()).unwrap_err();
    assert!(matches!(err, ProtoError::UnknownKind(0x7F)));
    assert_eq!(err.code(), ErrorCode::UnknownKind);
    assert!(matches!(
        Response::from_frame(got),
        Err(ProtoError::UnknownKind(0x7F))
    ));
}

#[test]
fn bad_payload_layout_is_reported() {
    let mut frame = Frame {
        kind: Kind::Hello as u8,
        header: Vec::new(),
        blob: Vec::new(),
    }
    .encode()
    .unwrap();
    // Claim a 100-byte header in a 4-byte payload; fix the CRC.
    frame[9..13].copy_from_slice(&100u32.to_le_bytes());
    let n = frame.len();
    let crc = crc32fast::hash(&frame[4..n - 4]);
    frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
    let mut reader = FrameReader::new(Cursor::new(frame));
    assert!(matches!(
        reader.read_frame(),
        Err(ProtoError::BadPayload(_))
    ));
    assert_eq!(reader.read_frame().unwrap(), None);
}

/// The encodings this build reads and writes.
fn encodings() -> Vec<HeaderEncoding> {
    [HeaderEncoding::Json, HeaderEncoding::Binary]
        .into_iter()
        .filter(|e| e.supported())
        .collect()
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Hello(HelloRequest {
            protocol_major: 1,
            protocol_minor: 0,
            token: Some("t".into()),
        }),
        Request::LoadModel {
            header: LoadModel {
                input_shape: Some(vec![1, 3, 8, 8]),
                int8_block: None,
            },
            onnx: vec![1, 2, 3],
        },
        Request::LoadModel {
            header: LoadModel {
                input_shape: None,
                int8_block: Some(Int8Block {
                    kind: Int8Kind::Head,
                    in_c: 24,
                    out_c: 64,
                    expand: 1,
                    kernel: 1,
                    stride: 1,
                    h: 4,
                    w: 4,
                    classes: 10,
                    seed: u64::MAX - 3,
                }),
            },
            onnx: Vec::new(),
        },
        Request::Bench(BenchRequest {
            handle: 1,
            limits: BenchLimits::default(),
            reference: None,
            sensor_every: None,
        }),
        Request::Bench(BenchRequest {
            handle: 1,
            limits: BenchLimits {
                threads: Some(2),
                pin_cpu: Some(1),
                return_samples: true,
                ..BenchLimits::default()
            },
            reference: Some(2),
            sensor_every: Some(4),
        }),
        Request::Infer {
            header: InferRequest {
                handle: 2,
                shape: vec![2],
            },
            data: vec![0.5, -1.0],
        },
        Request::Unload(UnloadRequest { handle: 2 }),
        Request::Shutdown,
    ]
}

fn all_responses() -> Vec<Response> {
    let third = 1.0 / 3.0;
    vec![
        Response::Hello(AgentInfo {
            protocol: 1,
            protocol_minor: 4,
            agent_version: "0.1.0".into(),
            tract_version: "none".into(),
            arch: "arm".into(),
            os: "none".into(),
            cpu: "cortex-m4".into(),
            cores: 1,
            governor: None,
            cur_freq_khz: Some(25_000),
            temperature_c: Some(-4.25),
            features: vec!["int8".into()],
            mcu: Some(McuInfo {
                core: "cortex-m4".into(),
                board: "mps2-an386".into(),
                clock_hz: 25_000_000,
                sram_bytes: 4 << 20,
                flash_bytes: 4 << 20,
                heap_bytes: 256 << 10,
                timer: "systick".into(),
                kernels: "padnas-int8".into(),
            }),
        }),
        Response::Loaded(ModelLoaded {
            handle: 1,
            input_shape: vec![1],
            output_shape: vec![2],
            load_ms: 1.5,
            memory: Some(BlockMemory {
                weight_bytes: 1234,
                activation_bytes: 56_789,
            }),
        }),
        // Floats that JSON writes with many digits must come back bit for bit.
        Response::Stats(BenchStats {
            runs: 3,
            warmup_runs: 1,
            min_ms: third,
            median_ms: 0.1 + 0.2,
            mean_ms: 1e-300,
            p10_ms: third,
            p90_ms: f64::MAX,
            max_ms: f64::MAX,
            stddev_ms: 0.0,
            total_ms: 7.0,
            threads: 1,
            pinned_cpu: Some(0),
            samples_ms: Some(vec![third, 0.1 + 0.2, 1e-300]),
            wall_ms: Some(9.5),
            timed_wall_ms: None,
            reference_samples_ms: None,
            reference_median_ms: Some(2.0),
            ratio_median: Some(third),
            sensor_samples_ms: Some(vec![]),
            cycles: Some(CycleStats {
                min: 1,
                median: 2,
                max: u64::MAX,
                clock_hz: 25_000_000,
            }),
        }),
        Response::Output {
            shape: vec![1, 1],
            data: vec![3.0],
        },
        Response::Unloaded,
        Response::Bye,
        Response::error(ErrorCode::BadModel, "nope"),
        Response::error(ErrorCode::UnsupportedEncoding, "json"),
    ]
}

#[test]
fn requests_and_responses_round_trip_in_every_encoding() {
    for encoding in encodings() {
        for r in all_requests() {
            let frame = r.clone().into_frame_as(encoding).unwrap();
            assert_eq!(frame.header_encoding(), encoding, "{r:?}");
            assert_eq!(Request::from_frame(frame).unwrap(), r, "{encoding:?}");
        }
        for r in all_responses() {
            let frame = r.clone().into_frame_as(encoding).unwrap();
            assert_eq!(frame.header_encoding(), encoding, "{r:?}");
            assert_eq!(Response::from_frame(frame).unwrap(), r, "{encoding:?}");
        }
    }
}

#[test]
fn binary_headers_are_tagged_and_much_smaller_than_json() {
    if !HeaderEncoding::Binary.supported() || !HeaderEncoding::Json.supported() {
        return;
    }
    for r in all_responses() {
        let json = r.clone().into_frame_as(HeaderEncoding::Json).unwrap();
        let binary = r.clone().into_frame_as(HeaderEncoding::Binary).unwrap();
        assert_eq!(binary.header[0], BINARY_HEADER_TAG);
        assert_ne!(json.header.first(), Some(&BINARY_HEADER_TAG));
        assert!(binary.header.len() <= json.header.len(), "{r:?}");
    }
}

#[test]
fn a_binary_header_from_a_newer_peer_with_more_fields_still_reads() {
    if !HeaderEncoding::Binary.supported() {
        return;
    }
    // A newer minor version appends fields; their bytes follow the ones an
    // older reader knows and are ignored.
    let r = Request::Unload(UnloadRequest { handle: 7 });
    let mut frame = r.clone().into_frame_as(HeaderEncoding::Binary).unwrap();
    frame.header.extend_from_slice(&[0x05, 0xff, 0x01]);
    assert_eq!(Request::from_frame(frame).unwrap(), r);
    // An error code this build does not know reads as Other.
    let mut frame = Response::error(ErrorCode::BadModel, "m")
        .into_frame_as(HeaderEncoding::Binary)
        .unwrap();
    frame.header[1] = 0x70; // variant index 112, varint in one byte
    assert_eq!(
        Response::from_frame(frame).unwrap(),
        Response::error(ErrorCode::Other, "m")
    );
}

#[test]
fn a_truncated_binary_header_is_a_bad_message_naming_its_kind() {
    if !HeaderEncoding::Binary.supported() {
        return;
    }
    let mut frame = Request::Bench(BenchRequest {
        handle: 300,
        limits: BenchLimits::default(),
        reference: None,
        sensor_every: None,
    })
    .into_frame_as(HeaderEncoding::Binary)
    .unwrap();
    frame.header.truncate(4);
    let err = Request::from_frame(frame).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadMessage);
    let text = err.to_string();
    assert!(text.contains("Bench") && text.contains("binary"), "{text}");
}

#[test]
fn an_encoding_the_build_lacks_is_refused_with_its_own_code() {
    for encoding in [HeaderEncoding::Json, HeaderEncoding::Binary] {
        if encoding.supported() {
            continue;
        }
        let other = if encoding == HeaderEncoding::Json {
            HeaderEncoding::Binary
        } else {
            HeaderEncoding::Json
        };
        let err = Request::Unload(UnloadRequest { handle: 1 })
            .into_frame_as(encoding)
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnsupportedEncoding);
        let header = if encoding == HeaderEncoding::Json {
            br#"{"handle":1}"#.to_vec()
        } else {
            vec![BINARY_HEADER_TAG, 1]
        };
        let frame = Frame::new(Kind::Unload, header, Vec::new());
        let err = Request::from_frame(frame).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnsupportedEncoding);
        let text = err.to_string();
        assert!(
            text.contains(encoding.name()) && text.contains(other.name()),
            "{text}"
        );
    }
}

#[test]
fn message_errors_carry_codes() {
    #[cfg(feature = "json")]
    {
        let bad_json = Frame {
            kind: Kind::Bench as u8,
            header: b"{\"handle\": \"x\"}".to_vec(),
            blob: Vec::new(),
        };
        let err = Request::from_frame(bad_json).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadMessage);
        assert!(err.to_string().contains("Bench"), "{err}");
    }

    // Shape [2, 2] with the data of two values.
    let short = Request::Infer {
        header: InferRequest {
            handle: 1,
            shape: vec![2, 2],
        },
        data: vec![0.0, 0.0],
    }
    .into_frame()
    .unwrap();
    let err = Request::from_frame(short).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadInput);

    let reply_as_request = Response::Bye.into_frame().unwrap();
    assert_eq!(
        Request::from_frame(reply_as_request).unwrap_err().code(),
        ErrorCode::BadMessage
    );
}

#[cfg(feature = "json")]
#[test]
fn unknown_fields_and_codes_are_tolerated() {
    // Minor versions add optional fields and codes; older peers must not choke.
    let hello = br#"{"protocol_major":1,"protocol_minor":7,"token":null,"future":true}"#;
    let frame = Frame {
        kind: Kind::Hello as u8,
        header: hello.to_vec(),
        blob: Vec::new(),
    };
    assert!(Request::from_frame(frame).is_ok());
    let err = br#"{"code":"some_new_code","message":"m"}"#;
    let frame = Frame {
        kind: Kind::Error as u8,
        header: err.to_vec(),
        blob: Vec::new(),
    };
    assert_eq!(
        Response::from_frame(frame).unwrap(),
        Response::error(ErrorCode::Other, "m")
    );
}

#[test]
fn every_kind_decodes_from_its_byte_and_has_its_own_name() {
    let mut names = std::collections::HashSet::new();
    for &kind in Kind::ALL {
        assert_eq!(Kind::from_u8(kind as u8), Some(kind), "{kind:?}");
        assert!(names.insert(kind.name()), "{} named twice", kind.name());
        assert_eq!(kind.is_request(), (kind as u8) < 0x80);
    }
    let known: std::collections::HashSet<u8> = Kind::ALL.iter().map(|&k| k as u8).collect();
    for b in 0..=u8::MAX {
        assert_eq!(
            Kind::from_u8(b).is_some(),
            known.contains(&b),
            "byte {b:#04x}"
        );
    }
}

#[cfg(feature = "json")]
#[test]
fn error_codes_travel_under_their_wire_names_and_unknown_ones_read_as_other() {
    for &code in ErrorCode::ALL {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
    }
    let newer: ErrorCode = serde_json::from_str("\"thermal_throttled\"").unwrap();
    assert_eq!(newer, ErrorCode::Other);
}

#[test]
fn the_decoder_takes_bytes_pushed_one_at_a_time_in_small_chunks() {
    // The firmware's way in: no io::Read, a few hundred bytes of buffer.
    let mut bytes = b"boot banner\r\n".to_vec();
    bytes.extend(hello_frame().encode().unwrap());
    bytes.extend(infer_frame().encode().unwrap());
    let mut decoder = FrameDecoder::with_max_payload(4096).with_chunk(16, 64);
    let mut seen = Vec::new();
    for b in &bytes {
        decoder.push(std::slice::from_ref(b));
        loop {
            match decoder.step(false) {
                Step::Frame(f) => seen.push(Ok(f)),
                Step::Damaged(e) => seen.push(Err(format!("{e}"))),
                Step::Need(n) => {
                    assert!(n > 0);
                    break;
                }
                Step::End => panic!("End before the stream was said to end"),
            }
        }
    }
    assert_eq!(
        seen,
        vec![
            Err("skipped 13 byte(s) of garbage before a frame magic".to_string()),
            Ok(hello_frame()),
            Ok(infer_frame()),
        ]
    );
    assert!(matches!(decoder.step(true), Step::End));
}

#[test]
fn the_decoder_offers_no_more_than_its_chunk() {
    let mut decoder = FrameDecoder::with_max_payload(4096).with_chunk(16, 64);
    assert_eq!(decoder.spare(1).len(), 16);
    assert_eq!(decoder.spare(1000).len(), 64);
    decoder.commit(3);
    assert_eq!(decoder.buffered(), 3);
}

#[test]
fn the_frame_crc_is_crc32_ieee_with_either_implementation() {
    // The check value of CRC-32/ISO-HDLC ("123456789"), and crc32fast's
    // answer on bytes of every value: what the firmware's `small-crc` build
    // must agree with (it is tested with that feature by the test command).
    assert_eq!(crate::crc::crc32(b"123456789"), 0xCBF4_3926);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    assert_eq!(crate::crc::crc32(&bytes), crc32fast::hash(&bytes));
}
