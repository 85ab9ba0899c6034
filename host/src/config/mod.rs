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
//! One file per section (`data`, `train`, `target`, `search`, `prune`,
//! `retrain`, `rank`), each holding its raw form, its validated form, the
//! check from one to the other and the way back (`to_raw`, for the copy
//! saved in a run directory). A new section is a new file and one field in
//! [`RawJobConfig`] and [`JobConfig`]; this file loads, checks the top-level
//! keys and saves.
//!
//! ```yaml
//! name: fmnist-local
//! seed: 1
//! space: spaces/fmnist-small.yaml
//! data: { kind: fashion-mnist, val_split: 0.1, augment: { crop_padding: 2 } }
//! train: { epochs: 10, batch_size: 128, lr: 0.1, schedule: cosine }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod data;
mod device;
mod prune;
mod rank;
mod retrain;
mod search;
mod target;
#[cfg(test)]
mod tests;
mod train;

pub use data::{Augment, DataConfig, DataKind, FASHION_MNIST_DIR, RawAugment, RawData};
pub use device::DeviceSpec;
pub use prune::{PruneConfig, RawPrune};
pub use rank::{RankConfig, RawRank};
pub use retrain::{RawRetrain, RetrainConfig};
pub use search::{RawSearch, RawWindow, SearchConfig, WindowSpec};
pub use target::{RawTarget, TargetConfig};
pub use train::{
    MomentumCarry, RawTrain, Sampling, Sandwich, Schedule, TrainConfig, WeightSharing,
};

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
    #[error(transparent)]
    Write(#[from] crate::files::WriteError),
}

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
        RawJobConfig {
            name: self.name.clone(),
            run_dir: Some(absolute(&self.run_dir)),
            seed: self.seed,
            device: Some(self.device.to_string()),
            space: absolute(&self.space),
            data: self.data.to_raw(),
            train: self.train.to_raw(),
            target: Some(self.target.to_raw()),
            search: Some(self.search.to_raw()),
            prune: Some(self.prune.to_raw()),
            retrain: Some(self.retrain.to_raw()),
            rank: self.rank.as_ref().map(RankConfig::to_raw),
        }
    }

    /// YAML of [`JobConfig::to_raw`].
    pub fn to_yaml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_yaml_ng::to_string(&self.to_raw()).unwrap_or_default()
    }

    /// Writes [`JobConfig::to_yaml`] to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        Ok(crate::files::write_atomic(path, self.to_yaml().as_bytes())?)
    }
}

/// What every section's check needs: the file, to name it in errors, and
/// the directory relative paths are taken from.
struct Ctx<'a> {
    file: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    /// The error for a bad value at the dotted `key`.
    fn bad(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A path from the file, relative to the file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            lexical(p)
        } else {
            lexical(&self.base.join(p))
        }
    }

    /// `v`, or an error when it is 0.
    fn positive(&self, key: &str, v: usize) -> Result<usize, ConfigError> {
        if v == 0 {
            Err(self.bad(key, "must be ≥ 1"))
        } else {
            Ok(v)
        }
    }

    /// `v`, or an error when it is outside `[0, 1)` (NaN included).
    fn fraction(&self, key: &str, v: f64) -> Result<f64, ConfigError> {
        if (0.0..1.0).contains(&v) {
            Ok(v)
        } else {
            Err(self.bad(key, format!("{v} must be in [0, 1)")))
        }
    }
}

fn validate(raw: RawJobConfig, file: &str, base: &Path) -> Result<JobConfig, ConfigError> {
    let cx = Ctx { file, base };
    // The name becomes a directory: keep it to one portable path component.
    if raw.name.is_empty()
        || raw.name.starts_with('.')
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(cx.bad(
            "name",
            format!(
                "{:?} must be non-empty letters, digits, '.', '_' or '-'",
                raw.name
            ),
        ));
    }
    let run_dir = match &raw.run_dir {
        Some(p) => cx.resolve(p),
        None => Path::new("runs").join(&raw.name),
    };
    let device = match &raw.device {
        Some(d) => d.parse().map_err(|m: String| cx.bad("device", m))?,
        None => DeviceSpec::Cpu,
    };
    // Checked in the order of the file, so the first error reported is the
    // first one a reader meets.
    let data = DataConfig::from_raw(&raw.data, &cx)?;
    let train = TrainConfig::from_raw(&raw.train, &cx)?;
    let target = TargetConfig::from_raw(raw.target.as_ref(), &cx)?;
    let search = SearchConfig::from_raw(raw.search.as_ref(), &cx)?;
    Ok(JobConfig {
        prune: PruneConfig::from_raw(raw.prune.as_ref(), &train, &cx)?,
        retrain: RetrainConfig::from_raw(raw.retrain.as_ref(), &train, &cx)?,
        rank: raw
            .rank
            .as_ref()
            .map(|r| RankConfig::from_raw(r, &search, &cx))
            .transpose()?,
        name: raw.name,
        run_dir,
        seed: raw.seed,
        device,
        space: cx.resolve(&raw.space),
        data,
        train,
        target,
        search,
        origin: file.to_string(),
    })
}

/// `p` made absolute against the current directory (as it is, if that fails).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
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
