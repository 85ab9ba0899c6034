//! Measuring one model on the agent with noise control, and keeping a link
//! to the agent alive across drops.
//!
//! A model is benchmarked in rounds (the agent returns every sample), the
//! samples are pooled, and rounds continue until the distribution-free 95%
//! confidence interval of the median is narrower than `ci_target_pct` of the
//! median, or the run or time cap is hit. Pooling across rounds rather than
//! asking for one long run lets the host stop as soon as the median is known
//! well enough: quick, steady blocks finish after one round, noisy ones get
//! more runs.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use padnas_agent::ClientError;
use padnas_agent::client::Client;
use padnas_agent::proto::{AgentInfo, BenchLimits, BenchStats, ModelLoaded};
use serde::{Deserialize, Serialize};

use super::LatencyError;
use super::stats::median_ci;
use crate::space::BlockKey;

/// More visits than this add time without changing the fastest one.
pub const MAX_PASSES: u32 = 100;

/// Checks a number of passes (command line or job config); the error says
/// what is allowed, for the caller to prefix with where it came from.
pub fn check_passes(passes: u32) -> Result<u32, String> {
    if (1..=MAX_PASSES).contains(&passes) {
        Ok(passes)
    } else {
        Err(format!("must be 1 to {MAX_PASSES}, got {passes}"))
    }
}

/// Checks a sensor gate (command line or job config), as [`check_passes`].
pub fn check_sensor_gate(pct: f64) -> Result<f64, String> {
    if pct.is_finite() && pct > 0.0 && pct <= 100.0 {
        Ok(pct)
    } else {
        Err(format!("must be above 0 and at most 100 (%), got {pct}"))
    }
}

/// How entries are measured; stored in the table header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseSettings {
    /// Stop once the median's 95% confidence half-width is below this, in %.
    pub ci_target_pct: f64,
    /// Pooled timed runs before the interval is even considered.
    pub min_runs: u32,
    /// Pooled timed runs at most (the run cap).
    pub max_runs: u32,
    /// Time spent benchmarking one entry at most, once `min_runs` are done (ms).
    pub max_time_ms: u64,
    /// Untimed runs before the first round.
    pub warmup_runs: u32,
    /// Warm-up time before the first round (ms).
    pub warmup_ms: u64,
    /// Aimed length of each later round (ms); rounds are sized from the
    /// median so far.
    pub round_ms: u64,
    /// Re-measure the sentinel every this many entries (0: never).
    pub sentinel_every: usize,
    /// The block re-measured to detect drift.
    pub sentinel_block: Option<BlockKey>,
    /// Sentinel change (%) relative to its first measurement that counts as drift.
    pub drift_threshold_pct: f64,
    /// When set, every model is benchmarked run for run against this block,
    /// and entries hold the median ratio model / reference as well as their
    /// own samples. On a machine whose speed changes every few seconds (a
    /// VM with a busy neighbour, a board stepping its clock) the ratio is
    /// stable where separate medians are not; see [`super::Table::latency_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_block: Option<BlockKey>,
    /// Visits per entry. The profile sweeps the whole block list this many
    /// times, so the visits to one block lie a sweep apart, and an entry
    /// stands for its fastest visit (the lowest median). On a machine that
    /// is slowed from outside for seconds at a time (a VM whose neighbour
    /// contends for the shared cache: measured here, the speed of a
    /// cache-bound kernel halves while a register-only loop keeps its pace),
    /// every visit measures the uncontended latency or a slower one, so the
    /// fastest visit estimates what a dedicated board would show. On a quiet
    /// board the visits agree, and one pass is enough. `validate` measures
    /// networks the same way.
    #[serde(default = "one_pass")]
    pub passes: u32,
    /// When set, the agent times its contention sensor (a fixed kernel,
    /// protocol 1.2) between every few runs (about every
    /// `SENSOR_BRACKET_MS` of them, each reading followed by an untimed
    /// run), and only the runs whose two neighbouring readings are within
    /// this many % of the
    /// machine's quiet reading count: the entry stands for the machine
    /// when nothing else slows it. Measured on this VM, the sensor and the
    /// blocks jump together between a quiet speed and one 1.5–1.9× slower,
    /// for seconds at a time; a whole-visit statistic (`passes`) only catches
    /// a quiet spell when it covers the whole visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_gate_pct: Option<f64>,
    /// With the gate: how long one measurement waits for enough quiet runs
    /// before it settles for the quietest it saw (ms).
    #[serde(default = "default_sensor_wait_ms")]
    pub sensor_wait_ms: u64,
    /// With the gate and no quiet level known yet: the least time the
    /// measurement lasts (ms), so that it likely spans a quiet spell (they
    /// came every few seconds on the VM measured) before its readings set
    /// the level.
    #[serde(default = "default_sensor_calibrate_ms")]
    pub sensor_calibrate_ms: u64,
    /// With the gate: the machine's quiet sensor reading (ms), learned from
    /// the measurements so far (the lowest 5th percentile of one
    /// measurement's readings) and shared by every clone of these settings;
    /// stored so that `validate` gates networks against the level the
    /// table's blocks were gated against.
    #[serde(default, skip_serializing_if = "QuietLevel::is_unknown")]
    pub sensor_floor_ms: QuietLevel,
}

