//! How a latency is measured so that noise does not decide it: the settings
//! a table records in its header ([`NoiseSettings`]), their checks, the
//! machine's quiet sensor level learned as a profile goes (a plain value,
//! `sensor_floor_ms`, which whoever runs the measurements lowers: no state
//! shared behind the settings), and what the sensor gate kept of one
//! measurement ([`QuietRuns`]).
//!
//! A leaf of `latency/`: `measure` applies these settings, `table` stores
//! them; neither is needed to read them.

use padnas_agent::proto::BenchLimits;
use serde::{Deserialize, Serialize};

use super::LatencyError;
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
    /// the measurements so far (the lowest of their own levels, see
    /// [`Measured::learned_floor_ms`](super::measure::Measured::learned_floor_ms)),
    /// which whoever runs the measurements lowers with
    /// [`NoiseSettings::lower_sensor_floor`]; stored so that `validate` gates
    /// networks against the level the table's blocks were gated against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_floor_ms: Option<f64>,
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

/// With the gate, the agent reads the sensor about this often (ms of the
/// model's runs between two readings): rarely enough that the reading and
/// the untimed run after it add little to a small block's time, often
/// enough that a reading still describes the runs next to it (the state of
/// the VM measured held for seconds).
pub(super) const SENSOR_BRACKET_MS: f64 = 10.0;

/// Fewest sensor readings whose 5th percentile is taken for a quiet level.
const FLOOR_MIN_READINGS: usize = 20;

/// The 5th percentile of the readings, once there are enough of them.
pub(super) fn low_level(readings: &[f64]) -> Option<f64> {
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
            sensor_floor_ms: None,
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

    /// Lowers the quiet level to `ms` when that is lower (a quieter spell
    /// than any seen before); `None` or a non-positive value changes nothing.
    pub fn lower_sensor_floor(&mut self, ms: Option<f64>) {
        if let Some(ms) = ms.filter(|m| m.is_finite() && *m > 0.0)
            && self.sensor_floor_ms.is_none_or(|l| ms < l)
        {
            self.sensor_floor_ms = Some(ms);
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
