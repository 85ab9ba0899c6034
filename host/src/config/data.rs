//! `data:`: which data set, where, how much is held out, augmentation.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx, absolute};

/// Default Fashion-MNIST location: Debian's `dataset-fashion-mnist` package.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

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

impl DataConfig {
    pub(super) fn from_raw(d: &RawData, cx: &Ctx) -> Result<DataConfig, ConfigError> {
        let path = match (&d.path, d.kind) {
            (Some(p), _) => cx.resolve(p),
            (None, DataKind::FashionMnist) => PathBuf::from(FASHION_MNIST_DIR),
            (None, kind) => return Err(cx.bad("data.path", format!("required for {kind}"))),
        };
        let val_split = cx.fraction("data.val_split", d.val_split.unwrap_or(0.1))?;
        let augment = match &d.augment {
            None => Augment::default(),
            Some(a) => Augment {
                crop_padding: a.crop_padding.unwrap_or(0),
                hflip: a.hflip.unwrap_or(false),
            },
        };
        if augment.crop_padding > 64 {
            return Err(cx.bad(
                "data.augment.crop_padding",
                format!("{} is too large (≤ 64)", augment.crop_padding),
            ));
        }
        Ok(DataConfig {
            kind: d.kind,
            path,
            val_split,
            augment,
        })
    }

    pub(super) fn to_raw(&self) -> RawData {
        RawData {
            kind: self.kind,
            path: Some(absolute(&self.path)),
            val_split: Some(self.val_split),
            augment: Some(RawAugment {
                crop_padding: Some(self.augment.crop_padding),
                hflip: Some(self.augment.hflip),
            }),
        }
    }
}
