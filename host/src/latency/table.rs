//! The latency table file: a provenance header, one entry per block key,
//! sentinel records; read with clear errors, written atomically.
//!
//! ```json
//! { "format": "padnas-latency-table", "format_version": 1,
//!   "header": { "target": "local", "emulated": false, "label": "AMD EPYC (2 cores, x86_64)",
//!               "threads": 1, "agent_version": "0.1.0", "tract_version": "0.23.9", … },
//!   "drift_detected": false,
//!   "sentinels": [ { "after_entries": 0, "median_ms": 1.93, "drift_pct": 0.0, … } ],
//!   "entries": { "mbconv:k3e6:in24x56x56:out40:s2": { "median_ms": 2.41, "p10_ms": 2.38, … } } }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use padnas_agent::proto::AgentInfo;
use serde::{Deserialize, Serialize};

use super::LatencyError;
use super::measure::Measured;
use super::noise::NoiseSettings;
use super::stats::LinearFit;
use crate::session::measurement_label;
use crate::space::{BlockKey, Space};
use crate::target::Target;

/// Value of the `format` field.
pub const FORMAT: &str = "padnas-latency-table";
/// Current format version; a reader refuses newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// A latency table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Where, how and with what the entries were measured.
    pub header: Header,
    /// Whether any sentinel drifted past the threshold: entries measured
    /// around then may be off by about that much.
    pub drift_detected: bool,
    /// Re-measurements of the sentinel block, in order.
    #[serde(default)]
    pub sentinels: Vec<SentinelRecord>,
    /// One entry per block, keyed by the block's canonical text.
    pub entries: BTreeMap<BlockKey, Entry>,
}

/// Provenance of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Target name (`targets/<name>.yaml`).
    pub target: String,
    /// Measured under emulation (qemu): never device latency.
    pub emulated: bool,
    /// Human label of what measured (CPU, or *emulated …*).
    pub label: String,
    /// Rust triple of the agent.
    pub triple: String,
    /// Transport used, as in the target file.
    pub transport: String,
    /// CPU model the agent reported.
    pub cpu: String,
    /// Logical cores the agent reported.
    pub cores: u32,
    /// Agent's architecture.
    pub arch: String,
    /// Agent's OS.
    pub os: String,
    /// Threads of tract's matmul.
    pub threads: u32,
    /// CPU the benchmark thread was pinned to, if any.
    pub pin_cpu: Option<usize>,
    /// `padnas-agent` version.
    pub agent_version: String,
    /// tract version the agent was built with.
    pub tract_version: String,
    /// Wire protocol, `major.minor`.
    pub protocol: String,
    /// cpufreq governor at the first session, where reported.
    pub governor: Option<String>,
    /// CPU 0 frequency at the first session (kHz), where reported.
    pub cur_freq_khz: Option<u64>,
    /// Temperature at the first session (°C), where reported.
    pub temperature_c: Option<f64>,
    /// `padnas` version that created the table.
    pub padnas_version: String,
    /// Command line that created the table.
    pub command: Vec<String>,
    /// When the table was created (RFC 3339, UTC).
    pub created: String,
    /// When the table was last written (RFC 3339, UTC).
    pub updated: String,
    /// Spaces profiled into this table, first one first.
    pub spaces: Vec<SpaceRef>,
    /// How entries were measured.
    pub noise: NoiseSettings,
    /// Every session that measured into this table (resumes, reconnects).
    #[serde(default)]
    pub sessions: Vec<SessionRecord>,
    /// Bias correction fitted by `padnas latency validate`, if run.
    #[serde(default)]
    pub calibration: Option<Calibration>,
}

/// A space profiled into a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceRef {
    /// The space's name, if it has one.
    pub name: Option<String>,
    /// [`Space::hash`].
    pub hash: String,
    /// The space file as given on the command line.
    pub path: Option<String>,
}

impl SpaceRef {
    /// A reference to `space`, read from `path`.
    pub fn new(space: &Space, path: Option<&Path>) -> SpaceRef {
        SpaceRef {
            name: space.name().map(str::to_string),
            hash: space.hash(),
            path: path.map(|p| p.display().to_string()),
        }
    }
}

