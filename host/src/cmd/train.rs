//! `padnas train --config C [--resume]`: SPOS supernet training into the run
//! directory.
//!
//! The run directory gets `config.yaml` (the job config with absolute paths,
//! so later commands need only the directory), `space.yaml` (the sampling
//! space; an existing one, e.g. left by pruning, is used instead of the
//! config's), `checkpoint.safetensors` (every epoch and every N steps) and,
//! once training is complete, `supernet.safetensors`. One JSON line on
//! stdout sums the run up.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::{DeviceSpec, JobConfig};
use crate::data;
use crate::space::Space;
use crate::supernet::checkpoint::{CHECKPOINT_FILE, WEIGHTS_FILE, read_state, save_weights};
use crate::supernet::{StepSampler, Supernet, TrainOptions, torch_device, train};

/// Name of the job config copy in a run directory.
pub const CONFIG_FILE: &str = "config.yaml";
/// Name of the sampling space in a run directory.
pub const SPACE_FILE: &str = "space.yaml";

/// Arguments of `padnas train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Job config (YAML): data set, space, train settings.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Continue from the run directory's checkpoint (same path sequence,
    /// same result as an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Device, overriding the config: cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Intra-op threads, overriding train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory, overriding the config's.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Stop after this many steps in all (a checkpoint is written there;
    /// `--resume` continues).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Also write the architecture trained at each step of this call to
    /// FILE, one per line (what scripts/bench-train replays in PyTorch).
    #[arg(long, value_name = "FILE")]
    pub paths_out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Applies `threads` to libtorch's intra-op pool (or leaves its default).
/// The thread count is process-wide state: only the commands' entry
/// functions (`run`) call this, never a library function such as
/// `Job::open` or `retrain::retrain`.
pub(crate) fn set_torch_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        tch::set_num_threads(i32::try_from(n).context("threads")?);
    }
    Ok(())
}

/// [`set_torch_threads`], then the device for `device`.
pub(crate) fn setup_torch(
    threads: Option<usize>,
    device: DeviceSpec,
) -> anyhow::Result<tch::Device> {
    set_torch_threads(threads)?;
    Ok(torch_device(device)?)
}

/// The sampling space of a run: its `space.yaml` when present, else `fallback`.
pub(crate) fn run_space(run_dir: &Path, fallback: &Space) -> anyhow::Result<Space> {
    let p = run_dir.join(SPACE_FILE);
    if p.exists() {
        Ok(Space::load(&p)?)
    } else {
        Ok(fallback.clone())
    }
}

/// Runs `padnas train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let mut cfg = JobConfig::load(&args.config)?;
    if let Some(d) = &args.run_dir {
        cfg.run_dir = d.clone();
    }
    if let Some(d) = args.device {
        cfg.device = d;
    }
    if let Some(t) = args.threads {
        cfg.train.threads = Some(t);
    }
    let device = setup_torch(cfg.train.threads, cfg.device)?;
    let run_dir = cfg.run_dir.clone();
    let ckpt = run_dir.join(CHECKPOINT_FILE);
    let weights = run_dir.join(WEIGHTS_FILE);

    if ckpt.exists() && !args.resume {
        bail!(
            "{} exists: pass --resume to continue that run, or delete it to start over",
            ckpt.display()
        );
    }
    if args.resume && weights.exists() && ckpt.exists() {
        let state = read_state(&ckpt)?;
        if state.step >= state.total_steps {
            tracing::info!(
                "{} is complete ({} steps); nothing to do",
                run_dir.display(),
                state.step
            );
            println!(
                "{}",
                serde_json::json!({"run_dir": run_dir, "step": state.step, "total_steps": state.total_steps, "finished": true})
            );
            return Ok(());
        }
    }

    let full = Space::load(&cfg.space)?;
    let space = run_space(&run_dir, &full)?;
    let mut splits = data::load(&cfg.data, full.input(), cfg.seed)
        .with_context(|| format!("loading {} from {}", cfg.data.kind, cfg.data.path.display()))?;
    if let Some(n) = cfg.train.max_train_samples {
        splits.limit_train(n, cfg.seed);
    }
    tracing::info!(
        train = splits.train.len(),
        val = splits.val.len(),
        test = splits.test.len(),
        device = %cfg.device,
        threads = tch::get_num_threads(),
        "data loaded"
    );

    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    cfg.save(&run_dir.join(CONFIG_FILE))?;
    if !run_dir.join(SPACE_FILE).exists() {
        crate::files::write_atomic(&run_dir.join(SPACE_FILE), space.to_yaml().as_bytes())?;
    }

    let net = Supernet::for_training(&full, device, cfg.seed, &cfg.train)?;
    let sampler = StepSampler::new(&net, &space, cfg.seed)?.with_sampling(cfg.train.sampling);
    tracing::info!(
        parameters = net.num_parameters(),
        architectures = %crate::space::format_count(space.num_architectures()),
        "supernet built"
    );
    let opts = TrainOptions {
        checkpoint: Some(ckpt),
        resume: args.resume,
        progress: !args.quiet,
        stop_after: args.max_steps,
        ..TrainOptions::new(cfg.train.clone(), cfg.seed, cfg.data.augment)
    };
    let summary = train(&net, &sampler, &splits.train, &opts)?;
    if summary.finished {
        save_weights(&net, &weights)?;
    }
    if let Some(out) = &args.paths_out {
        // Paths are a function of (seed, step), so they can be listed after the fact.
        let text: String = (summary.start_step..summary.step)
            .map(|s| format!("{}\n", sampler.arch(s)))
            .collect();
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    let mut line = serde_json::to_value(&summary)?;
    line["run_dir"] = serde_json::json!(run_dir);
    println!("{line}");
    Ok(())
}
