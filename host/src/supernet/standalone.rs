//! Stand-alone networks: one architecture trained on its own, from scratch.
//!
//! A stand-alone network is the supernet of a one-path space (one op per
//! layer, [`standalone_space`]), trained with the same loop as the
//! supernet: with a single candidate per layer every step takes the same
//! path, which is plain training, and checkpoints, exact resume and progress
//! come for free. Its tensors keep the full space's names, so weights load
//! by name from a supernet and export against the full space.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{StepSampler, Supernet, SupernetError, TrainOptions, evaluate, train};
use crate::config::{Augment, TrainConfig};
use crate::data::{ImageSet, Splits};
use crate::space::{Arch, Space};

/// The one-path space of `arch`: `full` with only `arch`'s op at each layer.
/// Its supernet has exactly the stand-alone network's tensors, named as in
/// `full`'s supernet.
pub fn standalone_space(full: &Space, arch: &Arch) -> Result<Space, SupernetError> {
    full.check_arch(arch)?;
    let ops: Vec<Vec<_>> = arch.ops.iter().map(|&op| vec![op]).collect();
    Ok(full.with_layer_ops(&ops)?)
}

/// The stand-alone network's path in its one-path space: candidate 0 everywhere.
pub fn standalone_path(net: &Supernet) -> Vec<usize> {
    vec![0; net.space().layers().len()]
}

/// Accuracy of a stand-alone network on `set` (`None` for an empty set).
pub fn standalone_accuracy(
    net: &Supernet,
    set: &ImageSet,
    batch_size: usize,
) -> Result<Option<f64>, SupernetError> {
    if set.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        evaluate(net, &standalone_path(net), set, batch_size)?.accuracy,
    ))
}

/// How to train one stand-alone network from scratch.
#[derive(Clone, Debug)]
pub struct StandaloneJob<'a> {
    /// The space the architecture belongs to (tensor names come from it).
    pub full: &'a Space,
    /// The architecture.
    pub arch: &'a Arch,
    /// Optimiser, schedule, epochs, batch size.
    pub train: TrainConfig,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Seed of the initial weights and of the data order.
    pub seed: u64,
    /// Checkpoint file (resumed when it exists); none means no checkpoints.
    pub checkpoint: Option<PathBuf>,
    /// Score the test split too (it costs more than the validation split
    /// when only a ranking is wanted).
    pub score_test: bool,
    /// More images to score on besides the splits (a ground truth's
    /// left-out training images).
    pub holdout: Option<&'a ImageSet>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What a finished stand-alone training measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandaloneResult {
    /// Accuracy on the validation split; `None` without one.
    pub val_accuracy: Option<f64>,
    /// Accuracy on the test split; `None` without one, or when not asked for.
    pub test_accuracy: Option<f64>,
    /// Accuracy on [`StandaloneJob::holdout`]; `None` without it.
    pub holdout_accuracy: Option<f64>,
    /// Steps trained.
    pub steps: u64,
    /// Training seconds of this call (a resumed run counts only its part).
    pub seconds: f64,
    /// Trainable parameters.
    pub parameters: usize,
}

/// Trains `job.arch` from scratch on `splits.train` (resuming the checkpoint
/// when there is one) and scores it on the validation and test splits.
pub fn train_standalone(
    job: &StandaloneJob<'_>,
    splits: &Splits,
    device: tch::Device,
) -> Result<StandaloneResult, SupernetError> {
    let single = standalone_space(job.full, job.arch)?;
    let net = Supernet::new(&single, device, job.seed)?;
    let sampler = StepSampler::new(&net, &single, job.seed)?;
    let opts = TrainOptions {
        checkpoint: job.checkpoint.clone(),
        resume: true,
        progress: job.progress,
        ..TrainOptions::new(job.train.single_path(), job.seed, job.augment)
    };
    let summary = train(&net, &sampler, &splits.train, &opts)?;
    let bs = job.train.batch_size;
    Ok(StandaloneResult {
        val_accuracy: standalone_accuracy(&net, &splits.val, bs)?,
        test_accuracy: if job.score_test {
            standalone_accuracy(&net, &splits.test, bs)?
        } else {
            None
        },
        holdout_accuracy: match job.holdout {
            Some(set) => standalone_accuracy(&net, set, bs)?,
            None => None,
        },
        steps: summary.step,
        seconds: summary.seconds,
        parameters: net.num_parameters(),
    })
}
