//! Retrain, export and verify end to end: a tiny Fashion-MNIST run trained
//! by the real `padnas train`, one architecture retrained for a few steps
//! (`padnas retrain`), written with `padnas export --run`, then checked on
//! the `local` and `qemu-aarch64` targets by `padnas verify`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// 28×28 grey input, so the real Fashion-MNIST test images feed it.
const SPACE: &str = "\
name: tiny28
input: { channels: 1, height: 28, width: 28 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1] }
  - { channels: 16, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3], ops: [k3e3, k5e3, id] }
head: { channels: 32 }
";

/// 256 training images in batches of 32: 8 steps per epoch.
const JOB: &str = "\
name: tiny
run_dir: run
seed: 3
space: space.yaml
data: { kind: fashion-mnist, val_split: 0.1 }
train: { epochs: 1, batch_size: 32, lr: 0.1, threads: 1, max_train_samples: 256 }
";

const ARCH: &str = "k5e1,k3e3,id";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Runs padnas and returns its JSON line, failing with its stderr otherwise.
fn ok(args: &[&str]) -> Value {
    let (code, out, err) = padnas(args);
    assert_eq!(code, 0, "padnas {args:?}: {err}");
    json_line(&out)
}

/// A trained tiny run in `dir`; returns the run directory.
fn tiny_run(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("space.yaml"), SPACE).expect("space");
    std::fs::write(dir.join("job.yaml"), JOB).expect("job");
    let v = ok(&["train", "--config", s(&dir.join("job.yaml")), "--quiet"]);
    assert_eq!(v["finished"], true, "{v}");
    dir.join("run")
}

