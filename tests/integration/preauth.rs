//! The agent before authentication, as a stranger who can reach its port
//! sees it: real agent processes on 127.0.0.1, raw sockets. Each hostile
//! client is followed by a real host, who must still be served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use padnas_agent::proto::{
    ErrorCode, HelloRequest, Kind, MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, Request, Response,
};

use crate::util::{ChildGuard, agent_bin, tcp_agent, tcp_link};

const TOKEN: &str = "integration-token-0123456789";

/// An agent on 127.0.0.1 whose token comes from a file (the documented way).
fn token_agent(extra: &[&str]) -> (ChildGuard, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write token");
    let mut args = vec!["--token-file", file.to_str().expect("utf8")];
    args.extend_from_slice(extra);
    let (guard, addr) = tcp_agent(&args);
    (guard, addr, dir)
}

fn hello(token: Option<&str>, major: u16) -> Request {
    Request::Hello(HelloRequest {
        protocol_major: major,
        protocol_minor: PROTOCOL_MINOR,
        token: token.map(str::to_string),
    })
}

/// A real host: Hello with the token is answered.
fn real_host_is_served(addr: &str) {
    let mut l = tcp_link(addr);
    match l.call(hello(Some(TOKEN), PROTOCOL_MAJOR)) {
        Response::Hello(info) => assert!(!info.agent_version.is_empty()),
        other => panic!("a real host was not served: {other:?}"),
    }
}

fn error_of(r: Response) -> (ErrorCode, String) {
    match r {
        Response::Error(e) => (e.code, e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn tokens_come_from_a_file_or_the_environment_and_must_be_long() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = dir.path().join("short");
    std::fs::write(&short, "s3cret\n").expect("write");
    let out = Command::new(agent_bin(None))
        .args(["--listen", "127.0.0.1:0", "--token-file"])
        .arg(&short)
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("short") && err.contains("16"), "{err}");

    let out = Command::new(agent_bin(None))
        .args(["--listen", "127.0.0.1:0"])
        .env("PADNAS_AGENT_TOKEN", "tiny")
        .output()
        .expect("run agent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PADNAS_AGENT_TOKEN"), "{err}");

    // From the environment, a token of the right length is required in Hello.
    let mut cmd = Command::new(agent_bin(None));
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("PADNAS_AGENT_TOKEN", TOKEN);
    let (_agent, addr) = crate::util::spawn_until(cmd, "padnas-agent: listening on ");
    let (code, _) = error_of(tcp_link(&addr).call(hello(None, PROTOCOL_MAJOR)));
    assert_eq!(code, ErrorCode::Unauthorized);
    real_host_is_served(&addr);
}

#[test]
fn wrong_tokens_are_refused_then_a_real_host_is_served() {
    let (_agent, addr, _dir) = token_agent(&[]);
    let near = &TOKEN[..TOKEN.len() - 1];
    for token in [None, Some("wrong"), Some(near)] {
        let (code, message) = error_of(tcp_link(&addr).call(hello(token, PROTOCOL_MAJOR)));
        assert_eq!(code, ErrorCode::Unauthorized, "{token:?}: {message}");
    }
    // A protocol mismatch without the token is a refusal that tells nothing
    // about the agent: no version, no protocol.
    let (code, message) = error_of(tcp_link(&addr).call(hello(Some("guess"), 99)));
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(
        !message.contains(env!("CARGO_PKG_VERSION")) && !message.contains("protocol"),
        "{message}"
    );
    // With the token, the mismatch is explained.
    let (code, _) = error_of(tcp_link(&addr).call(hello(Some(TOKEN), 99)));
    assert_eq!(code, ErrorCode::ProtocolMismatch);
    real_host_is_served(&addr);
}

#[test]
fn an_oversize_frame_before_hello_is_refused_without_holding_it() {
    let (agent, addr, _dir) = token_agent(&[]);
    let pid = agent.0.id();
    let before = rss_kib(pid);
    let mut l = tcp_link(&addr);
    // A LoadModel frame that declares 200 MiB, followed by 8 MiB of its
    // "payload": the agent must refuse from the header and not keep the
    // bytes that follow.
    let mut head = MAGIC.to_vec();
    head.push(Kind::LoadModel as u8);
    head.extend((200u32 << 20).to_le_bytes());
    l.raw(&head);
    let (code, message) = error_of(l.recv());
    assert_eq!(code, ErrorCode::Oversize, "{message}");
    l.raw(&vec![0u8; 8 << 20]);
    // Still a live session: a request before Hello gets HelloRequired.
    let (code, _) = error_of(l.call(Request::Shutdown));
    assert_eq!(code, ErrorCode::HelloRequired);
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "the agent grew from {before} KiB to {after} KiB on an unauthenticated frame"
    );
    drop(l);
    real_host_is_served(&addr);
}

#[test]
fn a_dripping_client_is_closed_at_the_hello_deadline() {
    let (_agent, addr, _dir) = token_agent(&["--hello-timeout", "2"]);
    let mut s = TcpStream::connect(&addr).expect("connect");
    let mut writer = s.try_clone().expect("clone");
    // One byte every 100 ms, for at most 60 s: far more often than the
    // hello timeout, so only a deadline for the whole handshake ends it.
    let drip = std::thread::spawn(move || {
        for _ in 0..600 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the agent still held a dripping client after {:?} (hello timeout 2 s)",
        t0.elapsed()
    );
    drop(s);
    drip.join().expect("drip thread");
    real_host_is_served(&addr);
}