fn one_pass() -> u32 {
    1
}

fn default_sensor_wait_ms() -> u64 {
    20_000
}

fn default_sensor_calibrate_ms() -> u64 {
    5_000
}

/// The machine's quiet sensor reading, learned as measurements go and shared
/// between clones (a profile clones its settings per entry). Serialised as a
/// plain number.
#[derive(Clone, Debug, Default)]
pub struct QuietLevel(Arc<Mutex<Option<f64>>>);

impl QuietLevel {
    /// A known level (a table's, a test's).
    pub fn known(ms: f64) -> QuietLevel {
        QuietLevel(Arc::new(Mutex::new(Some(ms))))
    }

    /// The level, when one is known.
    pub fn get(&self) -> Option<f64> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no level is known yet.
    pub fn is_unknown(&self) -> bool {
        self.get().is_none()
    }

    /// Lowers the level to `ms` (a quieter spell than any seen before).
    pub fn lower_to(&self, ms: f64) {
        let mut level = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ms.is_finite() && ms > 0.0 && level.is_none_or(|l| ms < l) {
            *level = Some(ms);
        }
    }
}

impl PartialEq for QuietLevel {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for QuietLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for QuietLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<f64>::deserialize(d)?;
        let level = QuietLevel::default();
        if let Some(ms) = v {
            level.lower_to(ms);
        }
        Ok(level)
    }
}

/// With the gate, the agent reads the sensor about this often (ms of the
/// model's runs between two readings): rarely enough that the reading and
/// the untimed run after it add little to a small block's time, often
/// enough that a reading still describes the runs next to it (the state of
/// the VM measured held for seconds).
const SENSOR_BRACKET_MS: f64 = 10.0;

/// Fewest sensor readings whose 5th percentile is taken for a quiet level.
const FLOOR_MIN_READINGS: usize = 20;

/// The 5th percentile of the readings, once there are enough of them.
fn low_level(readings: &[f64]) -> Option<f64> {
    if readings.len() < FLOOR_MIN_READINGS {
        return None;
    }
    let mut v = readings.to_vec();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 20])
}

impl Default for NoiseSettings {
    fn default() -> Self {
        NoiseSettings {
            ci_target_pct: 2.0,
            min_runs: 10,
            max_runs: 200,
            max_time_ms: 2_000,
            warmup_runs: 5,
            warmup_ms: 50,
            round_ms: 200,
            sentinel_every: 10,
            sentinel_block: None,
            drift_threshold_pct: 5.0,
            reference_block: None,
            passes: 1,
            sensor_gate_pct: None,
            sensor_wait_ms: default_sensor_wait_ms(),
            sensor_calibrate_ms: default_sensor_calibrate_ms(),
            sensor_floor_ms: QuietLevel::default(),
        }
    }
}

impl NoiseSettings {
    /// Settings from a target's bench limits: its warm-up, minimum runs and
    /// time cap per entry; `max_runs` is the pooled run cap.
    pub fn from_limits(limits: &BenchLimits, ci_target_pct: f64, max_runs: u32) -> NoiseSettings {
        NoiseSettings {
            ci_target_pct,
            min_runs: limits.min_runs.max(1).min(max_runs.max(1)),
            max_runs: max_runs.max(1),
            max_time_ms: limits.max_time_ms,
            warmup_runs: limits.warmup_runs,
            warmup_ms: limits.warmup_ms,
            ..NoiseSettings::default()
        }
    }

