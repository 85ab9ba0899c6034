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
    #[error("{file}: cannot read: {cause}")]
    Read {
        /// The config file.
        file: String,
        /// Underlying I/O error.
        cause: std::io::Error,
    },
    /// The YAML does not parse or does not fit the schema (serde names the key).
    #[error("{file}: {cause}")]
    Yaml {
        /// The config file.
        file: String,
        /// Parser error with key path and line.
        cause: serde_yaml_ng::Error,
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
    #[error("{file}: cannot write: {cause}")]
    Write {
        /// Destination.
        file: String,
        /// Underlying I/O error.
        cause: std::io::Error,
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
    /// The board to search for and its latency table; the local CPU when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawTarget>,
    /// NSGA-II search settings (every search of the run); defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<RawSearch>,
    /// Progressive pruning stages; the paper's two when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<RawPrune>,
    /// Retraining the chosen architecture from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<RawRetrain>,
    /// Rank fidelity: score every stage's supernet against a ground truth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<RawRank>,
}

/// Rank section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRank {
    /// Ground-truth file of `padnas rank truth` (relative to the config).
    pub truth: PathBuf,
    /// BN recalibration batches per architecture; `search.bn_batches` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_batches: Option<usize>,
    /// Validation images per architecture; `search.val_samples` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_samples: Option<usize>,
}

/// Target section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Target name (a file under `targets_dir`) or path of a target YAML.
    pub name: String,
    /// Directory of target files; `targets` under the current directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets_dir: Option<PathBuf>,
    /// Latency table; measured (or completed) with `padnas profile` into
    /// `tables_dir` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<PathBuf>,
    /// Root of measured tables; `latency-tables` under the current directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_dir: Option<PathBuf>,
    /// Reference block for a table profiled by the run (`padnas profile
    /// --reference`): for machines whose speed changes every few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::space::BlockKey>,
    /// Sweeps over the block list for a table profiled by the run
    /// (`padnas profile --passes`); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    /// Sensor gate (%) for a table profiled by the run (`padnas profile
    /// --sensor-gate`): for a machine slowed from outside for seconds at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_gate: Option<f64>,
}

/// Latency window: either bounds in ms or quantiles of random architectures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Lower bound (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo_ms: Option<f64>,
    /// Upper bound (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi_ms: Option<f64>,
    /// `[lo, hi]` quantiles of the predicted latency of random architectures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<[f64; 2]>,
    /// Random architectures drawn for the quantiles; 2000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// Search section (paper defaults when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// Individuals per generation; 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<usize>,
    /// Generations; 40.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generations: Option<usize>,
    /// Two-point crossover probability; 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossover_prob: Option<f64>,
    /// Per-layer mutation probability; 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_prob: Option<f64>,
    /// The hard latency constraint; quantiles 0.25–0.75 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RawWindow>,
    /// Training batches for BN recalibration of each architecture; 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_batches: Option<usize>,
    /// Validation images scored per architecture (a fixed subset); 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_samples: Option<usize>,
}

/// Pruning section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrune {
    /// Fine-tuning epochs after each pruning; one stage per entry. The
    /// paper: `[80, 40]` after 120 epochs of supernet training.
    pub finetune_epochs: Vec<usize>,
    /// Ops with a frequency at or below this are pruned; 0.01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Architectures with a non-domination rank below this are counted; 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_limit: Option<usize>,
    /// Peak learning rate of each fine-tuning; `train.lr` when absent (the
    /// paper: 0.1 after 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune_lr: Option<f64>,
    /// Warm-up of each fine-tuning, in epochs; 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune_warmup_epochs: Option<f64>,
}

/// Retrain section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetrain {
    /// Epochs of stand-alone training; `train.epochs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Start from the supernet's weights instead of from scratch; false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
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
    /// Threads in all; libtorch's default (all cores) when absent. With
    /// shards, each shard's intra-op pool gets `threads / shards`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Data-parallel shards per batch, each on its own thread with its own
    /// BN batch statistics; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// How each step's path is drawn: `uniform` (SPOS, the default) or
    /// `fair` (every op of a layer once per group of steps, FairNAS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Start every residual candidate of the supernet as the identity
    /// (γ = 0 in its last batch norm); false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_residual_gamma: Option<bool>,
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

