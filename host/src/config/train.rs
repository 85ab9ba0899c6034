//! `train:`: supernet training (optimiser, schedule, threads, sampling).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx};

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
    /// What an op's momentum buffer does while the op is off the sampled
    /// path: `keep` (PyTorch's behaviour: it waits, and applies in full the
    /// next time the op is sampled, however stale) or `reset` (dropped
    /// after every step the op was not in, so momentum only builds over
    /// consecutive steps that sample it); `keep` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_carry: Option<MomentumCarry>,
    /// The sandwich rule (BigNAS): every step trains the largest path, the
    /// smallest and `random` drawn ones on the same batch, their gradients
    /// summed into one update; with `distill` (the default) all but the
    /// largest learn the largest's output distribution (in-place
    /// distillation). Absent: one drawn path per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandwich: Option<Sandwich>,
    /// How a layer's candidates hold their convolution weights: `none`
    /// (each its own, as SPOS and PAD-NAS) or `nested` (views into the
    /// layer's largest candidate: leading channels, centred kernel taps,
    /// as in Once-for-All); `none` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_sharing: Option<WeightSharing>,
    /// Also checkpoint every N steps (always at each epoch's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<usize>,
    /// Train on the first N images of the (shuffled) training split only, e.g. in CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train_samples: Option<usize>,
}

/// The sandwich rule's settings (`train.sandwich`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandwich {
    /// Drawn paths per step besides the largest and the smallest.
    pub random: usize,
    /// Paths other than the largest learn its soft outputs, not the labels.
    #[serde(default = "distill_default")]
    pub distill: bool,
}

fn distill_default() -> bool {
    true
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

/// How a supernet layer's candidates hold their weights (see
/// `Supernet::for_training`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightSharing {
    /// Every candidate its own weights.
    #[default]
    None,
    /// Every candidate a part of the layer's largest one: a step trains
    /// the weights that every overlapping candidate uses.
    Nested,
}

impl WeightSharing {
    fn is_none(&self) -> bool {
        *self == WeightSharing::None
    }
}

/// What happens to an unsampled op's momentum (see `Sgd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MomentumCarry {
    /// Kept until the op is sampled again (PyTorch's SGD).
    #[default]
    Keep,
    /// Dropped after a step without the op.
    Reset,
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
    /// Momentum of ops off the path.
    pub momentum_carry: MomentumCarry,
    /// The sandwich rule, when used.
    pub sandwich: Option<Sandwich>,
    /// Weights shared between a layer's candidates. Serialised only when
    /// used, so the pipeline's step settings of runs made before it
    /// existed stay the same.
    #[serde(default, skip_serializing_if = "WeightSharing::is_none")]
    pub weight_sharing: WeightSharing,
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
            momentum_carry: MomentumCarry::Keep,
            sandwich: None,
            weight_sharing: WeightSharing::None,
            checkpoint_every_steps: None,
            max_train_samples: None,
        }
    }
}

impl TrainConfig {
    /// The settings as they apply to a one-path (stand-alone) network: with
    /// one candidate per layer there is nothing to sample fairly or to
    /// sandwich or to share, no op misses a step, and no supernet γ is
    /// zeroed, so the supernet-only settings are reset. Otherwise they would enter the checkpoint's
    /// fingerprint and a supernet variant would make a stand-alone
    /// training look like another one.
    pub fn single_path(&self) -> TrainConfig {
        TrainConfig {
            sampling: Sampling::Uniform,
            zero_residual_gamma: false,
            momentum_carry: MomentumCarry::Keep,
            sandwich: None,
            weight_sharing: WeightSharing::None,
            ..self.clone()
        }
    }

    pub(super) fn from_raw(t: &RawTrain, cx: &Ctx) -> Result<TrainConfig, ConfigError> {
        let defaults = TrainConfig::default();
        cx.positive("train.epochs", t.epochs)?;
        cx.positive("train.batch_size", t.batch_size)?;
        // Written as `!(x > 0)` so NaN is refused too.
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(cx.bad("train.lr", format!("{} must be > 0", t.lr)));
        }
        let momentum = cx.fraction("train.momentum", t.momentum.unwrap_or(defaults.momentum))?;
        let nesterov = t.nesterov.unwrap_or(momentum > 0.0);
        if nesterov && momentum == 0.0 {
            return Err(cx.bad("train.nesterov", "needs momentum > 0"));
        }
        let weight_decay = t.weight_decay.unwrap_or(defaults.weight_decay);
        if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
            return Err(cx.bad("train.weight_decay", format!("{weight_decay} must be ≥ 0")));
        }
        let warmup_epochs = t.warmup_epochs.unwrap_or(0.0);
        if !(warmup_epochs >= 0.0 && warmup_epochs < t.epochs as f64) {
            return Err(cx.bad(
                "train.warmup_epochs",
                format!("{warmup_epochs} must be in [0, epochs)"),
            ));
        }
        let label_smoothing =
            cx.fraction("train.label_smoothing", t.label_smoothing.unwrap_or(0.0))?;
        if let Some(n) = t.threads {
            cx.positive("train.threads", n)?;
        }
        let shards = cx.positive("train.shards", t.shards.unwrap_or(1))?;
        if shards > t.batch_size {
            return Err(cx.bad(
                "train.shards",
                format!("{shards} is more than the batch size ({})", t.batch_size),
            ));
        }
        if let Some(n) = t.checkpoint_every_steps {
            cx.positive("train.checkpoint_every_steps", n)?;
        }
        if let Some(n) = t.max_train_samples
            && n < t.batch_size
        {
            return Err(cx.bad(
                "train.max_train_samples",
                format!("{n} is less than one batch ({})", t.batch_size),
            ));
        }
        Ok(TrainConfig {
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
            momentum_carry: t.momentum_carry.unwrap_or_default(),
            sandwich: t.sandwich,
            weight_sharing: t.weight_sharing.unwrap_or_default(),
            checkpoint_every_steps: t.checkpoint_every_steps,
            max_train_samples: t.max_train_samples,
        })
    }

    pub(super) fn to_raw(&self) -> RawTrain {
        RawTrain {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: Some(self.momentum),
            nesterov: Some(self.nesterov),
            weight_decay: Some(self.weight_decay),
            warmup_epochs: Some(self.warmup_epochs),
            schedule: Some(self.schedule),
            label_smoothing: Some(self.label_smoothing),
            threads: self.threads,
            shards: (self.shards > 1).then_some(self.shards),
            sampling: (self.sampling != Sampling::Uniform).then_some(self.sampling),
            zero_residual_gamma: self.zero_residual_gamma.then_some(true),
            momentum_carry: (self.momentum_carry != MomentumCarry::Keep)
                .then_some(self.momentum_carry),
            sandwich: self.sandwich,
            weight_sharing: (!self.weight_sharing.is_none()).then_some(self.weight_sharing),
            checkpoint_every_steps: self.checkpoint_every_steps,
            max_train_samples: self.max_train_samples,
        }
    }
}