    /// Checks the settings a user can set.
    pub fn check(&self) -> Result<(), LatencyError> {
        if !(self.ci_target_pct.is_finite() && self.ci_target_pct >= 0.0) {
            return Err(LatencyError::InvalidArgument(format!(
                "--ci-pct must be a non-negative number, got {}",
                self.ci_target_pct
            )));
        }
        check_passes(self.passes)
            .map_err(|m| LatencyError::InvalidArgument(format!("--passes {m}")))?;
        if let Some(g) = self.sensor_gate_pct {
            check_sensor_gate(g)
                .map_err(|m| LatencyError::InvalidArgument(format!("--sensor-gate {m}")))?;
            if self.reference_block.is_some() {
                return Err(LatencyError::InvalidArgument(
                    "--sensor-gate and --reference do not combine: the sensor replaces the reference block".into(),
                ));
            }
        }
        if self.max_runs == 0 {
            return Err(LatencyError::InvalidArgument(
                "--max-runs must be at least 1".into(),
            ));
        }
        if !(self.drift_threshold_pct.is_finite() && self.drift_threshold_pct > 0.0) {
            return Err(LatencyError::InvalidArgument(format!(
                "drift threshold must be positive, got {}",
                self.drift_threshold_pct
            )));
        }
        Ok(())
    }
}

/// What the profiler needs from an agent; [`Client`] implements it, tests
/// use fakes (a device that drops, one with scripted samples).
pub trait Device {
    /// Loads an ONNX model with its declared (concrete) input shape.
    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError>;
    /// Benchmarks a loaded model, run for run against the loaded model
    /// `reference` when given, with a sensor reading every `sensor_every`
    /// runs when given (see [`NoiseSettings::sensor_gate_pct`]).
    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError>;
    /// Drops a loaded model.
    fn unload(&mut self, handle: u32) -> Result<(), ClientError>;
    /// Ends the session politely; errors are of no interest by then.
    fn shutdown(&mut self) {}
}

impl Device for Client {
    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
        Client::load_model(self, onnx, None)
    }

    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        Client::bench_request(
            self,
            padnas_agent::proto::BenchRequest {
                handle,
                limits: limits.clone(),
                reference,
                sensor_every,
            },
        )
    }

    fn unload(&mut self, handle: u32) -> Result<(), ClientError> {
        Client::unload(self, handle)
    }

    fn shutdown(&mut self) {
        let _ = Client::shutdown(self);
    }
}

/// A greeted agent.
pub struct Connection {
    /// Requests go here.
    pub device: Box<dyn Device>,
    /// What it said in Hello.
    pub info: AgentInfo,
}

/// Opens a fresh [`Connection`].
pub type Connector<'a> = dyn FnMut() -> Result<Connection, LatencyError> + 'a;

/// A connection that is re-opened when it drops.
///
/// [`Link::run`] runs an operation; when it fails because the link is gone
/// (not because the agent refused the request), a fresh session is opened and
/// the operation runs again from the start, up to `max_reconnects` times in a
/// row.
pub struct Link<'a> {
    conn: Option<Connection>,
    connect: Box<Connector<'a>>,
    max_reconnects: u32,
    backoff: Duration,
    generation: u64,
    fresh: Vec<AgentInfo>,
    stop_agent: bool,
}

impl<'a> Link<'a> {
    /// A link starting on `first`, re-opened with `connect`.
    pub fn new(first: Connection, connect: Box<Connector<'a>>, max_reconnects: u32) -> Link<'a> {
        Link {
            conn: Some(first),
            connect,
            max_reconnects,
            backoff: Duration::from_millis(500),
            generation: 0,
            fresh: Vec::new(),
            stop_agent: true,
        }
    }

    /// Whether [`Link::shutdown`] tells the agent to exit (true by default).
    /// False for agents this host did not start (tcp, serial): they keep
    /// serving other hosts after this session.
    pub fn with_stop_agent(mut self, stop: bool) -> Self {
        self.stop_agent = stop;
        self
    }

    /// Sets the pause before each reconnection (tests use zero).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sessions opened so far after the first.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Hellos of sessions opened since the last call (reconnections), so the
    /// caller can record and check them.
    pub fn take_reconnected(&mut self) -> Vec<AgentInfo> {
        std::mem::take(&mut self.fresh)
    }

    /// Runs `op` on the device, reconnecting and retrying when the link drops.
    pub fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut dyn Device) -> Result<T, LatencyError>,
    ) -> Result<T, LatencyError> {
        let mut failures = 0u32;
        loop {
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => {
                    if !self.backoff.is_zero() {
                        thread::sleep(self.backoff * failures);
                    }
                    match (self.connect)() {
                        Ok(c) => {
                            tracing::info!("reconnected to the agent ({})", c.info.cpu);
                            self.generation += 1;
                            self.fresh.push(c.info.clone());
                            self.conn.insert(c)
                        }
                        Err(e) => {
                            if failures >= self.max_reconnects {
                                return Err(LatencyError::LinkLost {
                                    attempts: failures,
                                    last: Box::new(e),
                                });
                            }
                            failures += 1;
                            tracing::warn!(
                                "reconnecting failed ({failures}/{}): {e}",
                                self.max_reconnects
                            );
                            continue;
                        }
                    }
                }
            };
            match op(conn.device.as_mut()) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_link_failure() => {
                    // Dropping the connection stops a spawned agent for good.
                    self.conn = None;
                    if failures >= self.max_reconnects {
                        return Err(LatencyError::LinkLost {
                            attempts: failures,
                            last: Box::new(e),
                        });
                    }
                    failures += 1;
                    tracing::warn!(
                        "the link to the agent dropped ({e}); reconnecting ({failures}/{})",
                        self.max_reconnects
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the session: the agent is told to exit only when it is ours
    /// ([`Link::with_stop_agent`]); otherwise the connection is just dropped.
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.conn.take()
            && self.stop_agent
        {
            c.device.shutdown();
        }
    }
}

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
}

