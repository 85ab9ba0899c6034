//! `retrain:`: training the chosen architectures from scratch.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx, TrainConfig};

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

/// The retrain section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Start from the supernet's weights.
    pub inherit: bool,
}

impl RetrainConfig {
    /// The section; the supernet's epochs, from scratch, where it is silent.
    pub(super) fn from_raw(
        raw: Option<&RawRetrain>,
        train: &TrainConfig,
        cx: &Ctx,
    ) -> Result<RetrainConfig, ConfigError> {
        let epochs = raw.and_then(|r| r.epochs).unwrap_or(train.epochs);
        Ok(RetrainConfig {
            epochs: cx.positive("retrain.epochs", epochs)?,
            inherit: raw.and_then(|r| r.inherit).unwrap_or(false),
        })
    }

    pub(super) fn to_raw(&self) -> RawRetrain {
        RawRetrain {
            epochs: Some(self.epochs),
            inherit: Some(self.inherit),
        }
    }
}
