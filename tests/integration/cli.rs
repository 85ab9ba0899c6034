//! `padnas agent …` end to end: the real CLI, the real agents, real transports.

use std::io::Write;

use crate::util::*;

fn write_block_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("block.onnx");
    std::fs::write(&p, block_onnx(&mbconv_key(3, 3, 16, 14, 24, 2), 11)).expect("write onnx");
    p
}

#[test]
fn hello_on_local_prints_one_json_line() {
    let (code, out, err) = padnas(&["agent", "hello", "--target", "local"]);
    assert_eq!(code, 0, "{err}");
    let v = json_line(&out);
    assert_eq!(v["protocol"], padnas_agent::proto::PROTOCOL_MAJOR);
    assert_eq!(v["arch"], std::env::consts::ARCH);
    assert!(v["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(v["agent_version"].is_string() && v["tract_version"].is_string());
    assert_eq!(v["emulated"], false);
}

#[test]
fn hello_and_bench_on_qemu_are_labelled_emulated() {
    let (code, out, err) = padnas(&["agent", "hello", "--target", "qemu-aarch64"]);
    assert_eq!(code, 0, "{err}");
    let v = json_line(&out);
    assert_eq!(v["arch"], "aarch64");
    assert_eq!(v["emulated"], true);
    assert!(
        v["label"].as_str().unwrap_or("").contains("emulated"),
        "{v}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let model = write_block_file(dir.path());
    let m = model.to_str().expect("utf8 path");
    let (code, out, err) = padnas(&[
        "agent",
        "bench",
        "--target",
        "qemu-aarch64",
        "--model",
        m,
        "--runs",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json_line(&out);
    assert_eq!(v["runs"], 3);
    assert_eq!(v["emulated"], true);
    assert!(v["label"].as_str().unwrap_or("").contains("emulated"));
}

#[test]
fn bench_on_local_prints_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = write_block_file(dir.path());
    let m = model.to_str().expect("utf8 path");
    let (code, out, err) = padnas(&[
        "agent",
        "bench",
        "--target",
        "local",
        "--model",
        m,
        "--runs",
        "12",
        "--threads",
        "1",
        "--samples",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json_line(&out);
    assert_eq!(v["runs"], 12);
    assert_eq!(v["threads"], 1);
    let (p10, med, p90) = (
        v["p10_ms"].as_f64(),
        v["median_ms"].as_f64(),
        v["p90_ms"].as_f64(),
    );
    let (p10, med, p90) = (p10.expect("p10"), med.expect("median"), p90.expect("p90"));
    assert!(0.0 < p10 && p10 <= med && med <= p90, "{v}");
    assert_eq!(v["samples_ms"].as_array().map(Vec::len), Some(12));
    assert_eq!(v["input_shape"], serde_json::json!([1, 16, 14, 14]));
    assert_eq!(v["output_shape"], serde_json::json!([1, 24, 7, 7]));
}

#[test]
fn corrupt_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Named without "onnx", so only the agent's verdict can satisfy the check.
    let p = dir.path().join("broken.model");
    std::fs::write(&p, b"\x08\x07garbage that is not a model").expect("write");
    let (code, _out, err) = padnas(&[
        "agent",
        "bench",
        "--target",
        "local",
        "--model",
        p.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad_model"),
        "the agent's BadModel code: {err}"
    );
    assert!(err.contains("broken.model"), "names the file: {err}");
}

#[test]
fn bad_target_files_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("board.yaml");
    let mut f = std::fs::File::create(&p).expect("create");
    writeln!(
        f,
        "name: board\ntriple: aarch64-unknown-linux-gnu\ntransport: tcp://127.0.0.1:1\nbaud: 9600"
    )
    .expect("write");
    drop(f);
    let path = p.to_str().expect("utf8");
    let (code, _out, err) = padnas(&["agent", "hello", "--target", path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("board.yaml") && err.contains("baud"), "{err}");

    std::fs::write(
        &p,
        "name: board\ntriple: aarch64-unknown-linux-gnu\ntransport: ssh://pi@h\n",
    )
    .expect("write");
    let (code, _out, err) = padnas(&["agent", "hello", "--target", path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("board.yaml") && err.contains("agent_path"),
        "{err}"
    );

    let (code, _out, err) = padnas(&["agent", "hello", "--target", "no-such-board"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rpi4"), "lists the known targets: {err}");
}

#[test]
fn unreachable_device_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("gone.yaml");
    // Port 9 on loopback: nothing listens there.
    std::fs::write(
        &p,
        "name: gone\ntriple: x86_64-unknown-linux-gnu\ntransport: tcp://127.0.0.1:9\n",
    )
    .expect("write");
    let (code, _out, err) = padnas(&["agent", "hello", "--target", p.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("gone") && err.contains("tcp://127.0.0.1:9"),
        "{err}"
    );
}

#[test]
fn tcp_target_with_token_from_env() {
    let (_agent, addr) = tcp_agent(&["--token", "tok-0123456789abcdef"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("lan.yaml");
    std::fs::write(
        &p,
        format!("name: lan\ntriple: x86_64-unknown-linux-gnu\ntransport: tcp://{addr}\ntoken_env: PADNAS_TEST_TOKEN\n"),
    )
    .expect("write");
    let path = p.to_str().expect("utf8");
    let out = std::process::Command::new(padnas_bin())
        .args(["agent", "hello", "--target", path])
        .env("PADNAS_TEST_TOKEN", "tok-0123456789abcdef")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json_line(&String::from_utf8_lossy(&out.stdout))["arch"],
        std::env::consts::ARCH
    );
    let out = std::process::Command::new(padnas_bin())
        .args(["agent", "hello", "--target", path])
        .env("PADNAS_TEST_TOKEN", "wrong")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serial_target_through_the_cli() {
    let (_dir, a, h, _socat) = pty_pair();
    let _agent = serial_agent(&a);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("uart.yaml");
    std::fs::write(
        &p,
        format!(
            "name: uart\ntriple: x86_64-unknown-linux-gnu\ntransport: serial://{}?baud=115200\n",
            h.display()
        ),
    )
    .expect("write");
    let model = write_block_file(dir.path());
    let (code, out, err) = padnas(&[
        "agent",
        "bench",
        "--target",
        p.to_str().expect("utf8"),
        "--model",
        model.to_str().expect("utf8"),
        "--runs",
        "4",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out)["runs"], 4);
}

#[test]
fn deploy_refuses_targets_it_cannot_copy_to() {
    let (code, _out, err) = padnas(&["agent", "deploy", "--target", "local"]);
    assert_eq!(code, 1);
    assert!(err.contains("ssh and adb"), "{err}");
}

#[test]
fn a_bad_key_is_reported_once() {
    // An error shows its cause or returns it as its source, never both: the
    // parser's message appears once in what padnas prints.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "name: x\nbogus_key: 1\n").expect("write");
    let (code, _out, err) = padnas(&["train", "--config", p.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("bogus_key").count(), 1, "{err}");
    assert!(err.contains("c.yaml"), "{err}");
}
