use super::session::same_token;
use super::*;
use crate::client::{Client, ClientError};
use crate::info;
use crate::proto::{
    BenchLimits, ErrorCode, Frame, HelloRequest, Kind, PROTOCOL_MAJOR, Request, Response,
};
use crate::transport::Transport;
use crate::transport::memory::{self, MemoryTransport};
use std::thread::{self, JoinHandle};

type Server = JoinHandle<Result<SessionEnd, ServerError>>;

fn start_raw(config: ServerConfig) -> (MemoryTransport, Server) {
    let (host, mut agent) = memory::duplex();
    let server = thread::spawn(move || serve_session(&mut agent, &config));
    (host, server)
}

fn start(config: ServerConfig) -> (Client, Server) {
    let (host, server) = start_raw(config);
    (Client::new(Box::new(host)), server)
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote(reply)) => reply.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

fn reply(host: &mut MemoryTransport) -> Response {
    Response::from_frame(host.recv().unwrap().unwrap()).unwrap()
}

fn error_code(response: Response) -> ErrorCode {
    match response {
        Response::Error(e) => e.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn quick() -> BenchLimits {
    BenchLimits {
        warmup_runs: 1,
        warmup_ms: 0,
        min_runs: 3,
        max_runs: 5,
        max_time_ms: 1000,
        ..BenchLimits::default()
    }
}

#[test]
fn hello_is_required_first() {
    let (mut client, server) = start(ServerConfig::default());
    assert_eq!(code(client.bench(1, &quick())), ErrorCode::HelloRequired);
    assert_eq!(
        code(client.load_model(b"x", None)),
        ErrorCode::HelloRequired
    );
    // Shutdown before Hello must not stop the agent either.
    assert_eq!(code(client.shutdown()), ErrorCode::HelloRequired);
    let info = client.hello(None).unwrap();
    assert_eq!(info.protocol, PROTOCOL_MAJOR);
    client.shutdown().unwrap();
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Shutdown);
}

#[test]
fn protocol_mismatch_is_refused_and_closed() {
    let (mut host, server) = start_raw(ServerConfig::default());
    let hello = Request::Hello(HelloRequest {
        protocol_major: PROTOCOL_MAJOR + 1,
        protocol_minor: 0,
        token: None,
    });
    host.send(&hello.into_frame().unwrap()).unwrap();
    match reply(&mut host) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::ProtocolMismatch);
            assert!(
                e.message.contains(&format!("{}.0", PROTOCOL_MAJOR + 1)),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
    assert!(
        host.recv().unwrap().is_none(),
        "the agent closes after refusing"
    );
}

#[test]
fn client_reports_protocol_mismatch_as_its_own_error() {
    // A fake agent that refuses every Hello, as a newer agent would.
    let (host, mut agent) = memory::duplex();
    let fake = thread::spawn(move || {
        let _ = agent.recv();
        let refuse = Response::error(ErrorCode::ProtocolMismatch, "agent speaks 2.0");
        agent.send(&refuse.into_frame().unwrap()).unwrap();
    });
    let mut client = Client::new(Box::new(host));
    match client.hello(None) {
        Err(ClientError::ProtocolMismatch {
            host,
            agent: None,
            message,
        }) => {
            assert_eq!(host, PROTOCOL_MAJOR);
            assert!(message.contains("2.0"));
        }
        other => panic!("{other:?}"),
    }
    fake.join().unwrap();
}

const TOKEN: &str = "correct-horse-battery";

#[test]
fn token_is_checked_and_a_refusal_waits() {
    let delay = Duration::from_millis(150);
    let config = ServerConfig {
        token: Some(TOKEN.into()),
        refusal_delay: delay,
        ..ServerConfig::default()
    };
    let near = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}!");
    for token in [None, Some("wrong"), Some(near), Some(longer.as_str())] {
        let (mut client, server) = start(config.clone());
        let t0 = std::time::Instant::now();
        assert_eq!(
            code(client.hello(token)),
            ErrorCode::Unauthorized,
            "{token:?}"
        );
        // A lower bound only: the refusal came no sooner than the delay.
        assert!(t0.elapsed() >= delay, "{token:?} answered without delay");
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
    }
    let (mut client, server) = start(config);
    client.hello(Some(TOKEN)).unwrap();
    client.shutdown().unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn same_token_compares_every_byte_and_the_length() {
    let t = TOKEN.as_bytes();
    assert!(same_token(t, t));
    assert!(!same_token(&t[..t.len() - 1], t));
    assert!(!same_token(b"", t));
    assert!(!same_token(t, b""));
    // A repetition of the token is not the token.
    let twice = [t, t].concat();
    assert!(!same_token(&twice, t));
    let mut flipped = t.to_vec();
    flipped[t.len() - 1] ^= 1;
    assert!(!same_token(&flipped, t));
}

#[test]
fn without_the_token_a_protocol_mismatch_says_nothing_about_the_agent() {
    let config = ServerConfig {
        token: Some(TOKEN.into()),
        refusal_delay: Duration::ZERO,
        ..ServerConfig::default()
    };
    let (mut host, server) = start_raw(config);
    let hello = Request::Hello(HelloRequest {
        protocol_major: PROTOCOL_MAJOR + 1,
        protocol_minor: 0,
        token: Some("guess".into()),
    });
    host.send(&hello.into_frame().unwrap()).unwrap();
    match reply(&mut host) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert!(
                !e.message.contains(info::AGENT_VERSION) && !e.message.contains("protocol"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
}

#[test]
fn an_oversize_frame_before_hello_is_refused_from_its_header() {
    let (mut host, server) = start_raw(ServerConfig::default());
    // A LoadModel header that declares 200 MiB, and no payload: the
    // agent must answer from the header alone, not wait for the bytes.
    let mut head = crate::proto::MAGIC.to_vec();
    head.push(Kind::LoadModel as u8);
    head.extend((200u32 << 20).to_le_bytes());
    host.send_raw(&head).unwrap();
    match reply(&mut host) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Oversize);
            assert!(
                e.message.contains(&PRE_HELLO_MAX_PAYLOAD.to_string()),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    // A real host is then served, and after Hello large frames pass.
    let mut client = Client::new(Box::new(host));
    client.hello(None).unwrap();
    let big = Frame::new(Kind::Unload, b"{}".to_vec(), vec![0; 64 << 10]);
    client.transport_mut().send(&big).unwrap();
    let answer = client.transport_mut().recv().unwrap().unwrap();
    assert!(
        !matches!(Response::from_frame(answer).unwrap(), Response::Error(e) if e.code == ErrorCode::Oversize)
    );
    client.shutdown().unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn a_dripping_host_is_closed_at_the_hello_deadline() {
    let config = ServerConfig {
        hello_timeout: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    };
    let (mut host, server) = start_raw(config);
    // One byte of garbage every 20 ms, far more often than any per-read
    // timeout would allow, for up to 30 s: the agent must close anyway.
    let drip = thread::spawn(move || {
        for _ in 0..1500 {
            if host.send_raw(b"x").is_err() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    });
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::TimedOut);
    assert!(
        drip.join().unwrap(),
        "the agent stopped reading: writes fail"
    );
}

#[test]
fn damaged_frames_get_error_replies_and_the_session_goes_on() {
    let (mut host, server) = start_raw(ServerConfig::default());
    let hello = Request::Hello(HelloRequest {
        protocol_major: PROTOCOL_MAJOR,
        protocol_minor: 0,
        token: None,
    })
    .into_frame()
    .unwrap();

    // Garbage, then a good frame: the garbage is logged, not answered
    // (it was no request), so the first reply answers the frame.
    let mut bytes = b"garbage!".to_vec();
    bytes.extend(hello.encode().unwrap());
    host.send_raw(&bytes).unwrap();
    assert!(matches!(reply(&mut host), Response::Hello(_)));

    // Bad CRC.
    let mut bad = hello.encode().unwrap();
    let n = bad.len();
    bad[n - 1] ^= 1;
    host.send_raw(&bad).unwrap();
    assert_eq!(error_code(reply(&mut host)), ErrorCode::BadFrame);

    // Oversize length.
    let mut big = b"PDNA\x02".to_vec();
    big.extend(u32::MAX.to_le_bytes());
    host.send_raw(&big).unwrap();
    assert_eq!(error_code(reply(&mut host)), ErrorCode::Oversize);

    // Unknown kind.
    host.send(&Frame {
        kind: 0x42,
        header: b"{}".to_vec(),
        blob: vec![],
    })
    .unwrap();
    match reply(&mut host) {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnknownKind);
            assert!(e.message.contains("0x42"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }

    // Bad JSON in a known kind.
    host.send(&Frame {
        kind: Kind::Bench as u8,
        header: b"{not json".to_vec(),
        blob: vec![],
    })
    .unwrap();
    assert_eq!(error_code(reply(&mut host)), ErrorCode::BadMessage);

    // A reply kind sent to the agent.
    host.send(&Response::Bye.into_frame().unwrap()).unwrap();
    assert_eq!(error_code(reply(&mut host)), ErrorCode::BadMessage);

    // Still serving.
    host.send(&Request::Shutdown.into_frame().unwrap()).unwrap();
    assert_eq!(reply(&mut host), Response::Bye);
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Shutdown);
}

#[test]
fn truncated_input_then_close_ends_the_session_cleanly() {
    let (mut host, server) = start_raw(ServerConfig::default());
    host.send_raw(b"PDNA\x01\x10\x00").unwrap();
    drop(host);
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Closed);
}

#[test]
fn silent_host_times_out() {
    let config = ServerConfig {
        hello_timeout: Some(Duration::from_millis(100)),
        ..ServerConfig::default()
    };
    let (_host, server) = start_raw(config);
    assert_eq!(server.join().unwrap().unwrap(), SessionEnd::TimedOut);
}

#[cfg(feature = "bench")]
mod with_models {
    use super::*;
    use crate::onnx_fixture::{ConvClip, Dim, relu};

    #[test]
    fn an_int8_block_is_refused_from_the_header_and_the_next_request_works() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let block = crate::proto::Int8Block {
            kind: crate::proto::Int8Kind::Mbconv,
            classes: 0,
            in_c: 8,
            out_c: 8,
            expand: 3,
            kernel: 3,
            stride: 1,
            h: 4,
            w: 4,
            seed: 1,
        };
        match client.load_int8_block(block) {
            Err(ClientError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadModel);
                assert!(e.message.contains("microcontroller"), "{}", e.message);
            }
            other => panic!("expected BadModel, got {other:?}"),
        }
        let loaded = client
            .load_model(&ConvClip::default().encode(), None)
            .unwrap();
        assert_eq!(loaded.handle, 1);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn corrupt_onnx_is_bad_model_and_the_next_request_works() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        for junk in [&b"definitely not onnx"[..], &[0xFF; 64][..], &[][..]] {
            assert_eq!(code(client.load_model(junk, None)), ErrorCode::BadModel);
        }
        let model = ConvClip::default();
        let loaded = client.load_model(&model.encode(), None).unwrap();
        assert_eq!(loaded.input_shape, vec![1, 3, 16, 16]);
        assert_eq!(loaded.output_shape, vec![1, 8, 16, 16]);
        let stats = client.bench(loaded.handle, &quick()).unwrap();
        assert!((3..=5).contains(&stats.runs));
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn unknown_handles_are_reported() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        assert_eq!(code(client.bench(42, &quick())), ErrorCode::UnknownHandle);
        assert_eq!(
            code(client.infer(42, &[1], &[0.0])),
            ErrorCode::UnknownHandle
        );
        assert_eq!(code(client.unload(42)), ErrorCode::UnknownHandle);
        let loaded = client
            .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
            .unwrap();
        client.unload(loaded.handle).unwrap();
        assert_eq!(code(client.unload(loaded.handle)), ErrorCode::UnknownHandle);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn infer_runs_the_model() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let loaded = client
            .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
            .unwrap();
        let (shape, data) = client
            .infer(loaded.handle, &[1, 4], &[-1.0, 2.0, -3.0, 4.5])
            .unwrap();
        assert_eq!(shape, vec![1, 4]);
        assert_eq!(data, vec![0.0, 2.0, 0.0, 4.5]);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn bad_input_shapes_are_refused() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let conv = ConvClip::default().encode();
        // Wrong rank, and a disagreeing fixed dimension.
        assert_eq!(
            code(client.load_model(&conv, Some(&[1, 3, 16]))),
            ErrorCode::BadInput
        );
        assert_eq!(
            code(client.load_model(&conv, Some(&[1, 4, 16, 16]))),
            ErrorCode::BadInput
        );
        assert_eq!(
            code(client.load_model(&conv, Some(&[1, 3, 0, 16]))),
            ErrorCode::BadInput
        );
        let loaded = client.load_model(&conv, None).unwrap();
        // Infer with a shape other than the loaded one.
        let data = vec![0.0; 3 * 8 * 8];
        assert_eq!(
            code(client.infer(loaded.handle, &[1, 3, 8, 8], &data)),
            ErrorCode::BadInput
        );
        // Shape and data that disagree never leave the host.
        assert!(matches!(
            client.infer(loaded.handle, &[1, 3, 16, 16], &data),
            Err(ClientError::InvalidArgument(_))
        ));
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn symbolic_input_needs_a_shape() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let spec = ConvClip {
            batch: None,
            ..ConvClip::default()
        };
        match client.load_model(&spec.encode(), None) {
            Err(ClientError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadModel);
                assert!(e.message.contains("not fully concrete"), "{}", e.message);
                assert!(e.message.contains("[N, 3, 16, 16]"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let loaded = client
            .load_model(&spec.encode(), Some(&[1, 3, 16, 16]))
            .unwrap();
        assert_eq!(loaded.output_shape, vec![1, 8, 16, 16]);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    /// A CPU this process may run on (containers may not offer CPU 0).
    fn allowed_cpu() -> usize {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: zeroed cpu_set_t is the empty set; getaffinity fills it.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if unsafe { libc::sched_getaffinity(0, size, &mut set) } == 0 {
                let cpus = libc::CPU_SETSIZE as usize;
                if let Some(cpu) = (0..cpus).find(|&c| unsafe { libc::CPU_ISSET(c, &set) }) {
                    return cpu;
                }
            }
        }
        0
    }

    #[test]
    fn bench_statistics_are_consistent() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let spec = ConvClip {
            stride: 2,
            ..ConvClip::default()
        };
        let loaded = client.load_model(&spec.encode(), None).unwrap();
        assert_eq!(loaded.output_shape, vec![1, 8, 8, 8]);
        let limits = BenchLimits {
            warmup_runs: 2,
            warmup_ms: 0,
            min_runs: 4,
            max_runs: 8,
            max_time_ms: 10_000,
            threads: Some(2),
            pin_cpu: Some(allowed_cpu()),
            return_samples: true,
        };
        let s = client.bench(loaded.handle, &limits).unwrap();
        assert_eq!(s.runs, 8);
        assert!(s.warmup_runs >= 2);
        assert_eq!(s.threads, 2);
        assert!(s.min_ms <= s.p10_ms && s.p10_ms <= s.median_ms);
        assert!(s.median_ms <= s.p90_ms && s.p90_ms <= s.max_ms);
        assert!(s.min_ms > 0.0 && s.stddev_ms >= 0.0);
        let samples = s.samples_ms.unwrap();
        assert_eq!(samples.len(), 8);
        assert!((samples.iter().sum::<f64>() - s.total_ms).abs() < 1e-9);
        if cfg!(target_os = "linux") {
            assert_eq!(s.pinned_cpu, Some(allowed_cpu()));
        }
        // max_time stops early once min_runs are done.
        let timed = BenchLimits {
            min_runs: 2,
            max_runs: 1_000_000,
            max_time_ms: 0,
            ..quick()
        };
        assert_eq!(client.bench(loaded.handle, &timed).unwrap().runs, 2);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn paired_bench_alternates_with_the_reference() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let big = ConvClip {
            in_channels: 32,
            out_channels: 64,
            size: 32,
            ..ConvClip::default()
        };
        let model = client.load_model(&big.encode(), None).unwrap();
        let small = client
            .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
            .unwrap();
        let limits = BenchLimits {
            min_runs: 6,
            max_runs: 6,
            return_samples: true,
            ..quick()
        };
        let s = client
            .bench_paired(model.handle, Some(small.handle), &limits)
            .unwrap();
        let samples = s.samples_ms.clone().unwrap();
        let refs = s.reference_samples_ms.clone().unwrap();
        assert_eq!((samples.len(), refs.len()), (6, 6));
        let mut ratios: Vec<f64> = samples.iter().zip(&refs).map(|(x, r)| x / r).collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = s.ratio_median.unwrap();
        assert!((ratio - (ratios[2] + ratios[3]) / 2.0).abs() <= 1e-9 * ratio);
        // A 32→64-channel 3×3 convolution on 32×32 against a 4-value
        // ReLU: the pairing must not have swapped the two.
        assert!(ratio > 10.0, "ratio {ratio}");
        assert!(s.reference_median_ms.unwrap() < s.median_ms);
        let (wall, timed) = (s.wall_ms.unwrap(), s.timed_wall_ms.unwrap());
        // The timed loop holds both models' runs.
        let both = s.total_ms + refs.iter().sum::<f64>();
        assert!(timed >= both && wall >= timed, "{both} {timed} {wall}");

        // Without a reference, no reference fields; without samples, no
        // reference samples either.
        let plain = client.bench(model.handle, &limits).unwrap();
        assert!(plain.ratio_median.is_none() && plain.reference_samples_ms.is_none());
        let quiet = BenchLimits {
            return_samples: false,
            ..limits.clone()
        };
        let s = client
            .bench_paired(model.handle, Some(small.handle), &quiet)
            .unwrap();
        assert!(s.reference_samples_ms.is_none() && s.ratio_median.is_some());

        assert_eq!(
            code(client.bench_paired(model.handle, Some(model.handle), &limits)),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(client.bench_paired(model.handle, Some(99), &limits)),
            ErrorCode::UnknownHandle
        );
        assert!(client.bench(model.handle, &quick()).is_ok());
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn the_sensor_is_read_between_every_k_runs() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let model = client
            .load_model(&ConvClip::default().encode(), None)
            .unwrap();
        let request = |every: u32, return_samples: bool| crate::proto::BenchRequest {
            handle: model.handle,
            limits: BenchLimits {
                min_runs: 7,
                max_runs: 7,
                return_samples,
                ..quick()
            },
            reference: None,
            sensor_every: Some(every),
        };
        // Before run 0, after runs 3 and 6, after the last: ⌈7/3⌉ + 1.
        let s = client.bench_request(request(3, true)).unwrap();
        let readings = s.sensor_samples_ms.clone().expect("readings");
        assert_eq!((s.runs, readings.len()), (7, 4));
        assert!(
            readings.iter().all(|r| r.is_finite() && *r > 0.0),
            "{readings:?}"
        );
        // Readings after the first (and the untimed run after each) lie
        // outside the model's samples but inside the timed loop.
        let (timed, sensed) = (s.timed_wall_ms.unwrap(), readings[1..].iter().sum::<f64>());
        assert!(
            timed >= s.total_ms + sensed,
            "{timed} {} {sensed}",
            s.total_ms
        );
        // Every run: one more reading than runs. Readings come with the
        // request, samples or not; without the sensor there are none.
        let s = client.bench_request(request(1, false)).unwrap();
        assert_eq!(s.sensor_samples_ms.map(|r| r.len()), Some(8));
        let plain = client.bench(model.handle, &quick()).unwrap();
        assert!(plain.sensor_samples_ms.is_none());
        assert_eq!(
            code(client.bench_request(request(0, true))),
            ErrorCode::BadMessage,
            "a reading every 0 runs"
        );
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn bad_limits_are_refused() {
        let (mut client, server) = start(ServerConfig::default());
        client.hello(None).unwrap();
        let loaded = client.load_model(&relu(&[Dim::Fixed(2)]), None).unwrap();
        for limits in [
            BenchLimits {
                max_runs: 0,
                min_runs: 0,
                ..quick()
            },
            BenchLimits {
                min_runs: 9,
                max_runs: 3,
                ..quick()
            },
            BenchLimits {
                threads: Some(0),
                ..quick()
            },
        ] {
            assert_eq!(
                code(client.bench(loaded.handle, &limits)),
                ErrorCode::BadMessage
            );
        }
        assert!(client.bench(loaded.handle, &quick()).is_ok());
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn model_limit_is_enforced() {
        let config = ServerConfig {
            max_models: 1,
            ..ServerConfig::default()
        };
        let (mut client, server) = start(config);
        client.hello(None).unwrap();
        let model = relu(&[Dim::Fixed(2)]);
        let first = client.load_model(&model, None).unwrap();
        assert_eq!(code(client.load_model(&model, None)), ErrorCode::Internal);
        client.unload(first.handle).unwrap();
        client.load_model(&model, None).unwrap();
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }
}

#[test]
fn tcp_server_survives_bad_clients() {
    use crate::transport::tcp;
    let listener = tcp::TcpServer::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = ServerConfig {
        hello_timeout: Some(Duration::from_millis(300)),
        idle_timeout: Some(Duration::from_secs(30)),
        ..ServerConfig::default()
    };
    let server = thread::spawn(move || serve_tcp(&listener, &config));
    let timeout = Duration::from_secs(5);

    // 1. Connects and drops at once.
    drop(tcp::connect(&addr, timeout).unwrap());
    // 2. Sends garbage and half a frame, then drops.
    {
        use std::io::Write;
        let mut raw = std::net::TcpStream::connect(&addr).unwrap();
        raw.write_all(b"GET / HTTP/1.0\r\n\r\nPDNA\x01").unwrap();
    }
    // 3. Connects and says nothing: dropped after the hello timeout.
    let silent = tcp::connect(&addr, timeout).unwrap();
    // 4. Refused for a wrong protocol.
    let mut refused = tcp::connect(&addr, timeout).unwrap();
    let hello = Request::Hello(HelloRequest {
        protocol_major: 99,
        protocol_minor: 0,
        token: None,
    });
    refused.send(&hello.into_frame().unwrap()).unwrap();
    let reply = Response::from_frame(refused.recv().unwrap().unwrap()).unwrap();
    assert!(matches!(reply, Response::Error(e) if e.code == ErrorCode::ProtocolMismatch));
    drop(silent);

    // 5. A well-behaved host still gets served, and can stop the agent.
    let mut client = Client::new(Box::new(tcp::connect(&addr, timeout).unwrap()));
    client.hello(None).unwrap();
    assert_eq!(code(client.unload(7)), ErrorCode::UnknownHandle);
    client.shutdown().unwrap();
    server.join().unwrap().unwrap();
}