/// One session with the agent that measured into the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// When it started.
    pub started: String,
    /// Command line of the run.
    pub command: Vec<String>,
    /// Whether it replaced a session that dropped.
    pub reconnect: bool,
    /// Entries in the table when it started.
    pub entries_before: usize,
    /// cpufreq governor the agent reported.
    pub governor: Option<String>,
    /// CPU 0 frequency the agent reported (kHz).
    pub cur_freq_khz: Option<u64>,
    /// Temperature the agent reported (°C).
    pub temperature_c: Option<f64>,
}

/// Latency of one block, pooled over benchmark rounds. All times in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Median of the pooled samples.
    pub median_ms: f64,
    /// 10th percentile.
    pub p10_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Sample standard deviation.
    pub stddev_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
    /// Timed runs pooled.
    pub runs: u32,
    /// Benchmark rounds they came in.
    pub rounds: u32,
    /// Half-width of the 95% distribution-free confidence interval of the
    /// median, in % of the median; `None` with too few runs for one.
    pub ci95_halfwidth_pct: Option<f64>,
    /// Whether the half-width reached the target before the run cap (the
    /// ratio's half-width, in a table with a reference block).
    pub converged: bool,
    /// Load and optimisation time on the agent.
    pub load_ms: f64,
    /// When it was measured (RFC 3339, UTC).
    pub measured_at: String,
    /// With a reference block: median of the per-pair ratios block / reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// With a reference block: 95% half-width of `ratio`, in % of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_ci95_halfwidth_pct: Option<f64>,
    /// With a reference block: the reference's median during this entry (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_median_ms: Option<f64>,
    /// With the sensor gate (`noise.sensor_gate_pct`): how many runs were
    /// quiet, against which level, and whether any was; the statistics
    /// above are those of the quiet runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<super::noise::QuietRuns>,
    /// In a profile of several passes (`noise.passes`): the median of every
    /// visit, in the order measured. The other fields are those of the
    /// fastest visit. Empty in a one-pass table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_medians_ms: Vec<f64>,
}

impl Entry {
    /// Visits measured so far (an entry of a one-pass table has one).
    pub fn visits(&self) -> usize {
        self.visit_medians_ms.len().max(1)
    }

    /// What decides which visit is the faster: a visit in which the sensor
    /// gate found quiet runs beats one in which it found none; then the
    /// ratio to the reference block in a table with one, else the median.
    fn speed_key(&self) -> (bool, f64) {
        super::noise::QuietRuns::visit_key(
            self.quiet.as_ref(),
            self.ratio.unwrap_or(self.median_ms),
        )
    }

    /// This entry with one more visit: the faster of the two supplies the
    /// statistics, and the visit list grows.
    pub fn with_visit(self, visit: Entry) -> Entry {
        let mut medians = if self.visit_medians_ms.is_empty() {
            vec![self.median_ms]
        } else {
            self.visit_medians_ms.clone()
        };
        medians.push(visit.median_ms);
        let mut best = if visit.speed_key() < self.speed_key() {
            visit
        } else {
            self
        };
        best.visit_medians_ms = medians;
        best
    }
}

/// One re-measurement of the sentinel block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SentinelRecord {
    /// Entries in the table when it was measured.
    pub after_entries: usize,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Median of the sentinel.
    pub median_ms: f64,
    /// Confidence half-width, as for entries.
    pub ci95_halfwidth_pct: Option<f64>,
    /// Change relative to the table's first sentinel record, in %.
    pub drift_pct: f64,
    /// Whether |drift_pct| exceeds the threshold in the header.
    pub drift: bool,
}

