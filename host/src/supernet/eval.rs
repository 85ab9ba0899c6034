//! Scoring one path of a trained supernet: BN recalibration, then accuracy.
//!
//! Why recalibrate: during SPOS training a batch norm's running statistics
//! mix the activations of every path that went through it, so they fit no
//! single path. Resetting a path's statistics and re-estimating them on a
//! few training batches, with that path alone, is the standard fix in
//! one-shot NAS (SPOS, Guo et al. 2020) and changes the ranking of paths.

use tch::{Kind, Reduction, Tensor};

use super::{BnMode, Supernet, SupernetError};
use crate::config::Augment;
use crate::data::{ImageSet, Loader, derive_seed};

/// Accuracy and loss of one path on one split.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// Share of images classified correctly, in [0, 1].
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Images scored.
    pub samples: usize,
}

/// Images per forward pass when scoring. Measured side by side (the
/// `one_shot` benchmark, host/README.md, 1 thread): 128 scored 1.35
/// architectures/s, 64 1.15, 256 1.03 and 500 0.88: past 128 the
/// activations of these small maps no longer stay in cache.
pub const EVAL_BATCH: usize = 128;

/// The batches BN recalibration reads: `batches` batches of `set`
/// (unaugmented, order seeded by `seed`).
fn recalibration_batches(
    net: &Supernet,
    set: &ImageSet,
    batches: usize,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<Tensor>, SupernetError> {
    let bs = batch_size.min(set.len());
    let mut loader = Loader::new(
        set,
        bs,
        Augment::default(),
        derive_seed(seed, "bn-recalibration", 0),
        net.device(),
    )?;
    (0..batches)
        .map(|k| Ok(loader.train_batch(k as u64)?.images))
        .collect()
}

/// All of `set` in batches of `batch_size`: images and labels.
fn evaluation_batches(
    net: &Supernet,
    set: &ImageSet,
    batch_size: usize,
) -> Result<Vec<(Tensor, Tensor)>, SupernetError> {
    let bs = batch_size.min(set.len()).max(1);
    let mut loader = Loader::new(set, bs, Augment::default(), 0, net.device())?;
    (0..loader.num_eval_batches())
        .map(|b| {
            let batch = loader.eval_batch(b)?;
            Ok((batch.images, batch.labels))
        })
        .collect()
}

/// Resets the running statistics of the batch norms on `path` and
/// re-estimates them as the plain average over `batches`: batch `k` enters
/// with momentum `1 / (k + 1)`, PyTorch's `momentum=None` cumulative average.
fn recalibrate_on(net: &Supernet, path: &[usize], batches: &[Tensor]) -> Result<(), SupernetError> {
    let _guard = tch::no_grad_guard();
    for (mean, var) in net.bn_stats_of(path) {
        let mut m = net.params()[mean].tensor.shallow_clone();
        let mut v = net.params()[var].tensor.shallow_clone();
        let _ = m.f_zero_()?;
        let _ = v.f_fill_(1.0)?;
    }
    for (k, images) in batches.iter().enumerate() {
        let _ = net.forward(
            images,
            path,
            BnMode::Recalibrate {
                momentum: 1.0 / (k as f64 + 1.0),
            },
        )?;
    }
    Ok(())
}

/// Accuracy and loss of `path` over `batches` (`samples` images in all),
/// batch norms in inference mode.
fn score_on(
    net: &Supernet,
    path: &[usize],
    batches: &[(Tensor, Tensor)],
    samples: usize,
) -> Result<EvalResult, SupernetError> {
    let _guard = tch::no_grad_guard();
    let (mut correct, mut loss_sum) = (0i64, 0.0f64);
    for (images, labels) in batches {
        let logits = net.forward(images, path, BnMode::Eval)?;
        let loss =
            logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0)?;
        loss_sum += loss.f_double_value(&[])?;
        correct += logits
            .f_argmax(-1, false)?
            .f_eq_tensor(labels)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?;
    }
    let n = samples.max(1) as f64;
    Ok(EvalResult {
        accuracy: correct as f64 / n,
        loss: loss_sum / n,
        samples,
    })
}

/// One-shot evaluation's data, built once and reused for every path a
/// search or a ranking scores: the recalibration batches and the
/// validation batches, already normalised and on the device. Scoring a path
/// with it gives what [`recalibrate_bn`] then [`evaluate`] give, without
/// rebuilding the same tensors for every architecture.
pub struct OneShotBatches {
    recalibration: Vec<Tensor>,
    validation: Vec<(Tensor, Tensor)>,
    samples: usize,
}

impl OneShotBatches {
    /// `bn_batches` batches of `batch_size` training images (order seeded
    /// by `seed`) for recalibration, and all of `val` in batches of
    /// `eval_batch` ([`EVAL_BATCH`] in the search).
    pub fn new(
        net: &Supernet,
        train: &ImageSet,
        (bn_batches, batch_size, seed): (usize, usize, u64),
        val: &ImageSet,
        eval_batch: usize,
    ) -> Result<OneShotBatches, SupernetError> {
        Ok(OneShotBatches {
            recalibration: recalibration_batches(net, train, bn_batches, batch_size, seed)?,
            validation: evaluation_batches(net, val, eval_batch)?,
            samples: val.len(),
        })
    }

    /// Recalibrates `path`'s batch norms (when there are recalibration
    /// batches), then scores it on the validation images.
    pub fn score(&self, net: &Supernet, path: &[usize]) -> Result<EvalResult, SupernetError> {
        if !self.recalibration.is_empty() {
            recalibrate_on(net, path, &self.recalibration)?;
        }
        score_on(net, path, &self.validation, self.samples)
    }
}

/// Resets the running statistics of the batch norms on `path` and
/// re-estimates them as the plain average over `batches` batches of `set`
/// (unaugmented, order seeded by `seed`): batch `k` enters with momentum
/// `1 / (k + 1)`, which is PyTorch's `momentum=None` cumulative average.
pub fn recalibrate_bn(
    net: &Supernet,
    path: &[usize],
    set: &ImageSet,
    batches: usize,
    batch_size: usize,
    seed: u64,
) -> Result<(), SupernetError> {
    let batches = recalibration_batches(net, set, batches, batch_size, seed)?;
    recalibrate_on(net, path, &batches)
}

/// Accuracy of `path` on all of `set`, batch norms in inference mode.
pub fn evaluate(
    net: &Supernet,
    path: &[usize],
    set: &ImageSet,
    batch_size: usize,
) -> Result<EvalResult, SupernetError> {
    let batches = evaluation_batches(net, set, batch_size)?;
    score_on(net, path, &batches, set.len())
}
