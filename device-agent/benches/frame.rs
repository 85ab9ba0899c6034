//! Wire-format throughput: encoding a frame, reading a stream of frames, and
//! reading one that is damaged (garbage between frames, a frame with a bad
//! CRC) so the reader has to resynchronise. Run with `cargo bench -p
//! padnas-agent --bench frame`; figures are in the crate's README.
//!
//! Payloads: a 4 KiB blob (an input tensor, a small block's output) and a
//! 1 MiB blob (an ONNX block or a large tensor), each with a short JSON header.

use std::hint::black_box;
use std::io::Cursor;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use padnas_agent::proto::Kind;
use padnas_agent::{Frame, FrameReader};

/// Blob sizes measured.
const SIZES: [(&str, usize); 2] = [("4KiB", 4 << 10), ("1MiB", 1 << 20)];
/// Frames per stream in the read benchmarks.
const FRAMES: usize = 16;

fn frame(blob_len: usize) -> Frame {
    // Not all zeros, so the CRC sees varied bytes.
    let blob = (0..blob_len).map(|i| (i * 31 % 251) as u8).collect();
    let header = br#"{"name":"mbconv:k3e6:in24x56x56:out40:s2","shape":[1,24,56,56]}"#.to_vec();
    Frame::new(Kind::LoadModel, header, blob)
}

/// `FRAMES` intact frames back to back.
fn clean_stream(blob_len: usize) -> Vec<u8> {
    let bytes = frame(blob_len).encode().expect("encode");
    bytes.repeat(FRAMES)
}

/// The same frames with damage: every other frame is preceded by a line of
/// garbage (a login banner), and every fourth has one flipped blob byte, so
/// its CRC fails and the reader rescans from the byte after its magic.
fn damaged_stream(blob_len: usize) -> Vec<u8> {
    let bytes = frame(blob_len).encode().expect("encode");
    let mut out = Vec::with_capacity((bytes.len() + 64) * FRAMES);
    for i in 0..FRAMES {
        if i % 2 == 1 {
            out.extend_from_slice(b"Last login: Mon Nov 30 12:00:00 from 10.0.0.2\r\n");
        }
        let start = out.len();
        out.extend_from_slice(&bytes);
        if i % 4 == 3 {
            let mid = start + bytes.len() / 2;
            out[mid] ^= 0x55;
        }
    }
    out
}

/// Reads the whole stream; returns (frames, errors) so nothing is optimised out.
fn read_all(stream: &[u8]) -> (usize, usize) {
    let mut reader = FrameReader::new(Cursor::new(stream));
    let (mut frames, mut errors) = (0, 0);
    loop {
        match reader.read_frame() {
            Ok(Some(f)) => {
                frames += 1;
                black_box(&f);
            }
            Ok(None) => return (frames, errors),
            Err(e) if e.is_recoverable() => errors += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/encode");
    for (name, len) in SIZES {
        let f = frame(len);
        g.throughput(Throughput::Bytes(f.encode().expect("encode").len() as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(&f).encode().expect("encode"))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/decode");
    for (name, len) in SIZES {
        let stream = clean_stream(len);
        assert_eq!(read_all(&stream), (FRAMES, 0));
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| read_all(black_box(&stream)))
        });
    }
    g.finish();
}

fn resync(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame/resync");
    for (name, len) in SIZES {
        let stream = damaged_stream(len);
        let (frames, errors) = read_all(&stream);
        // Every damaged frame is lost and reported; the others all arrive.
        assert_eq!(frames, FRAMES - FRAMES / 4);
        assert!(errors >= FRAMES / 4, "{errors} errors");
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| read_all(black_box(&stream)))
        });
    }
    g.finish();
}

criterion_group!(benches, encode, decode, resync);
criterion_main!(benches);
