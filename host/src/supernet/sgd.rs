//! SGD with momentum / Nesterov and decoupled-from-BN weight decay, written
//! out in tensor ops rather than tch's `nn::Optimizer`: the C++ optimizer's
//! momentum buffers cannot be read or restored through tch, and an exact
//! resume needs both.
//!
//! Semantics follow `torch.optim.SGD` (dampening 0): `g ← g + wd·p`
//! (conv and fully connected weights only), `b ← g` on a parameter's first
//! step and `b ← μ·b + g` after, `d ← g + μ·b` (Nesterov) or `d ← b`,
//! `p ← p − lr·d`. A parameter off the step's path is not touched at all,
//! as PyTorch skips parameters whose gradient is `None`; with
//! `train.momentum_carry: reset` its buffer is dropped as well, so that an
//! op sampled again after many steps does not move by a momentum that
//! other paths' losses built.

use std::collections::HashMap;

use tch::Tensor;

use super::{Supernet, SupernetError};
use crate::config::{MomentumCarry, Schedule, TrainConfig};

/// The optimizer: hyper-parameters and one momentum buffer per parameter
/// that has taken a step.
#[derive(Debug)]
pub struct Sgd {
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    carry: MomentumCarry,
    /// By parameter index in the supernet.
    buffers: HashMap<usize, Tensor>,
}

impl Sgd {
    /// An optimizer with the settings of `cfg` and no state yet.
    pub fn new(cfg: &TrainConfig) -> Sgd {
        Sgd {
            momentum: cfg.momentum,
            nesterov: cfg.nesterov,
            weight_decay: cfg.weight_decay,
            carry: cfg.momentum_carry,
            buffers: HashMap::new(),
        }
    }

    /// One update at learning rate `lr` of the parameters given with their
    /// gradients (parameter index into `net`, gradient).
    pub(crate) fn step(
        &mut self,
        net: &Supernet,
        grads: Vec<(usize, Tensor)>,
        lr: f64,
    ) -> Result<(), SupernetError> {
        let _guard = tch::no_grad_guard();
        let mut stepped = Vec::with_capacity(grads.len());
        for (i, mut grad) in grads {
            let p = &net.params()[i];
            if !grad.defined() {
                continue;
            }
            stepped.push(i);
            if self.weight_decay > 0.0 && p.kind.decays() {
                let _ = grad.f_add_(&p.tensor.f_mul_scalar(self.weight_decay)?)?;
            }
            let dir = if self.momentum > 0.0 {
                let buf = match self.buffers.get_mut(&i) {
                    Some(b) => {
                        let _ = b.f_mul_scalar_(self.momentum)?.f_add_(&grad)?;
                        b
                    }
                    None => self.buffers.entry(i).or_insert(grad.copy()),
                };
                if self.nesterov {
                    grad.f_add(&buf.f_mul_scalar(self.momentum)?)?
                } else {
                    buf.shallow_clone()
                }
            } else {
                grad
            };
            let mut t = p.tensor.shallow_clone();
            let _ = t.f_sub_(&dir.f_mul_scalar(lr)?)?;
        }
        if self.carry == MomentumCarry::Reset {
            stepped.sort_unstable();
            self.buffers.retain(|i, _| stepped.binary_search(i).is_ok());
        }
        Ok(())
    }

    /// Momentum buffers by parameter index (for checkpoints).
    pub(crate) fn buffers(&self) -> &HashMap<usize, Tensor> {
        &self.buffers
    }

    /// Replaces the momentum buffers (from a checkpoint).
    pub(crate) fn set_buffers(&mut self, buffers: HashMap<usize, Tensor>) {
        self.buffers = buffers;
    }
}

/// Learning rate at `step` (0-based) of `total` steps: linear warm-up over
/// `warmup` steps from `peak / warmup` to `peak`, then cosine or linear
/// decay towards zero at `total`.
pub fn learning_rate(cfg: &TrainConfig, step: u64, total: u64, warmup: u64) -> f64 {
    let peak = cfg.lr;
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    match cfg.schedule {
        Schedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        Schedule::Linear => peak * (1.0 - t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shapes() {
        let mut cfg = TrainConfig {
            lr: 1.0,
            ..TrainConfig::default()
        };
        assert_eq!(learning_rate(&cfg, 0, 100, 10), 0.1);
        assert_eq!(learning_rate(&cfg, 9, 100, 10), 1.0);
        assert_eq!(learning_rate(&cfg, 10, 100, 10), 1.0);
        assert!((learning_rate(&cfg, 55, 100, 10) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&cfg, 99, 100, 10) < 0.001);
        cfg.schedule = Schedule::Linear;
        assert!((learning_rate(&cfg, 55, 100, 10) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(&cfg, 0, 100, 0), 1.0);
    }
}