/// A bias correction of the additive prediction, fitted on whole networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `measured ≈ intercept_ms + slope · predicted`.
    #[serde(flatten)]
    pub fit: LinearFit,
    /// Networks it was fitted on.
    pub n: usize,
    /// When it was fitted (RFC 3339, UTC).
    pub fitted_at: String,
    /// Space hash of the networks it was fitted on.
    pub space_hash: String,
    /// Leave-one-out mean absolute percentage error (fraction).
    pub loo_mape: f64,
    /// Leave-one-out share within ±5%.
    pub loo_within_5pct: f64,
    /// Leave-one-out share within ±10%.
    pub loo_within_10pct: f64,
    /// The validation report it came from.
    pub report: Option<String>,
}

impl Header {
    /// The header of a table measured now on `target` through an agent that
    /// said `info`, with `noise` settings, by `command`.
    pub fn for_session(
        target: &Target,
        info: &AgentInfo,
        noise: NoiseSettings,
        command: Vec<String>,
    ) -> Header {
        let now = super::now_rfc3339();
        Header {
            target: target.name.clone(),
            emulated: target.emulated(),
            label: measurement_label(target, info),
            triple: target.triple.clone(),
            transport: target.transport.to_string(),
            cpu: info.cpu.clone(),
            cores: info.cores,
            arch: info.arch.clone(),
            os: info.os.clone(),
            threads: target.threads,
            pin_cpu: target.pin_cpu,
            agent_version: info.agent_version.clone(),
            tract_version: info.tract_version.clone(),
            protocol: format!("{}.{}", info.protocol, info.protocol_minor),
            governor: info.governor.clone(),
            cur_freq_khz: info.cur_freq_khz,
            temperature_c: info.temperature_c,
            padnas_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            created: now.clone(),
            updated: now,
            spaces: Vec::new(),
            noise,
            sessions: Vec::new(),
            calibration: None,
        }
    }
}

impl Table {
    /// An empty table with `header`.
    pub fn new(header: Header) -> Table {
        Table {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            header,
            drift_detected: false,
            sentinels: Vec::new(),
            entries: BTreeMap::new(),
        }
    }

