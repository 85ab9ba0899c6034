//! `padnas export`: write ONNX files.
//!
//! - `--run R --arch A`: the network retrained by `padnas retrain`, with its
//!   trained weights (batch norms folded by the writer), batch 1, and
//!   metadata a deployer needs: architecture, space hash, accuracy, input
//!   scaling and, with `--table`, the target and predicted latency.
//! - `--run R --arch A --int8`: the same network quantised to int8 (QDQ
//!   ONNX, `onnx::quant`): activation ranges calibrated on a seeded draw of
//!   training images, then its accuracy on the test split measured in tract
//!   and written beside the float one, with the int8 peak SRAM and flash of
//!   `memory`.
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
use super::verify::{argmax, image_input};
use crate::config::JobConfig;
use crate::data::{self, ImageSet, PIXEL_CENTER, derive_seed, permutation};
use crate::files::write_atomic;
use crate::latency::predict::predict;
use crate::latency::table::Table;
use crate::memory::MemoryModel;
use crate::onnx::quant::{add_metadata, calibrate, write_qdq};
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
/// Metadata key (int8): accuracy of the int8 network on the test split.
pub const META_INT8_TEST_ACCURACY: &str = "padnas.int8.test_accuracy";
/// Metadata key (int8): test images that accuracy is measured on.
pub const META_INT8_TEST_IMAGES: &str = "padnas.int8.test_images";
/// Metadata key (int8): peak SRAM of the activations (`memory`), bytes.
pub const META_INT8_PEAK_SRAM: &str = "padnas.int8.peak_sram_bytes";
/// Metadata key (int8): flash of weights and per-channel constants, bytes.
pub const META_INT8_FLASH: &str = "padnas.int8.flash_bytes";
/// Metadata key (int8): how the activation ranges were calibrated.
pub const META_INT8_CALIBRATION: &str = "padnas.int8.calibration";
/// Training images the int8 activation ranges are calibrated on, by default.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 512;
/// Seed tag of the calibration images' draw ([`derive_seed`]).
const CALIBRATION_TAG: &str = "int8-calibration";

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
    /// Write the network quantised to int8 (QDQ ONNX: int8 weights per
    /// output channel, int8 activations calibrated on training images), its
    /// int8 test accuracy, peak SRAM and flash in the metadata.
    #[arg(long, requires = "run")]
    pub int8: bool,
    /// Training images (a seeded draw) the int8 activation ranges are
    /// calibrated on [default: 512].
    #[arg(long, requires = "int8")]
    pub calibration_images: Option<usize>,
    /// Test images the int8 accuracy is measured on (the first N) [default:
    /// the whole test split].
    #[arg(long, requires = "int8")]
    pub test_images: Option<usize>,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Runs `padnas export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    match (&args.block, &args.run, &args.arch) {
        (Some(block), _, _) => export_block(block, args.seed, &args.out),
        (None, Some(run), Some(arch)) if args.int8 => {
            let opts = Int8Options {
                calibration_images: args
                    .calibration_images
                    .unwrap_or(DEFAULT_CALIBRATION_IMAGES),
                test_images: args.test_images,
            };
            let line = export_run_int8(run, arch, args.table.as_deref(), &opts, &args.out)?;
            println!("{line}");
            Ok(())
        }
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

/// A retrained network to export: where its weights are, what its
/// metadata and JSON line say so far.
struct Retrained {
    cfg: JobConfig,
    full: Space,
    arch: Arch,
    weights: PathBuf,
    meta: Vec<(String, String)>,
    line: serde_json::Value,
}

fn fmt_accuracy(a: Option<f64>) -> String {
    a.map_or_else(|| "none".to_string(), |a| format!("{a:.6}"))
}

/// Reads what `padnas retrain` left for `arch` in `run`, and the table's
/// prediction when given.
fn retrained(
    run: &Path,
    arch: &str,
    table: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Retrained> {
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
    let mut meta = vec![
        (
            META_TEST_ACCURACY.to_string(),
            fmt_accuracy(result.test_accuracy),
        ),
        (
            META_VAL_ACCURACY.to_string(),
            fmt_accuracy(result.val_accuracy),
        ),
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
    Ok(Retrained {
        cfg,
        full,
        arch,
        weights,
        meta,
        line,
    })
}

/// Writes the network `arch` retrained in `run` (BN folded, metadata from the
/// run and, when given, the target's `table`) to `out`.
pub fn export_run(run: &Path, arch: &str, table: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    let r = retrained(run, arch, table, out)?;
    let mut line = r.line;
    let bytes = network_onnx(&r.full, &r.arch, &r.weights, r.meta)?;
    write_model(out, &bytes)?;
    line["bytes"] = json!(bytes.len());
    println!("{line}");
    Ok(())
}

/// How `export_run_int8` quantises and measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Int8Options {
    /// Training images the activation ranges are calibrated on (fewer if
    /// the training split is smaller).
    pub calibration_images: usize,
    /// Test images the accuracy is measured on, the first N; `None`: all.
    pub test_images: Option<usize>,
}

impl Default for Int8Options {
    fn default() -> Self {
        Int8Options {
            calibration_images: DEFAULT_CALIBRATION_IMAGES,
            test_images: None,
        }
    }
}

/// The float and the int8 network side by side on test images, both in
/// tract (as the agents run them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Accuracy {
    /// Images run.
    pub images: usize,
    /// Fraction the int8 network classifies right.
    pub int8: f64,
    /// Fraction the float network classifies right.
    pub float: f64,
    /// Fraction on which both predict the same class.
    pub agreement: f64,
}

/// Runs the float and the int8 ONNX files on the first `n` images of `set`
/// in tract and compares their predictions with the labels and each other.
pub fn int8_accuracy(
    float: &[u8],
    int8: &[u8],
    set: &ImageSet,
    n: usize,
) -> anyhow::Result<Int8Accuracy> {
    let n = n.min(set.len());
    if n == 0 {
        anyhow::bail!("no test images to measure the int8 accuracy on");
    }
    let load = |bytes: &[u8], what: &str| {
        padnas_agent::bench::load(bytes, None)
            .with_context(|| format!("tract loads the {what} network"))
    };
    let (f, q) = (load(float, "float")?, load(int8, "int8")?);
    let shape = f.input_shape().to_vec();
    let (mut right_f, mut right_q, mut same) = (0usize, 0usize, 0usize);
    for i in 0..n {
        let x = image_input(set, i)?;
        let yf = argmax(
            &f.infer(&shape, &x)
                .with_context(|| format!("float network, test image {i}"))?
                .1,
        );
        let yq = argmax(
            &q.infer(&shape, &x)
                .with_context(|| format!("int8 network, test image {i}"))?
                .1,
        );
        let label = set.labels[i] as usize;
        right_f += usize::from(yf == label);
        right_q += usize::from(yq == label);
        same += usize::from(yf == yq);
    }
    let frac = |k: usize| k as f64 / n as f64;
    Ok(Int8Accuracy {
        images: n,
        int8: frac(right_q),
        float: frac(right_f),
        agreement: frac(same),
    })
}

/// Writes the network `arch` retrained in `run` quantised to int8 (QDQ) to
/// `out`: activation ranges calibrated in tract on a seeded draw of the
/// run's training images (min/max per tensor), then accuracy on the test
/// split. Metadata: the float export's, plus int8 peak SRAM and flash
/// (`memory`), the calibration and the int8 test accuracy. Returns the
/// JSON line to print.
pub fn export_run_int8(
    run: &Path,
    arch: &str,
    table: Option<&Path>,
    opts: &Int8Options,
    out: &Path,
) -> anyhow::Result<serde_json::Value> {
    let r = retrained(run, arch, table, out)?;
    let float = network_onnx(&r.full, &r.arch, &r.weights, r.meta.clone())?;
    let cfg = &r.cfg;
    let mut splits = data::load(&cfg.data, r.full.input(), cfg.seed)
        .with_context(|| format!("loading {} from {}", cfg.data.kind, cfg.data.path.display()))?;
    // The training images the network was trained on.
    if let Some(n) = cfg.train.max_train_samples {
        splits.limit_train(n, cfg.seed);
    }
    let mut draw = permutation(
        splits.train.len(),
        derive_seed(cfg.seed, CALIBRATION_TAG, 0),
    );
    draw.truncate(opts.calibration_images);
    if draw.is_empty() {
        anyhow::bail!(
            "no training images to calibrate the int8 network on (--calibration-images must be ≥ 1)"
        );
    }
    let inputs = draw
        .iter()
        .map(|&i| image_input(&splits.train, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cal = calibrate(&float, inputs.iter().map(Vec::as_slice))
        .with_context(|| format!("calibrating {} on {} training images", r.arch, inputs.len()))?;
    let memory = MemoryModel::new(&r.full)?.footprint(&r.full.arch_indices(&r.arch)?);
    let calibration = format!(
        "{} training images, a seeded draw (derive_seed(seed {}, \"{CALIBRATION_TAG}\")) of the \
         run's training split; per tensor min/max, widened to include 0",
        cal.inputs, cfg.seed
    );
    let meta = vec![
        (
            META_INT8_PEAK_SRAM.to_string(),
            memory.sram_bytes.to_string(),
        ),
        (META_INT8_FLASH.to_string(), memory.flash_bytes.to_string()),
        (META_INT8_CALIBRATION.to_string(), calibration),
    ];
    let qdq = write_qdq(&float, &cal, meta)?;
    let test = &splits.test;
    let n = opts.test_images.unwrap_or(test.len()).min(test.len());
    let acc = int8_accuracy(&float, &qdq, test, n)?;
    let qdq = add_metadata(
        &qdq,
        vec![
            (
                META_INT8_TEST_ACCURACY.to_string(),
                fmt_accuracy(Some(acc.int8)),
            ),
            (META_INT8_TEST_IMAGES.to_string(), acc.images.to_string()),
        ],
    )?;
    write_model(out, &qdq)?;
    let mut line = r.line;
    line["int8"] = json!(true);
    line["int8_test_accuracy"] = json!(acc.int8);
    line["int8_test_images"] = json!(acc.images);
    // The float network in tract on the same images: the fair comparison
    // when only some of the test split is run.
    line["float_tract_test_accuracy"] = json!(acc.float);
    line["int8_agreement"] = json!(acc.agreement);
    line["calibration_images"] = json!(cal.inputs);
    line["peak_sram_bytes"] = json!(memory.sram_bytes);
    line["flash_bytes"] = json!(memory.flash_bytes);
    line["float_bytes"] = json!(float.len());
    line["bytes"] = json!(qdq.len());
    Ok(line)
}

#[cfg(test)]
mod tests;
