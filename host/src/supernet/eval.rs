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
    let _guard = tch::no_grad_guard();
    for (mean, var) in net.bn_stats_of(path) {
        let mut m = net.params()[mean].tensor.shallow_clone();
        let mut v = net.params()[var].tensor.shallow_clone();
        let _ = m.f_zero_()?;
        let _ = v.f_fill_(1.0)?;
    }
    let bs = batch_size.min(set.len());
    let mut loader = Loader::new(
        set,
        bs,
        Augment::default(),
        derive_seed(seed, "bn-recalibration", 0),
        net.device(),
    )?;
    for k in 0..batches {
        let batch = loader.train_batch(k as u64)?;
        let _ = net.forward(
            &batch.images,
            path,
            BnMode::Recalibrate {
                momentum: 1.0 / (k as f64 + 1.0),
            },
        )?;
    }
    Ok(())
}

/// Accuracy of `path` on all of `set`, batch norms in inference mode.
pub fn evaluate(
    net: &Supernet,
    path: &[usize],
    set: &ImageSet,
    batch_size: usize,
) -> Result<EvalResult, SupernetError> {
    let _guard = tch::no_grad_guard();
    let bs = batch_size.min(set.len()).max(1);
    let mut loader = Loader::new(set, bs, Augment::default(), 0, net.device())?;
    let (mut correct, mut loss_sum) = (0i64, 0.0f64);
    for b in 0..loader.num_eval_batches() {
        let batch = loader.eval_batch(b)?;
        let logits = net.forward(&batch.images, path, BnMode::Eval)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(
            &batch.labels,
            None,
            Reduction::Sum,
            -100,
            0.0,
        )?;
        loss_sum += loss.f_double_value(&[])?;
        correct += logits
            .f_argmax(-1, false)?
            .f_eq_tensor(&batch.labels)?
            .f_sum(Kind::Int64)?
            .f_int64_value(&[])?;
    }
    let n = set.len().max(1) as f64;
    Ok(EvalResult {
        accuracy: correct as f64 / n,
        loss: loss_sum / n,
        samples: set.len(),
    })
}
