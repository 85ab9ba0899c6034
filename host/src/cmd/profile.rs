//! `padnas profile`: build (or resume) a latency table for a space on a target.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::latency::LatencyError;
use crate::latency::profile::{BlockFormat, default_table_path, profile, session_record};
use crate::latency::table::{Header, SpaceRef, Table};
use crate::latency::{AgentLink, Connection, NoiseSettings};
use crate::session;
use crate::space::{BlockKey, Space};
use crate::target::Target;

/// Arguments of `padnas profile`.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Target name under the targets directory, or a path to a target YAML.
    #[arg(long, short)]
    pub target: String,
    /// Directory of target files.
    #[arg(long, default_value = "targets")]
    pub targets_dir: PathBuf,
    /// Search space YAML whose blocks (plus stem and head) are measured.
    #[arg(long, short)]
    pub space: PathBuf,
    /// Table file [default: <tables-dir>/<target>-<cpu>/<space>.json, or
    /// <tables-dir>/emulated/<target>/<space>.json for emulated targets].
    /// An existing table for the same target is resumed.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Root of the default table location.
    #[arg(long, default_value = "latency-tables")]
    pub tables_dir: PathBuf,
    /// Pooled timed runs per entry at most [default: 4 × the target's bench.max_runs].
    #[arg(long)]
    pub max_runs: Option<u32>,
    /// Stop measuring an entry once the 95% confidence half-width of its
    /// median is below this many percent.
    #[arg(long, default_value_t = ProfileOptions::default().ci_pct)]
    pub ci_pct: f64,
    /// Re-measure the sentinel block every this many entries (0: never).
    #[arg(long, default_value_t = ProfileOptions::default().sentinel_every)]
    pub sentinel_every: usize,
    /// Sentinel change (%) that is flagged as drift.
    #[arg(long, default_value_t = ProfileOptions::default().drift_pct)]
    pub drift_pct: f64,
    /// Fresh sessions to try, in a row, when the device drops.
    #[arg(long, default_value_t = ProfileOptions::default().reconnects)]
    pub reconnects: u32,
    /// Benchmark every block run for run against this reference block and
    /// store the ratios (for machines whose speed changes every few
    /// seconds: VMs, boards without a fixed clock). Without a value:
    /// the default reference block. Fixed for the life of a table.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_REFERENCE, value_name = "BLOCK")]
    pub reference: Option<BlockKey>,
    /// Sweeps over the block list; an entry stands for its fastest visit.
    /// More than one for a machine slowed from outside for seconds at a
    /// time (a shared VM); rerun with a higher count to add visits to a
    /// finished table.
    #[arg(long, default_value_t = ProfileOptions::default().passes)]
    pub passes: u32,
    /// Time the agent's contention sensor around every run and keep only
    /// the runs whose readings are within this many % of the machine's
    /// quiet reading (for a machine slowed from outside for seconds at a
    /// time: a shared VM). `latency validate` measures networks the same
    /// way. Fixed for the life of a table; needs agent protocol 1.2.
    #[arg(long, value_name = "PCT", conflicts_with = "reference")]
    pub sensor_gate: Option<f64>,
}

/// The reference block `--reference` uses without a value: small enough
/// (about 0.2 ms here, 150 kB of activations) to add little time and to
/// leave the measured block's data in cache, big enough to time well.
pub const DEFAULT_REFERENCE: &str = "mbconv:k3e3:in16x28x28:out16:s1";

/// A progress bar with an ETA on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A [`AgentLink`] to `target` starting on `first`; reconnections open fresh sessions.
pub fn link_for<'a>(target: &Target, first: session::Session, reconnects: u32) -> AgentLink<'a> {
    let stop = session::spawns_agent(target);
    let target = target.clone();
    let connect = move || {
        let s = session::open(&target)?;
        Ok(Connection {
            device: Box::new(s.client),
            info: s.info,
        })
    };
    AgentLink::new(
        Connection {
            device: Box::new(first.client),
            info: first.info,
        },
        Box::new(connect),
        reconnects,
    )
    .with_stop_agent(stop)
}

/// Runs `padnas profile`.
pub fn run(a: &ProfileArgs) -> anyhow::Result<()> {
    let target = Target::resolve(&a.target, &a.targets_dir)?;
    let space = Space::load(&a.space)?;
    let opts = ProfileOptions {
        max_runs: a.max_runs,
        ci_pct: a.ci_pct,
        sentinel_every: a.sentinel_every,
        drift_pct: a.drift_pct,
        reconnects: a.reconnects,
        reference: a.reference,
        passes: a.passes,
        sensor_gate_pct: a.sensor_gate,
    };
    let (_, summary) = profile_space(
        &target,
        &space,
        &a.space,
        a.out.clone(),
        &a.tables_dir,
        &opts,
    )?;
    println!(
        "{}",
        serde_json::to_string(&summary).context("printing the summary")?
    );
    Ok(())
}

