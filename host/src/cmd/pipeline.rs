//! The PAD-NAS pipeline over a run directory: `padnas prune`, `padnas
//! search` and `padnas run`.
//!
//! Run directory layout (every file written atomically; a step whose output
//! exists is skipped, an interrupted one continues from its checkpoint):
//!
//! ```text
//! config.yaml              the job config, absolute paths
//! latency.json             which table, its label, the window
//! space.stage-0.yaml       the initial space
//! supernet.safetensors     SPOS training (checkpoint.safetensors while running)
//! stage-K/search.json      NSGA-II on space K−1 with the stage K−1 supernet
//! stage-K/prune.json       op frequencies among ranks < rank_limit, what was pruned
//! space.stage-K.yaml       the layer-wise space after pruning K
//! stage-K/supernet.safetensors   fine-tuned on space K
//! final/search.json        NSGA-II on the last space → pareto.json
//! retrain/<arch>/          the chosen architecture trained stand-alone
//! model.onnx               its export (BN folded, metadata)
//! verify.json              outputs and latency on the target
//! steps.json               every step's fingerprint, settings and wall time
//! report.md, plots/*.svg   the report
//! superseded/<time>/       outputs of steps whose settings changed (--rerun)
//! ```
//!
//! The steps, what each reads and which settings it depends on are declared
//! in [`super::steps`]; [`run_job`] checks them against `steps.json`, then
//! runs each in order.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

pub use super::job::{Job, JobArgs, LATENCY_FILE, LatencyRecord, STEPS_FILE};
use super::job::{read_steps, space_file, space_text, write_steps};
pub use super::steps::StepRecord;
use super::steps::{self, Action, Step, step_names};
use super::train::CONFIG_FILE;
use crate::config::JobConfig;
use crate::data::derive_seed;
use crate::latency::table::Table;
use crate::search::nsga2::{self, Nsga2Config};
use crate::search::{
    ArchProblem, LatencyModel, OneShotSettings, Pruning, RECORD_FORMAT, SearchRecord, plot, prune,
    write_atomic,
};
use crate::space::{Space, format_count};
use crate::supernet::checkpoint::{
    CHECKPOINT_FILE, LoadMode, WEIGHTS_FILE, load_weights, save_weights,
};
use crate::supernet::{StepSampler, Supernet, TrainOptions, train};

/// Arguments of `padnas prune` and `padnas search`: a config and the
/// shared overrides.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Job config (YAML).
    #[arg(long, short)]
    pub config: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub job: JobArgs,
}

/// Arguments of `padnas prune`.
pub type PruneArgs = ConfigArgs;
/// Arguments of `padnas search`.
pub type SearchArgs = ConfigArgs;

/// Arguments of `padnas run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Job config (YAML), e.g. configs/fmnist-local.yaml.
    pub config: PathBuf,
    /// Stop once this step is done: latency, train, search-K, prune-K,
    /// finetune-K, final, retrain, export, verify, or report (the default
    /// runs everything).
    #[arg(long, value_name = "STEP")]
    pub until: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub job: JobArgs,
}

/// Name of the final Pareto front in a run directory.
pub const PARETO_FILE: &str = "pareto.json";
/// Name of the exported network.
pub const MODEL_FILE: &str = "model.onnx";
/// Name of the verification record.
pub const VERIFY_FILE: &str = "verify.json";
/// The final search's record in a run directory.
const FINAL_SEARCH: &str = "final/search.json";
/// Largest output difference accepted between target and host.
pub const VERIFY_TOLERANCE: f32 = 1e-3;

