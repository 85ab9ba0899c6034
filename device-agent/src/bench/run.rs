//! Running a loaded model: once on given data (`infer`), or warmed up and
//! timed (`bench`), alone, paired run for run with a reference model, or
//! with the contention sensor read between runs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;

use super::MAX_THREADS;
use super::pin::Pinned;
use super::worker::{isolated, panic_message};
use super::{BenchError, LoadedModel};
use crate::proto::{BenchLimits, BenchStats};
use crate::stats;

/// Rejects limits that cannot describe a benchmark.
pub fn check_limits(limits: &BenchLimits) -> Result<(), BenchError> {
    if limits.max_runs == 0 {
        return Err(BenchError::BadLimits(
            "max_runs must be at least 1".to_string(),
        ));
    }
    if limits.min_runs > limits.max_runs {
        return Err(BenchError::BadLimits(format!(
            "min_runs ({}) exceeds max_runs ({})",
            limits.min_runs, limits.max_runs
        )));
    }
    match limits.threads {
        Some(0) => Err(BenchError::BadLimits(
            "threads must be at least 1".to_string(),
        )),
        Some(t) if t > MAX_THREADS => Err(BenchError::BadLimits(format!(
            "threads ({t}) exceeds {MAX_THREADS}"
        ))),
        _ => Ok(()),
    }
}

/// tract's multithreaded executor for `threads`, built once per count: a
/// rayon pool's threads would otherwise be created (and cold) in every bench.
fn executor_for(threads: usize) -> Result<Executor, BenchError> {
    static POOLS: Mutex<Vec<(usize, Executor)>> = Mutex::new(Vec::new());
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, executor)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(executor.clone());
    }
    // multithread_with_name panics when the OS refuses threads.
    let executor =
        std::panic::catch_unwind(|| Executor::multithread_with_name(threads, "padnas-mm"))
            .map_err(|payload| {
                BenchError::Internal(format!(
                    "cannot start a {threads}-thread pool: {}",
                    panic_message(payload.as_ref())
                ))
            })?;
    pools.push((threads, executor.clone()));
    Ok(executor)
}

impl LoadedModel {
    /// Runs the model once on `data` and returns the first output as f32.
    pub fn infer(
        &self,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(Vec<usize>, Vec<f32>), BenchError> {
        if shape != self.input_shape.as_slice() {
            return Err(BenchError::BadInput(format!(
                "input shape {shape:?} does not match the model's {:?}",
                self.input_shape
            )));
        }
        let input = Tensor::from_shape(shape, data)
            .map_err(|e| BenchError::BadInput(format!("building the input tensor: {e:#}")))?;
        let plan = Arc::clone(&self.plan);
        isolated("running the model", move || {
            let outputs = plan
                .run(tvec![input.into_tvalue()])
                .map_err(|e| BenchError::BadModel(format!("run failed: {e:#}")))?;
            let first = outputs
                .first()
                .ok_or_else(|| BenchError::BadModel("the model produced no output".to_string()))?;
            let as_f32 = first.cast_to::<f32>().map_err(|e| {
                BenchError::BadModel(format!(
                    "output is {:?}, not castable to f32: {e:#}",
                    first.datum_type()
                ))
            })?;
            let view = as_f32
                .to_plain_array_view::<f32>()
                .map_err(|e| BenchError::Internal(format!("reading the output: {e:#}")))?;
            Ok((first.shape().to_vec(), view.iter().copied().collect()))
        })
    }

    /// Benchmarks the model under `limits`, alternating run for run with
    /// `reference` when given (see `BenchRequest::reference`), and timing the
    /// contention sensor between every `sensor_every` runs
    /// (`BenchRequest::sensor_every`).
    pub fn bench(
        &self,
        reference: Option<&LoadedModel>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, BenchError> {
        let started = Instant::now();
        check_limits(limits)?;
        if sensor_every == Some(0) {
            return Err(BenchError::BadLimits(
                "sensor_every must be at least 1".to_string(),
            ));
        }
        let threads = limits.threads.unwrap_or(1).max(1) as usize;
        let executor = if threads > 1 {
            executor_for(threads)?
        } else {
            Executor::SingleThread
        };
        let limits = limits.clone();
        let model = self.clone();
        let reference = reference.cloned();
        isolated("benchmarking the model", move || {
            // The worker outlives this job: the guard gives its CPU set back.
            let pin = limits.pin_cpu.and_then(|cpu| match Pinned::to(cpu) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("cannot pin the benchmark to CPU {cpu}: {e}");
                    None
                }
            });
            let pinned_cpu = pin.as_ref().map(|p| p.cpu);
            let runs = multithread_tract_scope(executor, || {
                model.timed_runs(reference.as_ref(), sensor_every, &limits)
            });
            drop(pin);
            let runs = runs?;
            let samples = runs.samples;
            let summary = stats::summarize(&samples)
                .ok_or_else(|| BenchError::Internal("no timed runs".to_string()))?;
            let (reference_median_ms, ratio_median) = match &runs.reference_samples {
                Some(refs) => {
                    let ratios: Vec<f64> = samples
                        .iter()
                        .zip(refs)
                        .map(|(x, r)| x / r.max(f64::MIN_POSITIVE))
                        .collect();
                    (
                        stats::summarize(refs).map(|s| s.median),
                        stats::summarize(&ratios).map(|s| s.median),
                    )
                }
                None => (None, None),
            };
            let warmup_runs = runs.warmup_runs;
            let timed_wall = runs.timed_wall;
            Ok(BenchStats {
                runs: summary.n as u32,
                warmup_runs,
                min_ms: summary.min,
                median_ms: summary.median,
                mean_ms: summary.mean,
                p10_ms: summary.p10,
                p90_ms: summary.p90,
                max_ms: summary.max,
                stddev_ms: summary.stddev,
                total_ms: summary.total,
                threads: threads as u32,
                pinned_cpu,
                samples_ms: limits.return_samples.then_some(samples),
                wall_ms: Some(started.elapsed().as_secs_f64() * 1e3),
                timed_wall_ms: Some(timed_wall.as_secs_f64() * 1e3),
                reference_samples_ms: runs.reference_samples.filter(|_| limits.return_samples),
                reference_median_ms,
                ratio_median,
                sensor_samples_ms: runs.sensor_samples,
                cycles: None,
            })
        })
    }

