//! The model runner: ONNX in, latency statistics out, through tract.
//!
//! A model is loaded once per handle: parsed, given a fully concrete input
//! shape (tract is far slower on symbolic shapes, and latency tables are per
//! shape anyway), optimised and turned into a plan. Everything that touches
//! tract runs on one long-lived worker thread, one job at a time: a panic
//! inside tract becomes an error instead of killing the agent (and retires
//! that thread), and two sessions never benchmark at once and skew each
//! other.
//!
//! Why long-lived: a thread per request cost 2–7 ms per Bench on this
//! machine, mostly at its exit, when glibc hands the thread's malloc arena
//! (tens of MB of activations) back to the kernel; the next request then
//! page-faulted the same memory in again during its first runs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tract_linalg::multithread::{Executor, multithread_tract_scope};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, ShapeFactoid};
use tract_onnx::tract_hir::internal::DimLike;

use crate::proto::{BenchLimits, BenchStats, ErrorCode, MAX_PAYLOAD_BYTES, shape_elements};
use crate::stats;

/// Most threads a bench may ask for; more is a malformed request.
pub const MAX_THREADS: u32 = 256;

/// Why loading or running a model failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model does not parse, has an unsupported signature, or tract
    /// cannot optimise or run it.
    #[error("{0}")]
    BadModel(String),
    /// The input shape or tensor does not fit the model.
    #[error("{0}")]
    BadInput(String),
    /// The benchmark limits make no sense.
    #[error("{0}")]
    BadLimits(String),
    /// tract panicked; the message is the panic's.
    #[error("tract panicked while {doing}: {message}")]
    Panicked {
        /// What the agent was doing.
        doing: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// Anything else (thread or thread-pool creation, …).
    #[error("{0}")]
    Internal(String),
}

impl BenchError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BenchError::BadModel(_) => ErrorCode::BadModel,
            BenchError::BadInput(_) => ErrorCode::BadInput,
            BenchError::BadLimits(_) => ErrorCode::BadMessage,
            // A panic while loading is the model's fault as far as the host
            // can act on it; while running, it is the agent's.
            BenchError::Panicked {
                doing: "loading the model",
                ..
            } => ErrorCode::BadModel,
            BenchError::Panicked { .. } | BenchError::Internal(_) => ErrorCode::Internal,
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The worker: jobs go in through the channel; the thread ends when the
/// sender is dropped.
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn spawn() -> Result<Worker, BenchError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("padnas-run".into())
            // tract's optimiser recurses over big graphs; the main thread's
            // 8 MiB is the usual budget, a spawned thread only gets 2 MiB.
            .stack_size(16 << 20)
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|e| BenchError::Internal(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker { jobs })
    }
}

/// The one worker, started on first use; `None` after a panic retired it.
/// Holding the lock while a job runs is what serialises jobs.
static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

/// Runs `f` on the worker thread and turns a panic into an error. After a
/// panic the worker is retired (whatever tract's thread-locals held is
/// dropped with it) and the next job starts a fresh one.
fn isolated<T: Send + 'static>(
    doing: &'static str,
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    let mut worker = WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (done, result) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
    });
    let w = match worker.as_ref() {
        Some(w) => w,
        None => worker.insert(Worker::spawn()?),
    };
    // The worker only ends when its sender is dropped, and every job catches
    // its own panic, so a refused send would be a bug; it is still an error.
    if w.jobs.send(job).is_err() {
        *worker = None;
        return Err(BenchError::Internal("the worker thread is gone".into()));
    }
    match result.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => {
            *worker = None;
            Err(BenchError::Panicked {
                doing,
                message: panic_message(payload.as_ref()),
            })
        }
        Err(_) => {
            *worker = None;
            Err(BenchError::Internal(format!(
                "the worker thread died while {doing}"
            )))
        }
    }
}

/// A model ready to run. Cloning is cheap (the plan and input are shared),
/// which is how jobs take it to the worker thread.
#[derive(Clone)]
pub struct LoadedModel {
    plan: Arc<TypedSimplePlan>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    /// The benchmark input, built once and shared by every run: cloning a
    /// TValue is a reference count, where cloning a Tensor copied the whole
    /// input (300 kB for 24×56×56) between every two runs.
    input: TValue,
    load_ms: f64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("load_ms", &self.load_ms)
            .finish_non_exhaustive()
    }
}

