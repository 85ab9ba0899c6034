//! `padnas verify --target T --model M [--table TABLE]`: checks an exported
//! network on the target it is meant for.
//!
//! The agent loads the file and runs N Fashion-MNIST test images through it;
//! the host runs the same file in its own tract and compares the outputs (a
//! miscompiled or mis-transported model shows up here, not in the field).
//! Then the agent benchmarks it end to end, and the latency table, if given,
//! predicts it from its blocks. With a table the network is measured as the
//! table's entries were (its noise settings: confidence target, reference
//! block, sensor gate, passes), so both sides of the comparison are
//! estimated the same way; without one, under the target's bench limits.
//! One JSON line on stdout; the exit status is 1 when the outputs disagree.
//!
//! Figures measured through a qemu target carry the *emulated* label and are
//! never device latency.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use padnas_agent::proto::BenchStats;
use padnas_agent::stats::Summary;
use serde_json::json;

use crate::config::FASHION_MNIST_DIR;
use crate::data::{ImageSet, load_fashion_mnist, normalized_nchw};
use crate::latency::measure::{Measured, measure_loaded};
use crate::latency::noise::{NoiseSettings, QuietRuns};
use crate::latency::predict::{Prediction, predict, space_from_header};
use crate::latency::table::Table;
use crate::onnx;
use crate::session::{self, Session};
use crate::space::Space;
use crate::target::Target;

/// Arguments of `padnas verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Target name under the targets directory, or a path to a target YAML.
    #[arg(long, short)]
    pub target: String,
    /// Directory of target files.
    #[arg(long, default_value = "targets")]
    pub targets_dir: PathBuf,
    /// Network written by `padnas export --run`.
    #[arg(long, short)]
    pub model: PathBuf,
    /// Latency table to predict the network's latency from.
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Space YAML of the table [default: the space recorded in the table, if unchanged].
    #[arg(long, short, requires = "table")]
    pub space: Option<PathBuf>,
    /// Test images to run on the target and compare.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Fashion-MNIST directory (the test split is used).
    #[arg(long, default_value = FASHION_MNIST_DIR)]
    pub data: PathBuf,
    /// Largest absolute output difference between target and host accepted.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f32,
}

/// The `metadata_props` of an ONNX file, in order. Fails on bytes that are
/// not an ONNX model.
pub fn model_metadata(bytes: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let model = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes)
        .map_err(|e| anyhow!("not an ONNX model: {e}"))?;
    if model.graph.is_none() {
        bail!("not an ONNX model: no graph");
    }
    Ok(model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect())
}

/// Image `i` of `set` as the network input: NCHW f32, batch 1, scaled
/// exactly as in training ([`normalized_nchw`], without libtorch).
pub fn image_input(set: &ImageSet, i: usize) -> anyhow::Result<Vec<f32>> {
    Ok(normalized_nchw(set.image(i), 1, set.shape))
}

/// Index of the largest value (the first of equals; 0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}

/// What ran on the target.
struct OnTarget {
    outputs: Vec<Vec<f32>>,
    latency: Latency,
    load_ms: f64,
}

/// The end-to-end latency, however it was measured.
struct Latency {
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    runs: usize,
    threads: u32,
    /// Median ratio to the reference block, when there was one.
    ratio: Option<f64>,
    /// What the sensor gate kept, with one.
    quiet: Option<QuietRuns>,
    /// The median of every visit, with several passes.
    visit_medians_ms: Vec<f64>,
}

impl Latency {
    fn from_stats(s: &BenchStats) -> Latency {
        Latency {
            median_ms: s.median_ms,
            p10_ms: s.p10_ms,
            p90_ms: s.p90_ms,
            runs: s.runs as usize,
            threads: s.threads,
            ratio: s.ratio_median,
            quiet: None,
            visit_medians_ms: Vec::new(),
        }
    }

    fn from_measured(m: &Measured, threads: u32) -> Latency {
        let s: &Summary = &m.summary;
        Latency {
            median_ms: s.median,
            p10_ms: s.p10,
            p90_ms: s.p90,
            runs: s.n,
            threads,
            ratio: m.paired.as_ref().map(|p| p.ratio),
            quiet: m.quiet.clone(),
            visit_medians_ms: Vec::new(),
        }
    }

    /// The order in which visits compete, as for table entries: a visit in
    /// which the gate found quiet runs first, then the lower ratio or median.
    fn speed_key(&self) -> (bool, f64) {
        QuietRuns::visit_key(self.quiet.as_ref(), self.ratio.unwrap_or(self.median_ms))
    }
}

