//! `padnas latency …`: use and check latency tables.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use crate::cmd::profile::{link_for, progress_bar};
use crate::files::write_atomic;
use crate::latency::noise::check_passes;
use crate::latency::predict::{predict, space_from_header};
use crate::latency::table::{Calibration, Header, Table};
use crate::latency::validate::{Progress, calibration_helps, plot_svg, sample, validate};
use crate::latency::{LatencyError, now_rfc3339};
use crate::session;
use crate::space::Space;
use crate::target::Target;

/// `padnas latency` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LatencyCmd {
    /// Predict an architecture's latency from a table; prints one JSON line.
    Predict(PredictArgs),
    /// Measure random whole networks on the target, compare them with the
    /// table, fit a bias correction; prints one JSON line.
    Validate(ValidateArgs),
}

/// Arguments of `padnas latency predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Latency table (JSON).
    #[arg(long)]
    pub table: PathBuf,
    /// Architecture: one op per searchable layer, e.g. `k3e1,k5e6,id,…`.
    #[arg(long, short)]
    pub arch: String,
    /// Space YAML [default: the space recorded in the table, if unchanged].
    #[arg(long, short)]
    pub space: Option<PathBuf>,
}

/// Arguments of `padnas latency validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Target name under the targets directory, or a path to a target YAML.
    #[arg(long, short)]
    pub target: String,
    /// Directory of target files.
    #[arg(long, default_value = "targets")]
    pub targets_dir: PathBuf,
    /// Latency table (JSON) built on the same target. Read only, unless
    /// --store-calibration.
    #[arg(long)]
    pub table: PathBuf,
    /// Random networks to measure.
    #[arg(long, short = 'n')]
    pub samples: usize,
    /// Network `i` is drawn (ops and weights) with seed `seed + i`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Space YAML [default: the space recorded in the table, if unchanged].
    #[arg(long, short)]
    pub space: Option<PathBuf>,
    /// Scatter plot (SVG) [default: beside the report, `.svg` for `.json`].
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Report (JSON) [default: beside the table, named by seed, sample count
    /// and date, `<table>.validation-s<SEED>-n<N>-<YYYY-MM-DD>.json`, so a
    /// check never replaces an earlier report].
    #[arg(long, alias = "out")]
    pub report: Option<PathBuf>,
    /// Sweeps over the networks, each network standing for its fastest
    /// visit [default: the table's `noise.passes`, so that networks are
    /// measured as its entries were].
    #[arg(long)]
    pub passes: Option<u32>,
    /// Do not fit a calibration at all (the table is left as it is either way
    /// without --store-calibration).
    #[arg(long, conflicts_with = "store_calibration")]
    pub no_calibrate: bool,
    /// Store the fitted calibration in the table's header (when it helps:
    /// its leave-one-out error beats the raw one), replacing the stored one.
    /// Without it a validation changes nothing it did not create.
    #[arg(long)]
    pub store_calibration: bool,
    /// Fresh sessions to try, in a row, when the device drops.
    #[arg(long, default_value_t = 2)]
    pub reconnects: u32,
}

/// Runs a `latency` subcommand.
pub fn run(cmd: &LatencyCmd) -> anyhow::Result<()> {
    match cmd {
        LatencyCmd::Predict(a) => run_predict(a),
        LatencyCmd::Validate(a) => run_validate(a),
    }
}

fn space_for(
    table: &Table,
    table_path: &Path,
    given: Option<&Path>,
) -> Result<(Space, PathBuf), LatencyError> {
    match given {
        Some(p) => Ok((Space::load(p)?, p.to_path_buf())),
        None => space_from_header(table, table_path),
    }
}

fn run_predict(a: &PredictArgs) -> anyhow::Result<()> {
    let table = Table::load(&a.table)?;
    let (space, _) = space_for(&table, &a.table, a.space.as_deref())?;
    let arch = space.parse_arch(&a.arch)?;
    let p = predict(&table, &a.table, &space, &arch)?;
    let line = json!({
        "arch": arch.to_string(),
        "predicted_ms": p.predicted_ms,
        "calibrated_ms": p.calibrated_ms,
        "blocks": p.blocks,
        "target": table.header.target,
        "label": table.header.label,
        "emulated": table.header.emulated,
        "threads": table.header.threads,
    });
    println!("{line}");
    Ok(())
}

/// `dir/stem.json` → `dir/stem.<suffix>`.
fn beside(table: &Path, suffix: &str) -> PathBuf {
    let stem = table
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "table".into());
    table.with_file_name(format!("{stem}.{suffix}"))
}

