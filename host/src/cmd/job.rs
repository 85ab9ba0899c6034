//! A run directory and what every step of it reads: the job config, the
//! data, the initial space, the latency record and the step timings. The
//! pipeline's steps ([`super::pipeline`]) and the rank-fidelity commands
//! ([`super::truth`]) both work on a [`Job`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::steps::{Step, StepRecord};
use crate::config::{JobConfig, WindowSpec};
use crate::data::{self, Splits};
use crate::files::{DirLock, lock_dir, write_atomic};
use crate::latency::table::Table;
use crate::memory::{MemoryLimit, MemoryModel};
use crate::search::{LatencyModel, Window};
use crate::space::{Space, format_count};
use crate::supernet::checkpoint::WEIGHTS_FILE;
use crate::target::Target;

/// Arguments shared by the pipeline commands.
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// Run directory, overriding the config's.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Intra-op threads for libtorch, overriding train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// When settings changed since steps of the run were made: move those
    /// steps' outputs (and those of every step after them that read them)
    /// to `superseded/<time>/` in the run directory and run them again,
    /// instead of refusing.
    #[arg(long)]
    pub rerun: bool,
}

/// Name of the latency record in a run directory.
pub const LATENCY_FILE: &str = "latency.json";
/// Name of the final Pareto front in a run directory.
pub const PARETO_FILE: &str = "pareto.json";
/// Name of the exported network.
pub const MODEL_FILE: &str = "model.onnx";
/// File name of the int8 (QDQ) network, exported for microcontroller targets.
pub const INT8_MODEL_FILE: &str = "model.int8.onnx";
/// Name of the verification record.
pub const VERIFY_FILE: &str = "verify.json";
/// The final search's record in a run directory.
pub const FINAL_SEARCH: &str = "final/search.json";
/// Name of the step records (fingerprint, settings, time of every step).
pub const STEPS_FILE: &str = "steps.json";
/// Which table a run uses, what it measured and the window derived from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyRecord {
    /// Target name.
    pub target: String,
    /// The table file.
    pub table: PathBuf,
    /// The table's label: the CPU, or *emulated …* under qemu.
    pub label: String,
    /// Whether the table was measured under emulation.
    pub emulated: bool,
    /// The hard constraint of every search of the run.
    pub window: Window,
    /// For a microcontroller target, the other one: what its memory leaves
    /// for a network (target file's `memory:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryLimit>,
}

impl LatencyRecord {
    /// The record of run directory `run` and the table it names; `None`
    /// before the latency step ran.
    pub fn load(run: &Path) -> anyhow::Result<Option<(LatencyRecord, Table)>> {
        let path = run.join(LATENCY_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let rec: LatencyRecord = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a latency record", path.display()))?;
        let table = Table::load(&rec.table)?;
        Ok(Some((rec, table)))
    }
}

/// A loaded job: config, data, spaces, table.
pub struct Job {
    /// The config (with command-line overrides).
    pub cfg: JobConfig,
    /// The run directory.
    pub run: PathBuf,
    /// The initial space (the supernet's).
    pub full: Space,
    /// Train / validation / test images.
    pub splits: Splits,
    /// libtorch device.
    pub device: tch::Device,
    /// Draw progress bars.
    pub progress: bool,
    /// The run directory's lock, held while the job lives (`None` for a
    /// job that only reads its directory's files, or holds it elsewhere).
    pub lock: Option<DirLock>,
}

impl Job {
    /// Loads the config and the data, and creates the run directory. The
    /// config is saved there by the pipeline once it has checked that the
    /// run's earlier steps were made with the same settings.
    pub fn open(config: &Path, a: &JobArgs) -> anyhow::Result<Job> {
        let mut cfg = JobConfig::load(config)?;
        if let Some(d) = &a.run_dir {
            cfg.run_dir = d.clone();
        }
        if let Some(t) = a.threads {
            cfg.train.threads = Some(t);
        }
        let device = crate::supernet::torch_device(cfg.device)?;
        let full = Space::load(&cfg.space)?;
        let mut splits = data::load(&cfg.data, full.input(), cfg.seed).with_context(|| {
            format!("loading {} from {}", cfg.data.kind, cfg.data.path.display())
        })?;
        if let Some(n) = cfg.train.max_train_samples {
            splits.limit_train(n, cfg.seed);
        }
        let run = cfg.run_dir.clone();
        std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
        let lock = lock_dir(&run)?;
        Ok(Job {
            lock: Some(lock),
            cfg,
            run,
            full,
            splits,
            device,
            progress: !a.quiet,
        })
    }

    pub(crate) fn stages(&self) -> usize {
        self.cfg.prune.finetune_epochs.len()
    }

    pub(crate) fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.run.join(rel)
    }

    /// The space of stage `k` (0: initial), when written.
    pub fn space(&self, k: usize) -> anyhow::Result<Option<Space>> {
        let p = self.path(space_file(k));
        if p.exists() {
            Ok(Some(Space::load(&p)?))
        } else {
            Ok(None)
        }
    }

