//! The job config: one YAML file that names a data set, a search space and
//! the settings of every stage of a PAD-NAS run.
//!
//! Read into a raw serde form ([`RawJobConfig`], unknown keys refused) and
//! validated into [`JobConfig`]; every error names the file and the key.
//! Relative paths inside the file are taken relative to the file's own
//! directory, so a config works whatever the current directory is; the run
//! directory alone defaults to `runs/<name>` under the current directory,
//! where the user looks for results.
//!
//! Later stages (pruning, search, target, latency window) add their own
//! optional sections next to `train`: a new `Option<Raw…>` field in
//! [`RawJobConfig`] and its validated twin in [`JobConfig`].
//!
//! ```yaml
//! name: fmnist-local
//! seed: 1
//! space: spaces/fmnist-small.yaml
//! data: { kind: fashion-mnist, val_split: 0.1, augment: { crop_padding: 2 } }
//! train: { epochs: 10, batch_size: 128, lr: 0.1, schedule: cosine }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default Fashion-MNIST location: Debian's `dataset-fashion-mnist` package.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Everything that can go wrong reading a job config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse or does not fit the schema (serde names the key).
    #[error("{file}: {source}")]
    Yaml {
        /// The config file.
        file: String,
        /// Parser error with key path and line.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The config file.
        file: String,
        /// Dotted key, e.g. `train.lr`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The config could not be written (into a run directory).
    #[error("{file}: cannot write: {source}")]
    Write {
        /// Destination.
        file: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------
// Raw form
// ---------------------------------------------------------------------------

/// The job config as written in YAML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobConfig {
    /// Run name; also the default run directory `runs/<name>`.
    pub name: String,
    /// Where every stage writes; `runs/<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// Seed of every random choice (init, data order, augmentation, paths).
    pub seed: u64,
    /// `cpu` (default), `cuda` or `cuda:N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Path of the search-space YAML.
    pub space: PathBuf,
    /// The data set.
    pub data: RawData,
    /// Supernet training.
    pub train: RawTrain,
}

/// Which data set and how to split and augment it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// `fashion-mnist`, `cifar10` or `folder`.
    pub kind: DataKind,
    /// Directory of the files; Fashion-MNIST defaults to [`FASHION_MNIST_DIR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Share of the training split held out for validation; 0.1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_split: Option<f64>,
    /// Training-time augmentation; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<RawAugment>,
}

/// Augmentation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAugment {
    /// Random crop after zero padding by this many pixels per side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_padding: Option<usize>,
    /// Random horizontal flip (wrong for digits or text; off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hflip: Option<bool>,
}

/// Supernet training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    /// Passes over the (possibly subset) training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum; 0.9 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Nesterov momentum; true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// L2 weight decay on conv and fully connected weights (never BN or bias); 4e-5 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Linear warm-up length in epochs (may be fractional); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<f64>,
    /// Decay after warm-up; cosine when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Label smoothing ε; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    /// Intra-op threads; libtorch's default (all cores) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Also checkpoint every N steps (always at each epoch's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<usize>,
    /// Train on the first N images of the (shuffled) training split only, e.g. in CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train_samples: Option<usize>,
}

/// Supported data sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// Fashion-MNIST gzipped IDX files.
    FashionMnist,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// One subfolder per class of JPEG/PNG images.
    Folder,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::FashionMnist => "fashion-mnist",
            DataKind::Cifar10 => "cifar10",
            DataKind::Folder => "folder",
        })
    }
}

/// Learning-rate decay after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Half cosine from the peak to zero.
    Cosine,
    /// Straight line from the peak to zero.
    Linear,
}

// ---------------------------------------------------------------------------
// Validated form
// ---------------------------------------------------------------------------

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceSpec {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// CUDA device N (needs a CUDA libtorch; see host/README.md).
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(0) => f.write_str("cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device {s:?} (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> Self {
        d.to_string()
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Augmentation, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding per side before a random crop back to size; 0 = no crop.
    pub crop_padding: usize,
    /// Random horizontal flip with probability ½.
    pub hflip: bool,
}

impl Augment {
    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.hflip
    }
}

