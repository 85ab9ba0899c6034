//! Measuring one model on the agent with noise control.
//!
//! A model is benchmarked in rounds (the agent returns every sample), the
//! samples are pooled, and rounds continue until the distribution-free 95%
//! confidence interval of the median is narrower than `ci_target_pct` of the
//! median, or the run or time cap is hit. Pooling across rounds rather than
//! asking for one long run lets the host stop as soon as the median is known
//! well enough: quick, steady blocks finish after one round, noisy ones get
//! more runs. With a reference block, each run is paired with one of the
//! reference; with the sensor gate, only runs on a quiet machine count.

use std::time::Instant;

use padnas_agent::proto::BenchLimits;

use super::LatencyError;
use super::link::{BenchAgent, BlockModel};
use super::noise::{NoiseSettings, QuietRuns, SENSOR_BRACKET_MS, low_level};
use super::stats::median_ci;

/// A model measured with noise control. Times in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Summary of the pooled samples.
    pub summary: padnas_agent::stats::Summary,
    /// Benchmark rounds.
    pub rounds: u32,
    /// Half-width of the median's 95% interval, in % of the median.
    pub ci95_halfwidth_pct: Option<f64>,
    /// Whether the half-width reached the target.
    pub converged: bool,
    /// Load time on the agent.
    pub load_ms: f64,
    /// Against the reference block, when there was one.
    pub paired: Option<Paired>,
    /// With the sensor gate: which runs were kept.
    pub quiet: Option<QuietRuns>,
    /// With the sensor gate: this measurement's own quiet level (the lowest
    /// 5th percentile of its readings), for the caller to lower its
    /// settings' [`NoiseSettings::sensor_floor_ms`] with before the next.
    pub learned_floor_ms: Option<f64>,
}

/// A measurement against the reference block.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// Median of the per-pair ratios model / reference.
    pub ratio: f64,
    /// Half-width of that median's 95% interval, in % of it.
    pub ratio_ci95_halfwidth_pct: Option<f64>,
    /// Median of the reference's own samples (ms).
    pub reference_median_ms: f64,
}

/// Loads `onnx` (and the reference block, when `noise` names one),
/// measures it with [`measure_loaded`], unloads them.
pub fn measure_model(
    dev: &mut dyn BenchAgent,
    onnx: &[u8],
    what: &str,
    base: &BenchLimits,
    noise: &NoiseSettings,
) -> Result<Measured, LatencyError> {
    measure_block(dev, BlockModel::Onnx(onnx), what, base, noise)
}

/// As [`measure_model`], for either kind of block model (an int8 block on a
/// microcontroller).
pub fn measure_block(
    dev: &mut dyn BenchAgent,
    model: BlockModel<'_>,
    what: &str,
    base: &BenchLimits,
    noise: &NoiseSettings,
) -> Result<Measured, LatencyError> {
    let reference = match &noise.reference_block {
        Some(key) => {
            let bytes =
                crate::onnx::write_block(key, crate::onnx::BLOCK_SEED).map_err(|source| {
                    LatencyError::Onnx {
                        what: format!("reference {key}"),
                        cause: source,
                    }
                })?;
            let r = dev
                .load_model(&bytes)
                .map_err(|source| LatencyError::Device {
                    what: format!("loading the reference {key}"),
                    cause: source,
                })?;
            Some(r.handle)
        }
        None => None,
    };
    let loaded = dev.load(model).map_err(|source| LatencyError::Device {
        what: format!("loading {what}"),
        cause: source,
    })?;
    let mut m = measure_loaded(dev, loaded.handle, reference, what, base, noise)?;
    m.load_ms = loaded.load_ms;
    for handle in std::iter::once(loaded.handle).chain(reference) {
        // A failed unload only leaks memory on the agent until the session
        // ends, but a dropped link must still be noticed here.
        if let Err(source) = dev.unload(handle) {
            let e = LatencyError::Device {
                what: format!("unloading {what}"),
                cause: source,
            };
            if e.is_link_failure() {
                return Err(e);
            }
            tracing::warn!("{e}");
        }
    }
    Ok(m)
}

