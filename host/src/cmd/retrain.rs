//! `padnas retrain --run R --arch A [--inherit]`: trains the stand-alone
//! network of one architecture into `R/retrain/<arch>/`.
//!
//! The stand-alone network is the supernet of a one-path space (one op per
//! layer, [`standalone_space`]), trained with the same SPOS loop as the
//! supernet: with a single candidate per layer every step takes the same
//! path, which is plain training, and checkpoints, exact resume and progress
//! come for free. Its tensors keep the full space's names
//! (`layers.3.k5e6.expand.weight`), so `--inherit` loads the supernet's
//! weights by name and `padnas export` reads the result against the full
//! space.
//!
//! The directory gets `retrain.json` (what is being trained, checked on
//! `--resume`), `checkpoint.safetensors`, and once training is complete
//! `weights.safetensors` and `result.json` ([`RetrainResult`]: validation
//! and test accuracy). One JSON line on stdout sums the call up.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::train::{CONFIG_FILE, set_torch_threads};
use crate::config::{DeviceSpec, JobConfig};
use crate::data;
use crate::files::write_atomic;
use crate::space::{Arch, Space};
use crate::supernet::checkpoint::{
    CHECKPOINT_FILE, LoadMode, WEIGHTS_FILE, load_weights, read_state, save_weights,
};
use crate::supernet::{
    StepSampler, Supernet, TrainOptions, standalone_accuracy, standalone_space, train,
};

/// Subdirectory of a run that holds one directory per retrained architecture.
pub const RETRAIN_DIR: &str = "retrain";
/// Final weights of a retrained network.
pub const RETRAINED_WEIGHTS_FILE: &str = "weights.safetensors";
/// Accuracy and timing of a finished retrain.
pub const RESULT_FILE: &str = "result.json";
/// What a retrain directory trains (checked on `--resume`).
const SPEC_FILE: &str = "retrain.json";

/// Arguments of `padnas retrain`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrainArgs {
    /// Run directory written by `padnas train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Architecture, one op per searchable layer: `k3e6,k5e3,id,…`.
    #[arg(long)]
    pub arch: String,
    /// Start from the run's latest supernet weights (`stage-K/` or the
    /// run's own) instead of from scratch.
    #[arg(long)]
    pub inherit: bool,
    /// Epochs, overriding the run config's train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many steps in all (a checkpoint is written there;
    /// `--resume` continues).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Continue from the checkpoint (same result as an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Device, overriding the run's: cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Intra-op threads, overriding train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What `result.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainResult {
    /// The architecture, as text.
    pub arch: String,
    /// Hash of the full space the architecture belongs to.
    pub space_hash: String,
    /// Whether training started from the supernet's weights.
    pub inherit: bool,
    /// The supernet weights inherited from, if any.
    pub inherited_from: Option<PathBuf>,
    /// Accuracy on the validation split (held out of training); `None` when
    /// the run has no validation split.
    pub val_accuracy: Option<f64>,
    /// Accuracy on the data set's test split, untouched by training and search.
    pub test_accuracy: Option<f64>,
    /// Images in the validation split.
    pub val_samples: usize,
    /// Images in the test split.
    pub test_samples: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Steps trained.
    pub steps: u64,
    /// Training seconds, summed over the calls that trained this network.
    pub seconds: f64,
    /// Training images per second (steps × batch size / seconds).
    pub images_per_s: f64,
    /// Trainable parameters of the stand-alone network.
    pub parameters: usize,
}

/// What a retrain directory trains; `--resume` refuses another one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Spec {
    arch: String,
    space_hash: String,
    inherit: bool,
    inherited_from: Option<PathBuf>,
    epochs: usize,
    /// Training seconds of the calls so far (each call adds its own).
    seconds: f64,
}

/// Directory of `arch`'s retrain in `run`: `run/retrain/<ops joined by '-'>`.
pub fn retrain_dir(run: &Path, arch: &Arch) -> PathBuf {
    run.join(RETRAIN_DIR)
        .join(arch.to_string().replace(',', "-"))
}

