//! `padnas eval --run R --arch A [--weights W]`: BN recalibration of one path of a trained
//! supernet, then its accuracy on the validation split (or, for final
//! reports, the test split). Prints one JSON line with `accuracy`.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::train::{CONFIG_FILE, setup_torch};
use crate::config::{DeviceSpec, JobConfig};
use crate::data;
use crate::supernet::checkpoint::{CHECKPOINT_FILE, LoadMode, WEIGHTS_FILE, load_weights};
use crate::supernet::{Supernet, evaluate, recalibrate_bn};
use crate::supernet::{standalone_path, standalone_space};

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
    /// Supernet weights to score, e.g. a pruning stage's
    /// `stage-K/supernet.safetensors` [default: the run's own
    /// supernet.safetensors, else its checkpoint].
    #[arg(long)]
    pub weights: Option<PathBuf>,
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
    let weights = match &args.weights {
        Some(w) if w.is_file() => w.clone(),
        Some(w) => bail!("--weights {}: no such file", w.display()),
        None => {
            let found = [WEIGHTS_FILE, CHECKPOINT_FILE]
                .iter()
                .map(|f| args.run.join(f))
                .find(|p| p.exists());
            let Some(w) = found else {
                bail!(
                    "{}: no {WEIGHTS_FILE} or {CHECKPOINT_FILE}; train first",
                    args.run.display()
                );
            };
            w
        }
    };
    // Only the architecture's own path is built, so any weights file that
    // holds the path's tensors scores it: a stage's supernet whether it keeps
    // every op of the full space (`padnas run` does, pruned ones stale) or
    // only its pruned space's. Names are the full space's either way, and the
    // path computes exactly what it computes inside the full supernet.
    let single = standalone_space(&space, &arch)?;
    let net = Supernet::new(&single, device, cfg.seed)?;
    load_weights(&net, &weights, LoadMode::Subset).with_context(|| {
        format!(
            "loading {} for {arch} (were its ops pruned before these weights were trained?)",
            weights.display()
        )
    })?;
    let path = standalone_path(&net);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Space;
    use crate::supernet::BnMode;
    use crate::supernet::checkpoint::save_weights;
    use tch::{Device, Kind, Tensor};

    use crate::supernet::tests::TINY as SPACE;

    #[test]
    fn one_path_network_scores_like_the_supernets_path_and_loads_pruned_weights() {
        tch::set_num_threads(1);
        let dir = tempfile::tempdir().expect("tempdir");
        let full = Space::from_yaml_str(SPACE, "s").expect("space");
        let big = Supernet::new(&full, Device::Cpu, 11).expect("full net");
        let file = dir.path().join(WEIGHTS_FILE);
        save_weights(&big, &file).expect("save");
        let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        for text in ["k5e1,k5e2,id", "k3e1,k3e3,k5e2"] {
            let arch = full.parse_arch(text).expect("arch");
            let want = big
                .forward(&x, &big.path_of(&arch).expect("path"), BnMode::Eval)
                .expect("full");
            // Another seed: equal only once the file is loaded.
            let single = standalone_space(&full, &arch).expect("single");
            let net = Supernet::new(&single, Device::Cpu, 12).expect("net");
            load_weights(&net, &file, LoadMode::Subset).expect("load");
            let got = net
                .forward(&x, &standalone_path(&net), BnMode::Eval)
                .expect("one path");
            assert!(got.equal(&want), "{text}");
        }

        // A pruned stage's supernet holds only its own ops: the one-path
        // network of an architecture inside it loads; one using a pruned op
        // is refused instead of scored with initial weights.
        let pruned = full
            .with_layer_ops(&[
                vec![full.layers()[0].ops[1]],
                full.layers()[1].ops.clone(),
                full.layers()[2].ops.clone(),
            ])
            .expect("pruned space");
        let stage = Supernet::new(&pruned, Device::Cpu, 13).expect("stage net");
        let stage_file = dir.path().join("stage.safetensors");
        save_weights(&stage, &stage_file).expect("save");
        let inside = full.parse_arch("k5e1,k3e3,id").expect("arch");
        let net = Supernet::new(
            &standalone_space(&full, &inside).expect("s"),
            Device::Cpu,
            1,
        )
        .expect("net");
        load_weights(&net, &stage_file, LoadMode::Subset).expect("arch inside the pruned space");
        let outside = full.parse_arch("k3e1,k3e3,id").expect("arch");
        let net = Supernet::new(
            &standalone_space(&full, &outside).expect("s"),
            Device::Cpu,
            1,
        )
        .expect("net");
        assert!(load_weights(&net, &stage_file, LoadMode::Subset).is_err());
        // The full supernet cannot load a pruned-only file at all.
        let again = Supernet::new(&full, Device::Cpu, 11).expect("full net");
        assert!(load_weights(&again, &stage_file, LoadMode::Subset).is_err());
    }
}
