//! The pipeline's rank steps: when a job config names a ground truth,
//! `rank-K` scores stage K's supernet against it (`rank/stage-K.json`), and
//! the report gets a section with τ per stage. Measuring and scoring live in
//! `truth.rs`; this is only the pipeline's use of them.

use std::path::{Path, PathBuf};

use super::job::Job;
use super::truth::{RESAMPLES, load_truth, score_weights};
use crate::files::write_atomic;
use crate::latency::stats::Correlation;
use crate::rank::Score;
use crate::search::OneShotSettings;
use crate::space::Space;

/// Where `padnas run` keeps stage `k`'s score: `rank/stage-K.json`.
pub fn rank_file(run: &Path, k: usize) -> PathBuf {
    run.join("rank").join(format!("stage-{k}.json"))
}

/// The pipeline's rank step: when the config names a ground truth, scores
/// stage `k`'s supernet (`weights`, of `space`) against it, once.
pub fn rank_stage(job: &Job, k: usize, space: &Space, weights: &Path) -> anyhow::Result<()> {
    let Some(r) = &job.cfg.rank else {
        return Ok(());
    };
    let out = rank_file(&job.run, k);
    if out.exists() {
        return Ok(());
    }
    let truth = load_truth(&r.truth, &job.full)?;
    let settings = OneShotSettings {
        bn_batches: r.bn_batches,
        batch_size: job.cfg.train.batch_size,
        val_samples: r.val_samples,
        seed: job.cfg.seed,
    };
    let s = score_weights(job, &truth, space, weights, &settings, 1, RESAMPLES)?;
    tracing::info!(
        "stage {k}: one-shot vs stand-alone over {} architectures: tau-b {}, ceiling {}",
        s.n,
        fmt_opt(s.all.kendall_tau_b),
        fmt_opt(s.ceiling.and_then(|c| c.kendall_tau_b))
    );
    std::fs::create_dir_all(out.parent().unwrap_or(&job.run))?;
    write_atomic(&out, serde_json::to_string_pretty(&s)?.as_bytes())?;
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("undefined".into(), |v| format!("{v:.3}"))
}

/// τ-b with its interval, as the report prints it.
fn fmt_tau(c: &Correlation) -> String {
    match (c.kendall_tau_b, c.kendall_ci95) {
        (Some(t), Some([lo, hi])) => format!("{t:.2} [{lo:.2}, {hi:.2}]"),
        (Some(t), None) => format!("{t:.2}"),
        _ => "–".into(),
    }
}

/// The report's rank-fidelity section: τ per stage; `None` when the run
/// scored no stage.
pub fn rank_report(job: &Job, stages: usize) -> Option<String> {
    let r = job.cfg.rank.as_ref()?;
    let mut md = format!(
        "## Rank fidelity\n\n\
         One-shot accuracy ({} BN batches, {} validation images) against the stand-alone \
         ground truth `{}`; Kendall's τ-b with its bootstrap 95% interval. The ceiling is the \
         ground truth's own seed-A-vs-seed-B τ over the same architectures; τ-b by loss ranks by \
         one-shot cross-entropy (lower first) instead of accuracy; the reachable τ-b \
         is what a perfect ranking could expect against the ground truth's seed means, from the \
         spread of its architectures and of its seeds.\n\n\
         | stage | N | τ-b | Spearman ρ | N in window | τ-b in window | τ-b by loss | ceiling τ-b | \
         reachable τ-b |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        r.bn_batches,
        r.val_samples,
        r.truth.display()
    );
    let mut any = false;
    for k in 0..=stages {
        let Ok(text) = std::fs::read_to_string(rank_file(&job.run, k)) else {
            continue;
        };
        let Ok(s) = serde_json::from_str::<Score>(&text) else {
            continue;
        };
        any = true;
        md.push_str(&format!(
            "| {k} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.n,
            fmt_tau(&s.all),
            fmt_opt(s.all.spearman),
            s.in_window.n,
            fmt_tau(&s.in_window),
            s.by_loss.as_ref().map_or("–".into(), fmt_tau),
            s.ceiling.as_ref().map_or("–".into(), fmt_tau),
            fmt_opt(s.truth_spread.map(|t| t.reachable_tau_b))
        ));
    }
    any.then_some(md)
}