/// Benchmarks a loaded model in rounds and pools the samples until the
/// median's confidence half-width is below `noise.ci_target_pct`, or
/// `noise.max_runs` samples or `noise.max_time_ms` are reached.
/// With a `reference` (a loaded model) every run is paired with one of the
/// reference, and the half-width judged is that of the median ratio.
/// With `noise.sensor_gate_pct` only the quiet runs count (see there): for
/// the stop, the run cap and the statistics; the time cap is then
/// `noise.sensor_wait_ms`.
/// `base` supplies threads and pinning.
pub fn measure_loaded(
    dev: &mut dyn BenchAgent,
    handle: u32,
    reference: Option<u32>,
    what: &str,
    base: &BenchLimits,
    noise: &NoiseSettings,
) -> Result<Measured, LatencyError> {
    let started = Instant::now();
    let max_runs = noise.max_runs.max(1) as usize;
    let min_runs = (noise.min_runs.max(1) as usize).min(max_runs);
    let gate = noise.sensor_gate_pct;
    let time_cap_ms = match gate {
        Some(_) => noise.sensor_wait_ms.max(noise.max_time_ms),
        None => noise.max_time_ms,
    }
    .max(1);
    let mut samples: Vec<f64> = Vec::new();
    let mut reference_samples: Vec<f64> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    // With the gate: every sensor reading, and per sample the slower of
    // the two readings around it.
    let mut readings: Vec<f64> = Vec::new();
    let mut around: Vec<f64> = Vec::new();
    let mut rounds = 0u32;
    // The runs that count towards the cap: the judged ones of the last round.
    let mut counted = 0usize;
    let bad = |message: String| LatencyError::BadReply {
        what: format!("benchmarking {what}"),
        message,
    };
    loop {
        let left = max_runs.saturating_sub(counted).max(1);
        let median = padnas_agent::stats::summarize(&samples).map(|s| s.median.max(1e-3));
        let want = match median {
            None => min_runs,
            // Size later rounds by time, so a 50 ms network and a 0.2 ms
            // block both pay about one round trip per `round_ms`.
            Some(m) => ((noise.round_ms as f64 / m).ceil() as usize).clamp(5, 1_000),
        }
        .min(left)
        .max(1);
        let first = rounds == 0;
        let limits = BenchLimits {
            // After the first round, one run re-warms caches the round trip
            // to the host may have cooled.
            warmup_runs: if first { noise.warmup_runs } else { 1 },
            warmup_ms: if first { noise.warmup_ms } else { 0 },
            min_runs: want as u32,
            max_runs: want as u32,
            max_time_ms: time_cap_ms,
            threads: base.threads,
            pin_cpu: base.pin_cpu,
            return_samples: true,
        };
        // The first round reads the sensor around every run; later ones
        // bracket about `SENSOR_BRACKET_MS` of runs.
        let every = gate.map(|_| match median {
            None => 1,
            Some(m) => (SENSOR_BRACKET_MS / m).floor().clamp(1.0, 1_000.0) as u32,
        });
        let stats = dev
            .bench(handle, reference, every, &limits)
            .map_err(|source| LatencyError::Device {
                what: format!("benchmarking {what}"),
                cause: source,
            })?;
        let valid = |v: &[f64]| !v.is_empty() && v.iter().all(|x| x.is_finite() && *x >= 0.0);
        let got = stats
            .samples_ms
            .ok_or_else(|| bad("the agent returned no samples although asked to".into()))?;
        if !valid(&got) {
            return Err(bad(format!(
                "{} sample(s), not all finite and ≥ 0",
                got.len()
            )));
        }
        if reference.is_some() {
            let refs = stats.reference_samples_ms.ok_or_else(|| {
                bad("the agent returned no reference samples (an agent older than protocol 1.1 ignores the reference)".into())
            })?;
            if refs.len() != got.len() || !valid(&refs) || refs.contains(&0.0) {
                return Err(bad(format!(
                    "{} reference sample(s) for {} sample(s), or some not finite and > 0",
                    refs.len(),
                    got.len()
                )));
            }
            ratios.extend(got.iter().zip(&refs).map(|(x, r)| x / r));
            reference_samples.extend(refs);
        }
        if let Some(k) = every {
            let r = stats.sensor_samples_ms.ok_or_else(|| {
                bad("the agent returned no sensor readings (an agent older than protocol 1.2 ignores the sensor)".into())
            })?;
            let k = k as usize;
            let want = got.len().div_ceil(k) + 1;
            if r.len() != want || !valid(&r) {
                return Err(bad(format!(
                    "{} sensor reading(s) for {} sample(s) read every {k} ({want} expected), or some not finite and ≥ 0",
                    r.len(),
                    got.len()
                )));
            }
            around.extend((0..got.len()).map(|i| r[i / k].max(r[i / k + 1])));
            readings.extend(r);
        }
        samples.extend(got);
        rounds += 1;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        // With a reference, the ratio is what the entry stands for, so its
        // interval decides when to stop; with the gate, the quiet runs.
        let (judged, calibrating) = match gate {
            Some(g) => (
                quiet_runs(&samples, &around, quiet_limit(noise, &readings, g)),
                noise.sensor_floor_ms.is_none() && elapsed_ms < noise.sensor_calibrate_ms,
            ),
            None if reference.is_some() => (ratios.clone(), false),
            None => (samples.clone(), false),
        };
        let mut sorted = judged;
        sorted.sort_by(f64::total_cmp);
        counted = sorted.len();
        let hw = median_ci(&sorted).map(|(_, hw)| hw);
        let converged = !calibrating
            && sorted.len() >= min_runs
            && samples.len() >= min_runs
            && hw.is_some_and(|h| h < noise.ci_target_pct);
        let capped = !calibrating
            && (sorted.len() >= max_runs
                || (samples.len() >= min_runs && elapsed_ms >= time_cap_ms));
        if converged || capped {
            return summarise(Pooled {
                what,
                noise,
                quiet: if gate.is_some() { sorted } else { Vec::new() },
                samples,
                ratios,
                reference_samples,
                readings,
                around,
                reference,
                rounds,
                converged,
            });
        }
    }
}

