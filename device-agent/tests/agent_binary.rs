//! Drives the real `padnas-agent` binary over stdio and TCP. (The workspace's
//! conformance suite in tests/ covers every transport; these keep the
//! crate's own promises: exit codes, stdout hygiene, the loopback rule.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use padnas_agent::Client;
use padnas_agent::proto::ErrorCode;
use padnas_agent::transport::stdio::ChildTransport;
use padnas_agent::transport::tcp;

const AGENT: &str = env!("CARGO_BIN_EXE_padnas-agent");

#[cfg(feature = "bench")]
fn quick() -> padnas_agent::proto::BenchLimits {
    padnas_agent::proto::BenchLimits {
        warmup_runs: 1,
        warmup_ms: 0,
        min_runs: 2,
        max_runs: 3,
        max_time_ms: 1000,
        ..padnas_agent::proto::BenchLimits::default()
    }
}

fn session(client: &mut Client) {
    let info = client.hello(None).unwrap();
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
    assert_ne!(info.tract_version, "unknown");
    #[cfg(feature = "bench")]
    {
        use padnas_agent::onnx_fixture::ConvClip;
        let err = client.load_model(b"not onnx", None).unwrap_err();
        assert_eq!(err.remote_code(), Some(ErrorCode::BadModel));
        let loaded = client
            .load_model(&ConvClip::default().encode(), None)
            .unwrap();
        let stats = client.bench(loaded.handle, &quick()).unwrap();
        assert!(stats.runs >= 2);
        let input = vec![0.25f32; 3 * 16 * 16];
        let (shape, _) = client
            .infer(loaded.handle, &[1, 3, 16, 16], &input)
            .unwrap();
        assert_eq!(shape, vec![1, 8, 16, 16]);
    }
    let err = client.unload(99).unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::UnknownHandle));
    client.shutdown().unwrap();
}

#[test]
fn stdout_carries_nothing_but_frames_even_when_verbose() {
    // Raw stdout, not through a client (which skips non-frame bytes): every
    // byte must belong to a frame, one reply per request.
    use padnas_agent::proto::{FrameReader, HelloRequest, LoadModel, Request, UnloadRequest};
    use std::io::{Read, Write};
    let requests = [
        Request::Hello(HelloRequest {
            protocol_major: padnas_agent::proto::PROTOCOL_MAJOR,
            protocol_minor: padnas_agent::proto::PROTOCOL_MINOR,
            token: None,
        }),
        Request::LoadModel {
            header: LoadModel::default(),
            onnx: b"not onnx".to_vec(),
        },
        Request::Unload(UnloadRequest { handle: 99 }),
        Request::Shutdown,
    ];
    let mut input = Vec::new();
    for r in &requests {
        input.extend(r.to_frame().unwrap().encode().unwrap());
    }
    let mut child = Command::new(AGENT)
        .args(["--stdio", "--verbose"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        stderr.contains("LoadModel"),
        "--verbose logs the requests (to stderr): {stderr}"
    );
    let mut reader = FrameReader::new(&stdout[..]);
    let mut frames = 0;
    loop {
        match reader.read_frame() {
            Ok(Some(_)) => frames += 1,
            Ok(None) => break,
            Err(e) => panic!(
                "stdout holds bytes that are not frames ({e}): {:?}",
                String::from_utf8_lossy(&stdout)
            ),
        }
    }
    assert_eq!(frames, requests.len(), "one reply per request");
}

#[test]
fn stdio_session_with_verbose_logging() {
    // --verbose logs every request; none of it may reach stdout (the wire).
    let mut cmd = Command::new(AGENT);
    cmd.args(["--stdio", "--verbose"]);
    let transport = ChildTransport::spawn(cmd).unwrap();
    let mut client = Client::new(Box::new(transport));
    session(&mut client);
}

#[test]
fn tcp_session_on_an_ephemeral_port() {
    let mut child = Command::new(AGENT)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("agent exited before listening")
            .unwrap();
        if let Some(addr) = line.strip_prefix("padnas-agent: listening on ") {
            break addr.to_string();
        }
    };
    // Keep draining stderr so the agent never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    let transport = tcp::connect(&addr, Duration::from_secs(5)).unwrap();
    let mut client = Client::new(Box::new(transport));
    session(&mut client);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn non_loopback_listen_needs_a_token() {
    let out = Command::new(AGENT)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("PADNAS_AGENT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_usage_exits_2_and_help_exits_0() {
    let out = Command::new(AGENT)
        .args(["--stdio", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(AGENT).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(AGENT).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stdio_agent_exits_0_at_end_of_input() {
    let out = Command::new(AGENT)
        .arg("--stdio")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}