    /// Reads a table; every error names the file.
    pub fn load(path: &Path) -> Result<Table, LatencyError> {
        let bytes = fs::read(path).map_err(|source| LatencyError::Io {
            path: path.to_path_buf(),
            action: "read",
            cause: source,
        })?;
        // Check the format before the full schema so a newer table says so
        // instead of failing on whatever field changed.
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            format_version: Option<u32>,
        }
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|source| LatencyError::Parse {
                path: path.to_path_buf(),
                cause: source,
            })?;
        let format_err = |message: String| LatencyError::Format {
            path: path.to_path_buf(),
            message,
        };
        match probe.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(format_err(format!(
                    "format is {other:?}, expected {FORMAT:?}"
                )));
            }
            None => return Err(format_err(format!("no \"format\" field: not a {FORMAT}"))),
        }
        match probe.format_version {
            Some(v) if v <= FORMAT_VERSION => {}
            Some(v) => {
                return Err(format_err(format!(
                    "format_version {v} is newer than this padnas reads ({FORMAT_VERSION}); update padnas"
                )));
            }
            None => return Err(format_err("no \"format_version\" field".to_string())),
        }
        let table: Table =
            serde_json::from_slice(&bytes).map_err(|source| LatencyError::Parse {
                path: path.to_path_buf(),
                cause: source,
            })?;
        let referenced = table.header.noise.reference_block.is_some();
        for (key, e) in &table.entries {
            let ok = [e.median_ms, e.p10_ms, e.p90_ms]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0);
            if !ok {
                return Err(format_err(format!(
                    "entry {key}: latencies must be finite and ≥ 0"
                )));
            }
            // Mixing entries with and without a ratio would mix units.
            let positive = |v: Option<f64>| v.is_some_and(|v| v.is_finite() && v > 0.0);
            if referenced && !(positive(e.ratio) && positive(e.reference_median_ms)) {
                return Err(format_err(format!(
                    "entry {key}: the table has a reference block, so every entry needs a \
                     positive ratio and reference_median_ms"
                )));
            }
        }
        Ok(table)
    }

    /// Writes the table atomically: a temporary file in the same directory,
    /// fsynced, renamed over `path`, then the directory fsynced. A kill at
    /// any moment leaves either the old or the new table, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), LatencyError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| LatencyError::Io {
            path: path.to_path_buf(),
            action: "serialise the table for",
            cause: std::io::Error::other(e),
        })?;
        text.push('\n');
        Ok(crate::files::write_atomic(path, text.as_bytes())?)
    }

    /// Measured median of `key`, if measured.
    pub fn median_ms(&self, key: &BlockKey) -> Option<f64> {
        self.entries.get(key).map(|e| e.median_ms)
    }

    /// The latency the table stands for: the median, or, in a table with a
    /// reference block, the block's ratio to the reference times
    /// [`Table::reference_scale_ms`]. Predictions and validations use this.
    pub fn latency_ms(&self, key: &BlockKey) -> Option<f64> {
        let e = self.entries.get(key)?;
        if self.header.noise.reference_block.is_some() {
            Some(e.ratio? * self.reference_scale_ms()?)
        } else {
            Some(e.median_ms)
        }
    }

    /// In a table with a reference block, the reference's latency that
    /// turns ratios into ms: the median over entries of the reference's
    /// median during each. It is one constant for every block, so it cancels
    /// out of predicted-vs-measured comparisons made with the same table; it
    /// only sets the absolute scale, as the typical speed seen while
    /// profiling.
    pub fn reference_scale_ms(&self) -> Option<f64> {
        self.header.noise.reference_block?;
        let mut v: Vec<f64> = self
            .entries
            .values()
            .filter_map(|e| e.reference_median_ms)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// Checks that this table was measured under the conditions of `now`
    /// (same target, threads, pinning, CPU, agent and tract): entries from
    /// two setups must never be mixed. The space may differ.
    pub fn check_compatible(&self, now: &Header, path: &Path) -> Result<(), LatencyError> {
        let t = &self.header;
        let mismatch = |field: &'static str, table: String, now: String| LatencyError::Mismatch {
            path: path.to_path_buf(),
            field,
            table,
            now,
        };
        let opt = |v: Option<usize>| v.map_or_else(|| "none".to_string(), |c| c.to_string());
        // The label carries what the agent said of itself beyond the CPU
        // (an unoptimised test build, for one): part of the setup too.
        let checks: [(&'static str, String, String); 9] = [
            ("target", t.target.clone(), now.target.clone()),
            ("label", t.label.clone(), now.label.clone()),
            ("threads", t.threads.to_string(), now.threads.to_string()),
            ("pin_cpu", opt(t.pin_cpu), opt(now.pin_cpu)),
            ("emulated", t.emulated.to_string(), now.emulated.to_string()),
            ("cpu", t.cpu.clone(), now.cpu.clone()),
            ("arch", t.arch.clone(), now.arch.clone()),
            (
                "agent_version",
                t.agent_version.clone(),
                now.agent_version.clone(),
            ),
            (
                "tract_version",
                t.tract_version.clone(),
                now.tract_version.clone(),
            ),
        ];
        for (field, a, b) in checks {
            if a != b {
                return Err(mismatch(field, a, b));
            }
        }
        Ok(())
    }
}

impl Entry {
    /// The entry for a measurement `m`, taken at `measured_at`.
    pub fn from_measured(m: &Measured, measured_at: String) -> Entry {
        let s = &m.summary;
        Entry {
            median_ms: s.median,
            p10_ms: s.p10,
            p90_ms: s.p90,
            mean_ms: s.mean,
            stddev_ms: s.stddev,
            min_ms: s.min,
            max_ms: s.max,
            runs: s.n as u32,
            rounds: m.rounds,
            ci95_halfwidth_pct: m.ci95_halfwidth_pct,
            converged: m.converged,
            load_ms: m.load_ms,
            measured_at,
            ratio: m.paired.as_ref().map(|p| p.ratio),
            ratio_ci95_halfwidth_pct: m.paired.as_ref().and_then(|p| p.ratio_ci95_halfwidth_pct),
            reference_median_ms: m.paired.as_ref().map(|p| p.reference_median_ms),
            quiet: m.quiet.clone(),
            visit_medians_ms: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
