//! The weight-sharing supernet of a [`Space`](crate::space::Space) in libtorch
//! (via `tch`): modules and parameters ([`Supernet`]), single-path one-shot
//! (SPOS) training with exact resume ([`train`]), batch-norm recalibration
//! and evaluation of one path ([`recalibrate_bn`], [`evaluate`]),
//! checkpoints ([`checkpoint`]) and a bridge to the ONNX writer
//! ([`TrainedWeights`]).
//!
//! Parameter names follow [`crate::onnx::ParamRef`]: `stem.conv.weight`,
//! `layers.3.k5e6.expand.weight`, `layers.3.k5e6.expand.bn.running_var`,
//! `head.conv.bn.bias`, `classifier.fc.weight`, … so a trained file plugs
//! straight into the exporter.

pub mod checkpoint;
mod device;
mod eval;
mod memory;
mod model;
mod sgd;
mod shards;
mod standalone;
#[cfg(test)]
pub(crate) mod tests;
mod train;
mod weights;

use std::path::PathBuf;

pub use device::torch_device;
pub use eval::{EVAL_BATCH, EvalResult, OneShotBatches, evaluate, recalibrate_bn};
pub use memory::keep_freed_memory;
pub use model::{BN_MOMENTUM, BnMode, ParamKind, Supernet};
pub use sgd::{Sgd, learning_rate};
pub use standalone::{
    StandaloneJob, StandaloneResult, standalone_accuracy, standalone_path, standalone_space,
    train_standalone,
};
pub use train::{StepSampler, TrainOptions, TrainSummary, train};
pub use weights::TrainedWeights;

use crate::data::DataError;
use crate::space::SpaceError;

/// Everything that can go wrong building, training or saving a supernet.
#[derive(Debug, thiserror::Error)]
pub enum SupernetError {
    /// A libtorch call failed (shape mismatch, device missing, …).
    #[error("torch: {0}")]
    Torch(tch::TchError),
    /// The space or an architecture is invalid.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// Loading a batch failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint or weights file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying I/O error.
        cause: std::io::Error,
    },
    /// A checkpoint or weights file is malformed or does not fit the supernet.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Two things that must agree do not (sampling space vs supernet, resume
    /// settings vs checkpoint).
    #[error("{0}")]
    Mismatch(String),
    /// The asked-for device cannot be used (no CUDA library, no such GPU).
    #[error("--device {spec}: {message}")]
    Device {
        /// The device as asked for (`cuda:1`).
        spec: String,
        /// Why it cannot be used, and what to do.
        message: String,
    },
    /// A data-parallel shard's thread could not start or has stopped.
    #[error("training shard: {0}")]
    Shard(String),
    /// Training diverged (loss not finite).
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged {
        /// Step at which the loss went bad.
        step: u64,
        /// The loss value.
        loss: f64,
    },
}

// By hand, not `#[from]`: the message shows the cause, so it is not also
// returned as the source (each cause is printed once).
impl From<tch::TchError> for SupernetError {
    fn from(e: tch::TchError) -> SupernetError {
        SupernetError::Torch(e)
    }
}
