//! `rank:`: scoring every stage's supernet against a stand-alone ground truth.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx, SearchConfig, absolute};

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

impl RankConfig {
    /// The section; the search's evaluation settings where it is silent.
    pub(super) fn from_raw(
        r: &RawRank,
        search: &SearchConfig,
        cx: &Ctx,
    ) -> Result<RankConfig, ConfigError> {
        Ok(RankConfig {
            truth: cx.resolve(&r.truth),
            bn_batches: r.bn_batches.unwrap_or(search.bn_batches),
            val_samples: cx.positive(
                "rank.val_samples",
                r.val_samples.unwrap_or(search.val_samples),
            )?,
        })
    }

    pub(super) fn to_raw(&self) -> RawRank {
        RawRank {
            truth: absolute(&self.truth),
            bn_batches: Some(self.bn_batches),
            val_samples: Some(self.val_samples),
        }
    }
}
