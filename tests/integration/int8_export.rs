//! `padnas export --int8` end to end on the CI's tiny job
//! (configs/ci-tiny/): `padnas train`, one architecture retrained from the
//! supernet, written as int8 QDQ ONNX, whose metadata must hold padnas's
//! memory figures and the int8 accuracy on the whole test split, and which
//! tract and onnxruntime must both run alike.

use std::path::{Path, PathBuf};

use serde_json::Value;

use padnas::config::FASHION_MNIST_DIR;
use padnas::memory::{Footprint, MemoryModel, block_footprint};
use padnas::space::{Op, Space};

use crate::util::*;

/// An architecture of the ci-tiny space with an expansion-6 block and a
/// residual one.
const ARCH: &str = "k5e1,k3e6,k3e3";
/// Test images run in tract and onnxruntime.
const IMAGES: usize = 100;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn ok(args: &[&str]) -> Value {
    let (code, out, err) = padnas(args);
    assert_eq!(code, 0, "padnas {args:?}: {err}");
    json_line(&out)
}

/// configs/ci-tiny/ copied into `dir`, trained, ARCH retrained (inheriting
/// the supernet's weights) for 12 epochs of its 256 images, 96 steps, about
/// a second: the config's single epoch leaves a network that predicts one
/// class (10%), against which int8 could lose nothing; this one reaches
/// about 59%. Returns the run directory.
fn tiny_retrained(dir: &Path) -> PathBuf {
    let ci = repo().join("configs/ci-tiny");
    for f in ["job.yaml", "space.yaml", "quick-local.yaml"] {
        std::fs::copy(ci.join(f), dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let v = ok(&["train", "--config", s(&dir.join("job.yaml")), "--quiet"]);
    assert_eq!(v["finished"], true, "{v}");
    let run = dir.join("run");
    let v = ok(&[
        "retrain",
        "--run",
        s(&run),
        "--arch",
        ARCH,
        "--inherit",
        "--epochs",
        "12",
        "--quiet",
    ]);
    assert_eq!(v["finished"], true, "{v}");
    assert_eq!(v["steps"], 96, "{v}");
    run
}

/// The network's int8 memory from single blocks, independently of
/// `MemoryModel`: flash adds up, SRAM is the largest block's.
fn footprint_from_blocks(space: &Space, ops: &[Op]) -> Footprint {
    let mut blocks = vec![space.stem_block(), space.head_block()];
    for (layer, &op) in space.layers().iter().zip(ops) {
        if let Some(key) = layer.block(op) {
            blocks.push(key);
        }
    }
    blocks
        .iter()
        .map(|k| block_footprint(k).expect("int8 block"))
        .fold(Footprint::default(), |acc, f| Footprint {
            sram_bytes: acc.sram_bytes.max(f.sram_bytes),
            flash_bytes: acc.flash_bytes + f.flash_bytes,
        })
}

#[test]
fn int8_export_carries_memory_and_accuracy_and_runs_in_tract_and_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = tiny_retrained(dir.path());
    let model = dir.path().join("out/model.int8.onnx");
    let v = ok(&[
        "export",
        "--run",
        s(&run),
        "--arch",
        ARCH,
        "--int8",
        "--calibration-images",
        "128",
        "-o",
        s(&model),
    ]);
    eprintln!("{v}");
    assert_eq!(v["int8"], true, "{v}");
    assert_eq!(v["arch"], ARCH);
    assert_eq!(v["calibration_images"], 128);
    // The whole test split by default.
    assert_eq!(v["int8_test_images"], 10_000);
    let float = v["test_accuracy"].as_f64().expect("float accuracy");
    let int8 = v["int8_test_accuracy"].as_f64().expect("int8 accuracy");
    let tract_float = v["float_tract_test_accuracy"].as_f64().expect("tract");
    // tch (retrain) and tract (export) agree on the float network.
    assert!((tract_float - float).abs() <= 0.002, "{v}");
    assert!(
        int8 >= float - 0.03,
        "int8 {int8} vs float {float}: more than 3 points lost"
    );
    assert!(
        v["int8_agreement"].as_f64().expect("agreement") >= 0.9,
        "{v}"
    );

    let bytes = std::fs::read(&model).expect("model");
    assert_eq!(v["bytes"].as_u64(), Some(bytes.len() as u64));
    let meta = padnas::cmd::verify::model_metadata(&bytes).expect("metadata");
    let get = |k: &str| {
        meta.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("metadata {k} missing"))
    };
    let num = |k: &str| -> f64 { get(k).parse().unwrap_or_else(|e| panic!("{k}: {e}")) };
    assert_eq!(get("padnas.arch"), ARCH);
    assert_eq!(get("padnas.space"), "pipe28");
    assert!((num("padnas.test_accuracy") - float).abs() < 1e-6);
    assert!((num("padnas.int8.test_accuracy") - int8).abs() < 1e-6);
    assert_eq!(get("padnas.int8.test_images"), "10000");
    let cal = get("padnas.int8.calibration");
    assert!(
        cal.starts_with("128 training images") && cal.contains("min/max"),
        "{cal}"
    );
    assert!(get("padnas.int8.scheme").contains("per output channel"));

    // Memory: padnas::memory's figures, which single blocks add up to.
    let space = Space::load(dir.path().join("space.yaml")).expect("space");
    let arch = space.parse_arch(ARCH).expect("arch");
    let want = MemoryModel::new(&space)
        .expect("memory model")
        .footprint(&space.arch_indices(&arch).expect("indices"));
    assert_eq!(want, footprint_from_blocks(&space, &arch.ops));
    assert!(want.sram_bytes > 0 && want.flash_bytes > 0);
    assert_eq!(num("padnas.int8.peak_sram_bytes") as u64, want.sram_bytes);
    assert_eq!(num("padnas.int8.flash_bytes") as u64, want.flash_bytes);
    assert_eq!(v["peak_sram_bytes"].as_u64(), Some(want.sram_bytes));
    assert_eq!(v["flash_bytes"].as_u64(), Some(want.flash_bytes));

    // The file is int8: integer weights, quantised activations.
    let m = <tract_onnx::pb::ModelProto as prost::Message>::decode(&bytes[..]).expect("decode");
    let g = m.graph.expect("graph");
    let ops = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    assert!(ops("QuantizeLinear") >= 10, "{}", ops("QuantizeLinear"));
    let int8_weights = g.initializer.iter().filter(|t| t.data_type == 3).count();
    assert!(int8_weights >= ops("Conv") + ops("Gemm"));

    // tract (as an agent loads it) and onnxruntime run it alike.
    let loaded = padnas_agent::bench::load(&bytes, None).expect("tract loads the int8 file");
    assert_eq!(loaded.input_shape(), &[1, 1, 28, 28]);
    let (_, test) =
        padnas::data::load_fashion_mnist(Path::new(FASHION_MNIST_DIR)).expect("Fashion-MNIST");
    let inputs = padnas::data::normalized_nchw(&test.pixels, IMAGES, test.shape);
    let tract: Vec<f32> = inputs
        .chunks(28 * 28)
        .flat_map(|x| loaded.infer(&[1, 1, 28, 28], x).expect("infer").1)
        .collect();
    let has_ort = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ort {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "onnxruntime is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("SKIPPED: onnxruntime not installed");
        return;
    }
    let (i, o) = (dir.path().join("in.f32"), dir.path().join("out.f32"));
    let raw: Vec<u8> = inputs.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&i, raw).expect("inputs");
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/ort_infer.py"))
        .args([&model, &i, &o])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ort: Vec<f32> = std::fs::read(&o)
        .expect("outputs")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(ort.len(), tract.len());
    // The logits' int8 step, from the file: the output's DequantizeLinear.
    let dq = g
        .node
        .iter()
        .find(|n| n.output[0] == "output")
        .expect("output");
    assert_eq!(dq.op_type, "DequantizeLinear");
    let scale = g
        .initializer
        .iter()
        .find(|t| t.name == dq.input[1])
        .map(|t| f32::from_le_bytes(t.raw_data[..4].try_into().expect("f32")))
        .expect("output scale");
    // onnxruntime runs integer kernels (QLinearConv, QGemm), tract the
    // float ops between Q/DQ pairs: roundings at a tie may differ, so a
    // logit may move by a step (measured on a trained network: 2.7% of
    // logits by 1 step, 0.01% by 2, none by more).
    let worst = max_abs_diff(&tract, &ort);
    eprintln!(
        "tract vs onnxruntime, int8, {IMAGES} test images: max |Δ| = {worst} ({:.1} steps)",
        worst / scale
    );
    assert!(worst <= 3.0 * scale, "{worst} = {} steps", worst / scale);
    let argmax = padnas::cmd::verify::argmax;
    let differ = tract
        .chunks(10)
        .zip(ort.chunks(10))
        .filter(|(a, b)| argmax(a) != argmax(b))
        .count();
    assert!(differ <= 2, "argmax differs on {differ} of {IMAGES} images");
}

#[test]
fn int8_options_need_int8_and_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.onnx");
    let key = mbconv_key(3, 3, 8, 8, 8, 1).to_string();
    // --int8 needs --run; the int8 options need --int8.
    for args in [
        vec!["export", "--block", &key, "--int8", "--out", s(&out)],
        vec![
            "export",
            "--run",
            "r",
            "--arch",
            ARCH,
            "--calibration-images",
            "8",
            "--out",
            s(&out),
        ],
        vec![
            "export",
            "--run",
            "r",
            "--arch",
            ARCH,
            "--test-images",
            "8",
            "--out",
            s(&out),
        ],
    ] {
        let (code, _, err) = padnas(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    assert!(!out.exists());
}