/// Runs the model on the target: every input, then a benchmark, run for
/// run against `reference` (an ONNX block) when given. With `noise` (a
/// table's settings) the benchmark is the table's: `noise.passes` visits
/// with noise control, the fastest kept.
fn on_target(
    s: &mut Session,
    bytes: &[u8],
    shape: &[usize],
    inputs: &[Vec<f32>],
    reference: Option<&[u8]>,
    noise: Option<&NoiseSettings>,
) -> anyhow::Result<OnTarget> {
    let name = s.target.name.clone();
    let reference = reference
        .map(|r| {
            s.client
                .load_model(r, None)
                .map(|l| l.handle)
                .with_context(|| format!("loading the reference block on target {name}"))
        })
        .transpose()?;
    let loaded = s
        .client
        .load_model(bytes, Some(shape))
        .with_context(|| format!("loading the model on target {name}"))?;
    let outputs = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            s.client
                .infer(loaded.handle, shape, x)
                .map(|(_, y)| y)
                .with_context(|| format!("running image {i} on target {name}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let latency = match noise {
        None => {
            let stats = s
                .client
                .bench_paired(loaded.handle, reference, &s.target.bench)
                .with_context(|| format!("benchmarking on target {name}"))?;
            Latency::from_stats(&stats)
        }
        Some(noise) => {
            let threads = s.target.bench.threads.unwrap_or(1).max(1);
            let mut best: Option<Latency> = None;
            let mut medians = Vec::new();
            for _ in 0..noise.passes.max(1) {
                let m = measure_loaded(
                    &mut s.client,
                    loaded.handle,
                    reference,
                    "the network",
                    &s.target.bench,
                    noise,
                )
                .with_context(|| format!("benchmarking on target {name}"))?;
                let visit = Latency::from_measured(&m, threads);
                medians.push(visit.median_ms);
                if best
                    .as_ref()
                    .is_none_or(|b| visit.speed_key() < b.speed_key())
                {
                    best = Some(visit);
                }
            }
            let mut best = best.expect("at least one pass");
            if medians.len() > 1 {
                best.visit_medians_ms = medians;
            }
            best
        }
    };
    s.client.unload(loaded.handle).ok();
    Ok(OnTarget {
        outputs,
        latency,
        load_ms: loaded.load_ms,
    })
}

/// The table's prediction for the model's architecture, and the table.
fn prediction(
    table_path: &Path,
    space: Option<&Path>,
    arch: &str,
    model_hash: Option<&str>,
) -> anyhow::Result<(Table, Prediction)> {
    let table = Table::load(table_path)?;
    let (space, space_path) = match space {
        Some(p) => (Space::load(p)?, p.to_path_buf()),
        None => space_from_header(&table, table_path)?,
    };
    if model_hash.is_some_and(|h| h != space.hash()) {
        // Blocks are keyed by shape, so the sum is still meaningful when the
        // arch parses; but say so, the spaces may differ in ways that matter.
        tracing::warn!(
            "the model was exported from space {}, the table's space {} is {}",
            model_hash.unwrap_or("?"),
            space_path.display(),
            space.hash()
        );
    }
    let arch = space
        .parse_arch(arch)
        .with_context(|| format!("the model's arch in {}", space_path.display()))?;
    let p = predict(&table, table_path, &space, &arch)?;
    Ok((table, p))
}

/// How the target's outputs compare with the host's.
#[derive(Debug, PartialEq)]
struct Comparison {
    max_abs_diff: f32,
    /// Same class on every image.
    agree: bool,
    /// Images the target classified right.
    correct: usize,
}

/// Compares the target's outputs with the host's, image by image. A NaN or
/// an infinity on either side is an error naming the image and the index
/// (`f32::max` would skip a NaN and report an all-NaN output as |Δ| 0).
fn compare_outputs(
    got: &[Vec<f32>],
    want: &[Vec<f32>],
    labels: &[usize],
) -> Result<Comparison, String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs for {} images", got.len(), want.len()));
    }
    let mut c = Comparison {
        max_abs_diff: 0.0,
        agree: true,
        correct: 0,
    };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.len() != w.len() {
            return Err(format!(
                "image {i}: the target returned {} values, the host {}",
                g.len(),
                w.len()
            ));
        }
        for (side, values) in [("the target's", g), ("the host's", w)] {
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            if let Some(j) = values.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "image {i}: {side} output has {bad} non-finite value(s) of {} (first: {} at index {j})",
                    values.len(),
                    values[j]
                ));
            }
        }
        for (a, b) in g.iter().zip(w) {
            c.max_abs_diff = c.max_abs_diff.max((a - b).abs());
        }
        c.agree &= argmax(g) == argmax(w);
        c.correct += usize::from(labels.get(i) == Some(&argmax(g)));
    }
    Ok(c)
}

