//! `padnas rank truth` and `padnas rank score`: measuring a stand-alone
//! ground truth, and scoring a run's supernets against it (the pipeline's
//! own rank steps are in `rank_stage.rs`).
//!
//! `rank truth` keeps its scratch state (the latency record of the draw,
//! the checkpoints of the trainings, finished ones included) in
//! `<out>.work/` beside the file; everything that counts is in the file
//! itself, rewritten after every finished training.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use super::job::{Job, LatencyRecord};
use super::train::{CONFIG_FILE, setup_torch};
use crate::config::JobConfig;
use crate::data::{self, ImageSet, Splits};
use crate::files::lock_dir;
use crate::latency::stats::min_max;
use crate::rank::truth::{
    Budget, DataInfo, DrawInfo, LatencyInfo, TRUTH_FORMAT, TruthArch, TruthFile, TruthRun, measure,
};
use crate::rank::{Draw, RankError, RunLatency, Score, draw_stratified, score_supernet};
use crate::search::{LatencyModel, OneShotSettings};
use crate::space::Space;
use crate::supernet::checkpoint::{LoadMode, WEIGHTS_FILE, load_weights, weights_space_hash};
use crate::supernet::{StandaloneJob, Supernet, train_standalone};

/// Bootstrap resamples of the ceiling printed by `rank truth`.
pub(super) const RESAMPLES: usize = 1000;