/// The data section, validated (paths absolute or relative to the current directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Which loader.
    pub kind: DataKind,
    /// Directory of the files.
    pub path: PathBuf,
    /// Share of the training split held out for validation, in `[0, 1)`.
    pub val_split: f64,
    /// Training-time augmentation.
    pub augment: Augment,
}

/// The train section, validated, defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay (conv and fully connected weights only).
    pub weight_decay: f64,
    /// Warm-up length in epochs.
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// Intra-op threads, or libtorch's default.
    pub threads: Option<usize>,
    /// Extra checkpoint every N steps.
    pub checkpoint_every_steps: Option<usize>,
    /// Subset of the training split.
    pub max_train_samples: Option<usize>,
}

impl Default for TrainConfig {
    /// The defaults of every optional key; `epochs`, `batch_size` and `lr`
    /// are required in a file, and set here to small values for tests.
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 4e-5,
            warmup_epochs: 0.0,
            schedule: Schedule::Cosine,
            label_smoothing: 0.0,
            threads: None,
            checkpoint_every_steps: None,
            max_train_samples: None,
        }
    }
}

/// A validated job config.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Run name.
    pub name: String,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Seed of every random choice.
    pub seed: u64,
    /// Where to train.
    pub device: DeviceSpec,
    /// Search-space file.
    pub space: PathBuf,
    /// The data set.
    pub data: DataConfig,
    /// Supernet training.
    pub train: TrainConfig,
    /// The file this config was read from (for messages).
    pub origin: String,
}

impl JobConfig {
    /// Reads and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<JobConfig, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        JobConfig::from_yaml_str(&text, &file, &base)
    }

    /// Parses and validates YAML; `file` names it in errors and relative
    /// paths are resolved against `base`.
    pub fn from_yaml_str(text: &str, file: &str, base: &Path) -> Result<JobConfig, ConfigError> {
        let raw: RawJobConfig =
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Yaml {
                file: file.to_string(),
                source,
            })?;
        JobConfig::from_raw(raw, file, base)
    }

    /// Validates a raw config.
    pub fn from_raw(raw: RawJobConfig, file: &str, base: &Path) -> Result<JobConfig, ConfigError> {
        validate(raw, file, base)
    }

    /// The raw form with every path made absolute, so that a copy saved in
    /// the run directory reads back the same from there.
    pub fn to_raw(&self) -> RawJobConfig {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let t = &self.train;
        RawJobConfig {
            name: self.name.clone(),
            run_dir: Some(abs(&self.run_dir)),
            seed: self.seed,
            device: Some(self.device.to_string()),
            space: abs(&self.space),
            data: RawData {
                kind: self.data.kind,
                path: Some(abs(&self.data.path)),
                val_split: Some(self.data.val_split),
                augment: Some(RawAugment {
                    crop_padding: Some(self.data.augment.crop_padding),
                    hflip: Some(self.data.augment.hflip),
                }),
            },
            train: RawTrain {
                epochs: t.epochs,
                batch_size: t.batch_size,
                lr: t.lr,
                momentum: Some(t.momentum),
                nesterov: Some(t.nesterov),
                weight_decay: Some(t.weight_decay),
                warmup_epochs: Some(t.warmup_epochs),
                schedule: Some(t.schedule),
                label_smoothing: Some(t.label_smoothing),
                threads: t.threads,
                checkpoint_every_steps: t.checkpoint_every_steps,
                max_train_samples: t.max_train_samples,
            },
        }
    }

    /// YAML of [`JobConfig::to_raw`].
    pub fn to_yaml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_yaml_ng::to_string(&self.to_raw()).unwrap_or_default()
    }

    /// Writes [`JobConfig::to_yaml`] to `path` (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let file = path.display().to_string();
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.to_yaml())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| ConfigError::Write { file, source })
    }
}