fn run_validate(a: &ValidateArgs) -> anyhow::Result<()> {
    if a.samples == 0 {
        return Err(LatencyError::InvalidArgument("--samples must be at least 1".into()).into());
    }
    let mut table = Table::load(&a.table)?;
    let (space, space_path) = space_for(&table, &a.table, a.space.as_deref())?;
    let target = Target::resolve(&a.target, &a.targets_dir)?;
    let command: Vec<String> = std::env::args().collect();
    let first = session::open(&target)?;
    let now = Header::for_session(
        &target,
        &first.info,
        table.header.noise.clone(),
        command.clone(),
    );
    // Networks must run where the table was measured, or the comparison says nothing.
    table.check_compatible(&now, &a.table)?;
    let passes = check_passes(a.passes.unwrap_or(table.header.noise.passes))
        .map_err(|m| LatencyError::InvalidArgument(format!("--passes {m}")))?;
    let archs = sample(&space, a.samples, a.seed);
    let runs_name = format!("validation-s{}-n{}", a.seed, a.samples);
    let report_path = a.report.clone().unwrap_or_else(|| {
        let date = now_rfc3339().chars().take(10).collect::<String>();
        beside(&a.table, &format!("{runs_name}-{date}.json"))
    });
    // What was measured so far lives beside the report until the report is
    // written, so a killed validation resumes instead of starting over (on
    // another day too: the default progress file is not named by date).
    let partial = match &a.report {
        Some(r) => r.with_extension("partial.json"),
        None => beside(&a.table, &format!("{runs_name}.partial.json")),
    };
    let space_hash = space.hash();
    let done = match std::fs::read_to_string(&partial) {
        Ok(text) => match serde_json::from_str::<Progress>(&text) {
            Ok(p)
                if p.matches(
                    &table.header.label,
                    &table.header.agent_version,
                    &space_hash,
                    a.seed,
                    archs.len(),
                ) =>
            {
                let visits: usize = p.rows.iter().flatten().map(|r| r.visits()).sum();
                tracing::info!(
                    "resuming the validation in {}: {visits} visit(s) already measured",
                    partial.display()
                );
                p.rows
            }
            Ok(_) => {
                tracing::warn!(
                    "{} is from a validation with other settings (target, agent, space, seed \
                     or sample count); starting afresh, it will be overwritten",
                    partial.display()
                );
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(
                    "{} is unreadable ({e}); starting afresh, it will be overwritten",
                    partial.display()
                );
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    };
    let progress = progress_bar((archs.len() * passes as usize) as u64);
    let mut link = link_for(&target, first, a.reconnects);
    let (label, agent_version) = (
        table.header.label.clone(),
        table.header.agent_version.clone(),
    );
    let mut save = |rows: &[Option<crate::latency::validate::Row>]| {
        let p = Progress {
            label: label.clone(),
            agent_version: agent_version.clone(),
            space_hash: space_hash.clone(),
            seed: a.seed,
            rows: rows.to_vec(),
        };
        let text = serde_json::to_string(&p).map_err(|e| LatencyError::Io {
            path: partial.clone(),
            action: "serialise the validation progress for",
            cause: std::io::Error::other(e),
        })?;
        Ok(write_atomic(&partial, text.as_bytes())?)
    };
    let result = validate(
        &table,
        &a.table,
        &space,
        &archs,
        &mut link,
        &target.bench,
        passes,
        done,
        &mut save,
        &progress,
    );
    progress.finish_and_clear();
    link.shutdown();
    let v = result.with_context(|| {
        format!(
            "validation stopped; what was measured is kept in {}: run the same command again \
             to resume",
            partial.display()
        )
    })?;
    let plot_path = a
        .plot
        .clone()
        .unwrap_or_else(|| report_path.with_extension("svg"));
    let title = format!(
        "{} ({} thread(s)): {} random networks of {}",
        table.header.label,
        table.header.threads,
        v.rows.len(),
        space.name().unwrap_or("the space")
    );
    plot_svg(&v, &plot_path, &title)?;
    // Decide on the calibration first so the report records the verdict.
    let helps = calibration_helps(&v);
    // A stored calibration fitted on more networks is only replaced when
    // asked, and then said so.
    let earlier_n = table.header.calibration.as_ref().map(|c| c.n);
    let replaces_larger = earlier_n
        .filter(|&n| n > v.rows.len())
        .map(|n| {
            format!(
                "; it replaces the calibration fitted on {n} networks with one fitted on {}",
                v.rows.len()
            )
        })
        .unwrap_or_default();
    let calibration_note = match (&v.fit, &v.calibrated_loo) {
        _ if a.no_calibrate => "not fitted (--no-calibrate); table left as it was".to_string(),
        (Some(_), Some(loo)) if !a.store_calibration => format!(
            "fitted, not stored (pass --store-calibration to store it): leave-one-out MAPE \
             {:.2}% vs raw {:.2}%; the table is left as it was",
            loo.mape * 100.0,
            v.raw.mape * 100.0
        ),
        (Some(_), Some(loo)) if helps => format!(
            "stored: leave-one-out MAPE {:.2}% < raw {:.2}%{replaces_larger}",
            loo.mape * 100.0,
            v.raw.mape * 100.0
        ),
        (Some(_), Some(loo)) => format!(
            "not stored, and any earlier calibration removed: leave-one-out MAPE {:.2}% >= raw \
             {:.2}%, so the fit does not generalise",
            loo.mape * 100.0,
            v.raw.mape * 100.0
        ),
        _ => "not fitted: fewer than 4 networks".to_string(),
    };
    // With a reference block, `raw` compares ratio × scale on both sides;
    // `without_reference` is the same comparison on plain medians.
    let reference = table
        .header
        .noise
        .reference_block
        .map(|k| json!({"block": k.to_string(), "scale_ms": table.reference_scale_ms()}));
    // With the sensor gate: its setting, the quiet level the networks were
    // judged against, and how many networks found no quiet run in time.
    let sensor_gate = table.header.noise.sensor_gate_pct.map(|pct| {
        json!({
            "pct": pct,
            "floor_ms": table.header.noise.sensor_floor_ms,
            "networks_without_quiet_runs": v
                .rows
                .iter()
                .filter(|r| r.quiet.as_ref().is_some_and(|q| !q.found))
                .count(),
        })
    });
    let report = json!({
        "format": "padnas-latency-validation",
        "created": now_rfc3339(),
        "command": command,
        "table": a.table.display().to_string(),
        "target": table.header.target,
        "label": table.header.label,
        "emulated": table.header.emulated,
        "threads": table.header.threads,
        "agent_version": table.header.agent_version,
        "tract_version": table.header.tract_version,
        "space": {"name": space.name(), "hash": space.hash(), "path": space_path.display().to_string()},
        "seed": a.seed,
        "samples": a.samples,
        "passes": passes,
        "sensor_gate": sensor_gate,
        "seconds": v.seconds,
        "raw": v.raw,
        "reference": reference,
        "without_reference": v.without_reference,
        "repeatability": v.repeatability,
        "calibrated_loo": v.calibrated_loo,
        "calibration": v.fit,
        "calibration_note": calibration_note,
        "plot": plot_path.display().to_string(),
        "rows": v.rows,
    });
    let text = serde_json::to_string_pretty(&report).context("serialising the report")? + "\n";
    write_atomic(&report_path, text.as_bytes())?;
    // The report now holds every row.
    if let Err(e) = std::fs::remove_file(&partial) {
        tracing::warn!("could not remove {}: {e}", partial.display());
    }

    let mut stored = false;
    if a.store_calibration && v.fit.is_some() {
        if !replaces_larger.is_empty() && helps {
            tracing::warn!("--store-calibration{replaces_larger}");
        }
        // Re-read so a profile that resumed meanwhile is not overwritten
        // with the copy loaded before the measurements.
        let mut fresh = Table::load(&a.table)?;
        fresh.header.calibration = match (v.fit, &v.calibrated_loo) {
            (Some(fit), Some(loo)) if helps => {
                stored = true;
                Some(Calibration {
                    fit,
                    n: v.rows.len(),
                    fitted_at: now_rfc3339(),
                    space_hash: space.hash(),
                    loo_mape: loo.mape,
                    loo_within_5pct: loo.within_5pct,
                    loo_within_10pct: loo.within_10pct,
                    report: Some(report_path.display().to_string()),
                })
            }
            _ => None,
        };
        fresh.header.updated = now_rfc3339();
        fresh.save(&a.table)?;
        table = fresh;
    }
    let line = json!({
        "n": v.raw.n,
        "passes": passes,
        "sensor_gate": sensor_gate,
        "within_5pct": v.raw.within_5pct,
        "within_10pct": v.raw.within_10pct,
        "mape": v.raw.mape,
        "bias": v.raw.bias,
        "spearman": v.raw.spearman,
        "reference": reference,
        "without_reference": v.without_reference,
        "repeatability": v.repeatability,
        "calibrated_loo": v.calibrated_loo,
        "calibration": v.fit,
        "calibration_stored": stored,
        "calibration_note": calibration_note,
        "target": table.header.target,
        "label": table.header.label,
        "seconds": v.seconds,
        "report": report_path.display().to_string(),
        "plot": plot_path.display().to_string(),
    });
    println!("{line}");
    Ok(())
}