/// What [`verify`] checks: `padnas verify`'s settings, for callers that are
/// not its command line (the pipeline's verify step).
#[derive(Clone, Debug)]
pub struct Verification {
    /// Target name under `targets_dir`, or a path to a target YAML.
    pub target: String,
    /// Directory of target files.
    pub targets_dir: PathBuf,
    /// Network written by `padnas export --run`.
    pub model: PathBuf,
    /// Latency table to predict the network's latency from.
    pub table: Option<PathBuf>,
    /// Space YAML of the table.
    pub space: Option<PathBuf>,
    /// Test images to run on the target and compare.
    pub images: usize,
    /// Fashion-MNIST directory (the test split is used).
    pub data: PathBuf,
    /// Largest absolute output difference accepted.
    pub tolerance: f32,
}

impl From<&VerifyArgs> for Verification {
    fn from(a: &VerifyArgs) -> Verification {
        Verification {
            target: a.target.clone(),
            targets_dir: a.targets_dir.clone(),
            model: a.model.clone(),
            table: a.table.clone(),
            space: a.space.clone(),
            images: a.images,
            data: a.data.clone(),
            tolerance: a.tolerance,
        }
    }
}

/// Runs `padnas verify`.
pub fn run(a: &VerifyArgs) -> anyhow::Result<()> {
    let line = verify(&a.into())?;
    println!("{line}");
    check(&line, a.tolerance)
}

/// Fails when a [`verify`] line shows the target disagreeing with the host.
pub fn check(line: &serde_json::Value, tolerance: f32) -> anyhow::Result<()> {
    let agree = line["agree"].as_bool().unwrap_or(false);
    let diff = line["max_abs_diff"].as_f64().unwrap_or(f64::INFINITY);
    if !agree || diff > f64::from(tolerance) {
        bail!(
            "target {} disagrees with the host: max |Δ| {diff:e} (tolerance {tolerance:e}), same class on all images: {agree}",
            line["target"]
        );
    }
    Ok(())
}

