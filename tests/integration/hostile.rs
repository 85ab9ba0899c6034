//! Hostile target files: each is refused with an error naming the file and
//! the key, or made harmless; a canary file proves that nothing they carry
//! ran on this machine (or, for the ssh ones, on the "board", which is this
//! machine too). `tests/integration/ssh.rs` runs the quoted agent path
//! through a real sshd.

use std::path::Path;

use crate::util::padnas;

/// A target file with `transport` and `agent_path` (YAML double-quoted).
fn target_file(dir: &Path, name: &str, transport: &str, agent_path: &str) -> String {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "name: {name}\ntriple: aarch64-unknown-linux-gnu\ntransport: {transport:?}\nagent_path: {agent_path:?}\n"
        ),
    )
    .expect("write target");
    p.to_str().expect("utf8").to_string()
}

#[test]
fn hostile_target_files_run_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = dir.path().join("canary");
    let c = canary.display().to_string();
    let refused = [
        (
            "proxy",
            format!("ssh://-oProxyCommand=touch {c}"),
            "/tmp/a".to_string(),
        ),
        (
            "proxy-user",
            format!("ssh://-oProxyCommand=touch {c}@h"),
            "/tmp/a".to_string(),
        ),
        (
            "semicolon-host",
            format!("ssh://pi@h;touch {c}"),
            "/tmp/a".to_string(),
        ),
        (
            "subst-host",
            format!("ssh://pi@$(touch {c})"),
            "/tmp/a".to_string(),
        ),
        (
            "bad-port",
            "ssh://pi@h:22;touch".to_string(),
            "/tmp/a".to_string(),
        ),
        (
            "bare-ipv6",
            "ssh://pi@fe80::1:2222".to_string(),
            "/tmp/a".to_string(),
        ),
        ("adb-option", "adb://-a".to_string(), "/tmp/a".to_string()),
        (
            "adb-semicolon",
            format!("adb://x;touch {c}"),
            "/tmp/a".to_string(),
        ),
        (
            "relative-path",
            "ssh://pi@h".to_string(),
            format!("x;touch {c}"),
        ),
        (
            "option-path",
            "ssh://pi@h".to_string(),
            "-oProxyCommand=x".to_string(),
        ),
        (
            "newline-path",
            "ssh://pi@h".to_string(),
            format!("/tmp/a\ntouch {c}"),
        ),
    ];
    let mut report = Vec::new();
    for (name, transport, agent_path) in &refused {
        let file = target_file(dir.path(), name, transport, agent_path);
        for cmd in ["hello", "deploy"] {
            let (code, _out, err) = padnas(&["agent", cmd, "--target", &file]);
            assert_eq!(code, 2, "{name} ({cmd}) was not refused: {err}");
            let key = if name.ends_with("path") {
                "agent_path"
            } else {
                "transport"
            };
            assert!(
                err.contains(&format!("{name}.yaml")) && err.contains(key),
                "{name}: the error names neither the file nor {key}: {err}"
            );
            report.push(format!("{name} {cmd}: refused"));
        }
    }
    // Accepted, because quoting makes them harmless: shell syntax in the
    // agent path, an IPv6 destination with a port. Nothing listens on port
    // 1, so ssh fails to connect; what matters is that nothing ran.
    let harmless = [
        (
            "quoted-path",
            "ssh://nobody@127.0.0.1:1".to_string(),
            format!("/tmp/a;touch {c}"),
        ),
        (
            "subst-path",
            "ssh://nobody@[::1]:1".to_string(),
            format!("/tmp/$(touch {c})"),
        ),
        (
            "tick-path",
            "ssh://nobody@127.0.0.1:1".to_string(),
            format!("/tmp/`touch {c}`"),
        ),
    ];
    for (name, transport, agent_path) in &harmless {
        let file = target_file(dir.path(), name, transport, agent_path);
        let (code, _out, err) = padnas(&["agent", "hello", "--target", &file]);
        assert_eq!(code, 1, "{name}: expected a connection failure: {err}");
        assert!(err.contains(name), "{name}: names the target: {err}");
        report.push(format!("{name} hello: connection refused, nothing ran"));
    }
    assert!(
        !canary.exists(),
        "a hostile target file ran a command: {}",
        report.join("; ")
    );
    eprintln!(
        "hostile target files: {} tried, 0 commands run",
        report.len()
    );
}