fn shape_text(shape: &ShapeFactoid) -> String {
    let mut dims: Vec<String> = shape
        .dims()
        .map(|d| {
            d.concretize()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".to_string())
        })
        .collect();
    if shape.is_open() {
        dims.push("..".to_string());
    }
    format!("[{}]", dims.join(", "))
}

/// Checks a requested input shape on its own: no zero dimension, and small
/// enough that its tensor could travel in one frame.
fn check_shape(shape: &[usize]) -> Result<(), BenchError> {
    if shape.contains(&0) {
        return Err(BenchError::BadInput(format!(
            "input shape {shape:?} has a zero dimension"
        )));
    }
    let bytes = shape_elements(shape).and_then(|n| n.checked_mul(4));
    if bytes.is_none_or(|b| b > MAX_PAYLOAD_BYTES as usize) {
        return Err(BenchError::BadInput(format!(
            "input shape {shape:?} is larger than the {MAX_PAYLOAD_BYTES}-byte frame cap"
        )));
    }
    Ok(())
}

/// Deterministic values in [-1, 1): not all zeros, so no data-dependent fast
/// path flatters the timing, and the same on every run and board.
fn bench_input(shape: &[usize]) -> Result<Tensor, BenchError> {
    let n = shape_elements(shape).unwrap_or(0);
    let mut x: u32 = 0x9E37_79B9;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &data)
        .map_err(|e| BenchError::Internal(format!("building the input tensor: {e:#}")))
}

/// Parses, concretises and optimises an ONNX model. `input_shape` overrides
/// the declared input shape; without it the declared one must be concrete.
pub fn load(onnx: &[u8], input_shape: Option<&[usize]>) -> Result<LoadedModel, BenchError> {
    if let Some(shape) = input_shape {
        check_shape(shape)?;
    }
    let onnx = onnx.to_vec();
    let input_shape = input_shape.map(<[usize]>::to_vec);
    isolated("loading the model", move || {
        load_inner(&onnx, input_shape.as_deref())
    })
}

fn load_inner(onnx: &[u8], input_shape: Option<&[usize]>) -> Result<LoadedModel, BenchError> {
    let bad = |what: &str, e: TractError| BenchError::BadModel(format!("{what}: {e:#}"));
    let started = Instant::now();
    let mut reader = onnx;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut reader)
        .map_err(|e| {
            bad(
                &format!("cannot parse the ONNX model ({} bytes)", onnx.len()),
                e,
            )
        })?;

    let inputs = model
        .input_outlets()
        .map_err(|e| bad("reading model inputs", e))?
        .len();
    if inputs != 1 {
        return Err(BenchError::BadModel(format!(
            "the model has {inputs} inputs; the agent runs single-input models"
        )));
    }
    let name = model
        .input_outlets()
        .ok()
        .and_then(|o| o.first().map(|o| model.node(o.node).name.clone()))
        .unwrap_or_default();
    let fact = model
        .input_fact(0)
        .map_err(|e| bad("reading the input", e))?
        .clone();
    if let Some(dt) = fact.datum_type.concretize()
        && dt != f32::datum_type()
    {
        return Err(BenchError::BadModel(format!(
            "input '{name}' is {dt:?}; the agent feeds f32 tensors"
        )));
    }
    let declared = shape_text(&fact.shape);
    let shape: Vec<usize> = match input_shape {
        Some(shape) => {
            if let Some(rank) = fact.shape.rank().concretize()
                && rank as usize != shape.len()
            {
                return Err(BenchError::BadInput(format!(
                    "input shape {shape:?} has rank {}, but input '{name}' is declared \
                     {declared} (rank {rank})",
                    shape.len()
                )));
            }
            for (axis, (dim, &want)) in fact.shape.dims().zip(shape).enumerate() {
                if let Some(have) = dim.concretize().and_then(|d| d.to_usize().ok())
                    && have != want
                {
                    return Err(BenchError::BadInput(format!(
                        "input shape {shape:?} disagrees with input '{name}' declared \
                         {declared} on axis {axis}"
                    )));
                }
            }
            shape.to_vec()
        }
        None => match fact.shape.as_concrete_finite() {
            Ok(Some(shape)) => {
                let shape = shape.to_vec();
                check_shape(&shape)?;
                shape
            }
            _ => {
                return Err(BenchError::BadModel(format!(
                    "input '{name}' has shape {declared}, which is not fully concrete; send \
                     input_shape with LoadModel (tract runs symbolic shapes far slower, so the \
                     agent does not benchmark them)"
                )));
            }
        },
    };
    model
        .set_input_fact(0, f32::fact(&shape).into())
        .map_err(|e| bad("setting the input shape", e))?;
    let typed = model
        .into_optimized()
        .map_err(|e| bad("tract cannot optimise the model", e))?;
    if typed.output_outlets().map(|o| o.is_empty()).unwrap_or(true) {
        return Err(BenchError::BadModel("the model has no outputs".to_string()));
    }
    let plan = typed
        .into_runnable()
        .map_err(|e| bad("tract cannot plan the model", e))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    // One trial run now, so a model that fails at run time is refused at
    // load time, and the output shape is the real one.
    let input = bench_input(&shape)?;
    let outputs = plan
        .run(tvec![input.clone().into_tvalue()])
        .map_err(|e| bad("trial run failed", e))?;
    let output_shape = outputs
        .first()
        .map(|o| o.shape().to_vec())
        .unwrap_or_default();
    Ok(LoadedModel {
        plan,
        input_shape: shape,
        output_shape,
        input: input.into_tvalue(),
        load_ms,
    })
}

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

