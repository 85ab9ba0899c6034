//! `padnas export`: write ONNX files.
//!
//! - `--run R --arch A`: the network retrained by `padnas retrain`, with its
//!   trained weights (batch norms folded by the writer), batch 1, and
//!   metadata a deployer needs: architecture, space hash, accuracy, input
//!   scaling and, with `--table`, the target and predicted latency.
//! - `--block KEY`: one block with seeded random weights (what `padnas
//!   profile` sends to the agent).
//!
//! Files are written through a temp file and renamed, so a reader never
//! sees half a model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use super::retrain::{RETRAINED_WEIGHTS_FILE, read_result, retrain_dir};
use super::train::CONFIG_FILE;
use crate::config::JobConfig;
use crate::data::PIXEL_CENTER;
use crate::files::write_atomic;
use crate::latency::predict::predict;
use crate::latency::table::Table;
use crate::onnx::{WriteOptions, write_network_with};
use crate::space::{Arch, BlockKey, Space};
use crate::supernet::TrainedWeights;

/// Metadata key: accuracy on the test split.
pub const META_TEST_ACCURACY: &str = "padnas.test_accuracy";
/// Metadata key: accuracy on the validation split.
pub const META_VAL_ACCURACY: &str = "padnas.val_accuracy";
/// Metadata key: how to turn pixels into the input tensor.
pub const META_INPUT: &str = "padnas.input";
/// Metadata key: target the predicted latency is for.
pub const META_TARGET: &str = "padnas.target";
/// Metadata key: predicted latency (ms) from the table.
pub const META_PREDICTED_MS: &str = "padnas.predicted_ms";