/// Arguments of `padnas rank truth`.
#[derive(Debug, Clone, clap::Args)]
pub struct TruthArgs {
    /// Job config: space, data, training settings, target and window.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The ground-truth file (created, or continued when it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Architectures to draw (half of them inside the window).
    #[arg(long, default_value_t = 32)]
    pub n: usize,
    /// Instead of a draw: train these architectures (repeat the flag), e.g.
    /// the networks a search chose, with the budget of a drawn file, for
    /// `padnas rank versus`.
    #[arg(long = "arch", value_name = "ARCH")]
    pub archs: Vec<String>,
    /// Seeds each architecture is trained with (initial weights and data
    /// order; the data split stays the config's).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub seeds: Vec<u64>,
    /// Epochs of each training (default: the config's retrain.epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training images (default: the config's train.max_train_samples).
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Latency table to draw with (default: the config's table, else one
    /// measured on the config's target into `<out>.work/tables/`).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Uniform candidates the latency strata are filled from.
    #[arg(long, default_value_t = 4000)]
    pub candidates: usize,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    pub draw_seed: u64,
    /// Train at most this many networks in this call, then stop (rerun to
    /// continue).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also score each network on the test split (the validation split is
    /// what ranks; on 2 cores the 10 000 test images cost about as much as
    /// a third of a 12 000-image epoch).
    #[arg(long)]
    pub with_test: bool,
    /// Also score each network on N of the training images the budget's
    /// subset leaves out, and rank by the accuracy over those and the
    /// validation images together (part of the file's data: a file
    /// continues only with the same N).
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// Networks trained at once, each on its own thread with `--threads`
    /// (default: the cores shared out) libtorch threads: small networks use
    /// one core each better than two cores together.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Intra-op threads for libtorch, overriding train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Checkpoint interval (steps) of ground-truth trainings: a one-epoch
/// network would otherwise have no checkpoint before it ends, and a kill
/// would lose all of it.
const TRUTH_CHECKPOINT_STEPS: usize = 50;

/// Arguments of `padnas rank score`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Run directory of `padnas run` / `padnas train` / `padnas prune`.
    #[arg(long)]
    pub run: PathBuf,
    /// Score only this weights file (default: every stage's supernet).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Ground-truth file of `padnas rank truth`.
    #[arg(long)]
    pub truth: PathBuf,
    /// BN recalibration batches per architecture (default: search.bn_batches).
    #[arg(long)]
    pub bn_batches: Option<usize>,
    /// Validation images per architecture (default: search.val_samples).
    #[arg(long)]
    pub val_samples: Option<usize>,
    /// Evaluations per architecture, each with other BN batches and another
    /// validation subset (the first is the search's own): with 2 or more,
    /// the line reports the evaluation's own noise (`noise`).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Also evaluate one-shot accuracy on N of the training images the
    /// run's training subset left out (never trained on, as the
    /// validation images): the first N after the validation images, all of
    /// them counted unless --val-samples says otherwise. The binomial
    /// noise of 3 000 images (≈0.6 points at 89%) is as large as the
    /// spread a nested supernet's architectures show.
    #[arg(long, value_name = "N")]
    pub holdout: Option<usize>,
    /// Bootstrap resamples of the intervals.
    #[arg(long, default_value_t = RESAMPLES)]
    pub resamples: usize,
    /// Intra-op threads for libtorch, overriding train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The run's data as every run command carves it: the config's split and
/// training subset, and the training images that subset leaves out.
fn load_splits(cfg: &JobConfig, space: &Space) -> anyhow::Result<(Splits, ImageSet)> {
    let mut splits = data::load(&cfg.data, space.input(), cfg.seed)
        .with_context(|| format!("loading {} from {}", cfg.data.kind, cfg.data.path.display()))?;
    let left_out = match cfg.train.max_train_samples {
        Some(n) => splits.limit_train(n, cfg.seed),
        None => splits.train.subset(&[]),
    };
    Ok((splits, left_out))
}

/// The commit of the working tree, when it is a git checkout.
fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Runs `padnas rank truth`.
pub fn run_truth(a: &TruthArgs) -> anyhow::Result<()> {
    let mut cfg = JobConfig::load(&a.config)?;
    if let Some(t) = a.threads {
        cfg.train.threads = Some(t);
    }
    cfg.train.epochs = a.epochs.unwrap_or(cfg.retrain.epochs);
    if cfg.train.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if a.max_train_samples.is_some() {
        cfg.train.max_train_samples = a.max_train_samples;
    }
    cfg.train.checkpoint_every_steps = cfg
        .train
        .checkpoint_every_steps
        .or(Some(TRUTH_CHECKPOINT_STEPS));
    if a.seeds.is_empty() {
        bail!("--seeds: name at least one seed");
    }
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if a.jobs > 1 && cfg.train.threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        cfg.train.threads = Some((cores / a.jobs).max(1));
    }
    let device = setup_torch(cfg.train.threads, cfg.device)?;
    let full = Space::load(&cfg.space)?;
    let (splits, left_out) = load_splits(&cfg, &full)?;
    // The left-out images are a seeded random subset of the training split
    // in their original order, so their first N are a random sample too.
    let left_out = match a.holdout {
        Some(0) => bail!("--holdout must be at least 1"),
        Some(n) if n > left_out.len() => bail!(
            "--holdout {n}: the budget leaves only {} of {} training images out (lower --max-train-samples)",
            left_out.len(),
            splits.train.len() + left_out.len()
        ),
        Some(n) => Some(left_out.subset(&(0..n).collect::<Vec<_>>())),
        None => None,
    };
    let holdout = left_out.as_ref();
    let work = a.out.with_extension("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    cfg.run_dir = work.clone();
    // The draw's table is measured into the work directory (unless the
    // config names one): it only stratifies the draw, and a table measured
    // by whatever agent build is at hand must not become the tables
    // directory's table of this CPU. Scores use the scored run's own table.
    if a.table.is_some() {
        cfg.target.table.clone_from(&a.table);
    }
    if cfg.target.table.is_none() {
        cfg.target.tables_dir = work.join("tables");
    }
    let job = Job {
        cfg,
        run: work.clone(),
        full,
        splits,
        device,
        progress: !a.quiet,
        // Two measurements of one file would each save their own copy
        // over the other's trainings.
        lock: Some(lock_dir(&work)?),
    };
    let cfg = &job.cfg;
    let budget = Budget::of(&cfg.train, cfg.data.augment, job.splits.train.len());
    let data = DataInfo {
        kind: cfg.data.kind.to_string(),
        split_seed: cfg.seed,
        val_split: cfg.data.val_split,
        val_images: job.splits.val.len(),
        test_images: job.splits.test.len(),
        pooled_images: holdout.map(|h| job.splits.val.len() + h.len()),
    };
    let mut file = match TruthFile::load(&a.out)? {
        Some(mut old) => {
            let mut asked = old.clone();
            asked.space_hash = job.full.hash();
            asked.budget = budget;
            asked.data = data;
            asked.seeds = a.seeds.clone();
            old.check_continues(&asked, &a.out)?;
            let held: Vec<&str> = old.archs.iter().map(|x| x.arch.as_str()).collect();
            if !a.archs.is_empty() && held != a.archs.iter().map(String::as_str).collect::<Vec<_>>()
            {
                bail!(
                    "{} holds other architectures than --arch names ({}); write to another file (--out)",
                    a.out.display(),
                    held.join(" ")
                );
            }
            for s in &a.seeds {
                if !old.seeds.contains(s) {
                    old.seeds.push(*s);
                }
            }
            old
        }
        None => {
            let (latency, table) = job.latency()?;
            let model = LatencyModel::new(&table, &latency.table, &job.full)?;
            let draw = if a.archs.is_empty() {
                draw_stratified(
                    &job.full,
                    &model,
                    &latency.window,
                    a.n,
                    a.candidates,
                    a.draw_seed,
                )?
            } else {
                named(&job.full, &model, &a.archs)?
            };
            let in_window = draw
                .archs
                .iter()
                .filter(|(_, ms)| latency.window.contains(*ms))
                .count();
            TruthFile {
                format: TRUTH_FORMAT,
                space: job.full.name().unwrap_or("space").to_string(),
                space_hash: job.full.hash(),
                config: a.config.display().to_string(),
                data,
                budget,
                seeds: a.seeds.clone(),
                latency: LatencyInfo {
                    table: latency.table.display().to_string(),
                    label: latency.label.clone(),
                    window_ms: [latency.window.lo_ms, latency.window.hi_ms],
                    range_ms: draw.range_ms,
                },
                draw: DrawInfo {
                    seed: a.draw_seed,
                    candidates: a.candidates,
                    in_window,
                    outside: draw.archs.len() - in_window,
                    named: !a.archs.is_empty(),
                },
                command: std::env::args().collect::<Vec<_>>().join(" "),
                padnas_version: env!("CARGO_PKG_VERSION").to_string(),
                archs: draw
                    .archs
                    .into_iter()
                    .map(|(arch, ms)| TruthArch {
                        arch: arch.to_string(),
                        predicted_ms: ms,
                        in_window: latency.window.contains(ms),
                        parameters: None,
                        runs: Vec::new(),
                    })
                    .collect(),
            }
        }
    };
    file.save(&a.out)?;
    let total = file.missing().len();
    tracing::info!(
        "{}: {} architectures × {} seeds, {} trainings to go",
        a.out.display(),
        file.archs.len(),
        file.seeds.len(),
        total
    );
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
    let commit = commit();
    let trained = measure(&mut file, &a.out, a.limit, a.jobs, |arch, seed| {
        // libtorch's thread count is the calling thread's (OpenMP's is per
        // thread): each worker sets its own.
        tch::set_num_threads(i32::try_from(threads).unwrap_or(1));
        train_one(
            &job,
            &work,
            arch,
            seed,
            &Scoring {
                threads,
                commit: commit.clone(),
                test: a.with_test,
                holdout,
            },
        )
    })?;
    let line = json!({
        "truth": a.out,
        "trained_now": trained,
        "missing": file.missing().len(),
        "archs": file.archs.len(),
        "seeds": file.seeds,
        "ceiling": file.ceiling(false, RESAMPLES),
        "ceiling_in_window": file.ceiling(true, RESAMPLES),
        "ceiling_halves": file.ceiling_halves(false, RESAMPLES),
        "spread": file.spread(false),
        "spread_in_window": file.spread(true),
    });
    println!("{line}");
    Ok(())
}

/// The architectures named by `--arch`, checked against the space, with
/// their predicted latency, in the order given.
fn named(space: &Space, model: &LatencyModel, archs: &[String]) -> anyhow::Result<Draw> {
    let mut out = Vec::with_capacity(archs.len());
    for text in archs {
        let arch = space
            .parse_arch(text)
            .with_context(|| format!("--arch {text}"))?;
        let ms = model.ms(&space.arch_indices(&arch)?);
        out.push((arch, ms));
    }
    Ok(Draw {
        range_ms: min_max(out.iter().map(|p| p.1)),
        archs: out,
    })
}

/// How each ground-truth network is scored and labelled.
struct Scoring<'a> {
    /// libtorch intra-op threads of each training.
    threads: usize,
    /// Commit of the code, when known.
    commit: Option<String>,
    /// Score the test split too.
    test: bool,
    /// The left-out training images, with `--holdout`.
    holdout: Option<&'a ImageSet>,
}

/// Trains one (architecture, seed) pair from scratch, resuming its
/// checkpoint in `work`. The finished checkpoint stays there (it is
/// scratch, not committed): a run removed from the file is re-scored from
/// it without training again.
fn train_one(
    job: &Job,
    work: &Path,
    a: &TruthArch,
    seed: u64,
    how: &Scoring<'_>,
) -> Result<(TruthRun, usize), RankError> {
    let arch = job.full.parse_arch(&a.arch)?;
    let ckpt = work.join(format!(
        "{}-s{seed}.checkpoint.safetensors",
        a.arch.replace(',', "-")
    ));
    tracing::info!(arch = %a.arch, seed, "training stand-alone");
    let r = train_standalone(
        &StandaloneJob {
            full: &job.full,
            arch: &arch,
            train: job.cfg.train.clone(),
            augment: job.cfg.data.augment,
            seed,
            checkpoint: Some(ckpt),
            score_test: how.test,
            holdout: how.holdout,
            progress: job.progress,
        },
        &job.splits,
        job.device,
    )?;
    let val_accuracy = r.val_accuracy.ok_or_else(|| {
        RankError::Invalid("a ground truth needs a validation split (data.val_split > 0)".into())
    })?;
    // Pooled by image counts: the accuracy over both sets as one.
    let pooled_accuracy = match (how.holdout, r.holdout_accuracy) {
        (Some(h), Some(acc)) => {
            let (nv, nh) = (job.splits.val.len() as f64, h.len() as f64);
            Some((val_accuracy * nv + acc * nh) / (nv + nh))
        }
        _ => None,
    };
    let run = TruthRun {
        seed,
        val_accuracy,
        test_accuracy: r.test_accuracy,
        pooled_accuracy,
        steps: r.steps,
        seconds: r.seconds,
        threads: how.threads,
        cpu: Some(crate::session::host_cpu_model()),
        commit: how.commit.clone(),
        date: now(),
    };
    Ok((run, r.parameters))
}

/// The supernets of a run: stage K's space and weights, for every K whose
/// both exist (0: SPOS training, K ≥ 1: after pruning K). A run directory
/// of `padnas train` alone has no stage spaces: its supernet is stage 0,
/// over the initial space `full`.
fn run_supernets(run: &Path, full: &Space) -> anyhow::Result<Vec<(usize, Space, PathBuf)>> {
    let mut out = Vec::new();
    for k in 0.. {
        let space = run.join(format!("space.stage-{k}.yaml"));
        let weights = if k == 0 {
            run.join(WEIGHTS_FILE)
        } else {
            run.join(format!("stage-{k}")).join(WEIGHTS_FILE)
        };
        let space = match (space.exists(), k) {
            (true, _) => Space::load(&space)?,
            (false, 0) => full.clone(),
            (false, _) => break,
        };
        if weights.exists() {
            out.push((k, space, weights));
        }
    }
    Ok(out)
}

/// Loads a ground truth and checks that it belongs to `full`.
pub(super) fn load_truth(path: &Path, full: &Space) -> anyhow::Result<TruthFile> {
    let truth = TruthFile::load(path)?
        .with_context(|| format!("{}: no such ground-truth file", path.display()))?;
    if truth.space_hash != full.hash() {
        bail!(
            "{} is a ground truth of space {} ({}), the run's space is {}",
            path.display(),
            truth.space,
            truth.space_hash,
            full.hash()
        );
    }
    Ok(truth)
}

/// Scores the supernet stored in `weights` (every tensor of the run's
/// initial space, as `padnas train` and the pipeline's fine-tuning write
/// it) on the architectures of `space` against `truth`, judging latency by
/// the run's own table and window when it has them.
pub(super) fn score_weights(
    job: &Job,
    truth: &TruthFile,
    space: &Space,
    weights: &Path,
    settings: &OneShotSettings,
    repeats: usize,
    resamples: usize,
) -> anyhow::Result<Score> {
    let net = Supernet::new(&job.full, job.device, job.cfg.seed)?;
    load_weights(&net, weights, LoadMode::Exact)?;
    let run_latency = match LatencyRecord::load(&job.run)? {
        Some((rec, table)) => Some((
            LatencyModel::new(&table, &rec.table, &job.full)?,
            rec.window,
        )),
        None => None,
    };
    Ok(score_supernet(
        &net,
        space,
        truth,
        &job.splits.train,
        &job.splits.val,
        settings,
        repeats,
        resamples,
        run_latency.as_ref().map(|(model, window)| RunLatency {
            space: &job.full,
            model,
            window,
        }),
    )?)
}

/// Runs `padnas rank score`.
pub fn run_score(a: &ScoreArgs) -> anyhow::Result<()> {
    let cfg = JobConfig::load(a.run.join(CONFIG_FILE))
        .with_context(|| format!("{} is not a run directory", a.run.display()))?;
    let device = setup_torch(a.threads.or(cfg.train.threads), cfg.device)?;
    let full = Space::load(&cfg.space)?;
    let truth = load_truth(&a.truth, &full)?;
    let mut nets = run_supernets(&a.run, &full)?;
    if let Some(w) = &a.weights {
        // A stage's own file scores that stage's space; any other weights
        // of the run's initial space score all of it.
        let same = |p: &Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(w).ok();
        nets.retain(|(_, _, p)| same(p));
        if nets.is_empty() {
            if weights_space_hash(w)? != Some(full.hash()) {
                bail!(
                    "{}: not weights of {}'s space ({})",
                    w.display(),
                    a.run.display(),
                    full.hash()
                );
            }
            nets.push((0, full.clone(), w.clone()));
        }
    }
    if nets.is_empty() {
        bail!(
            "{}: no trained supernet (supernet.safetensors) yet",
            a.run.display()
        );
    }
    let (mut splits, left_out) = load_splits(&cfg, &full)?;
    if let Some(n) = a.holdout {
        if n == 0 || n > left_out.len() {
            bail!(
                "--holdout {n}: the run's training subset leaves {} training images out",
                left_out.len()
            );
        }
        let extra = left_out.subset(&(0..n).collect::<Vec<_>>());
        splits.val = splits
            .val
            .joined(&extra)
            .context("validation and training images differ in shape")?;
    }
    let default_samples = match a.holdout {
        Some(_) => splits.val.len(),
        None => cfg.search.val_samples,
    };
    let settings = OneShotSettings {
        bn_batches: a.bn_batches.unwrap_or(cfg.search.bn_batches),
        batch_size: cfg.train.batch_size,
        val_samples: a.val_samples.unwrap_or(default_samples),
        seed: cfg.seed,
    };
    let job = Job {
        splits,
        run: a.run.clone(),
        cfg,
        full,
        device,
        progress: false,
        // Only reads the run: a pipeline may be working in it meanwhile.
        lock: None,
    };
    for (k, space, weights) in nets {
        let s = score_weights(
            &job,
            &truth,
            &space,
            &weights,
            &settings,
            a.repeats,
            a.resamples,
        )?;
        let mut line = serde_json::to_value(&s)?;
        line["stage"] = json!(k);
        line["weights"] = json!(weights);
        line["truth"] = json!(a.truth);
        if let Some(n) = a.holdout {
            line["holdout"] = json!(n);
        }
        println!("{line}");
    }
    Ok(())
}
