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

use super::job::{FINAL_SEARCH, read_steps, space_file, space_text, write_steps};
pub use super::job::{
    INT8_MODEL_FILE, Job, JobArgs, LATENCY_FILE, LatencyRecord, MODEL_FILE, PARETO_FILE,
    STEPS_FILE, VERIFY_FILE,
};
use super::report::write_pareto;
use super::report::write_report;
use super::stages::choose;
pub use super::steps::StepRecord;
use super::steps::{self, Action, Step, step_names};
use super::train::{CONFIG_FILE, set_torch_threads};
use crate::config::JobConfig;
use crate::files::write_atomic;
use crate::latency::table::Table;
use crate::search::SearchRecord;
use crate::space::Space;

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

/// Largest output difference accepted between target and host.
pub const VERIFY_TOLERANCE: f32 = 1e-3;

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
            let (latency, table) = job.latency()?;
            tracing::info!(
                "latency window {:.3}–{:.3} ms ({}), table {} ({})",
                latency.window.lo_ms,
                latency.window.hi_ms,
                latency.window.source,
                latency.table.display(),
                latency.label
            );
            loaded.latency = Some((latency, table));
        }
        Action::Train => {
            job.train_stage(0, &job.full, job.cfg.train.epochs, None, &job.run)?;
        }
        Action::Rank(k) => {
            if !super::rank_stage::rank_file(&job.run, k).exists() {
                super::rank_stage::rank_stage(job, k, &stage_space(job, k)?, &job.weights(k))?;
            }
        }
        Action::Search(k) => {
            let (latency, table) = loaded.latency()?;
            job.search(
                &format!("stage-{k}"),
                &stage_space(job, k - 1)?,
                &job.weights(k - 1),
                table,
                latency,
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
            let (latency, table) = loaded.latency()?;
            let last = job.stages();
            let rec = job.search(
                "final",
                &stage_space(job, last)?,
                &job.weights(last),
                table,
                latency,
                &job.path(FINAL_SEARCH),
            )?;
            write_pareto(job, latency, &rec)?;
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
                    progress: job.progress,
                })?;
            }
        }
        Action::Export => {
            let model = job.path(MODEL_FILE);
            let int8 = job.path(INT8_MODEL_FILE);
            let (latency, _) = loaded.latency()?;
            let chosen = choose(&search_record(&job.path(FINAL_SEARCH))?)?;
            if !model.exists() {
                super::export::export_run(&job.run, &chosen.arch, Some(&latency.table), &model)?;
            }
            // A microcontroller runs the network in int8: its QDQ file,
            // with memory and int8 accuracy beside the float one.
            if latency.memory.is_some() && !int8.exists() {
                let line = super::export::export_run_int8(
                    &job.run,
                    &chosen.arch,
                    Some(&latency.table),
                    &super::export::Int8Options::default(),
                    &int8,
                )?;
                println!("{line}");
            }
        }
        Action::Verify => {
            let (latency, _) = loaded.latency()?;
            verify_step(job, latency, &job.path(MODEL_FILE))?;
        }
        Action::Report => {
            let (latency, _) = loaded.latency()?;
            write_report(job, latency, &search_record(&job.path(FINAL_SEARCH))?)?;
        }
    }
    Ok(())
}

/// Runs the exported network on the configured target (once; the record is
/// kept) and checks its outputs against the host's.
fn verify_step(job: &Job, latency: &LatencyRecord, model: &Path) -> anyhow::Result<()> {
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
    } else if crate::target::Target::resolve(&job.cfg.target.name, &job.cfg.target.targets_dir)
        .is_ok_and(|t| t.is_mcu())
    {
        // The firmware runs int8 blocks drawn from a seed; a trained network
        // would have to travel as int8 weights first.
        tracing::warn!(
            "verify runs the exported ONNX network; the microcontroller firmware of target {} \
             runs int8 blocks only: skipped",
            job.cfg.target.name
        );
        return Ok(());
    } else {
        let line = super::verify::verify(&super::verify::Verification {
            target: job.cfg.target.name.clone(),
            targets_dir: job.cfg.target.targets_dir.clone(),
            model: model.to_path_buf(),
            table: Some(latency.table.clone()),
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

/// Opens the job of a pipeline command and applies its libtorch thread
/// count (process-wide, so here at the command's entry).
fn open(config: &Path, args: &JobArgs) -> anyhow::Result<Job> {
    let job = Job::open(config, args)?;
    set_torch_threads(job.cfg.train.threads)?;
    Ok(job)
}

/// Runs `padnas run`.
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    if a.until.is_some() {
        // Checked before loading anything: a typo should not cost a data load.
        let cfg = JobConfig::load(&a.config)?;
        check_until(cfg.prune.finetune_epochs.len(), a.until.as_deref())?;
    }
    let job = open(&a.config, &a.job)?;
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
    let job = open(&a.config, &a.job)?;
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
    let job = open(&a.config, &a.job)?;
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