/// A latency table of the tiny space on `local`, quick and rough, written
/// to `dir/name` (with `extra` profile arguments).
fn local_table(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let table = dir.join(name);
    let space = dir.join("space.yaml");
    let mut args = vec![
        "profile",
        "--target",
        "local",
        "--space",
        s(&space),
        "--out",
        s(&table),
        "--max-runs",
        "20",
        "--ci-pct",
        "50",
        "--sentinel-every",
        "0",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    table
}

/// Retrains ARCH (inheriting), exports it with the table; returns the model.
fn retrained_model(dir: &Path, run: &Path, table: &Path) -> PathBuf {
    let v = ok(&[
        "retrain",
        "--run",
        s(run),
        "--arch",
        ARCH,
        "--inherit",
        "--quiet",
    ]);
    assert_eq!(v["finished"], true, "{v}");
    assert_eq!(v["arch"], ARCH);
    assert_eq!(v["inherit"], true);
    assert_eq!(v["steps"], 8);
    assert_eq!(v["test_samples"], 10_000);
    let acc = v["test_accuracy"].as_f64().expect("test accuracy");
    assert!((0.0..=1.0).contains(&acc), "{v}");
    assert!(v["val_accuracy"].as_f64().is_some(), "{v}");
    let rdir = run.join("retrain").join(ARCH.replace(',', "-"));
    for f in [
        "weights.safetensors",
        "checkpoint.safetensors",
        "result.json",
    ] {
        assert!(rdir.join(f).is_file(), "{f} missing in {}", rdir.display());
    }
    let inherited = v["inherited_from"].as_str().expect("inherited_from");
    assert!(inherited.ends_with("run/supernet.safetensors"), "{v}");

    let model = dir.join("out").join("model.onnx");
    let v = ok(&[
        "export",
        "--run",
        s(run),
        "--arch",
        ARCH,
        "--table",
        s(table),
        "--out",
        s(&model),
    ]);
    assert_eq!(v["arch"], ARCH);
    assert_eq!(v["target"], "local");
    assert!(v["predicted_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    assert_eq!(v["test_accuracy"].as_f64(), Some(acc));
    // Written atomically: no temp file left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.join("out"))
        .expect("out dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("model.onnx")]);

    let bytes = std::fs::read(&model).expect("model");
    let meta = padnas::cmd::verify::model_metadata(&bytes).expect("metadata");
    let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("padnas.arch").as_deref(), Some(ARCH));
    assert_eq!(get("padnas.space").as_deref(), Some("tiny28"));
    assert!(get("padnas.space_hash").is_some());
    assert_eq!(get("padnas.target").as_deref(), Some("local"));
    let ms: f64 = get("padnas.predicted_ms")
        .expect("predicted_ms")
        .parse()
        .expect("number");
    assert!((ms - v["predicted_ms"].as_f64().expect("ms")).abs() < 1e-3);
    let test: f64 = get("padnas.test_accuracy")
        .expect("test accuracy")
        .parse()
        .expect("number");
    assert!((test - acc).abs() < 1e-6);
    assert!(get("padnas.val_accuracy").is_some());
    model
}

fn verify(target: &str, model: &Path, table: &Path, images: &str) -> Value {
    ok(&[
        "verify",
        "--target",
        target,
        "--model",
        s(model),
        "--table",
        s(table),
        "--images",
        images,
    ])
}

#[test]
fn retrain_export_and_verify_on_local_and_qemu() {
    agent_bin(None);
    agent_bin(Some("aarch64-unknown-linux-gnu"));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = tiny_run(dir.path());
    let table = local_table(dir.path(), "table.json", &[]);
    let model = retrained_model(dir.path(), &run, &table);

    let v = verify("local", &model, &table, "8");
    assert_eq!(v["images"], 8);
    assert_eq!(v["agree"], true, "{v}");
    // The same tract build on the same CPU: the same numbers.
    assert!(v["max_abs_diff"].as_f64().expect("diff") <= 1e-6, "{v}");
    assert!(v["measured_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    assert!(v["predicted_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    assert_eq!(v["emulated"], false);
    let label = v["label"].as_str().expect("label");
    assert!(!label.contains("emulated"), "{label}");
    assert_eq!(v["arch"], ARCH);
    assert!(v["correct"].as_u64().is_some_and(|c| c <= 8), "{v}");
    assert!(v["quiet"].is_null(), "no sensor gate in this table: {v}");

    // With a table profiled through the sensor gate, the network is
    // measured the same way: only runs the sensor found quiet count.
    let gated = local_table(dir.path(), "gated.json", &["--sensor-gate", "50"]);
    let v = verify("local", &model, &gated, "2");
    assert_eq!(v["agree"], true, "{v}");
    let kept = v["quiet"]["kept"].as_u64().expect("the gate's report");
    assert!(
        kept >= 1 && kept <= v["quiet"]["of"].as_u64().expect("of"),
        "{v}"
    );
    assert_eq!(v["runs"].as_u64(), Some(kept), "{v}");

    // Over ssh through a real sshd on 127.0.0.1 (tests/integration/ssh.rs):
    // deployed, then verified; the same agent build, so the same numbers.
    if let Some(sshd) = crate::ssh::Sshd::start() {
        let target = sshd.target("ssh-verify", &sshd.agent_path());
        let t = s(&target);
        let out = sshd.padnas(&["agent", "deploy", "--target", t]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = sshd.padnas(&[
            "verify",
            "--target",
            t,
            "--model",
            s(&model),
            "--table",
            s(&table),
            "--images",
            "2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json_line(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(v["target"], "ssh-verify", "{v}");
        assert_eq!(v["agree"], true, "{v}");
        assert!(v["max_abs_diff"].as_f64().expect("diff") <= 1e-6, "{v}");
    }

    // aarch64 tract under qemu: other kernels, so not bit-identical, but
    // the same network; its timing is labelled emulated, never device latency.
    let v = verify("qemu-aarch64", &model, &table, "3");
    assert_eq!(v["images"], 3);
    assert_eq!(v["agree"], true, "{v}");
    assert!(v["max_abs_diff"].as_f64().expect("diff") <= 1e-4, "{v}");
    assert_eq!(v["emulated"], true);
    assert!(
        v["label"].as_str().expect("label").starts_with("emulated"),
        "{v}"
    );
    assert!(v["measured_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    // The table is local's: the prediction says so rather than passing for qemu's.
    assert_eq!(v["table_target"], "local");
}

#[test]
fn retrain_resumes_exactly_and_refuses_a_changed_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = tiny_run(dir.path());
    let r = s(&run);
    let v = ok(&[
        "retrain",
        "--run",
        r,
        "--arch",
        ARCH,
        "--max-steps",
        "3",
        "--quiet",
    ]);
    assert_eq!(
        (v["finished"].clone(), v["step"].clone()),
        (false.into(), 3.into())
    );
    let rdir = run.join("retrain").join(ARCH.replace(',', "-"));
    assert!(!rdir.join("weights.safetensors").exists());
    assert!(!rdir.join("result.json").exists());

    let (code, _, err) = padnas(&["retrain", "--run", r, "--arch", ARCH, "--quiet"]);
    assert_eq!(code, 1);
    assert!(err.contains("--resume"), "{err}");
    let (code, _, err) = padnas(&[
        "retrain",
        "--run",
        r,
        "--arch",
        ARCH,
        "--inherit",
        "--resume",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("inherit"), "{err}");

    let v = ok(&["retrain", "--run", r, "--arch", ARCH, "--resume", "--quiet"]);
    assert_eq!(v["finished"], true, "{v}");
    assert_eq!(v["inherit"], false);
    let resumed = rdir.with_file_name("resumed");
    std::fs::rename(&rdir, &resumed).expect("move aside");
    let v = ok(&["retrain", "--run", r, "--arch", ARCH, "--quiet"]);
    assert_eq!(v["finished"], true, "{v}");

    use padnas::supernet::checkpoint::read_tensor_file;
    let a = read_tensor_file(&resumed.join("weights.safetensors")).expect("resumed");
    let b = read_tensor_file(&rdir.join("weights.safetensors")).expect("straight");
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, t) in &a.tensors {
        assert_eq!(Some(t), b.tensors.get(name), "{name} differs after resume");
    }
    let ra: Value =
        serde_json::from_slice(&std::fs::read(resumed.join("result.json")).expect("r")).expect("j");
    let rb: Value =
        serde_json::from_slice(&std::fs::read(rdir.join("result.json")).expect("r")).expect("j");
    assert_eq!(ra["test_accuracy"], rb["test_accuracy"]);
    assert_eq!(ra["val_accuracy"], rb["val_accuracy"]);

    // Complete: --resume again does nothing but report.
    let v = ok(&["retrain", "--run", r, "--arch", ARCH, "--resume", "--quiet"]);
    assert_eq!(v["test_accuracy"], rb["test_accuracy"]);
}

#[test]
fn export_and_verify_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07garbage that is not onnx").expect("write");
    let (code, out, err) = padnas(&["verify", "--target", "local", "--model", s(&garbage)]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("not an ONNX model"), "{err}");

    // A block is ONNX, but not a network padnas exported.
    let block = dir.path().join("block.onnx");
    let key = mbconv_key(3, 3, 8, 8, 8, 1);
    std::fs::write(&block, block_onnx(&key, 1)).expect("write");
    let (code, _, err) = padnas(&["verify", "--target", "local", "--model", s(&block)]);
    assert_eq!(code, 1);
    assert!(err.contains("not a padnas network"), "{err}");

    // --block and --run are alternatives; --run needs --arch.
    let out = dir.path().join("x.onnx");
    let (code, _, err) = padnas(&[
        "export",
        "--block",
        &key.to_string(),
        "--run",
        "r",
        "--arch",
        ARCH,
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = padnas(&["export", "--run", "r", "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = padnas(&["export", "--out", s(&out)]);
    assert_eq!(code, 2, "{err}");
    // The block mode still works.
    let v = ok(&["export", "--block", &key.to_string(), "--out", s(&out)]);
    assert_eq!(v["block"], key.to_string());
    assert_eq!(std::fs::read(&out).expect("block"), block_onnx(&key, 0));

    // A run that has not retrained the arch says what to do.
    let run = tiny_run(dir.path());
    let (code, _, err) = padnas(&["export", "--run", s(&run), "--arch", ARCH, "--out", s(&out)]);
    assert_eq!(code, 1);
    assert!(err.contains("retrain first"), "{err}");
}