impl Job {
    /// Trains the supernet on `space` for `epochs` into `dir` (starting from
    /// `init` weights when given), resuming a checkpoint there. Stage `k`
    /// draws its own paths and data order.
    fn train_stage(
        &self,
        k: usize,
        space: &Space,
        epochs: usize,
        init: Option<&Path>,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let weights = dir.join(WEIGHTS_FILE);
        if weights.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let ckpt = dir.join(CHECKPOINT_FILE);
        let net = Supernet::new(&self.full, self.device, self.cfg.seed)?;
        if self.cfg.train.zero_residual_gamma {
            net.zero_residual_gammas()?;
        }
        if !ckpt.exists()
            && let Some(w) = init
        {
            load_weights(&net, w, LoadMode::Subset)?;
        }
        let seed = if k == 0 {
            self.cfg.seed
        } else {
            derive_seed(self.cfg.seed, "finetune", k as u64)
        };
        let sampler = StepSampler::new(&net, space, seed)?.with_sampling(self.cfg.train.sampling);
        let mut tc = self.cfg.train.clone();
        tc.epochs = epochs;
        if k > 0 {
            // Fine-tuning starts from trained weights: the schedule restarts
            // over the stage's epochs from prune.finetune_lr (train.lr when
            // unset) after prune.finetune_warmup_epochs (none when unset).
            tc.warmup_epochs = self.cfg.prune.finetune_warmup_epochs;
            if let Some(lr) = self.cfg.prune.finetune_lr {
                tc.lr = lr;
            }
        }
        let opts = TrainOptions {
            checkpoint: Some(ckpt),
            resume: true,
            progress: self.progress,
            ..TrainOptions::new(tc, seed, self.cfg.data.augment)
        };
        let s = train(&net, &sampler, &self.splits.train, &opts)?;
        tracing::info!(
            stage = k,
            steps = s.step,
            loss = format!("{:.4}", s.loss),
            accuracy = format!("{:.4}", s.accuracy),
            images_per_s = format!("{:.0}", s.images_per_s),
            "supernet training done"
        );
        if s.finished {
            save_weights(&net, &weights)?;
        }
        Ok(())
    }