/// Arguments of `padnas export`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["block", "run"])))]
pub struct ExportArgs {
    /// Run directory whose retrained network to write (with `--arch`).
    #[arg(long, requires = "arch")]
    pub run: Option<PathBuf>,
    /// Architecture retrained in the run (`padnas retrain --arch`).
    #[arg(long, requires = "run")]
    pub arch: Option<String>,
    /// Latency table of the target: its name and the predicted latency go
    /// into the metadata.
    #[arg(long, requires = "run")]
    pub table: Option<PathBuf>,
    /// Write one block with seeded random weights (what `padnas profile`
    /// sends to the agent), e.g. `mbconv:k3e6:in24x56x56:out24:s1`.
    #[arg(long)]
    pub block: Option<BlockKey>,
    /// Seed of the random weights (`--block`).
    #[arg(long, default_value_t = 0, conflicts_with = "run")]
    pub seed: u64,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Runs `padnas export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    match (&args.block, &args.run, &args.arch) {
        (Some(block), _, _) => export_block(block, args.seed, &args.out),
        (None, Some(run), Some(arch)) => export_run(run, arch, args.table.as_deref(), &args.out),
        // clap's group and `requires` rule this out.
        _ => anyhow::bail!("give --block, or --run with --arch"),
    }
}

/// Writes `bytes` to `out` atomically, creating its directory.
fn write_model(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(out, bytes).with_context(|| format!("writing {}", out.display()))
}

fn export_block(block: &BlockKey, seed: u64, out: &Path) -> anyhow::Result<()> {
    let bytes = crate::onnx::write_block(block, seed)?;
    write_model(out, &bytes)?;
    println!(
        "{}",
        json!({"block": block.to_string(), "out": out.display().to_string(), "bytes": bytes.len()})
    );
    Ok(())
}

/// The ONNX bytes of `arch` in the full space `full`, weights from a
/// stand-alone (or supernet) weights file, batch 1, with extra `metadata`.
pub fn network_onnx(
    full: &Space,
    arch: &Arch,
    weights: &Path,
    metadata: Vec<(String, String)>,
) -> anyhow::Result<Vec<u8>> {
    let mut w = TrainedWeights::load(weights)?;
    let opts = WriteOptions {
        batch: Some(1),
        metadata,
    };
    write_network_with(full, arch, &mut w, &opts)
        .with_context(|| format!("writing {arch} with the weights of {}", weights.display()))
}

/// Writes the network `arch` retrained in `run` (BN folded, metadata from the
/// run and, when given, the target's `table`) to `out`.
pub fn export_run(run: &Path, arch: &str, table: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    let cfg = JobConfig::load(run.join(CONFIG_FILE))
        .with_context(|| format!("{} is not a run directory of `padnas train`", run.display()))?;
    let full = Space::load(&cfg.space)?;
    let arch = full.parse_arch(arch)?;
    let dir = retrain_dir(run, &arch);
    let weights = dir.join(RETRAINED_WEIGHTS_FILE);
    if !weights.is_file() {
        anyhow::bail!(
            "{} not found: retrain first (`padnas retrain --run {} --arch {arch}`)",
            weights.display(),
            run.display()
        );
    }
    let result = read_result(&dir)?;
    let fmt = |a: Option<f64>| a.map_or_else(|| "none".to_string(), |a| format!("{a:.6}"));
    let mut meta = vec![
        (META_TEST_ACCURACY.to_string(), fmt(result.test_accuracy)),
        (META_VAL_ACCURACY.to_string(), fmt(result.val_accuracy)),
        ("padnas.inherit".to_string(), result.inherit.to_string()),
        (
            META_INPUT.to_string(),
            format!(
                "f32 NCHW, batch 1; pixel p in 0..=255 -> (p - {PIXEL_CENTER}) / {PIXEL_CENTER}"
            ),
        ),
    ];
    let mut line = json!({
        "arch": arch.to_string(),
        "out": out.display().to_string(),
        "space_hash": full.hash(),
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "target": null,
        "predicted_ms": null,
    });
    if let Some(tp) = table {
        let t = Table::load(tp)?;
        let p = predict(&t, tp, &full, &arch)?;
        // The calibrated figure, where the table has one, is the better estimate.
        let ms = p.calibrated_ms.unwrap_or(p.predicted_ms);
        meta.extend([
            (META_TARGET.to_string(), t.header.target.clone()),
            ("padnas.target_label".to_string(), t.header.label.clone()),
            (META_PREDICTED_MS.to_string(), format!("{ms:.4}")),
            (
                "padnas.latency_emulated".to_string(),
                t.header.emulated.to_string(),
            ),
        ]);
        line["target"] = json!(t.header.target);
        line["label"] = json!(t.header.label);
        line["emulated"] = json!(t.header.emulated);
        line["predicted_ms"] = json!(ms);
        line["uncalibrated_ms"] = json!(p.predicted_ms);
    }
    let bytes = network_onnx(&full, &arch, &weights, meta)?;
    write_model(out, &bytes)?;
    line["bytes"] = json!(bytes.len());
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Parity of the exported network with the trained one, on real
    //! Fashion-MNIST test images: tract (what the agents run) and, where
    //! installed, onnxruntime, against tch's forward pass.

    use std::path::Path;
    use std::sync::OnceLock;

    use tch::Device;

    use super::*;
    use crate::cmd::verify::{argmax, image_input, model_metadata};
    use crate::config::{Augment, DataConfig, DataKind, FASHION_MNIST_DIR, TrainConfig};
    use crate::data::{Splits, normalize_u8};
    use crate::supernet::checkpoint::save_weights;
    use crate::supernet::{BnMode, StepSampler, Supernet, TrainOptions, train};
    use crate::supernet::{standalone_path, standalone_space};

    /// Test images compared.
    const IMAGES: usize = 100;
    /// Largest absolute logit difference accepted.
    const TOLERANCE: f32 = 1e-4;

    const SPACE: &str = "
name: parity
input: { channels: 1, height: 28, width: 28 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1] }
  - { channels: 16, num_layers: 3, stride: 2, first_ops: [k3e3, k5e3], ops: [k3e3, k5e3, id] }
head: { channels: 32 }
";
    const ARCH: &str = "k5e1,k5e3,id,k3e3";

    /// A trained stand-alone network, its ONNX export and the test split.
    struct Fixture {
        _dir: tempfile::TempDir,
        model: std::path::PathBuf,
        bytes: Vec<u8>,
        /// tch logits, `IMAGES × classes`, row-major.
        logits: Vec<f32>,
        inputs: Vec<Vec<f32>>,
        classes: usize,
    }

    /// Trains once per test binary (about a second): 40 steps, so the batch
    /// norms' running statistics are far from their initial (0, 1) and the
    /// logits are large enough (several units) for 1e-4 to be a tight bound.
    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            tch::set_num_threads(1);
            let full = Space::from_yaml_str(SPACE, "parity").expect("space");
            let arch = full.parse_arch(ARCH).expect("arch");
            let data = DataConfig {
                kind: DataKind::FashionMnist,
                path: FASHION_MNIST_DIR.into(),
                val_split: 0.1,
                augment: Augment::default(),
            };
            let mut splits: Splits = crate::data::load(&data, full.input(), 1)
                .expect("Fashion-MNIST (Debian: apt-get install dataset-fashion-mnist)");
            splits.limit_train(1280, 1);
            let single = standalone_space(&full, &arch).expect("single");
            let net = Supernet::new(&single, Device::Cpu, 1).expect("net");
            let sampler = StepSampler::new(&net, &single, 1).expect("sampler");
            let cfg = TrainConfig {
                epochs: 1,
                batch_size: 32,
                lr: 0.2,
                ..TrainConfig::default()
            };
            let s = train(
                &net,
                &sampler,
                &splits.train,
                &TrainOptions::new(cfg, 1, Augment::default()),
            )
            .expect("train");
            assert_eq!(s.step, 40);
            let var: Vec<f32> = Vec::try_from(
                net.tensor("layers.1.k5e3.expand.bn.running_var")
                    .expect("bn")
                    .view([-1]),
            )
            .expect("f32");
            assert!(
                var.iter().any(|v| (v - 1.0).abs() > 0.05),
                "BN statistics barely moved: {var:?}"
            );

            let dir = tempfile::tempdir().expect("tempdir");
            let weights = dir.path().join("weights.safetensors");
            save_weights(&net, &weights).expect("save");
            let bytes = network_onnx(
                &full,
                &arch,
                &weights,
                vec![(META_TEST_ACCURACY.into(), "0.5".into())],
            )
            .expect("export");
            let model = dir.path().join("model.onnx");
            write_model(&model, &bytes).expect("write");

            let test = &splits.test;
            let n = IMAGES.min(test.len());
            assert_eq!(n, IMAGES, "Fashion-MNIST has 10000 test images");
            let x = normalize_u8(
                &test.pixels[..n * test.image_len()],
                n,
                test.shape,
                Device::Cpu,
            )
            .expect("batch");
            let logits = tch::no_grad(|| net.forward(&x, &standalone_path(&net), BnMode::Eval))
                .expect("forward");
            let classes = logits.size()[1] as usize;
            let logits: Vec<f32> = Vec::try_from(logits.contiguous().view([-1])).expect("f32");
            let scale = logits.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(
                scale > 1.0,
                "logits too small to test against: max |logit| {scale}"
            );
            let inputs = (0..n)
                .map(|i| image_input(test, i).expect("input"))
                .collect();
            Fixture {
                _dir: dir,
                model,
                bytes,
                logits,
                inputs,
                classes,
            }
        })
    }

    /// Max absolute difference, and the images whose argmax differs.
    fn compare(f: &Fixture, got: &[Vec<f32>]) -> (f32, Vec<usize>) {
        let mut worst = 0f32;
        let mut disagree = Vec::new();
        for (i, g) in got.iter().enumerate() {
            let want = &f.logits[i * f.classes..(i + 1) * f.classes];
            assert_eq!(g.len(), want.len(), "image {i}: output size");
            for (a, b) in g.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
            if argmax(g) != argmax(want) {
                disagree.push(i);
            }
        }
        (worst, disagree)
    }

    #[test]
    fn exported_network_carries_arch_hash_and_extra_metadata() {
        let f = fixture();
        let meta = model_metadata(&f.bytes).expect("metadata");
        let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let full = Space::from_yaml_str(SPACE, "parity").expect("space");
        assert_eq!(get("padnas.arch"), Some(ARCH));
        assert_eq!(get("padnas.space_hash"), Some(full.hash().as_str()));
        assert_eq!(get(META_TEST_ACCURACY), Some("0.5"));
        // BN is folded: no BatchNormalization node survives.
        let model =
            <tract_onnx::pb::ModelProto as prost::Message>::decode(&f.bytes[..]).expect("decode");
        let graph = model.graph.expect("graph");
        assert!(graph.node.iter().all(|n| n.op_type != "BatchNormalization"));
        assert!(graph.node.iter().any(|n| n.op_type == "Conv"));
    }

    #[test]
    fn tract_matches_tch_on_100_test_images() {
        let f = fixture();
        // tract as on a target: concrete input shape, optimised, planned.
        let loaded = padnas_agent::bench::load(&f.bytes, None).expect("tract loads the export");
        assert_eq!(loaded.input_shape(), &[1, 1, 28, 28]);
        let got: Vec<Vec<f32>> = f
            .inputs
            .iter()
            .map(|x| loaded.infer(&[1, 1, 28, 28], x).expect("infer").1)
            .collect();
        let (worst, disagree) = compare(f, &got);
        eprintln!("tract vs tch on {IMAGES} images: max |Δ| = {worst:e}");
        assert!(worst <= TOLERANCE, "tract differs from tch by {worst}");
        assert!(disagree.is_empty(), "argmax differs on images {disagree:?}");
        // The logits are not degenerate: the network tells images apart.
        let classes: std::collections::HashSet<usize> = got.iter().map(|g| argmax(g)).collect();
        assert!(classes.len() >= 3, "predicted classes {classes:?}");
    }

    #[test]
    fn onnxruntime_matches_tch_on_100_test_images() {
        let has_ort = std::process::Command::new("python3")
            .args(["-c", "import onnxruntime, numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_ort {
            // Under CI a missing tool is a failure, never a silent pass.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "onnxruntime is not installed (scripts/setup.sh installs it)"
            );
            eprintln!("SKIPPED: onnxruntime not installed (scripts/setup.sh installs it)");
            return;
        }
        let f = fixture();
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs = dir.path().join("inputs.f32");
        let outputs = dir.path().join("outputs.f32");
        let raw: Vec<u8> = f
            .inputs
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&inputs, raw).expect("write inputs");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ort_infer.py");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&f.model)
            .arg(&inputs)
            .arg(&outputs)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&outputs).expect("outputs");
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values.len(), IMAGES * f.classes, "onnxruntime outputs");
        let got: Vec<Vec<f32>> = values.chunks(f.classes).map(<[f32]>::to_vec).collect();
        let (worst, disagree) = compare(f, &got);
        eprintln!("onnxruntime vs tch on {IMAGES} images: max |Δ| = {worst:e}");
        assert!(
            worst <= TOLERANCE,
            "onnxruntime differs from tch by {worst}"
        );
        assert!(disagree.is_empty(), "argmax differs on images {disagree:?}");
    }
}
