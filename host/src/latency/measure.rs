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
}

fn one_pass() -> u32 {
    1
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
    /// `reference` when given.
    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
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
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        Client::bench_paired(self, handle, reference, limits)
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
                        source,
                    }
                })?;
            let r = dev
                .load_model(&bytes)
                .map_err(|source| LatencyError::Device {
                    what: format!("loading the reference {key}"),
                    source,
                })?;
            Some(r.handle)
        }
        None => None,
    };
    let loaded = dev
        .load_model(onnx)
        .map_err(|source| LatencyError::Device {
            what: format!("loading {what}"),
            source,
        })?;
    let mut m = measure_loaded(dev, loaded.handle, reference, what, base, noise)?;
    m.load_ms = loaded.load_ms;
    for handle in std::iter::once(loaded.handle).chain(reference) {
        // A failed unload only leaks memory on the agent until the session
        // ends, but a dropped link must still be noticed here.
        if let Err(source) = dev.unload(handle) {
            let e = LatencyError::Device {
                what: format!("unloading {what}"),
                source,
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
    let mut samples: Vec<f64> = Vec::new();
    let mut reference_samples: Vec<f64> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    let mut rounds = 0u32;
    loop {
        let left = max_runs - samples.len();
        let want = if samples.is_empty() {
            min_runs
        } else {
            // Size later rounds by time, so a 50 ms network and a 0.2 ms
            // block both pay about one round trip per `round_ms`.
            let median = padnas_agent::stats::summarize(&samples).map_or(1.0, |s| s.median);
            ((noise.round_ms as f64 / median.max(1e-3)).ceil() as usize).clamp(5, 1_000)
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
            max_time_ms: noise.max_time_ms.max(1),
            threads: base.threads,
            pin_cpu: base.pin_cpu,
            return_samples: true,
        };
        let stats =
            dev.bench(handle, reference, &limits)
                .map_err(|source| LatencyError::Device {
                    what: format!("benchmarking {what}"),
                    source,
                })?;
        let bad = |message: String| LatencyError::BadReply {
            what: format!("benchmarking {what}"),
            message,
        };
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
        samples.extend(got);
        rounds += 1;
        // With a reference, the ratio is what the entry stands for, so its
        // interval decides when to stop.
        let judged = if reference.is_some() {
            &ratios
        } else {
            &samples
        };
        let mut sorted = judged.clone();
        sorted.sort_by(f64::total_cmp);
        let hw = median_ci(&sorted).map(|(_, hw)| hw);
        let converged = samples.len() >= min_runs && hw.is_some_and(|h| h < noise.ci_target_pct);
        let capped = samples.len() >= max_runs
            || (samples.len() >= min_runs
                && started.elapsed().as_millis() as u64 >= noise.max_time_ms);
        if converged || capped {
            let summary =
                padnas_agent::stats::summarize(&samples).ok_or_else(|| LatencyError::BadReply {
                    what: format!("benchmarking {what}"),
                    message: "no samples".into(),
                })?;
            let paired = match (
                reference,
                padnas_agent::stats::summarize(&ratios),
                padnas_agent::stats::summarize(&reference_samples),
            ) {
                (Some(_), Some(r), Some(refs)) => Some(Paired {
                    ratio: r.median,
                    ratio_ci95_halfwidth_pct: hw,
                    reference_median_ms: refs.median,
                }),
                _ => None,
            };
            // The raw median's own interval, whatever decided the stop
            // (without a reference, the one just computed).
            let raw_hw = if reference.is_some() {
                let mut sorted = samples.clone();
                sorted.sort_by(f64::total_cmp);
                median_ci(&sorted).map(|(_, hw)| hw)
            } else {
                hw
            };
            return Ok(Measured {
                summary,
                rounds,
                ci95_halfwidth_pct: raw_hw,
                converged,
                load_ms: 0.0,
                paired,
            });
        }
    }
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
            limits: &BenchLimits,
        ) -> Result<BenchStats, ClientError> {
            if self.drop_after.is_some_and(|n| self.benches >= n) {
                // What a dead child agent looks like: the stream ends.
                return Err(ClientError::Closed);
            }
            self.benches += 1;
            assert!(limits.return_samples);
            let n = limits.max_runs as usize;
            let samples = self.samples(handle, n);
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
        struct Deaf(Fake);
        impl Device for Deaf {
            fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
                self.0.load_model(onnx)
            }
            fn bench(
                &mut self,
                h: u32,
                _reference: Option<u32>,
                l: &BenchLimits,
            ) -> Result<BenchStats, ClientError> {
                self.0.bench(h, None, l)
            }
            fn unload(&mut self, h: u32) -> Result<(), ClientError> {
                self.0.unload(h)
            }
        }
        let mut deaf = Deaf(Fake::steady(1.0));
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