/// How a supernet step's path is drawn (see `supernet::StepSampler`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// Every layer's op drawn uniformly and independently (SPOS).
    #[default]
    Uniform,
    /// Every op of a layer once per group of steps, in random order (FairNAS).
    Fair,
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
    /// Threads in all, or libtorch's default.
    pub threads: Option<usize>,
    /// Data-parallel shards per batch (see `supernet::shards`).
    pub shards: usize,
    /// How each step's path is drawn.
    pub sampling: Sampling,
    /// Supernet residual candidates start as the identity.
    pub zero_residual_gamma: bool,
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
            shards: 1,
            sampling: Sampling::Uniform,
            zero_residual_gamma: false,
            checkpoint_every_steps: None,
            max_train_samples: None,
        }
    }
}

/// The target section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// Target name or file.
    pub name: String,
    /// Directory of target files.
    pub targets_dir: PathBuf,
    /// A given latency table, or none to profile into `tables_dir`.
    pub table: Option<PathBuf>,
    /// Root of measured tables.
    pub tables_dir: PathBuf,
    /// Reference block for profiling, if any.
    pub reference: Option<crate::space::BlockKey>,
    /// Sweeps over the block list when profiling.
    pub passes: u32,
    /// Sensor gate (%) when profiling, if any.
    pub sensor_gate: Option<f64>,
}

/// How the latency window is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSpec {
    /// Fixed bounds.
    Ms {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Quantiles of the predicted latency of random architectures of the
    /// run's initial space (computed once, kept for every stage).
    Quantiles {
        /// Lower quantile.
        lo: f64,
        /// Upper quantile.
        hi: f64,
        /// Architectures drawn.
        samples: usize,
    },
}

/// The search section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Individuals per generation.
    pub population: usize,
    /// Generations.
    pub generations: usize,
    /// Crossover probability.
    pub crossover_prob: f64,
    /// Per-layer mutation probability.
    pub mutation_prob: f64,
    /// The latency window.
    pub window: WindowSpec,
    /// BN recalibration batches per architecture.
    pub bn_batches: usize,
    /// Validation images per architecture.
    pub val_samples: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            population: 64,
            generations: 40,
            crossover_prob: 0.9,
            mutation_prob: 0.1,
            window: WindowSpec::Quantiles {
                lo: 0.25,
                hi: 0.75,
                samples: 2000,
            },
            bn_batches: 4,
            val_samples: 1000,
        }
    }
}

/// The prune section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneConfig {
    /// Fine-tuning epochs after each pruning (one stage each).
    pub finetune_epochs: Vec<usize>,
    /// Frequency threshold.
    pub threshold: f64,
    /// Rank limit.
    pub rank_limit: usize,
    /// Peak learning rate of each fine-tuning (`train.lr` when `None`).
    pub finetune_lr: Option<f64>,
    /// Warm-up of each fine-tuning, in epochs.
    pub finetune_warmup_epochs: f64,
}

/// The retrain section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Start from the supernet's weights.
    pub inherit: bool,
}