/// What the sensor gate kept of one measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuietRuns {
    /// Runs kept (those the statistics describe).
    pub kept: u32,
    /// Runs timed.
    pub of: u32,
    /// The quiet sensor level they were judged against (ms).
    pub floor_ms: f64,
    /// False when no run was quiet against the known level before the wait
    /// ran out: the entry then holds the runs quietest against this
    /// measurement's own readings, and is not converged.
    pub found: bool,
}

impl QuietRuns {
    /// How visits of one model compete (table entries, validation rows,
    /// `verify`): a visit in which the gate found quiet runs beats one in
    /// which it found none, then the lower `value` wins. Compare the keys.
    pub fn visit_key(quiet: Option<&QuietRuns>, value: f64) -> (bool, f64) {
        (quiet.is_some_and(|q| !q.found), value)
    }
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

impl Measured {
    /// The table entry for this measurement.
    pub fn entry(&self, measured_at: String) -> super::Entry {
        let s = &self.summary;
        super::Entry {
            median_ms: s.median,
            p10_ms: s.p10,
            p90_ms: s.p90,
            mean_ms: s.mean,
            stddev_ms: s.stddev,
            min_ms: s.min,
            max_ms: s.max,
            runs: s.n as u32,
            rounds: self.rounds,
            ci95_halfwidth_pct: self.ci95_halfwidth_pct,
            converged: self.converged,
            load_ms: self.load_ms,
            measured_at,
            ratio: self.paired.as_ref().map(|p| p.ratio),
            ratio_ci95_halfwidth_pct: self
                .paired
                .as_ref()
                .and_then(|p| p.ratio_ci95_halfwidth_pct),
            reference_median_ms: self.paired.as_ref().map(|p| p.reference_median_ms),
            quiet: self.quiet.clone(),
            visit_medians_ms: Vec::new(),
        }
    }
}

/// Loads `onnx` (and the reference block, when `noise` names one),
/// measures it with [`measure_loaded`], unloads them.
pub fn measure_model(
    dev: &mut dyn Device,
    onnx: &[u8],
    what: &str,
    base: &BenchLimits,
    noise: &NoiseSettings,
) -> Result<Measured, LatencyError> {
    let reference = match &noise.reference_block {
        Some(key) => {
            let bytes =
                crate::onnx::write_block(key, super::profile::BLOCK_SEED).map_err(|source| {
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
    let loaded = dev
        .load_model(onnx)
        .map_err(|source| LatencyError::Device {
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
    dev: &mut dyn Device,
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
                noise.sensor_floor_ms.is_unknown() && elapsed_ms < noise.sensor_calibrate_ms,
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
            return finish(Finish {
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
    match (noise.sensor_floor_ms.get(), low_level(readings)) {
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

/// Everything [`finish`] turns into a [`Measured`].
struct Finish<'a> {
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

fn finish(f: Finish<'_>) -> Result<Measured, LatencyError> {
    let no_samples = || LatencyError::BadReply {
        what: format!("benchmarking {}", f.what),
        message: "no samples".into(),
    };
    let mut converged = f.converged;
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
            if let Some(l) = local {
                f.noise.sensor_floor_ms.lower_to(l);
            }
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
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use padnas_agent::proto::{ErrorCode, ErrorReply};

    use super::*;

    /// A fake agent: every bench returns samples from `draw`; it drops the
    /// link (as a dead child would) after `drop_after` benches. With `cost`,
    /// a model's samples are instead `cost(its ONNX bytes)` times the
    /// machine speed `phase(bench number)`, for model and reference alike.
    pub(crate) struct Fake {
        pub draw: Box<dyn FnMut(usize) -> f64>,
        pub drop_after: Option<usize>,
        pub benches: usize,
        pub loads: Vec<Vec<u8>>,
        pub bad_model: bool,
        pub cost: Option<fn(&[u8]) -> f64>,
        pub phase: fn(usize) -> f64,
        /// The machine's slowdown at each tick (one tick per timed run
        /// and one per sensor reading), for model and sensor alike: a
        /// neighbour that comes and goes. The sensor reads 0.4 ms × it.
        pub machine: fn(usize) -> f64,
        pub ticks: usize,
        /// Sensor requests seen.
        pub sensed: usize,
    }

    impl Fake {
        pub(crate) fn steady(ms: f64) -> Fake {
            Fake {
                draw: Box::new(move |i| ms * (1.0 + 0.001 * (i % 7) as f64)),
                drop_after: None,
                benches: 0,
                loads: Vec::new(),
                bad_model: false,
                cost: None,
                phase: |_| 1.0,
                machine: |_| 1.0,
                ticks: 0,
                sensed: 0,
            }
        }

        fn samples(&mut self, handle: u32, n: usize) -> Vec<f64> {
            match self.cost {
                Some(cost) => {
                    let c = cost(&self.loads[handle as usize - 1]);
                    let speed = (self.phase)(self.benches);
                    (0..n)
                        .map(|i| c * speed * (1.0 + 0.001 * (i % 7) as f64))
                        .collect()
                }
                None => (0..n).map(|i| (self.draw)(i)).collect(),
            }
        }
    }

    /// An agent of protocol 1.`minor`: it ignores the Bench fields later
    /// versions added (the reference in 1.1, the sensor in 1.2), as its
    /// serde defaults would.
    struct OldAgent {
        fake: Fake,
        minor: u16,
    }

    impl Device for OldAgent {
        fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
            self.fake.load_model(onnx)
        }
        fn bench(
            &mut self,
            h: u32,
            reference: Option<u32>,
            sensor_every: Option<u32>,
            l: &BenchLimits,
        ) -> Result<BenchStats, ClientError> {
            let reference = reference.filter(|_| self.minor >= 1);
            let sensor_every = sensor_every.filter(|_| self.minor >= 2);
            self.fake.bench(h, reference, sensor_every, l)
        }
        fn unload(&mut self, h: u32) -> Result<(), ClientError> {
            self.fake.unload(h)
        }
    }

    pub(crate) fn info() -> AgentInfo {
        AgentInfo {
            protocol: 1,
            protocol_minor: 0,
            agent_version: "0.1.0".into(),
            tract_version: "0.23.9".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            cpu: "Test CPU".into(),
            cores: 2,
            governor: Some("performance".into()),
            cur_freq_khz: Some(2_000_000),
            temperature_c: None,
            features: vec!["bench".into()],
        }
    }

    impl Device for Fake {
        fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
            if self.bad_model {
                return Err(ClientError::Remote(ErrorReply::new(
                    ErrorCode::BadModel,
                    "no",
                )));
            }
            self.loads.push(onnx.to_vec());
            Ok(ModelLoaded {
                handle: self.loads.len() as u32,
                input_shape: vec![1],
                output_shape: vec![1],
                load_ms: 1.5,
            })
        }

        fn bench(
            &mut self,
            handle: u32,
            reference: Option<u32>,
            sensor_every: Option<u32>,
            limits: &BenchLimits,
        ) -> Result<BenchStats, ClientError> {
            if self.drop_after.is_some_and(|n| self.benches >= n) {
                // What a dead child agent looks like: the stream ends.
                return Err(ClientError::Closed);
            }
            self.benches += 1;
            assert!(limits.return_samples);
            let n = limits.max_runs as usize;
            let mut samples = self.samples(handle, n);
            // Reading, k runs, reading, …, reading: one tick each.
            let k = sensor_every.unwrap_or(1) as usize;
            let mut readings = Vec::with_capacity(n / k + 2);
            let mut tick = || {
                self.ticks += 1;
                (self.machine)(self.ticks - 1)
            };
            readings.push(0.4 * tick());
            for (i, x) in samples.iter_mut().enumerate() {
                if i > 0 && i % k == 0 {
                    readings.push(0.4 * tick());
                }
                *x *= tick();
            }
            readings.push(0.4 * tick());
            if sensor_every.is_some() {
                self.sensed += 1;
            }
            let sensor_samples_ms = sensor_every.map(|_| readings);
            let reference_samples = reference.map(|r| {
                if self.cost.is_some() {
                    self.samples(r, n)
                } else {
                    vec![1.0; n]
                }
            });
            let s = padnas_agent::stats::summarize(&samples).expect("samples");
            Ok(BenchStats {
                runs: s.n as u32,
                warmup_runs: limits.warmup_runs,
                min_ms: s.min,
                median_ms: s.median,
                mean_ms: s.mean,
                p10_ms: s.p10,
                p90_ms: s.p90,
                max_ms: s.max,
                stddev_ms: s.stddev,
                total_ms: s.total,
                threads: 1,
                pinned_cpu: None,
                samples_ms: Some(samples),
                wall_ms: None,
                timed_wall_ms: None,
                reference_samples_ms: reference_samples,
                reference_median_ms: None,
                ratio_median: None,
                sensor_samples_ms,
            })
        }

        fn unload(&mut self, _handle: u32) -> Result<(), ClientError> {
            Ok(())
        }
    }

    #[test]
    fn steady_block_converges_in_one_round() {
        let mut dev = Fake::steady(2.0);
        let noise = NoiseSettings::default();
        let m =
            measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
        assert!(m.converged);
        assert_eq!(m.rounds, 1);
        assert_eq!(m.summary.n, noise.min_runs as usize);
        assert!(m.summary.p10 <= m.summary.median && m.summary.median <= m.summary.p90);
        assert_eq!(m.load_ms, 1.5);
        let e = m.entry("t".into());
        assert!(e.runs >= noise.min_runs && e.ci95_halfwidth_pct.is_some_and(|h| h < 2.0));
    }

    #[test]
    fn noisy_block_pools_rounds_until_the_cap() {
        // Alternating 1 and 2 ms: the median's interval never gets narrow.
        let mut dev = Fake::steady(1.0);
        dev.draw = Box::new(|i| if i % 2 == 0 { 1.0 } else { 2.0 });
        let noise = NoiseSettings {
            max_runs: 60,
            max_time_ms: 60_000,
            ..NoiseSettings::default()
        };
        let m =
            measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
        assert!(!m.converged);
        assert_eq!(m.summary.n, 60, "stops exactly at the cap");
        assert!(m.rounds > 1);
    }

    #[test]
    fn skewed_noise_converges_after_pooling() {
        // Mostly 10 ms with a 20% tail of slow runs: one round of 10 is not
        // enough for ±2%, a few pooled rounds are.
        let mut n = 0usize;
        let mut dev = Fake::steady(10.0);
        dev.draw = Box::new(move |_| {
            n += 1;
            let jitter = ((n * 7919) % 13) as f64 / 13.0 * 0.3;
            if n.is_multiple_of(5) {
                14.0 + jitter
            } else {
                10.0 + jitter
            }
        });
        let noise = NoiseSettings {
            max_time_ms: 60_000,
            ..NoiseSettings::default()
        };
        let m =
            measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
        assert!(m.converged, "{m:?}");
        assert!(m.ci95_halfwidth_pct.is_some_and(|h| h < 2.0));
        assert!(m.summary.median > 9.9 && m.summary.median < 10.4, "{m:?}");
    }

    /// Cost of a fake model: its ONNX size, as if time grew with weights.
    fn by_size(onnx: &[u8]) -> f64 {
        onnx.len() as f64 / 1000.0
    }

    /// A neighbour that is busy 40 ticks out of every 50 and slows
    /// everything 1.8× meanwhile.
    fn mostly_busy(tick: usize) -> f64 {
        if tick % 50 < 10 { 1.0 } else { 1.8 }
    }

    fn gated(gate: f64, floor: Option<f64>) -> NoiseSettings {
        NoiseSettings {
            min_runs: 10,
            max_runs: 40,
            max_time_ms: 10,
            sensor_gate_pct: Some(gate),
            sensor_wait_ms: 50,
            sensor_calibrate_ms: 20,
            sensor_floor_ms: floor.map(QuietLevel::known).unwrap_or_default(),
            ..NoiseSettings::default()
        }
    }

    #[test]
    fn the_sensor_gate_keeps_only_the_quiet_runs() {
        let busy = || Fake {
            machine: mostly_busy,
            ..Fake::steady(2.0)
        };
        let limits = BenchLimits::default();
        // Without the gate the median is the busy machine's.
        let plain = measure_model(&mut busy(), b"x", "b", &limits, &NoiseSettings::default())
            .expect("plain");
        assert!(plain.summary.median > 3.0, "{:?}", plain.summary);
        assert!(plain.quiet.is_none());

        let mut dev = busy();
        let m =
            measure_model(&mut dev, b"x", "b", &limits, &gated(10.0, Some(0.4))).expect("gated");
        assert!(dev.sensed > 0, "the sensor was asked for");
        let q = m.quiet.clone().expect("gate report");
        assert!(q.found && m.converged, "{q:?}");
        assert!(
            (m.summary.median / 2.0 - 1.0).abs() < 0.01,
            "{:?}",
            m.summary
        );
        assert!(m.summary.max < 2.1, "no busy run kept: {:?}", m.summary);
        assert_eq!(m.summary.n as u32, q.kept);
        assert!(q.kept >= 10 && q.kept < q.of, "{q:?}");
        assert_eq!(q.floor_ms, 0.4);
        // The entry carries the report.
        assert_eq!(m.entry("t".into()).quiet, Some(q));
    }

    #[test]
    fn the_quiet_level_is_learned_and_shared_by_clones() {
        let noise = gated(10.0, None);
        let copy = noise.clone();
        let mut dev = Fake {
            machine: mostly_busy,
            ..Fake::steady(2.0)
        };
        let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("m");
        assert!(
            (m.summary.median / 2.0 - 1.0).abs() < 0.01,
            "{:?}",
            m.summary
        );
        // The 5th percentile of readings that are quiet 20% of the time.
        let level = copy
            .sensor_floor_ms
            .get()
            .expect("learned through the clone");
        assert!((level - 0.4).abs() < 1e-9, "{level}");
        // A busier reading never raises it; a quieter one lowers it.
        copy.sensor_floor_ms.lower_to(0.5);
        assert_eq!(noise.sensor_floor_ms.get(), Some(0.4));
        copy.sensor_floor_ms.lower_to(0.3);
        assert_eq!(noise.sensor_floor_ms.get(), Some(0.3));
        // Stored as a plain number, read back as a level.
        let json = serde_json::to_value(&noise).unwrap();
        assert_eq!(json["sensor_floor_ms"], serde_json::json!(0.3));
        let back: NoiseSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, noise);
        let none = serde_json::to_value(NoiseSettings::default()).unwrap();
        assert!(none.get("sensor_floor_ms").is_none() && none.get("sensor_gate_pct").is_none());
    }

    #[test]
    fn a_measurement_without_a_quiet_run_says_so() {
        let mut dev = Fake {
            machine: |_| 1.8,
            ..Fake::steady(2.0)
        };
        let noise = gated(10.0, Some(0.4));
        let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("m");
        let q = m.quiet.expect("report");
        assert!(!q.found && !m.converged, "{q:?}");
        // It settles for the runs quietest against its own readings.
        assert!(
            (m.summary.median / 3.6 - 1.0).abs() < 0.01,
            "{:?}",
            m.summary
        );
        assert!((q.floor_ms - 0.72).abs() < 1e-9, "{q:?}");
        // And it does not pretend the machine's quiet level is its own.
        assert_eq!(noise.sensor_floor_ms.get(), Some(0.4));
    }

    #[test]
    fn an_agent_without_the_sensor_is_a_clear_error() {
        let e = measure_model(
            &mut OldAgent {
                fake: Fake::steady(1.0),
                minor: 1,
            },
            b"x",
            "b",
            &BenchLimits::default(),
            &gated(10.0, Some(0.4)),
        )
        .expect_err("no readings");
        assert!(e.to_string().contains("protocol 1.2"), "{e}");
    }

    #[test]
    fn gate_settings_are_checked() {
        assert!(gated(10.0, None).check().is_ok());
        for bad in [0.0, -5.0, 101.0, f64::NAN] {
            let e = gated(bad, None).check().expect_err("bad gate");
            assert!(e.to_string().contains("--sensor-gate"), "{e}");
        }
        let both = NoiseSettings {
            reference_block: Some("mbconv:k3e3:in4x8x8:out4:s1".parse().unwrap()),
            ..gated(10.0, None)
        };
        let e = both.check().expect_err("gate and reference");
        assert!(e.to_string().contains("--reference"), "{e}");
    }

    #[test]
    fn a_reference_cancels_a_machine_that_changes_speed() {
        // The machine alternates between two speeds 1.45× apart, one per
        // benchmark request, as this VM did: separate medians of the same
        // block disagree by 45%, ratios to a reference run alongside agree.
        let key: BlockKey = "mbconv:k3e3:in8x8x8:out8:s1".parse().expect("key");
        let block = crate::onnx::write_block(&key, 0).expect("onnx");
        let mut dev = Fake {
            cost: Some(by_size),
            phase: |bench| if bench % 2 == 0 { 1.45 } else { 1.0 },
            ..Fake::steady(1.0)
        };
        let plain = NoiseSettings::default();
        let a = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &plain).unwrap();
        let b = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &plain).unwrap();
        let (hi, lo) = (
            a.summary.median.max(b.summary.median),
            a.summary.median.min(b.summary.median),
        );
        let spread = hi / lo - 1.0;
        assert!(spread > 0.4, "{} vs {}", a.summary.median, b.summary.median);
        assert!(a.paired.is_none());

        let reference: BlockKey = "mbconv:k3e3:in4x8x8:out4:s1".parse().expect("key");
        let paired = NoiseSettings {
            reference_block: Some(reference),
            ..NoiseSettings::default()
        };
        let a = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &paired).unwrap();
        let b = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &paired).unwrap();
        let (ra, rb) = (a.paired.unwrap(), b.paired.unwrap());
        assert!((ra.ratio / rb.ratio - 1.0).abs() < 1e-9, "{ra:?} {rb:?}");
        let ref_onnx = crate::onnx::write_block(&reference, 0).unwrap();
        let want = by_size(&block) / by_size(&ref_onnx);
        assert!(
            (ra.ratio / want - 1.0).abs() < 1e-3,
            "{} vs {want}",
            ra.ratio
        );
        assert!(a.converged && b.converged);
        // The reference was loaded and unloaded with each model.
        assert_eq!(dev.loads.len(), 2 + 2 * 2);
        assert_eq!(dev.loads[2], ref_onnx);

        // An agent that ignores the reference (older than protocol 1.1) is
        // a clear error, not a table in mixed units.
        let mut deaf = OldAgent {
            fake: Fake::steady(1.0),
            minor: 0,
        };
        let e = measure_model(&mut deaf, &block, "b", &BenchLimits::default(), &paired)
            .expect_err("no reference samples");
        assert!(e.to_string().contains("no reference samples"), "{e}");
    }

    #[test]
    fn link_reconnects_then_gives_up() {
        let mut dropping = Fake::steady(1.0);
        dropping.drop_after = Some(0);
        let mut spare: VecDeque<Fake> = VecDeque::from([Fake::steady(1.0)]);
        let mut opened = 0;
        let connect = move || {
            opened += 1;
            spare
                .pop_front()
                .map(|f| Connection {
                    device: Box::new(f) as Box<dyn Device>,
                    info: info(),
                })
                .ok_or_else(|| LatencyError::InvalidArgument(format!("no agent ({opened})")))
        };
        let mut link = Link::new(
            Connection {
                device: Box::new(dropping),
                info: info(),
            },
            Box::new(connect),
            2,
        )
        .with_backoff(Duration::ZERO);
        let noise = NoiseSettings::default();
        let limits = BenchLimits::default();
        let m = link
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect("second session works");
        assert!(m.converged);
        assert_eq!(link.generation(), 1);
        assert_eq!(link.take_reconnected().len(), 1);

        // Now the good session drops too and no agent comes back.
        let mut link2 = Link::new(
            Connection {
                device: Box::new(Fake {
                    drop_after: Some(0),
                    ..Fake::steady(1.0)
                }),
                info: info(),
            },
            Box::new(|| Err(LatencyError::InvalidArgument("unreachable".into()))),
            2,
        )
        .with_backoff(Duration::ZERO);
        let e = link2
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect_err("lost");
        assert!(
            matches!(e, LatencyError::LinkLost { attempts: 2, .. }),
            "{e}"
        );

        // A refused request is not a drop: no reconnect, the error surfaces.
        let mut link3 = Link::new(
            Connection {
                device: Box::new(Fake {
                    bad_model: true,
                    ..Fake::steady(1.0)
                }),
                info: info(),
            },
            Box::new(|| -> Result<Connection, LatencyError> { panic!("must not reconnect") }),
            2,
        );
        let e = link3
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect_err("refused");
        assert!(
            matches!(e, LatencyError::Device { .. }) && !e.is_link_failure(),
            "{e}"
        );
    }
}
