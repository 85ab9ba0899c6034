//! `padnas eval --run R --arch A`: BN recalibration of one path of a trained
//! supernet, then its accuracy on the validation split (or, for final
//! reports, the test split). Prints one JSON line with `accuracy`.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::train::{CONFIG_FILE, setup_torch};
use crate::config::{DeviceSpec, JobConfig};
use crate::data;
use crate::supernet::checkpoint::{CHECKPOINT_FILE, LoadMode, WEIGHTS_FILE, load_weights};
use crate::supernet::{Supernet, evaluate, recalibrate_bn};

/// Which split to score on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// Held-out part of the training split (what the search uses).
    Val,
    /// The data set's test split (final reports only).
    Test,
}

/// Arguments of `padnas eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Run directory written by `padnas train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Architecture, one op per searchable layer: `k3e6,k5e3,id,…`.
    #[arg(long)]
    pub arch: String,
    /// Training batches for BN recalibration (0: keep the supernet's statistics).
    #[arg(long, default_value_t = 20)]
    pub bn_batches: usize,
    /// Split to score on.
    #[arg(long, value_enum, default_value = "val")]
    pub split: EvalSplit,
    /// Batch size (default: the run's training batch size).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Score only the first N images of the split.
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Device, overriding the run's: cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `padnas eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let cfg = JobConfig::load(args.run.join(CONFIG_FILE)).with_context(|| {
        format!(
            "{} is not a run directory of `padnas train`",
            args.run.display()
        )
    })?;
    let device = setup_torch(
        args.threads.or(cfg.train.threads),
        args.device.unwrap_or(cfg.device),
    )?;
    let space = crate::space::Space::load(&cfg.space)?;
    let arch = space.parse_arch(&args.arch)?;
    let weights = [WEIGHTS_FILE, CHECKPOINT_FILE]
        .iter()
        .map(|f| args.run.join(f))
        .find(|p| p.exists());
    let Some(weights) = weights else {
        bail!(
            "{}: no {WEIGHTS_FILE} or {CHECKPOINT_FILE}; train first",
            args.run.display()
        );
    };
    let net = Supernet::new(&space, device, cfg.seed)?;
    load_weights(&net, &weights, LoadMode::Subset)?;
    let path = net.path_of(&arch)?;

    let mut splits = data::load(&cfg.data, space.input(), cfg.seed)?;
    if let Some(n) = cfg.train.max_train_samples {
        splits.limit_train(n, cfg.seed);
    }
    let bs = args.batch_size.unwrap_or(cfg.train.batch_size);
    if args.bn_batches > 0 {
        recalibrate_bn(&net, &path, &splits.train, args.bn_batches, bs, cfg.seed)?;
    }
    let mut set = match args.split {
        EvalSplit::Val => splits.val,
        EvalSplit::Test => splits.test,
    };
    if let Some(n) = args.max_samples
        && n < set.len()
    {
        set = set.subset(&(0..n).collect::<Vec<_>>());
    }
    if set.is_empty() {
        bail!(
            "the {:?} split is empty (data.val_split 0, or no test images)",
            args.split
        );
    }
    let r = evaluate(&net, &path, &set, bs)?;
    println!(
        "{}",
        serde_json::json!({
            "arch": arch.to_string(),
            "accuracy": r.accuracy,
            "loss": r.loss,
            "samples": r.samples,
            "split": args.split,
            "bn_batches": args.bn_batches,
            "weights": weights,
        })
    );
    Ok(())
}