    /// Warm-up, then timed runs, each followed by a run of `reference` when
    /// given, and with `sensor_every` = k a sensor reading before the first
    /// timed run, after every k and after the last, each followed by an
    /// untimed run.
    fn timed_runs(
        &self,
        reference: Option<&LoadedModel>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<TimedRuns, BenchError> {
        let run_failed = |e: TractError| BenchError::BadModel(format!("run failed: {e:#}"));
        let reference_failed =
            |e: TractError| BenchError::BadModel(format!("reference run failed: {e:#}"));
        // The state keeps tract's per-run scratch between runs, as a
        // deployed model would.
        let mut state = self.plan.spawn().map_err(run_failed)?;
        let mut reference = match reference {
            Some(r) => Some((r.plan.spawn().map_err(reference_failed)?, r.input.clone())),
            None => None,
        };
        let input = self.input.clone();
        // Allocated before the warm-up, so the timed loop allocates nothing
        // the model's runs would not.
        let mut sensor = sensor_every.map(|k| (crate::sensor::Sensor::new(), k.max(1) as usize));

        let warmup_time = Duration::from_millis(limits.warmup_ms);
        let warmup_start = Instant::now();
        let mut warmup_runs = 0u32;
        while warmup_runs < limits.warmup_runs || warmup_start.elapsed() < warmup_time {
            state.run(tvec![input.clone()]).map_err(run_failed)?;
            if let Some((ref_state, ref_input)) = &mut reference {
                ref_state
                    .run(tvec![ref_input.clone()])
                    .map_err(reference_failed)?;
            }
            if let Some((s, _)) = &mut sensor {
                s.time_one();
            }
            warmup_runs = warmup_runs.saturating_add(1);
        }

        let max_runs = limits.max_runs as usize;
        let min_runs = limits.min_runs as usize;
        let max_time = Duration::from_millis(limits.max_time_ms);
        let capacity = max_runs.min(1 << 16);
        let mut samples = Vec::with_capacity(capacity);
        let mut reference_samples = reference.as_ref().map(|_| Vec::with_capacity(capacity));
        let mut sensor_samples = sensor.as_mut().map(|(s, k)| {
            let mut v = Vec::with_capacity(capacity / *k + 2);
            v.push(s.time_one());
            v
        });
        // Timed runs since the last reading.
        let mut since = 0usize;
        let timed_start = Instant::now();
        while samples.len() < max_runs {
            if samples.len() >= min_runs.max(1) && timed_start.elapsed() >= max_time {
                break;
            }
            if let (Some((s, k)), Some(out)) = (&mut sensor, &mut sensor_samples) {
                if since == *k {
                    out.push(s.time_one());
                    since = 0;
                }
                if since == 0 {
                    // The sensor used the caches the model's data was in.
                    state.run(tvec![input.clone()]).map_err(run_failed)?;
                }
                since += 1;
            }
            samples.push(time_one(&mut state, &input).map_err(run_failed)?);
            if let (Some((ref_state, ref_input)), Some(out)) =
                (&mut reference, &mut reference_samples)
            {
                out.push(time_one(ref_state, ref_input).map_err(reference_failed)?);
            }
        }
        if let (Some((s, _)), Some(out)) = (&mut sensor, &mut sensor_samples) {
            out.push(s.time_one());
        }
        Ok(TimedRuns {
            warmup_runs,
            samples,
            reference_samples,
            sensor_samples,
            timed_wall: timed_start.elapsed(),
        })
    }
}

/// What the timed loop measured.
struct TimedRuns {
    warmup_runs: u32,
    /// The model's samples, ms.
    samples: Vec<f64>,
    /// The reference's samples, ms, paired index by index.
    reference_samples: Option<Vec<f64>>,
    /// The sensor's readings (see `BenchStats::sensor_samples_ms`).
    sensor_samples: Option<Vec<f64>>,
    /// Wall time of the timed loop.
    timed_wall: Duration,
}

/// One timed run, in ms. The outputs are dropped after the clock stops:
/// freeing them is not part of the model's latency.
fn time_one(state: &mut TypedSimpleState, input: &TValue) -> TractResult<f64> {
    let inputs = tvec![input.clone()];
    let start = Instant::now();
    let outputs = state.run(inputs)?;
    let elapsed = start.elapsed();
    drop(outputs);
    Ok(elapsed.as_secs_f64() * 1e3)
}