    /// Runs (or resumes, or skips) the NSGA-II search `name` over `space`
    /// with the supernet `weights`, saving its record at `out` after every
    /// generation.
    fn search(
        &self,
        name: &str,
        space: &Space,
        weights: &Path,
        table: &Table,
        lat: &LatencyRecord,
        out: &Path,
    ) -> anyhow::Result<SearchRecord> {
        let s = &self.cfg.search;
        let nsga = Nsga2Config {
            population: s.population,
            generations: s.generations,
            crossover_prob: s.crossover_prob,
            mutation_prob: s.mutation_prob,
            seed: derive_seed(self.cfg.seed, &format!("search/{name}"), 0),
            ..Nsga2Config::default()
        };
        let one_shot = OneShotSettings {
            bn_batches: s.bn_batches,
            batch_size: self.cfg.train.batch_size,
            val_samples: s.val_samples,
            seed: self.cfg.seed,
        };
        let previous = crate::search::SearchRecord::load(out)?;
        if let Some(r) = &previous {
            if r.space_hash != space.hash() || r.window != lat.window || r.nsga2 != nsga {
                bail!(
                    "{}: saved with another space, window or settings; delete it to search again",
                    out.display()
                );
            }
            if r.complete {
                return Ok(r.clone());
            }
            tracing::info!("{name}: resuming after generation {}", r.state.generation);
        }
        if !weights.exists() {
            bail!("{}: no supernet weights; train first", weights.display());
        }
        let net = Supernet::new(&self.full, self.device, self.cfg.seed)?;
        load_weights(&net, weights, LoadMode::Subset)?;
        let model = LatencyModel::new(table, &lat.table, space)?;
        let mut problem = ArchProblem::new(
            space,
            &net,
            model,
            lat.window.clone(),
            &self.splits.train,
            &self.splits.val,
            one_shot.clone(),
        )?;
        let mut record = SearchRecord {
            format: RECORD_FORMAT.into(),
            stage: name.into(),
            space_hash: space.hash(),
            num_architectures: space.num_architectures(),
            window: lat.window.clone(),
            nsga2: nsga.clone(),
            one_shot,
            weights: weights.to_path_buf(),
            complete: false,
            // Replaced by the search's state after every generation.
            state: nsga2::State::default(),
            evaluations_per_s: 0.0,
            candidates: Vec::new(),
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let bar = if self.progress {
            super::profile::progress_bar(nsga.generations as u64 + 1)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_position(
            previous
                .as_ref()
                .map_or(0, |r| r.state.generation as u64 + 1),
        );
        let resume = previous.map(|r| r.state);
        let reference = [1.0, lat.window.hi_ms];
        let state = nsga2::run(
            &mut problem,
            &nsga,
            resume,
            Some(&reference),
            None,
            &mut |st| {
                record.state = st.clone();
                record.save(out)?;
                if let Some(h) = st.history.last() {
                    bar.set_position(st.generation as u64 + 1);
                    bar.set_message(format!(
                        "{name}: {} evaluated, best {:.2}%, {:.1} eval/s",
                        h.evaluations,
                        100.0 * (1.0 - h.best[0]),
                        st.archive.len() as f64 / st.eval_seconds.max(1e-9)
                    ));
                }
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        record.state = state;
        record.complete = true;
        record.rank(space)?;
        record.save(out)?;
        tracing::info!(
            "{name}: {} architectures evaluated ({:.2}/s), {} on the Pareto front",
            record.candidates.len(),
            record.evaluations_per_s,
            record.pareto().len()
        );
        Ok(record)
    }

    /// Pruning step `k` (from the complete search of stage `k`): writes
    /// `stage-k/prune.json` and `space.stage-k.yaml`.
    fn prune_stage(&self, k: usize, prev: &Space, rec: &SearchRecord) -> anyhow::Result<Space> {
        let ranked: Vec<_> = rec
            .candidates
            .iter()
            .map(|c| Ok((prev.parse_arch(&c.arch)?, c.rank)))
            .collect::<anyhow::Result<_>>()?;
        let p = prune(
            prev,
            &ranked,
            self.cfg.prune.rank_limit,
            self.cfg.prune.threshold,
        )?;
        let next = prev.with_layer_ops(&p.kept_ops())?;
        let dir = self.path(format!("stage-{k}"));
        std::fs::create_dir_all(&dir)?;
        write_atomic(
            &dir.join("prune.json"),
            serde_json::to_string_pretty(&p)?.as_bytes(),
        )?;
        // The space last: its presence marks the step done.
        write_atomic(&self.path(space_file(k)), space_text(k, &next).as_bytes())?;
        tracing::info!(
            "stage {k}: {} architectures counted, {} ops pruned; {} → {} architectures",
            p.counted,
            p.num_pruned(),
            format_count(prev.num_architectures()),
            format_count(next.num_architectures())
        );
        Ok(next)
    }
}

/// The architecture to deploy: the most accurate (one-shot) of the final
/// Pareto front, all of which lie in the latency window; ties go to the
/// faster one.
pub fn choose(rec: &SearchRecord) -> anyhow::Result<crate::search::Candidate> {
    rec.pareto()
        .into_iter()
        .max_by(|a, b| {
            a.accuracy
                .total_cmp(&b.accuracy)
                .then(b.latency_ms.total_cmp(&a.latency_ms))
        })
        .cloned()
        .context("the final search has an empty Pareto front")
}

/// Refuses an `until` that names no step of a run with `stages` prunings.
fn check_until(stages: usize, until: Option<&str>) -> anyhow::Result<()> {
    let names = step_names(stages);
    if let Some(u) = until
        && !names.iter().any(|n| n == u)
    {
        bail!("--until {u}: not a step of this run ({})", names.join(", "));
    }
    Ok(())
}

/// Checks that the steps already done in the run directory were made with
/// the config's settings, then saves the config there. A step made with
/// other settings (and every step that read it) is refused, naming the
/// settings, unless `rerun`: then its outputs move to `superseded/<time>/`
/// and it runs again.
fn claim(job: &Job, plan: &[Step], rerun: bool) -> anyhow::Result<()> {
    let mut records = read_steps(&job.run);
    let stale = steps::stale(plan, &records);
    if !stale.is_empty() {
        let list: Vec<String> = stale
            .iter()
            .map(|s| format!("  {}: {}", s.step, s.why))
            .collect();
        if !rerun {
            bail!(
                "{}: the config differs from the one these steps were made with:\n{}\n\
                 rerun with --rerun to move their outputs to {}/superseded/ and run them \
                 again, or use another run_dir",
                job.run.display(),
                list.join("\n"),
                job.run.display()
            );
        }
        let dir = steps::supersede(&job.run, plan, &stale, &mut records)
            .with_context(|| format!("moving stale outputs of {}", job.run.display()))?;
        write_steps(&job.run, &records)?;
        tracing::warn!(
            "settings changed; these steps run again (old outputs in {}):\n{}",
            dir.display(),
            list.join("\n")
        );
    }
    job.cfg.save(&job.path(CONFIG_FILE))?;
    let stage0 = job.path(space_file(0));
    if !stage0.exists() {
        write_atomic(&stage0, space_text(0, &job.full).as_bytes())?;
    }
    Ok(())
}

/// What the steps hand each other besides files: the latency record and
/// its table, read once.
#[derive(Default)]
struct Loaded {
    latency: Option<(LatencyRecord, Table)>,
}

impl Loaded {
    fn latency(&self) -> anyhow::Result<(&LatencyRecord, &Table)> {
        self.latency
            .as_ref()
            .map(|(l, t)| (l, t))
            .context("the latency step has not run")
    }
}

/// Runs the pipeline up to and including `until` (all when `None`):
/// every step of the plan in order. A step whose outputs exist returns at
/// once; an interrupted one continues from its checkpoint.
pub fn run_job(job: &Job, until: Option<&str>, rerun: bool) -> anyhow::Result<()> {
    check_until(job.stages(), until)?;
    let plan = steps::plan(&job.cfg, &job.full.hash());
    claim(job, &plan, rerun)?;
    let names = step_names(job.stages());
    let last = until.and_then(|u| names.iter().position(|n| n == u));
    let mut loaded = Loaded::default();
    for step in &plan {
        if let Some(last) = last
            && names.iter().position(|n| *n == step.name) > Some(last)
        {
            break;
        }
        job.timed(step, || run_step(job, step.action, &mut loaded))?;
    }
    Ok(())
}

/// The space of stage `k` (0: the initial one), which must exist by now.
fn stage_space(job: &Job, k: usize) -> anyhow::Result<Space> {
    if k == 0 {
        return Ok(job.full.clone());
    }
    job.space(k)?
        .with_context(|| format!("{}: missing; run prune-{k} first", space_file(k)))
}

/// A complete search record, which must exist by now.
fn search_record(path: &Path) -> anyhow::Result<SearchRecord> {
    SearchRecord::load(path)?
        .filter(|r| r.complete)
        .with_context(|| format!("{}: no complete search", path.display()))
}

fn run_step(job: &Job, action: Action, loaded: &mut Loaded) -> anyhow::Result<()> {
    match action {
        Action::Latency => {
            let (lat, table) = job.latency()?;
            tracing::info!(
                "latency window {:.3}–{:.3} ms ({}), table {} ({})",
                lat.window.lo_ms,
                lat.window.hi_ms,
                lat.window.source,
                lat.table.display(),
                lat.label
            );
            loaded.latency = Some((lat, table));
        }
        Action::Train => {
            job.train_stage(0, &job.full, job.cfg.train.epochs, None, &job.run)?;
        }
        Action::Rank(k) => {
            if !super::truth::rank_file(&job.run, k).exists() {
                super::truth::rank_stage(job, k, &stage_space(job, k)?, &job.weights(k))?;
            }
        }
        Action::Search(k) => {
            let (lat, table) = loaded.latency()?;
            job.search(
                &format!("stage-{k}"),
                &stage_space(job, k - 1)?,
                &job.weights(k - 1),
                table,
                lat,
                &job.path(format!("stage-{k}/search.json")),
            )?;
        }
        Action::Prune(k) => {
            if job.space(k)?.is_none() {
                let rec = search_record(&job.path(format!("stage-{k}/search.json")))?;
                job.prune_stage(k, &stage_space(job, k - 1)?, &rec)?;
            }
        }
        Action::Finetune(k) => {
            let epochs = job.cfg.prune.finetune_epochs[k - 1];
            let dir = job.path(format!("stage-{k}"));
            let init = job.weights(k - 1);
            job.train_stage(k, &stage_space(job, k)?, epochs, Some(&init), &dir)?;
        }
        Action::Final => {
            let (lat, table) = loaded.latency()?;
            let last = job.stages();
            let rec = job.search(
                "final",
                &stage_space(job, last)?,
                &job.weights(last),
                table,
                lat,
                &job.path(FINAL_SEARCH),
            )?;
            write_pareto(job, lat, &rec)?;
        }
        Action::Retrain => {
            let chosen = choose(&search_record(&job.path(FINAL_SEARCH))?)?;
            let arch = job.full.parse_arch(&chosen.arch)?;
            tracing::info!(
                "chosen: {} (one-shot {:.2}%, predicted {:.3} ms)",
                chosen.arch,
                100.0 * chosen.accuracy,
                chosen.latency_ms
            );
            let dir = super::retrain::retrain_dir(&job.run, &arch);
            if !dir.join(super::retrain::RESULT_FILE).exists() {
                super::retrain::retrain(&super::retrain::Retraining {
                    run: job.run.clone(),
                    arch: chosen.arch,
                    inherit: job.cfg.retrain.inherit,
                    epochs: Some(job.cfg.retrain.epochs),
                    max_steps: None,
                    resume: true,
                    device: Some(job.cfg.device),
                    threads: job.cfg.train.threads,
                    progress: job.progress,
                })?;
            }
        }
        Action::Export => {
            let model = job.path(MODEL_FILE);
            if !model.exists() {
                let (lat, _) = loaded.latency()?;
                let chosen = choose(&search_record(&job.path(FINAL_SEARCH))?)?;
                super::export::export_run(&job.run, &chosen.arch, Some(&lat.table), &model)?;
            }
        }
        Action::Verify => {
            let (lat, _) = loaded.latency()?;
            verify_step(job, lat, &job.path(MODEL_FILE))?;
        }
        Action::Report => {
            let (lat, _) = loaded.latency()?;
            write_report(job, lat, &search_record(&job.path(FINAL_SEARCH))?)?;
        }
    }
    Ok(())
}

/// Runs the exported network on the configured target (once; the record is
/// kept) and checks its outputs against the host's.
fn verify_step(job: &Job, lat: &LatencyRecord, model: &Path) -> anyhow::Result<()> {
    let path = job.path(VERIFY_FILE);
    let line = if path.exists() {
        serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not a verify record", path.display()))?
    } else if job.cfg.data.kind != crate::config::DataKind::FashionMnist {
        tracing::warn!(
            "verify runs Fashion-MNIST test images only; skipped for {}",
            job.cfg.data.kind
        );
        return Ok(());
    } else {
        let line = super::verify::verify(&super::verify::Verification {
            target: job.cfg.target.name.clone(),
            targets_dir: job.cfg.target.targets_dir.clone(),
            model: model.to_path_buf(),
            table: Some(lat.table.clone()),
            space: Some(job.cfg.space.clone()),
            images: 8,
            data: job.cfg.data.path.clone(),
            tolerance: VERIFY_TOLERANCE,
        })?;
        write_atomic(&path, serde_json::to_string_pretty(&line)?.as_bytes())?;
        line
    };
    super::verify::check(&line, VERIFY_TOLERANCE)
}

fn write_pareto(job: &Job, lat: &LatencyRecord, rec: &SearchRecord) -> anyhow::Result<()> {
    let front: Vec<_> = rec
        .pareto()
        .iter()
        .map(|c| json!({"arch": c.arch, "accuracy": c.accuracy, "latency_ms": c.latency_ms}))
        .collect();
    let out = json!({
        "target": lat.target,
        "label": lat.label,
        "table": lat.table,
        "window": lat.window,
        "space_hash": rec.space_hash,
        "accuracy": "one-shot, validation split",
        "pareto": front,
    });
    write_atomic(
        &job.path(PARETO_FILE),
        serde_json::to_string_pretty(&out)?.as_bytes(),
    )?;
    Ok(())
}

/// The searches of a run that exist, in order, with their names.
fn searches(job: &Job) -> anyhow::Result<Vec<(String, SearchRecord)>> {
    let mut out = Vec::new();
    for k in 1..=job.stages() {
        if let Some(r) = SearchRecord::load(&job.path(format!("stage-{k}/search.json")))?
            && r.complete
        {
            out.push((format!("stage {k} (space {})", k - 1), r));
        }
    }
    if let Some(r) = SearchRecord::load(&job.path("final/search.json"))?
        && r.complete
    {
        out.push((format!("final (space {})", job.stages()), r));
    }
    Ok(out)
}

/// Writes `report.md` and its plots from what the run directory holds.
pub fn write_report(job: &Job, lat: &LatencyRecord, fin: &SearchRecord) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let plots = job.path("plots");
    std::fs::create_dir_all(&plots)?;
    let found = searches(job)?;
    let refs: Vec<(&str, &SearchRecord)> = found.iter().map(|(n, r)| (n.as_str(), r)).collect();
    plot::pareto(&refs, &plots.join("pareto.svg"))?;
    plot::progress(&refs, &plots.join("progress.svg"))?;
    let mut sizes = Vec::new();
    for k in 0..=job.stages() {
        if let Some(s) = job.space(k)? {
            sizes.push((format!("stage {k}"), s.num_architectures()));
        }
    }
    plot::space_size(&sizes, &plots.join("space-size.svg"))?;
    let mut prunings: Vec<(usize, Pruning)> = Vec::new();
    for k in 1..=job.stages() {
        let p = job.path(format!("stage-{k}/prune.json"));
        if p.exists() {
            let pr: Pruning = serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("{}: not a pruning record", p.display()))?;
            plot::survival(
                &pr,
                &format!(
                    "op frequency (%) among rank < {} architectures, stage {k} (✕ pruned)",
                    pr.rank_limit
                ),
                &plots.join(format!("survival-stage-{k}.svg")),
            )?;
            prunings.push((k, pr));
        }
    }

    let cfg = &job.cfg;
    let mut md = String::new();
    let _ = writeln!(md, "# PAD-NAS run `{}`\n", cfg.name);
    let _ = writeln!(
        md,
        "Config `{}` (copy in `config.yaml`), seed {}, space `{}`, data {} ({} train / {} validation / {} test images), device {}, {} libtorch threads.\n",
        cfg.origin,
        cfg.seed,
        cfg.space.display(),
        cfg.data.kind,
        job.splits.train.len(),
        job.splits.val.len(),
        job.splits.test.len(),
        cfg.device,
        tch::get_num_threads()
    );
    let _ = writeln!(md, "## Latency\n");
    let _ = writeln!(
        md,
        "Target `{}`, table `{}`, measured on **{}**{}. Latency window **{:.3}–{:.3} ms** ({}); every searched architecture lies inside it.\n",
        lat.target,
        lat.table.display(),
        lat.label,
        if lat.emulated {
            " (emulated: meaningless as device latency)"
        } else {
            ""
        },
        lat.window.lo_ms,
        lat.window.hi_ms,
        lat.window.source
    );
    let _ = writeln!(md, "## Stages\n");
    let _ = writeln!(
        md,
        "| stage | space | architectures | search: evaluated | eval/s | Pareto front | best one-shot accuracy |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (name, r) in &found {
        let best = r.candidates.iter().map(|c| c.accuracy).fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| {name} | `{}` | {} | {} | {:.2} | {} | {:.2}% |",
            &r.space_hash[..12.min(r.space_hash.len())],
            format_count(r.num_architectures),
            r.candidates.len(),
            r.evaluations_per_s,
            r.pareto().len(),
            100.0 * best
        );
    }
    let _ = writeln!(md, "\n![Pareto fronts](plots/pareto.svg)\n");
    let _ = writeln!(md, "![Search progress](plots/progress.svg)\n");
    let _ = writeln!(md, "![Space size per stage](plots/space-size.svg)\n");
    for (k, p) in &prunings {
        let _ = writeln!(
            md,
            "### Pruning {k}\n\n{} architectures with rank < {} counted; ops at or below {:.1}% pruned: {} in all.\n",
            p.counted,
            p.rank_limit,
            100.0 * p.threshold,
            p.num_pruned()
        );
        let _ = writeln!(md, "| layer | kept | pruned |\n|---|---|---|");
        for (l, ops) in p.layers.iter().enumerate() {
            let list = |pruned: bool| {
                ops.iter()
                    .filter(|c| c.pruned == pruned)
                    .map(|c| format!("{} ({:.0}%)", c.op, 100.0 * c.frequency))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(md, "| {l} | {} | {} |", list(false), list(true));
        }
        let _ = writeln!(
            md,
            "\n![Op survival, stage {k}](plots/survival-stage-{k}.svg)\n"
        );
    }
    if let Some(section) = super::truth::rank_report(job, job.stages()) {
        let _ = writeln!(md, "{section}");
    }
    let _ = writeln!(md, "## Final Pareto front (`pareto.json`)\n");
    let _ = writeln!(
        md,
        "| architecture | one-shot accuracy | predicted latency (ms) |\n|---|---|---|"
    );
    for c in fin.pareto() {
        let _ = writeln!(
            md,
            "| `{}` | {:.2}% | {:.3} |",
            c.arch,
            100.0 * c.accuracy,
            c.latency_ms
        );
    }
    if let Ok(chosen) = choose(fin) {
        let _ = writeln!(md, "\n## Deployed network\n");
        let _ = writeln!(
            md,
            "Chosen from the final front: `{}` (the most accurate one-shot; {:.2}% validation, {:.3} ms predicted).\n",
            chosen.arch,
            100.0 * chosen.accuracy,
            chosen.latency_ms
        );
        if let Ok(arch) = job.full.parse_arch(&chosen.arch)
            && let Ok(r) =
                super::retrain::read_result(&super::retrain::retrain_dir(&job.run, &arch))
        {
            let pct =
                |v: Option<f64>| v.map_or("–".to_string(), |a| format!("{:.2}%", 100.0 * a));
            let _ = writeln!(
                md,
                "Retrained {} for {} epoch(s) ({} steps, {:.0} s, {} parameters): **test accuracy {}** on the untouched test split ({} images), validation {}.\n",
                if r.inherit {
                    "from the supernet's weights"
                } else {
                    "from scratch"
                },
                r.epochs,
                r.steps,
                r.seconds,
                r.parameters,
                pct(r.test_accuracy),
                r.test_samples,
                pct(r.val_accuracy)
            );
        }
        if job.path(MODEL_FILE).exists() {
            let _ = writeln!(
                md,
                "Exported to `{MODEL_FILE}` (ONNX, BN folded, metadata: architecture, space hash, accuracy, target, predicted latency).\n"
            );
        }
        if let Ok(text) = std::fs::read_to_string(job.path(VERIFY_FILE))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let _ = writeln!(
                md,
                "On target `{}` ({}): outputs on {} test images within {:.1e} of the host's (same class: {}); latency **measured {:.3} ms** (median, p10 {:.3}, p90 {:.3}, {} runs, {} thread(s)){} vs **predicted {:.3} ms** by the table.{}\n",
                v["target"].as_str().unwrap_or("?"),
                v["label"].as_str().unwrap_or("?"),
                v["images"],
                v["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
                v["agree"],
                v["measured_ms"].as_f64().unwrap_or(f64::NAN),
                v["p10_ms"].as_f64().unwrap_or(f64::NAN),
                v["p90_ms"].as_f64().unwrap_or(f64::NAN),
                v["runs"],
                v["threads"],
                // A table with a reference block predicts ratio × its scale:
                // the comparable figure, named as such.
                v["reference_scaled_ms"]
                    .as_f64()
                    .map_or(String::new(), |ms| format!(
                        "; {:.3} × the reference block = **{ms:.3} ms** in the table's units",
                        v["ratio_to_reference"].as_f64().unwrap_or(f64::NAN)
                    )),
                v["predicted_ms"].as_f64().unwrap_or(f64::NAN),
                if v["emulated"].as_bool() == Some(true) {
                    " Emulated: these times are not device latency."
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(md, "\n## Time per step\n\n| step | seconds |\n|---|---|");
    let steps = read_steps(&job.run);
    let mut total = 0.0;
    for name in step_names(job.stages()) {
        if let Some(s) = steps.get(&name) {
            total += s.seconds;
            let _ = writeln!(
                md,
                "| {name} | {:.1}{} |",
                s.seconds,
                if s.done { "" } else { " (unfinished)" }
            );
        }
    }
    let _ = writeln!(md, "| total | {total:.1} |");
    write_atomic(&job.path("report.md"), md.as_bytes())?;
    Ok(())
}

/// Runs `padnas run`.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    if a.until.is_some() {
        // Checked before loading anything: a typo should not cost a data load.
        let cfg = JobConfig::load(&a.config)?;
        check_until(cfg.prune.finetune_epochs.len(), a.until.as_deref())?;
    }
    let job = Job::open(&a.config, &a.job)?;
    run_job(&job, a.until.as_deref(), a.job.rerun)?;
    let mut line = json!({
        "run_dir": job.run,
        "report": job.path("report.md"),
        "pareto": job.path(PARETO_FILE),
    });
    // The headline figures, when the run got that far.
    if let Ok(text) = std::fs::read_to_string(job.path(VERIFY_FILE))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        for k in [
            "arch",
            "label",
            "measured_ms",
            "reference_scaled_ms",
            "predicted_ms",
            "max_abs_diff",
        ] {
            line[k] = v[k].clone();
        }
        if let Some(arch) = v["arch"].as_str().and_then(|a| job.full.parse_arch(a).ok())
            && let Ok(r) =
                super::retrain::read_result(&super::retrain::retrain_dir(&job.run, &arch))
        {
            line["test_accuracy"] = json!(r.test_accuracy);
        }
    }
    let steps = read_steps(&job.run);
    line["seconds"] = json!(steps.values().map(|s| s.seconds).sum::<f64>());
    println!("{line}");
    Ok(())
}

/// Runs `padnas prune`: every pruning stage (training the supernet first
/// when needed).
pub fn run_prune(a: &PruneArgs) -> anyhow::Result<()> {
    let job = Job::open(&a.config, &a.job)?;
    let last = format!("finetune-{}", job.stages());
    let until = if job.stages() == 0 { "train" } else { &last };
    run_job(&job, Some(until), a.job.rerun)?;
    let mut sizes = Vec::new();
    for k in 0..=job.stages() {
        if let Some(s) = job.space(k)? {
            sizes.push(json!({"stage": k, "space": job.path(space_file(k)), "architectures": s.num_architectures()}));
        }
    }
    println!("{}", json!({"run_dir": job.run, "stages": sizes}));
    Ok(())
}

/// Runs `padnas search`: the final search on the last space (running the
/// earlier steps when needed).
pub fn run_search(a: &SearchArgs) -> anyhow::Result<()> {
    let job = Job::open(&a.config, &a.job)?;
    run_job(&job, Some("final"), a.job.rerun)?;
    let rec = SearchRecord::load(&job.path("final/search.json"))?
        .context("the final search left no record")?;
    println!(
        "{}",
        json!({
            "run_dir": job.run,
            "pareto": job.path(PARETO_FILE),
            "front": rec.pareto().len(),
            "evaluated": rec.candidates.len(),
            "evaluations_per_s": rec.evaluations_per_s,
        })
    );
    Ok(())
}