/// The rank section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankConfig {
    /// Ground-truth file.
    pub truth: PathBuf,
    /// BN recalibration batches per architecture.
    pub bn_batches: usize,
    /// Validation images per architecture.
    pub val_samples: usize,
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
    /// Target and latency table.
    pub target: TargetConfig,
    /// Search settings.
    pub search: SearchConfig,
    /// Pruning stages.
    pub prune: PruneConfig,
    /// Retraining.
    pub retrain: RetrainConfig,
    /// Rank fidelity against a ground truth, when asked for.
    pub rank: Option<RankConfig>,
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
            cause: source,
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
                cause: source,
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
                shards: (t.shards > 1).then_some(t.shards),
                sampling: (t.sampling != Sampling::Uniform).then_some(t.sampling),
                zero_residual_gamma: t.zero_residual_gamma.then_some(true),
                checkpoint_every_steps: t.checkpoint_every_steps,
                max_train_samples: t.max_train_samples,
            },
            target: Some(RawTarget {
                name: self.target.name.clone(),
                targets_dir: Some(abs(&self.target.targets_dir)),
                table: self.target.table.as_deref().map(abs),
                tables_dir: Some(abs(&self.target.tables_dir)),
                reference: self.target.reference,
                passes: Some(self.target.passes),
                sensor_gate: self.target.sensor_gate,
            }),
            search: Some(RawSearch {
                population: Some(self.search.population),
                generations: Some(self.search.generations),
                crossover_prob: Some(self.search.crossover_prob),
                mutation_prob: Some(self.search.mutation_prob),
                window: Some(match self.search.window {
                    WindowSpec::Ms { lo, hi } => RawWindow {
                        lo_ms: Some(lo),
                        hi_ms: Some(hi),
                        quantiles: None,
                        samples: None,
                    },
                    WindowSpec::Quantiles { lo, hi, samples } => RawWindow {
                        lo_ms: None,
                        hi_ms: None,
                        quantiles: Some([lo, hi]),
                        samples: Some(samples),
                    },
                }),
                bn_batches: Some(self.search.bn_batches),
                val_samples: Some(self.search.val_samples),
            }),
            prune: Some(RawPrune {
                finetune_epochs: self.prune.finetune_epochs.clone(),
                threshold: Some(self.prune.threshold),
                rank_limit: Some(self.prune.rank_limit),
                finetune_lr: self.prune.finetune_lr,
                finetune_warmup_epochs: Some(self.prune.finetune_warmup_epochs),
            }),
            retrain: Some(RawRetrain {
                epochs: Some(self.retrain.epochs),
                inherit: Some(self.retrain.inherit),
            }),
            rank: self.rank.as_ref().map(|r| RawRank {
                truth: abs(&r.truth),
                bn_batches: Some(r.bn_batches),
                val_samples: Some(r.val_samples),
            }),
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
            .map_err(|source| ConfigError::Write {
                file,
                cause: source,
            })
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
            lexical(p)
        } else {
            lexical(&base.join(p))
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
    let shards = t.shards.unwrap_or(1);
    positive("train.shards", shards)?;
    if shards > t.batch_size {
        return Err(bad(
            "train.shards",
            format!("{shards} is more than the batch size ({})", t.batch_size),
        ));
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

    let target = match &raw.target {
        None => TargetConfig {
            name: "local".into(),
            targets_dir: PathBuf::from("targets"),
            table: None,
            tables_dir: PathBuf::from("latency-tables"),
            reference: None,
            passes: 1,
            sensor_gate: None,
        },
        Some(r) => {
            if r.name.trim().is_empty() {
                return Err(bad("target.name", "must not be empty".into()));
            }
            TargetConfig {
                name: r.name.clone(),
                targets_dir: r
                    .targets_dir
                    .as_deref()
                    .map_or_else(|| PathBuf::from("targets"), resolve),
                table: r.table.as_deref().map(resolve),
                tables_dir: r
                    .tables_dir
                    .as_deref()
                    .map_or_else(|| PathBuf::from("latency-tables"), resolve),
                reference: r.reference,
                passes: crate::latency::measure::check_passes(r.passes.unwrap_or(1))
                    .map_err(|m| bad("target.passes", m))?,
                sensor_gate: match r
                    .sensor_gate
                    .map(crate::latency::measure::check_sensor_gate)
                    .transpose()
                    .map_err(|m| bad("target.sensor_gate", m))?
                {
                    Some(_) if r.reference.is_some() => {
                        return Err(bad(
                            "target.sensor_gate",
                            "does not combine with target.reference".into(),
                        ));
                    }
                    g => g,
                },
            }
        }
    };
    let search = validate_search(raw.search.as_ref(), &bad)?;
    let prune = match &raw.prune {
        None => PruneConfig {
            finetune_epochs: vec![t.epochs.div_ceil(2).max(1), t.epochs.div_ceil(4).max(1)],
            threshold: 0.01,
            rank_limit: 10,
            finetune_lr: None,
            finetune_warmup_epochs: 0.0,
        },
        Some(p) => {
            if p.finetune_epochs.contains(&0) {
                return Err(bad(
                    "prune.finetune_epochs",
                    "every entry must be ≥ 1".into(),
                ));
            }
            let threshold = p.threshold.unwrap_or(0.01);
            if !(0.0..1.0).contains(&threshold) {
                return Err(bad(
                    "prune.threshold",
                    format!("{threshold} must be in [0, 1)"),
                ));
            }
            let rank_limit = p.rank_limit.unwrap_or(10);
            positive("prune.rank_limit", rank_limit)?;
            if let Some(lr) = p.finetune_lr
                && !(lr > 0.0 && lr.is_finite())
            {
                return Err(bad("prune.finetune_lr", format!("{lr} must be > 0")));
            }
            let finetune_warmup_epochs = p.finetune_warmup_epochs.unwrap_or(0.0);
            if !(finetune_warmup_epochs >= 0.0 && finetune_warmup_epochs.is_finite()) {
                return Err(bad(
                    "prune.finetune_warmup_epochs",
                    format!("{finetune_warmup_epochs} must be ≥ 0"),
                ));
            }
            PruneConfig {
                finetune_epochs: p.finetune_epochs.clone(),
                threshold,
                rank_limit,
                finetune_lr: p.finetune_lr,
                finetune_warmup_epochs,
            }
        }
    };
    let retrain = RetrainConfig {
        epochs: raw
            .retrain
            .as_ref()
            .and_then(|r| r.epochs)
            .unwrap_or(t.epochs),
        inherit: raw
            .retrain
            .as_ref()
            .and_then(|r| r.inherit)
            .unwrap_or(false),
    };
    positive("retrain.epochs", retrain.epochs)?;
    let rank = match &raw.rank {
        None => None,
        Some(r) => {
            let rank = RankConfig {
                truth: resolve(&r.truth),
                bn_batches: r.bn_batches.unwrap_or(search.bn_batches),
                val_samples: r.val_samples.unwrap_or(search.val_samples),
            };
            positive("rank.val_samples", rank.val_samples)?;
            Some(rank)
        }
    };

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
            shards,
            sampling: t.sampling.unwrap_or_default(),
            zero_residual_gamma: t.zero_residual_gamma.unwrap_or(false),
            checkpoint_every_steps: t.checkpoint_every_steps,
            max_train_samples: t.max_train_samples,
        },
        target,
        search,
        prune,
        retrain,
        rank,
        origin: file.to_string(),
    })
}