/// The quiet level: the known one, or this measurement's own when lower or
/// the only one.
fn quiet_floor(noise: &NoiseSettings, readings: &[f64]) -> Option<f64> {
    match (noise.sensor_floor_ms, low_level(readings)) {
        (Some(k), Some(l)) => Some(k.min(l)),
        (k, l) => k.or(l),
    }
}

/// The quiet limit for the sensor readings: the quiet level plus the gate.
fn quiet_limit(noise: &NoiseSettings, readings: &[f64], gate_pct: f64) -> Option<f64> {
    quiet_floor(noise, readings).map(|f| f * (1.0 + gate_pct / 100.0))
}

/// The samples whose neighbouring readings are both within `limit`.
fn quiet_runs(samples: &[f64], around: &[f64], limit: Option<f64>) -> Vec<f64> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    samples
        .iter()
        .zip(around)
        .filter(|(_, r)| **r <= limit)
        .map(|(x, _)| *x)
        .collect()
}

/// Everything [`summarise`] turns into a [`Measured`].
struct Pooled<'a> {
    what: &'a str,
    noise: &'a NoiseSettings,
    /// With the gate: the runs the last round judged quiet.
    quiet: Vec<f64>,
    samples: Vec<f64>,
    ratios: Vec<f64>,
    reference_samples: Vec<f64>,
    readings: Vec<f64>,
    around: Vec<f64>,
    reference: Option<u32>,
    rounds: u32,
    converged: bool,
}

fn summarise(f: Pooled<'_>) -> Result<Measured, LatencyError> {
    let no_samples = || LatencyError::BadReply {
        what: format!("benchmarking {}", f.what),
        message: "no samples".into(),
    };
    let mut converged = f.converged;
    // This measurement's own quiet level, for the next ones.
    let learned = f.noise.sensor_gate_pct.and_then(|_| low_level(&f.readings));
    // With the gate, the statistics are those of the quiet runs.
    let (described, quiet) = match f.noise.sensor_gate_pct {
        Some(g) => {
            let local = low_level(&f.readings);
            let floor = quiet_floor(f.noise, &f.readings);
            let (kept, floor, found) = if let (false, Some(floor)) = (f.quiet.is_empty(), floor) {
                (f.quiet, floor, true)
            } else {
                // Nothing was quiet against the known level: keep the runs
                // quietest against this measurement's own readings (its
                // lowest reading when there are too few for a percentile).
                let own = local.or_else(|| f.readings.iter().copied().reduce(f64::min));
                let kept = quiet_runs(&f.samples, &f.around, own.map(|l| l * (1.0 + g / 100.0)));
                let kept = if kept.is_empty() {
                    f.samples.clone()
                } else {
                    kept
                };
                (kept, own.unwrap_or_default(), false)
            };
            converged &= found;
            let q = QuietRuns {
                kept: kept.len() as u32,
                of: f.samples.len() as u32,
                floor_ms: floor,
                found,
            };
            (kept, Some(q))
        }
        None => (f.samples.clone(), None),
    };
    let summary = padnas_agent::stats::summarize(&described).ok_or_else(no_samples)?;
    let paired = match (
        f.reference,
        padnas_agent::stats::summarize(&f.ratios),
        padnas_agent::stats::summarize(&f.reference_samples),
    ) {
        (Some(_), Some(r), Some(refs)) => {
            let mut sorted = f.ratios.clone();
            sorted.sort_by(f64::total_cmp);
            Some(Paired {
                ratio: r.median,
                ratio_ci95_halfwidth_pct: median_ci(&sorted).map(|(_, hw)| hw),
                reference_median_ms: refs.median,
            })
        }
        _ => None,
    };
    // The described median's own interval, whatever decided the stop.
    let mut sorted = described;
    sorted.sort_by(f64::total_cmp);
    let hw = median_ci(&sorted).map(|(_, hw)| hw);
    Ok(Measured {
        summary,
        rounds: f.rounds,
        ci95_halfwidth_pct: hw,
        converged,
        load_ms: 0.0,
        paired,
        quiet,
        learned_floor_ms: learned,
    })
}

#[cfg(test)]
mod tests;