/// Measurement settings of [`profile_space`] (see [`ProfileArgs`]).
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    /// Pooled runs per entry at most (default 4 × the target's `bench.max_runs`).
    pub max_runs: Option<u32>,
    /// Target 95% half-width of an entry's median (%).
    pub ci_pct: f64,
    /// Sentinel interval (entries; 0 never).
    pub sentinel_every: usize,
    /// Drift threshold (%).
    pub drift_pct: f64,
    /// Reconnections in a row.
    pub reconnects: u32,
    /// Reference block for a new table (see [`ProfileArgs::reference`]).
    pub reference: Option<BlockKey>,
    /// Sweeps over the block list (see [`ProfileArgs::passes`]).
    pub passes: u32,
    /// Sensor gate for a new table (see [`ProfileArgs::sensor_gate`]).
    pub sensor_gate_pct: Option<f64>,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            max_runs: None,
            ci_pct: 2.0,
            sentinel_every: 10,
            drift_pct: 5.0,
            reconnects: 2,
            reference: None,
            passes: 1,
            sensor_gate_pct: None,
        }
    }
}

/// Measures the blocks of `space` (read from `space_path`) that `out` (or the
/// default table of the target's CPU under `tables_dir`) lacks, resuming a
/// table that exists. Returns the table's path and what was done.
pub fn profile_space(
    target: &Target,
    space: &Space,
    space_path: &std::path::Path,
    out: Option<PathBuf>,
    tables_dir: &std::path::Path,
    o: &ProfileOptions,
) -> anyhow::Result<(PathBuf, crate::latency::profile::ProfileSummary)> {
    let max_runs = o
        .max_runs
        .unwrap_or_else(|| target.bench.max_runs.saturating_mul(4));
    let mut noise = NoiseSettings {
        sentinel_every: o.sentinel_every,
        sentinel_block: Some(space.stem_block()),
        drift_threshold_pct: o.drift_pct,
        reference_block: o.reference,
        passes: o.passes,
        sensor_gate_pct: o.sensor_gate_pct,
        ..NoiseSettings::from_limits(&target.bench, o.ci_pct, max_runs)
    };
    noise.check()?;
    let command: Vec<String> = std::env::args().collect();
    let first = session::open(target)?;
    let info = first.info.clone();
    let space_name = space
        .name()
        .map(str::to_string)
        .or_else(|| {
            space_path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "space".to_string());
    let out = out.unwrap_or_else(|| default_table_path(tables_dir, target, &info, &space_name));
    let now = Header::for_session(target, &info, noise.clone(), command.clone());
    let mut table = if out.exists() {
        let t = Table::load(&out)?;
        t.check_compatible(&now, &out)?;
        tracing::info!("resuming {} ({} entries)", out.display(), t.entries.len());
        t
    } else {
        Table::new(now)
    };
    // Drift is always judged against the table's first sentinel, so a
    // resumed table keeps its sentinel block; the other settings are this
    // run's (every entry records its own runs and interval anyway).
    // The reference block is the table's unit: a table keeps the one it
    // was started with, and one without cannot gain one (nor the reverse)
    // once it holds entries.
    let kept = table.header.noise.reference_block;
    let reference_block = match (kept, noise.reference_block) {
        (Some(k), Some(r)) if k != r => {
            return Err(LatencyError::Mismatch {
                path: out.clone(),
                field: "reference_block",
                table: k.to_string(),
                now: r.to_string(),
            }
            .into());
        }
        (None, Some(r)) if !table.entries.is_empty() => {
            return Err(LatencyError::Mismatch {
                path: out.clone(),
                field: "reference_block",
                table: "none".to_string(),
                now: r.to_string(),
            }
            .into());
        }
        (k, r) => k.or(r),
    };
    // The sensor gate decides what an entry stands for, so it is fixed for
    // the life of a table too; the quiet level a table learned is kept.
    let kept_gate = table.header.noise.sensor_gate_pct;
    if !table.entries.is_empty() && kept_gate != noise.sensor_gate_pct {
        let show = |g: Option<f64>| g.map_or_else(|| "none".to_string(), |g| format!("{g}%"));
        return Err(LatencyError::Mismatch {
            path: out.clone(),
            field: "sensor_gate_pct",
            table: show(kept_gate),
            now: show(noise.sensor_gate_pct),
        }
        .into());
    }
    noise.lower_sensor_floor(table.header.noise.sensor_floor_ms);
    table.header.noise = NoiseSettings {
        sentinel_block: table.header.noise.sentinel_block.or(noise.sentinel_block),
        reference_block,
        ..noise
    };
    let here = SpaceRef::new(space, Some(space_path));
    table.header.spaces.retain(|s| s.hash != here.hash);
    table.header.spaces.push(here);
    let before = table.entries.len();
    table
        .header
        .sessions
        .push(session_record(&info, &command, false, before));
    table.save(&out)?;

    let blocks: Vec<BlockKey> = space.unique_blocks().into_iter().collect();
    tracing::info!(
        "profiling {} blocks of {} on {} ({}) into {}",
        blocks.len(),
        space_name,
        target.name,
        table.header.label,
        out.display()
    );
    let progress = progress_bar(blocks.len() as u64);
    let mut link = link_for(target, first, o.reconnects);
    let format = if target.is_mcu() {
        BlockFormat::Int8
    } else {
        BlockFormat::Onnx
    };
    let result = profile(
        &mut table,
        &out,
        &blocks,
        format,
        &target.bench,
        &mut link,
        &command,
        &progress,
    );
    progress.finish_and_clear();
    link.shutdown();
    let summary = result?;
    if summary.drift_detected {
        tracing::warn!("{}: drift was detected; see its sentinels", out.display());
    }
    Ok((out, summary))
}