/// The run's latest supernet weights: `run/stage-K/supernet.safetensors` for
/// the highest K that has one (pruning stages train on), else
/// `run/supernet.safetensors`; `None` when neither exists.
pub fn latest_supernet_weights(run: &Path) -> Option<PathBuf> {
    let staged = std::fs::read_dir(run)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let k: u64 = e
                .file_name()
                .to_str()?
                .strip_prefix("stage-")?
                .parse()
                .ok()?;
            let p = e.path().join(WEIGHTS_FILE);
            p.is_file().then_some((k, p))
        })
        .max_by_key(|(k, _)| *k)
        .map(|(_, p)| p);
    staged.or_else(|| Some(run.join(WEIGHTS_FILE)).filter(|p| p.is_file()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_atomic(path, format!("{text}\n").as_bytes())?;
    Ok(())
}

/// Reads `result.json` of a retrain directory.
pub fn read_result(dir: &Path) -> anyhow::Result<RetrainResult> {
    read_json(&dir.join(RESULT_FILE))
}

/// Runs `padnas retrain`.
pub fn run(args: &RetrainArgs) -> anyhow::Result<()> {
    // Threads are process-wide: set here, at the command's entry. A run
    // directory without a readable config is reported by `retrain`.
    let threads = args.threads.or_else(|| {
        JobConfig::load(args.run.join(CONFIG_FILE))
            .ok()
            .and_then(|c| c.train.threads)
    });
    set_torch_threads(threads)?;
    retrain(&Retraining {
        run: args.run.clone(),
        arch: args.arch.clone(),
        inherit: args.inherit,
        epochs: args.epochs,
        max_steps: args.max_steps,
        resume: args.resume,
        device: args.device,
        progress: !args.quiet,
    })
}

/// What to retrain and how: `padnas retrain`'s settings, for callers that
/// are not its command line (the pipeline's retrain step).
#[derive(Clone, Debug)]
pub struct Retraining {
    /// Run directory written by `padnas train` or `padnas run`.
    pub run: PathBuf,
    /// Architecture, one op per searchable layer.
    pub arch: String,
    /// Start from the run's latest supernet weights.
    pub inherit: bool,
    /// Epochs, overriding the run config's train.epochs.
    pub epochs: Option<usize>,
    /// Stop after this many steps in all.
    pub max_steps: Option<u64>,
    /// Continue from the checkpoint.
    pub resume: bool,
    /// Device, overriding the run's.
    pub device: Option<DeviceSpec>,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Retrains one architecture of a run from scratch (or from the supernet's
/// weights), resumably; writes its weights and `result.json`.
pub fn retrain(args: &Retraining) -> anyhow::Result<()> {
    let mut cfg = JobConfig::load(args.run.join(CONFIG_FILE)).with_context(|| {
        format!(
            "{} is not a run directory of `padnas train`",
            args.run.display()
        )
    })?;
    if let Some(e) = args.epochs {
        if e == 0 {
            bail!("--epochs must be at least 1");
        }
        cfg.train.epochs = e;
    }
    let device = crate::supernet::torch_device(args.device.unwrap_or(cfg.device))?;
    let full = Space::load(&cfg.space)?;
    let arch = full.parse_arch(&args.arch)?;
    let single = standalone_space(&full, &arch)?;
    let dir = retrain_dir(&args.run, &arch);
    let ckpt = dir.join(CHECKPOINT_FILE);
    let weights = dir.join(RETRAINED_WEIGHTS_FILE);
    let spec_path = dir.join(SPEC_FILE);

    if ckpt.exists() && !args.resume {
        bail!(
            "{} exists: pass --resume to continue that retrain, or delete {} to start over",
            ckpt.display(),
            dir.display()
        );
    }
    let inherited_from = if args.inherit {
        let p = latest_supernet_weights(&args.run).with_context(|| {
            format!(
                "--inherit: no supernet weights in {} (stage-K/{WEIGHTS_FILE} or {WEIGHTS_FILE}); train the supernet first",
                args.run.display()
            )
        })?;
        // Absolute, so result.json says where from whatever directory reads it.
        Some(std::path::absolute(&p).unwrap_or(p))
    } else {
        None
    };
    let mut spec = Spec {
        arch: arch.to_string(),
        space_hash: full.hash(),
        inherit: args.inherit,
        inherited_from: inherited_from.clone(),
        epochs: cfg.train.epochs,
        seconds: 0.0,
    };
    if args.resume && spec_path.exists() {
        let old: Spec = read_json(&spec_path)?;
        // What was inherited decides every weight; resuming with another
        // start would silently mix two trainings.
        let mine = (&spec.arch, &spec.space_hash, spec.inherit, spec.epochs);
        let theirs = (&old.arch, &old.space_hash, old.inherit, old.epochs);
        if mine != theirs {
            bail!(
                "{}: started as arch {} (space {}), inherit {}, {} epochs; now {} (space {}), inherit {}, {} epochs: delete {} to start over",
                spec_path.display(),
                old.arch,
                old.space_hash,
                old.inherit,
                old.epochs,
                spec.arch,
                spec.space_hash,
                spec.inherit,
                spec.epochs,
                dir.display()
            );
        }
        spec = old;
    }

    let mut splits = data::load(&cfg.data, full.input(), cfg.seed)
        .with_context(|| format!("loading {} from {}", cfg.data.kind, cfg.data.path.display()))?;
    if let Some(n) = cfg.train.max_train_samples {
        splits.limit_train(n, cfg.seed);
    }
    let net = Supernet::new(&single, device, cfg.seed)?;
    // Same as an uninterrupted run: a checkpoint replaces these weights anyway.
    let resuming = args.resume && ckpt.exists();
    if let Some(src) = &inherited_from
        && !resuming
    {
        let ignored = load_weights(&net, src, LoadMode::Subset)?;
        tracing::info!(
            tensors = net.num_tensors(),
            ignored = ignored.len(),
            "initialised from {}",
            src.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_json(&spec_path, &spec)?;
    tracing::info!(
        arch = %arch,
        parameters = net.num_parameters(),
        train = splits.train.len(),
        inherit = args.inherit,
        "retraining into {}",
        dir.display()
    );

    let done_before = if resuming && weights.exists() {
        let s = read_state(&ckpt)?;
        s.step >= s.total_steps
    } else {
        false
    };
    let sampler = StepSampler::new(&net, &single, cfg.seed)?;
    let summary = if done_before {
        load_weights(&net, &weights, LoadMode::Exact)?;
        None
    } else {
        let opts = TrainOptions {
            checkpoint: Some(ckpt.clone()),
            resume: args.resume,
            progress: args.progress,
            stop_after: args.max_steps,
            ..TrainOptions::new(cfg.train.single_path(), cfg.seed, cfg.data.augment)
        };
        let summary = train(&net, &sampler, &splits.train, &opts)?;
        spec.seconds += summary.seconds;
        write_json(&spec_path, &spec)?;
        if !summary.finished {
            let mut line = serde_json::to_value(&summary)?;
            line["arch"] = serde_json::json!(arch.to_string());
            line["dir"] = serde_json::json!(dir);
            println!("{line}");
            return Ok(());
        }
        save_weights(&net, &weights)?;
        Some(summary)
    };

    let result = match (summary, read_result(&dir)) {
        // Complete earlier, result written: nothing left to do.
        (None, Ok(r)) => r,
        _ => {
            let state = read_state(&ckpt)?;
            let bs = cfg.train.batch_size;
            let images = state.step as f64 * bs as f64;
            let r = RetrainResult {
                arch: arch.to_string(),
                space_hash: full.hash(),
                inherit: spec.inherit,
                inherited_from: spec.inherited_from.clone(),
                val_accuracy: standalone_accuracy(&net, &splits.val, bs)?,
                test_accuracy: standalone_accuracy(&net, &splits.test, bs)?,
                val_samples: splits.val.len(),
                test_samples: splits.test.len(),
                epochs: cfg.train.epochs,
                steps: state.step,
                seconds: spec.seconds,
                images_per_s: if spec.seconds > 0.0 {
                    images / spec.seconds
                } else {
                    0.0
                },
                parameters: net.num_parameters(),
            };
            write_json(&dir.join(RESULT_FILE), &r)?;
            r
        }
    };
    let mut line = serde_json::to_value(&result)?;
    line["dir"] = serde_json::json!(dir);
    line["finished"] = serde_json::json!(true);
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{WriteOptions, write_network_with};
    use crate::supernet::{TrainedWeights, standalone_path};
    use tch::Device;

    use crate::supernet::tests::TINY as SPACE;

    #[test]
    fn standalone_network_has_the_full_supernets_names_and_exports() {
        tch::set_num_threads(1);
        let full = Space::from_yaml_str(SPACE, "s").expect("space");
        let arch = full.parse_arch("k5e1,k5e2,id").expect("arch");
        let single = standalone_space(&full, &arch).expect("single");
        assert_eq!(single.num_architectures(), 1.0);
        let big = Supernet::new(&full, Device::Cpu, 3).expect("full net");
        let net = Supernet::new(&single, Device::Cpu, 3).expect("net");
        let mut names = Vec::new();
        for (name, t, _) in net.named_tensors() {
            let u = big
                .tensor(name)
                .unwrap_or_else(|| panic!("{name} is not a full-space tensor"));
            assert_eq!(t.size(), u.size(), "{name}");
            // Same (seed, name) → same initial values, so from-scratch
            // retraining starts where the supernet's op started.
            assert!(t.equal(u), "{name}");
            names.push(name.to_string());
        }
        // Only the chosen ops: no k3e1 in layer 0, no k3e3 anywhere.
        assert!(names.iter().any(|n| n.starts_with("layers.0.k5e1.")));
        assert!(
            !names
                .iter()
                .any(|n| n.contains("k3e1") || n.contains("k3e3"))
        );
        assert_eq!(standalone_path(&net), vec![0, 0, 0]);
        assert_eq!(net.arch_of(&standalone_path(&net)).expect("arch"), arch);

        // Its weights export against the full space, with the full space's hash.
        let mut w = TrainedWeights::from_supernet(&net).expect("weights");
        let bytes = write_network_with(&full, &arch, &mut w, &WriteOptions::default())
            .expect("export against the full space");
        assert!(!bytes.is_empty());
        // Another arch's ops are not in it.
        let other = full.parse_arch("k3e1,k5e2,id").expect("arch");
        let e = write_network_with(&full, &other, &mut w, &WriteOptions::default())
            .expect_err("k3e1 weights are absent");
        assert!(e.to_string().contains("layers.0.k3e1"), "{e}");
    }

    #[test]
    fn inherit_loads_the_supernets_tensors_by_name() {
        tch::set_num_threads(1);
        let dir = tempfile::tempdir().expect("tempdir");
        let full = Space::from_yaml_str(SPACE, "s").expect("space");
        let big = Supernet::new(&full, Device::Cpu, 7).expect("full net");
        let p = dir.path().join(WEIGHTS_FILE);
        save_weights(&big, &p).expect("save");
        let arch = full.parse_arch("k3e1,k3e3,k5e2").expect("arch");
        let single = standalone_space(&full, &arch).expect("single");
        // Another seed: values differ until loaded.
        let net = Supernet::new(&single, Device::Cpu, 8).expect("net");
        let w = "layers.1.k3e3.expand.weight";
        assert!(!net.tensor(w).expect("t").equal(big.tensor(w).expect("t")));
        let ignored = load_weights(&net, &p, LoadMode::Subset).expect("load");
        assert!(ignored.iter().any(|n| n.starts_with("layers.0.k5e1.")));
        for (name, t, _) in net.named_tensors() {
            assert!(t.equal(big.tensor(name).expect("t")), "{name}");
        }
    }

    #[test]
    fn latest_supernet_weights_prefers_the_highest_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path();
        assert_eq!(latest_supernet_weights(run), None);
        std::fs::write(run.join(WEIGHTS_FILE), b"x").expect("write");
        assert_eq!(latest_supernet_weights(run), Some(run.join(WEIGHTS_FILE)));
        for k in [1, 2, 10] {
            std::fs::create_dir(run.join(format!("stage-{k}"))).expect("mkdir");
        }
        // Stage directories without weights (a stage still training) don't count.
        assert_eq!(latest_supernet_weights(run), Some(run.join(WEIGHTS_FILE)));
        for k in [1, 2] {
            std::fs::write(run.join(format!("stage-{k}")).join(WEIGHTS_FILE), b"x").expect("w");
        }
        // Numeric order, not text order: 2 beats 1 (and 10 has no weights).
        let want = run.join("stage-2").join(WEIGHTS_FILE);
        assert_eq!(latest_supernet_weights(run), Some(want));
        std::fs::write(run.join("stage-10").join(WEIGHTS_FILE), b"x").expect("w");
        let want = run.join("stage-10").join(WEIGHTS_FILE);
        assert_eq!(latest_supernet_weights(run), Some(want));
        std::fs::create_dir(run.join("stage-x")).expect("mkdir");
        std::fs::write(run.join("stage-x").join(WEIGHTS_FILE), b"x").expect("w");
        assert_eq!(
            latest_supernet_weights(run),
            Some(run.join("stage-10").join(WEIGHTS_FILE))
        );
    }

    #[test]
    fn retrain_dir_names_the_arch_without_commas() {
        let full = Space::from_yaml_str(SPACE, "s").expect("space");
        let arch = full.parse_arch("k5e1,k5e2,id").expect("arch");
        assert_eq!(
            retrain_dir(Path::new("/r"), &arch),
            Path::new("/r/retrain/k5e1-k5e2-id")
        );
    }
}