/// Runs the model on the target and on the host and returns the result
/// line (printed by `padnas verify`) without judging it; see [`check`].
pub fn verify(a: &Verification) -> anyhow::Result<serde_json::Value> {
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    let target = Target::resolve(&a.target, &a.targets_dir)?;
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let meta = model_metadata(&bytes).with_context(|| format!("{}", a.model.display()))?;
    let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let arch = get("padnas.arch").ok_or_else(|| {
        anyhow!(
            "{}: not a padnas network (no padnas.arch metadata); write one with `padnas export --run`",
            a.model.display()
        )
    })?;
    let model_hash = get("padnas.space_hash");

    // The host's own tract is the reference the target's outputs must match.
    let host = padnas_agent::bench::load(&bytes, None)
        .map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let shape = host.input_shape().to_vec();
    let (_, test) = load_fashion_mnist(&a.data)?;
    let s = test.shape;
    if shape != [1, s.channels, s.height, s.width] {
        bail!(
            "{}: input {shape:?} does not take Fashion-MNIST images ({}x{}x{})",
            a.model.display(),
            s.channels,
            s.height,
            s.width
        );
    }
    let n = a.images.min(test.len());
    let inputs = (0..n)
        .map(|i| image_input(&test, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let want = inputs
        .iter()
        .map(|x| host.infer(&shape, x).map(|(_, y)| y))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("host run of {}: {e}", a.model.display()))?;
    // Before the session: a bad table should not cost a device run.
    let predicted = a
        .table
        .as_deref()
        .map(|t| prediction(t, a.space.as_deref(), arch, model_hash))
        .transpose()?;

    let reference_onnx = predicted
        .as_ref()
        .and_then(|(t, _)| t.header.noise.reference_block)
        .map(|k| onnx::write_block(&k, crate::onnx::BLOCK_SEED))
        .transpose()?;
    let mut session = session::open(&target)?;
    let label = session::measurement_label(&target, &session.info);
    let noise = predicted.as_ref().map(|(t, _)| t.header.noise.clone());
    let ran = on_target(
        &mut session,
        &bytes,
        &shape,
        &inputs,
        reference_onnx.as_deref(),
        noise.as_ref(),
    );
    session.close();
    let ran = ran?;

    let labels: Vec<usize> = (0..n).map(|i| test.labels[i] as usize).collect();
    let Comparison {
        max_abs_diff,
        agree,
        correct,
    } = compare_outputs(&ran.outputs, &want, &labels).map_err(|m| {
        anyhow!(
            "target {}: {m}; {} is not usable there",
            target.name,
            a.model.display()
        )
    })?;
    // A table with a reference block predicts in its units (ratio to the
    // reference × the table's scale): the measured ratio is put in the same
    // units to be compared, and named for what it is.
    let reference = predicted.as_ref().and_then(|(t, _)| {
        let key = t.header.noise.reference_block?;
        Some((key, t.reference_scale_ms()?))
    });
    let latency = &ran.latency;
    let reference_scaled_ms = match (reference, latency.ratio) {
        (Some((_, scale)), Some(ratio)) => Some(ratio * scale),
        _ => None,
    };
    let (table_target, table_label, predicted_ms, uncalibrated_ms) = match &predicted {
        Some((t, p)) => {
            if t.header.target != target.name {
                tracing::warn!(
                    "the table was measured on target {}, not {}: the prediction is for {}",
                    t.header.target,
                    target.name,
                    t.header.target
                );
            }
            (
                Some(t.header.target.clone()),
                Some(t.header.label.clone()),
                Some(p.calibrated_ms.unwrap_or(p.predicted_ms)),
                Some(p.predicted_ms),
            )
        }
        None => (None, None, None, None),
    };
    let line = json!({
        "model": a.model.display().to_string(),
        "arch": arch,
        "target": target.name,
        "label": label,
        "emulated": target.emulated(),
        "images": n,
        "agree": agree,
        "max_abs_diff": max_abs_diff,
        "correct": correct,
        "measured_ms": latency.median_ms,
        "ratio_to_reference": latency.ratio,
        "reference_scaled_ms": reference_scaled_ms,
        "reference": reference.map(|(k, scale)| json!({"block": k.to_string(), "scale_ms": scale})),
        "p10_ms": latency.p10_ms,
        "p90_ms": latency.p90_ms,
        "runs": latency.runs,
        "threads": latency.threads,
        "quiet": latency.quiet,
        "visit_medians_ms": (!latency.visit_medians_ms.is_empty()).then_some(&latency.visit_medians_ms),
        "load_ms": ran.load_ms,
        "predicted_ms": predicted_ms,
        "uncalibrated_ms": uncalibrated_ms,
        "table_target": table_target,
        "table_label": table_label,
        "test_accuracy": get("padnas.test_accuracy"),
    });
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(argmax(&[0.0, 3.0, -1.0, 3.0]), 1);
        assert_eq!(argmax(&[-5.0]), 0);
        assert_eq!(argmax(&[-2.0, -1.0]), 1);
    }

    #[test]
    fn nan_or_inf_anywhere_is_an_error_not_a_zero_difference() {
        let want = vec![vec![0.1, 0.9], vec![0.8, 0.2]];
        let ok = compare_outputs(&want, &want, &[1, 0]).expect("finite");
        assert_eq!(
            ok,
            Comparison {
                max_abs_diff: 0.0,
                agree: true,
                correct: 2
            }
        );
        let all_nan = vec![vec![f32::NAN; 2]; 2];
        let e = compare_outputs(&all_nan, &want, &[1, 0]).expect_err("all NaN");
        assert!(
            e.contains("image 0") && e.contains("target") && e.contains("NaN"),
            "{e}"
        );
        let one_inf = vec![vec![0.1, 0.9], vec![0.8, f32::INFINITY]];
        let e = compare_outputs(&one_inf, &want, &[1, 0]).expect_err("Inf");
        assert!(
            e.contains("image 1") && e.contains("index 1") && e.contains("inf"),
            "{e}"
        );
        let e = compare_outputs(&want, &one_inf, &[1, 0]).expect_err("host Inf");
        assert!(e.contains("host"), "{e}");
        let shifted = vec![vec![0.1, 0.9], vec![0.8, 0.25]];
        let c = compare_outputs(&shifted, &want, &[1, 1]).expect("finite");
        assert!((c.max_abs_diff - 0.05).abs() < 1e-6);
        assert_eq!(c.correct, 1);
    }

    #[test]
    fn metadata_of_garbage_is_a_clear_error() {
        let e = model_metadata(b"\x08\x07garbage that is not onnx").expect_err("garbage");
        assert!(e.to_string().contains("not an ONNX model"), "{e}");
        // A block export is ONNX but carries no architecture.
        let key = "mbconv:k3e3:in8x8x8:out8:s1".parse().expect("key");
        let bytes = crate::onnx::write_block(&key, 0).expect("block");
        let meta = model_metadata(&bytes).expect("onnx");
        assert!(meta.iter().any(|(k, _)| k == "padnas.block"));
        assert!(!meta.iter().any(|(k, _)| k == "padnas.arch"));
    }
}
