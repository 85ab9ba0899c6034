use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::client::Client;
use crate::server::{ServerConfig, SessionEnd, serve_session};
use crate::transport::StreamTransport;

#[test]
fn a_ring_holds_one_byte_less_than_its_size_and_wraps() {
    let ring = MemoryRing::new(8);
    assert_eq!(ring.write(b"abcdefghij"), 7, "trimmed to what fits");
    assert_eq!(ring.write(b"x"), 0, "full");
    let mut out = [0u8; 5];
    assert_eq!(ring.read(&mut out), 5);
    assert_eq!(&out, b"abcde");
    // The write offset wraps past the end of the buffer.
    assert_eq!(ring.write(b"KLMNO"), 5);
    let mut rest = [0u8; 16];
    let n = ring.read(&mut rest);
    assert_eq!(&rest[..n], b"fgKLMNO");
    assert_eq!(ring.read(&mut rest), 0, "empty");
}

/// The agent's session on a thread behind two rings of `size` bytes, the
/// host's client on an [`RttTransport`] over them.
fn agent_over_rings(size: usize) -> (Client, thread::JoinHandle<SessionEnd>) {
    let (up, down) = (MemoryRing::new(size), MemoryRing::new(size));
    let firmware_side = RingStream {
        rx: down.clone(),
        tx: up.clone(),
    };
    let writer = RingStream {
        rx: down.clone(),
        tx: up.clone(),
    };
    let server = thread::spawn(move || {
        let mut t = StreamTransport::new(firmware_side, writer, "host over RTT");
        serve_session(&mut t, &ServerConfig::default()).expect("session")
    });
    let host = RttTransport::new(MemoryChannels { up, down });
    (Client::new(Box::new(host)), server)
}

#[test]
fn a_session_runs_over_rings_smaller_than_one_frame() {
    // 61-byte rings: every frame wraps around several times and every send
    // waits for the other side to make room.
    let (mut client, server) = agent_over_rings(61);
    let info = client.hello(None).expect("hello");
    assert_eq!(info.protocol, crate::proto::PROTOCOL_MAJOR);
    #[cfg(feature = "bench")]
    {
        use crate::onnx_fixture::ConvClip;
        let model = ConvClip::default();
        let loaded = client.load_model(&model.encode(), None).expect("load");
        let n: usize = loaded.input_shape.iter().product();
        let input: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.1).collect();
        let (shape, out) = client
            .infer(loaded.handle, &loaded.input_shape, &input)
            .expect("infer");
        assert_eq!(shape, loaded.output_shape);
        assert_eq!(out.len(), shape.iter().product::<usize>());
    }
    client.shutdown().expect("shutdown");
    assert_eq!(server.join().unwrap(), SessionEnd::Shutdown);
}

#[test]
fn a_firmware_that_never_reads_fails_the_send_within_its_timeout() {
    let (up, down) = (MemoryRing::new(32), MemoryRing::new(32));
    let mut host = RttTransport::new(MemoryChannels { up, down });
    host.set_write_timeout(Duration::from_millis(50));
    let frame = crate::proto::Request::Shutdown.into_frame().unwrap();
    let started = Instant::now();
    // The first frame fits; the ring then stays full.
    host.send(&frame).expect("fits");
    let err = host.send(&frame).expect_err("nobody reads");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(text.contains("down channel"), "{text}");
}

#[test]
fn a_silent_firmware_times_the_read_out() {
    let (up, down) = (MemoryRing::new(32), MemoryRing::new(32));
    let mut host = RttTransport::new(MemoryChannels { up, down });
    host.set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let started = Instant::now();
    assert!(matches!(host.recv(), Err(TransportError::TimedOut)));
    assert!(started.elapsed() >= Duration::from_millis(30));
    // A deadline bounds it too, however long the read timeout.
    host.set_read_timeout(None).unwrap();
    host.set_deadline(Some(Instant::now() + Duration::from_millis(30)))
        .unwrap();
    assert!(matches!(host.recv(), Err(TransportError::TimedOut)));
}