    /// Supernet weights after stage `k` (0: SPOS training).
    pub fn weights(&self, k: usize) -> PathBuf {
        if k == 0 {
            self.path(WEIGHTS_FILE)
        } else {
            self.path(format!("stage-{k}")).join(WEIGHTS_FILE)
        }
    }

    /// Runs `step`'s work `f`, recording in `steps.json` the fingerprint and
    /// settings it runs with (before it starts, so an interrupted step is
    /// known too) and the time it took.
    pub(crate) fn timed<T>(
        &self,
        step: &Step,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut steps = read_steps(&self.run);
        let e = steps.entry(step.name.clone()).or_default();
        e.fingerprint = Some(step.fingerprint.clone());
        e.settings = Some(step.settings.clone());
        write_steps(&self.run, &steps)?;
        let t0 = Instant::now();
        let out = f();
        let mut steps = read_steps(&self.run);
        let e = steps.entry(step.name.clone()).or_default();
        e.seconds += t0.elapsed().as_secs_f64();
        e.done = out.is_ok();
        write_steps(&self.run, &steps)?;
        out
    }

    /// The latency record: the table (measured into the tables directory
    /// when the config names none, or completed when blocks are missing)
    /// and the window, computed once from the initial space.
    pub fn latency(&self) -> anyhow::Result<(LatencyRecord, Table)> {
        let rec_path = self.path(LATENCY_FILE);
        if let Some(found) = LatencyRecord::load(&self.run)? {
            return Ok(found);
        }
        let t = &self.cfg.target;
        let target = Target::resolve(&t.name, &t.targets_dir)?;
        let given = t.table.clone().filter(|p| p.exists());
        let path = match given {
            Some(p) if LatencyModel::new(&Table::load(&p)?, &p, &self.full).is_ok() => p,
            _ => {
                tracing::info!(
                    "measuring the blocks of {} on {}",
                    self.cfg.space.display(),
                    target.name
                );
                let (p, summary) = super::profile::profile_space(
                    &target,
                    &self.full,
                    &self.cfg.space,
                    t.table.clone(),
                    &t.tables_dir,
                    &super::profile::ProfileOptions {
                        reference: t.reference,
                        passes: t.passes,
                        sensor_gate_pct: t.sensor_gate,
                        ..super::profile::ProfileOptions::default()
                    },
                )?;
                tracing::info!(
                    "{}: {} entries measured now, {} already there, {:.1} s",
                    p.display(),
                    summary.measured_now,
                    summary.skipped,
                    summary.seconds
                );
                p
            }
        };
        let table = Table::load(&path)?;
        let model = LatencyModel::new(&table, &path, &self.full)?;
        let memory = target.memory.as_ref().map(MemoryLimit::of_target);
        let fits = match memory {
            Some(limit) => {
                let m = MemoryModel::new(&self.full)?;
                Box::new(move |g: &[usize]| m.footprint(g).fits(&limit))
                    as Box<dyn Fn(&[usize]) -> bool>
            }
            None => Box::new(|_: &[usize]| true),
        };
        let window = match self.cfg.search.window {
            WindowSpec::Ms { lo, hi } => Window {
                lo_ms: lo,
                hi_ms: hi,
                source: "config (ms)".into(),
            },
            WindowSpec::Quantiles { lo, hi, samples } => Window::from_quantiles_of(
                &model,
                &self.full,
                lo,
                hi,
                samples,
                self.cfg.seed,
                &fits,
            )?,
        };
        let rec = LatencyRecord {
            target: target.name.clone(),
            table: std::path::absolute(&path).unwrap_or(path),
            label: table.header.label.clone(),
            emulated: table.header.emulated,
            window,
            memory,
        };
        write_atomic(&rec_path, serde_json::to_string_pretty(&rec)?.as_bytes())?;
        Ok((rec, table))
    }
}

/// File name of stage `k`'s space in a run directory.
pub(crate) fn space_file(k: usize) -> String {
    format!("space.stage-{k}.yaml")
}

/// A stage's space as YAML, headed by how many architectures it holds.
pub(crate) fn space_text(k: usize, space: &Space) -> String {
    let exact = space.num_architectures_exact().map_or_else(
        || format_count(space.num_architectures()),
        |n| n.to_string(),
    );
    format!(
        "# stage {k}: {exact} architectures ({} candidate ops over {} layers)\n{}",
        space.layers().iter().map(|l| l.ops.len()).sum::<usize>(),
        space.layers().len(),
        space.to_yaml()
    )
}

/// The step records so far (none when unreadable: they are rebuilt as
/// steps run, and a run without them is taken as it is).
pub(crate) fn read_steps(run: &Path) -> BTreeMap<String, StepRecord> {
    std::fs::read_to_string(run.join(STEPS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the step records.
pub(crate) fn write_steps(run: &Path, steps: &BTreeMap<String, StepRecord>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(steps)?;
    write_atomic(&run.join(STEPS_FILE), text.as_bytes())?;
    Ok(())
}