fn validate(raw: RawJobConfig, file: &str, base: &Path) -> Result<JobConfig, ConfigError> {
    let bad = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    // The name becomes a directory: keep it to one portable path component.
    if raw.name.is_empty()
        || raw.name.starts_with('.')
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(bad(
            "name",
            format!(
                "{:?} must be non-empty letters, digits, '.', '_' or '-'",
                raw.name
            ),
        ));
    }
    let run_dir = match &raw.run_dir {
        Some(p) => resolve(p),
        None => Path::new("runs").join(&raw.name),
    };
    let device = match &raw.device {
        Some(d) => d.parse().map_err(|m| bad("device", m))?,
        None => DeviceSpec::Cpu,
    };

    let d = &raw.data;
    let path = match (&d.path, d.kind) {
        (Some(p), _) => resolve(p),
        (None, DataKind::FashionMnist) => PathBuf::from(FASHION_MNIST_DIR),
        (None, kind) => return Err(bad("data.path", format!("required for {kind}"))),
    };
    let val_split = d.val_split.unwrap_or(0.1);
    if !(0.0..1.0).contains(&val_split) {
        return Err(bad(
            "data.val_split",
            format!("{val_split} must be in [0, 1)"),
        ));
    }
    let augment = match &d.augment {
        None => Augment::default(),
        Some(a) => Augment {
            crop_padding: a.crop_padding.unwrap_or(0),
            hflip: a.hflip.unwrap_or(false),
        },
    };
    if augment.crop_padding > 64 {
        return Err(bad(
            "data.augment.crop_padding",
            format!("{} is too large (≤ 64)", augment.crop_padding),
        ));
    }

    let t = &raw.train;
    let defaults = TrainConfig::default();
    let positive = |key: &str, v: usize| {
        if v == 0 {
            Err(bad(key, "must be ≥ 1".into()))
        } else {
            Ok(v)
        }
    };
    positive("train.epochs", t.epochs)?;
    positive("train.batch_size", t.batch_size)?;
    // Written as `!(x > 0)` so NaN is refused too.
    if !(t.lr > 0.0 && t.lr.is_finite()) {
        return Err(bad("train.lr", format!("{} must be > 0", t.lr)));
    }
    let momentum = t.momentum.unwrap_or(defaults.momentum);
    if !(0.0..1.0).contains(&momentum) {
        return Err(bad(
            "train.momentum",
            format!("{momentum} must be in [0, 1)"),
        ));
    }
    let nesterov = t.nesterov.unwrap_or(momentum > 0.0);
    if nesterov && momentum == 0.0 {
        return Err(bad("train.nesterov", "needs momentum > 0".into()));
    }
    let weight_decay = t.weight_decay.unwrap_or(defaults.weight_decay);
    if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
        return Err(bad(
            "train.weight_decay",
            format!("{weight_decay} must be ≥ 0"),
        ));
    }
    let warmup_epochs = t.warmup_epochs.unwrap_or(0.0);
    if !(warmup_epochs >= 0.0 && warmup_epochs < t.epochs as f64) {
        return Err(bad(
            "train.warmup_epochs",
            format!("{warmup_epochs} must be in [0, epochs)"),
        ));
    }
    let label_smoothing = t.label_smoothing.unwrap_or(0.0);
    if !(0.0..1.0).contains(&label_smoothing) {
        return Err(bad(
            "train.label_smoothing",
            format!("{label_smoothing} must be in [0, 1)"),
        ));
    }
    if let Some(n) = t.threads {
        positive("train.threads", n)?;
    }
    if let Some(n) = t.checkpoint_every_steps {
        positive("train.checkpoint_every_steps", n)?;
    }
    if let Some(n) = t.max_train_samples
        && n < t.batch_size
    {
        return Err(bad(
            "train.max_train_samples",
            format!("{n} is less than one batch ({})", t.batch_size),
        ));
    }

    Ok(JobConfig {
        name: raw.name.clone(),
        run_dir,
        seed: raw.seed,
        device,
        space: resolve(&raw.space),
        data: DataConfig {
            kind: d.kind,
            path,
            val_split,
            augment,
        },
        train: TrainConfig {
            epochs: t.epochs,
            batch_size: t.batch_size,
            lr: t.lr,
            momentum,
            nesterov,
            weight_decay,
            warmup_epochs,
            schedule: t.schedule.unwrap_or(Schedule::Cosine),
            label_smoothing,
            threads: t.threads,
            checkpoint_every_steps: t.checkpoint_every_steps,
            max_train_samples: t.max_train_samples,
        },
        origin: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
name: fm
seed: 7
space: spaces/fmnist-small.yaml
data:
  kind: fashion-mnist
  augment: { crop_padding: 2 }
train:
  epochs: 3
  batch_size: 64
  lr: 0.05
  warmup_epochs: 0.5
  schedule: linear
";

    fn parse(text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::from_yaml_str(text, "job.yaml", Path::new("/cfg"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.run_dir, Path::new("runs/fm"));
        assert_eq!(c.space, Path::new("/cfg/spaces/fmnist-small.yaml"));
        assert_eq!(c.data.path, Path::new(FASHION_MNIST_DIR));
        assert_eq!(c.data.val_split, 0.1);
        assert_eq!(
            c.data.augment,
            Augment {
                crop_padding: 2,
                hflip: false
            }
        );
        assert_eq!(c.device, DeviceSpec::Cpu);
        assert_eq!(c.train.momentum, 0.9);
        assert!(c.train.nesterov);
        assert_eq!(c.train.schedule, Schedule::Linear);
        assert_eq!(c.train.threads, None);
    }

    #[test]
    fn saved_copy_reads_back_the_same() {
        let c = parse(GOOD).unwrap();
        let back =
            JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/elsewhere")).unwrap();
        assert_eq!(back.space, c.space);
        assert_eq!(back.train, c.train);
        assert_eq!(back.data, c.data);
        assert!(back.run_dir.is_absolute());
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = err(&GOOD.replace("lr: 0.05", "lr: 0"));
        assert!(e.starts_with("job.yaml: train.lr: 0 must be > 0"), "{e}");
        let e = err(&GOOD.replace("lr: 0.05", "lr: .nan"));
        assert!(e.starts_with("job.yaml: train.lr:"), "{e}");
        let e = err(&GOOD.replace("epochs: 3", "epoch: 3"));
        assert!(
            e.starts_with("job.yaml: train: unknown field `epoch`"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind: fashion-mnist", "kind: mnist"));
        assert!(
            e.starts_with("job.yaml: data.kind: unknown variant `mnist`"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind: fashion-mnist", "kind: cifar10"));
        assert!(
            e.starts_with("job.yaml: data.path: required for cifar10"),
            "{e}"
        );
        let e = err(&GOOD.replace("warmup_epochs: 0.5", "warmup_epochs: 3"));
        assert!(e.starts_with("job.yaml: train.warmup_epochs:"), "{e}");
        let e = err(&GOOD.replace("name: fm", "name: ../x"));
        assert!(e.starts_with("job.yaml: name:"), "{e}");
        let e = err(&format!("{GOOD}device: tpu\n"));
        assert!(
            e.starts_with("job.yaml: device: unknown device \"tpu\""),
            "{e}"
        );
        let e = err(&format!("{GOOD}  max_train_samples: 10\n"));
        assert!(e.starts_with("job.yaml: train.max_train_samples:"), "{e}");
        let e = err(&format!("{GOOD}  momentum: 0\n  nesterov: true\n"));
        assert!(
            e.starts_with("job.yaml: train.nesterov: needs momentum"),
            "{e}"
        );
    }

    #[test]
    fn devices_parse() {
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:2".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(2)));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }
}
