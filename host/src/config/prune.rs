//! `prune:`: the progressive pruning stages and each stage's fine-tuning.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx, TrainConfig};

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

impl PruneConfig {
    /// The section, or the paper's two stages (fine-tuned for ½ and ¼ of the
    /// supernet's epochs) when it is absent.
    pub(super) fn from_raw(
        raw: Option<&RawPrune>,
        train: &TrainConfig,
        cx: &Ctx,
    ) -> Result<PruneConfig, ConfigError> {
        let Some(p) = raw else {
            return Ok(PruneConfig {
                finetune_epochs: vec![
                    train.epochs.div_ceil(2).max(1),
                    train.epochs.div_ceil(4).max(1),
                ],
                threshold: 0.01,
                rank_limit: 10,
                finetune_lr: None,
                finetune_warmup_epochs: 0.0,
            });
        };
        if p.finetune_epochs.contains(&0) {
            return Err(cx.bad("prune.finetune_epochs", "every entry must be ≥ 1"));
        }
        let threshold = cx.fraction("prune.threshold", p.threshold.unwrap_or(0.01))?;
        let rank_limit = cx.positive("prune.rank_limit", p.rank_limit.unwrap_or(10))?;
        if let Some(lr) = p.finetune_lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return Err(cx.bad("prune.finetune_lr", format!("{lr} must be > 0")));
        }
        let finetune_warmup_epochs = p.finetune_warmup_epochs.unwrap_or(0.0);
        if !(finetune_warmup_epochs >= 0.0 && finetune_warmup_epochs.is_finite()) {
            return Err(cx.bad(
                "prune.finetune_warmup_epochs",
                format!("{finetune_warmup_epochs} must be ≥ 0"),
            ));
        }
        Ok(PruneConfig {
            finetune_epochs: p.finetune_epochs.clone(),
            threshold,
            rank_limit,
            finetune_lr: p.finetune_lr,
            finetune_warmup_epochs,
        })
    }

    pub(super) fn to_raw(&self) -> RawPrune {
        RawPrune {
            finetune_epochs: self.finetune_epochs.clone(),
            threshold: Some(self.threshold),
            rank_limit: Some(self.rank_limit),
            finetune_lr: self.finetune_lr,
            finetune_warmup_epochs: Some(self.finetune_warmup_epochs),
        }
    }
}