/// `p` with `.` and inner `..` components folded away, without touching the
/// file system (`configs/../targets` → `targets`), so messages and records
/// show the path a user would write.
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn validate_search(
    raw: Option<&RawSearch>,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<SearchConfig, ConfigError> {
    let d = SearchConfig::default();
    let Some(r) = raw else { return Ok(d) };
    let population = r.population.unwrap_or(d.population);
    if population < 2 {
        return Err(bad(
            "search.population",
            format!("{population} must be ≥ 2"),
        ));
    }
    let prob = |key: &str, v: Option<f64>, default: f64| {
        let v = v.unwrap_or(default);
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(bad(key, format!("{v} must be in [0, 1]")))
        }
    };
    let window = match &r.window {
        None => d.window.clone(),
        Some(w) => match (w.lo_ms, w.hi_ms, w.quantiles) {
            (Some(lo), Some(hi), None) if w.samples.is_none() => {
                if !(lo >= 0.0 && lo < hi && hi.is_finite()) {
                    return Err(bad(
                        "search.window",
                        format!("lo_ms {lo} and hi_ms {hi}: need 0 ≤ lo_ms < hi_ms"),
                    ));
                }
                WindowSpec::Ms { lo, hi }
            }
            (None, None, Some([lo, hi])) => {
                if !(0.0 <= lo && lo < hi && hi <= 1.0) {
                    return Err(bad(
                        "search.window.quantiles",
                        format!("[{lo}, {hi}]: need 0 ≤ lo < hi ≤ 1"),
                    ));
                }
                let samples = w.samples.unwrap_or(2000);
                if samples < 2 {
                    return Err(bad(
                        "search.window.samples",
                        format!("{samples} must be ≥ 2"),
                    ));
                }
                WindowSpec::Quantiles { lo, hi, samples }
            }
            _ => {
                return Err(bad(
                    "search.window",
                    "give either lo_ms and hi_ms, or quantiles (and samples)".into(),
                ));
            }
        },
    };
    let val_samples = r.val_samples.unwrap_or(d.val_samples);
    if val_samples == 0 {
        return Err(bad("search.val_samples", "must be ≥ 1".into()));
    }
    Ok(SearchConfig {
        population,
        generations: r.generations.unwrap_or(d.generations),
        crossover_prob: prob("search.crossover_prob", r.crossover_prob, d.crossover_prob)?,
        mutation_prob: prob("search.mutation_prob", r.mutation_prob, d.mutation_prob)?,
        window,
        bn_batches: r.bn_batches.unwrap_or(d.bn_batches),
        val_samples,
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
        assert_eq!(c.train.shards, 1);
        let c = parse(&format!("{GOOD}  shards: 2\n")).unwrap();
        assert_eq!(c.train.shards, 2);
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
        let e = err(&format!("{GOOD}  shards: 0\n"));
        assert!(e.starts_with("job.yaml: train.shards: must be ≥ 1"), "{e}");
        let e = err(&format!("{GOOD}  shards: 1000\n"));
        assert!(
            e.starts_with("job.yaml: train.shards: 1000 is more than the batch size"),
            "{e}"
        );
        let e = err(&format!("{GOOD}  momentum: 0\n  nesterov: true\n"));
        assert!(
            e.starts_with("job.yaml: train.nesterov: needs momentum"),
            "{e}"
        );
    }

    #[test]
    fn sampling_is_uniform_unless_fair_is_asked_for() {
        assert_eq!(parse(GOOD).unwrap().train.sampling, Sampling::Uniform);
        let c = parse(&format!("{GOOD}  sampling: fair\n")).unwrap();
        assert_eq!(c.train.sampling, Sampling::Fair);
        let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
        assert_eq!(back.train.sampling, Sampling::Fair);
        let z = parse(&format!("{GOOD}  zero_residual_gamma: true\n")).unwrap();
        assert!(z.train.zero_residual_gamma && !c.train.zero_residual_gamma);
        let back = JobConfig::from_yaml_str(&z.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
        assert!(back.train.zero_residual_gamma);
        let e = err(&format!("{GOOD}  sampling: sometimes\n"));
        assert!(e.contains("sampling") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn the_rank_section_names_a_ground_truth() {
        assert_eq!(parse(GOOD).unwrap().rank, None, "absent: no scoring");
        let c = parse(&format!(
            "{GOOD}search: {{ bn_batches: 4, val_samples: 500 }}\nrank: {{ truth: ../gt.json }}\n"
        ))
        .unwrap();
        let r = c.rank.clone().expect("rank");
        assert_eq!(r.truth, Path::new("/gt.json"));
        assert_eq!(
            (r.bn_batches, r.val_samples),
            (4, 500),
            "the search's settings"
        );
        let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
        assert_eq!(back.rank, c.rank);
        let own = parse(&format!(
            "{GOOD}rank: {{ truth: gt.json, bn_batches: 8, val_samples: 3000 }}\n"
        ))
        .unwrap();
        assert_eq!(
            own.rank.map(|r| (r.bn_batches, r.val_samples)),
            Some((8, 3000))
        );
        let e = err(&format!(
            "{GOOD}rank: {{ truth: gt.json, val_samples: 0 }}\n"
        ));
        assert!(e.starts_with("job.yaml: rank.val_samples:"), "{e}");
        let e = err(&format!("{GOOD}rank: {{ truht: gt.json }}\n"));
        assert!(e.contains("rank") && e.contains("truht"), "{e}");
    }

    #[test]
    fn search_sections_validate_and_round_trip() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.search, SearchConfig::default());
        assert_eq!(c.target.name, "local");
        assert_eq!(c.prune.finetune_epochs, vec![2, 1]);
        assert_eq!(c.prune.threshold, 0.01);
        assert_eq!(c.retrain.epochs, 3);
        let text = format!(
            "{GOOD}target: {{ name: rpi4, targets_dir: ../targets, table: t.json, \
             reference: 'mbconv:k3e3:in16x28x28:out16:s1', passes: 4 }}\n\
             search: {{ population: 16, generations: 5, window: {{ lo_ms: 1.5, hi_ms: 3 }} }}\n\
             prune: {{ finetune_epochs: [4, 2, 1], threshold: 0.05 }}\n\
             retrain: {{ epochs: 9, inherit: true }}\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.target.table.as_deref(), Some(Path::new("/cfg/t.json")));
        assert_eq!(c.target.targets_dir, Path::new("/targets"));
        assert_eq!(lexical(Path::new("../a/./b/../c")), Path::new("../a/c"));
        assert_eq!(lexical(Path::new("a/..")), Path::new("."));
        assert_eq!(c.search.window, WindowSpec::Ms { lo: 1.5, hi: 3.0 });
        assert_eq!(c.search.population, 16);
        assert_eq!(c.prune.finetune_epochs, vec![4, 2, 1]);
        assert!(c.retrain.inherit);
        let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
        assert_eq!(back.search, c.search);
        assert_eq!(back.prune, c.prune);
        assert_eq!(back.retrain, c.retrain);
        assert_eq!(back.target.name, "rpi4");
        assert_eq!((c.target.passes, back.target.passes), (4, 4));
        assert_eq!(
            parse(GOOD).unwrap().target.passes,
            1,
            "one pass when absent"
        );
        let e = err(&format!("{GOOD}target: {{ name: rpi4, passes: 0 }}\n"));
        assert!(
            e.starts_with("job.yaml: target.passes: must be 1 to"),
            "{e}"
        );
        let gated = parse(&format!("{GOOD}target: {{ name: vm, sensor_gate: 10 }}\n")).unwrap();
        assert_eq!(gated.target.sensor_gate, Some(10.0));
        let again =
            JobConfig::from_yaml_str(&gated.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
        assert_eq!(again.target.sensor_gate, Some(10.0));
        assert_eq!(back.target.sensor_gate, None);
        let e = err(&format!("{GOOD}target: {{ name: vm, sensor_gate: 0 }}\n"));
        assert!(
            e.starts_with("job.yaml: target.sensor_gate: must be above 0"),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}target: {{ name: vm, sensor_gate: 10, reference: 'mbconv:k3e3:in16x28x28:out16:s1' }}\n"
        ));
        assert!(
            e.starts_with("job.yaml: target.sensor_gate: does not combine"),
            "{e}"
        );
        assert_eq!(
            back.target.reference.map(|k| k.to_string()).as_deref(),
            Some("mbconv:k3e3:in16x28x28:out16:s1")
        );
        let e = err(&format!(
            "{GOOD}target: {{ name: rpi4, reference: 'k3e3' }}\n"
        ));
        assert!(
            e.starts_with("job.yaml: target") && e.contains("block key \"k3e3\""),
            "{e}"
        );

        let e = err(&format!(
            "{GOOD}search: {{ window: {{ lo_ms: 3, hi_ms: 1 }} }}\n"
        ));
        assert!(e.starts_with("job.yaml: search.window:"), "{e}");
        let e = err(&format!(
            "{GOOD}search: {{ window: {{ lo_ms: 1, quantiles: [0.1, 0.2] }} }}\n"
        ));
        assert!(
            e.contains("give either lo_ms and hi_ms, or quantiles"),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}search: {{ window: {{ quantiles: [0.5, 0.2] }} }}\n"
        ));
        assert!(e.starts_with("job.yaml: search.window.quantiles:"), "{e}");
        let e = err(&format!(
            "{GOOD}prune: {{ finetune_epochs: [1], threshold: 1.5 }}\n"
        ));
        assert!(e.starts_with("job.yaml: prune.threshold:"), "{e}");
        let e = err(&format!("{GOOD}search: {{ populaton: 3 }}\n"));
        assert!(e.contains("unknown field `populaton`"), "{e}");
    }

    #[test]
    fn devices_parse() {
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:2".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(2)));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }
}