/// The calling thread pinned to one CPU; dropping it restores the CPU set
/// the thread had before.
struct Pinned {
    cpu: usize,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    before: libc::cpu_set_t,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Pinned {
    fn to(cpu: usize) -> std::io::Result<Pinned> {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cpu {cpu} is beyond CPU_SETSIZE"),
            ));
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: cpu_set_t is plain data for which all-zero is the empty
        // set; CPU_SET stays in bounds (checked above); pid 0 is the
        // calling thread, and both calls get the set's true size.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut before) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size, &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Pinned { cpu, before })
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: as in `to`; the set is one the kernel gave this thread.
        let rc = unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before)
        };
        if rc != 0 {
            tracing::warn!(
                "cannot restore the worker's CPU set after pinning to CPU {}: {}",
                self.cpu,
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Pinned {
    fn to(_cpu: usize) -> std::io::Result<Pinned> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "CPU pinning needs Linux",
        ))
    }
}

impl LoadedModel {
    /// The concrete input shape the model was optimised for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Shape of the first output.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Time spent parsing, optimising and planning, in ms.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_the_next_job_runs() {
        let e = isolated("testing", || -> Result<(), BenchError> { panic!("boom") })
            .expect_err("panicked");
        assert!(
            matches!(&e, BenchError::Panicked { doing: "testing", message } if message == "boom"),
            "{e:?}"
        );
        // A fresh worker takes the next job; the same worker then keeps
        // taking them.
        let first = isolated("testing", || Ok(thread::current().id())).expect("runs");
        let second = isolated("testing", || Ok(thread::current().id())).expect("runs");
        assert_eq!(first, second, "one long-lived worker");
        assert_ne!(first, thread::current().id());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pinning_is_undone_when_the_guard_drops() {
        let allowed = || {
            // SAFETY: as in `Pinned::to`.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                assert_eq!(
                    libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                    0
                );
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&c| libc::CPU_ISSET(c, &set))
                    .collect::<Vec<usize>>()
            }
        };
        // On a thread of its own, so the test runner's threads keep theirs.
        thread::spawn(move || {
            let before = allowed();
            let cpu = *before.last().expect("some CPU");
            let pin = Pinned::to(cpu).expect("pin");
            assert_eq!(allowed(), vec![cpu]);
            drop(pin);
            assert_eq!(allowed(), before);
        })
        .join()
        .expect("no panic");
    }
}
