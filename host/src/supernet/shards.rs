//! One training step's forward and backward, optionally data-parallel: the
//! batch is cut into `n` shards that run at the same time on `n` threads.
//!
//! Why shards: on small inputs (Fashion-MNIST's 28×28, narrow layers)
//! libtorch's intra-op parallelism cuts each op too finely to pay off; two
//! intra-op threads gave 1.3–1.45× over one on this 2-core machine. Two
//! shards keep each core busy with whole ops of half the batch. PyTorch
//! cannot do this from one Python process without the GIL serialising the
//! per-op dispatch.
//!
//! What changes: each shard normalises with its own batch statistics, as
//! PyTorch's `DistributedDataParallel` does without `SyncBatchNorm`; the
//! loss and its gradient are otherwise those of the whole batch (shard
//! losses are weighted by their share of the images). Only shard 0 moves
//! the running statistics: two threads must not update the same buffer, and
//! BN recalibration replaces them before any evaluation anyway.
//!
//! Determinism: gradients come back per shard (`autograd.grad`, never
//! accumulated into `.grad` by whichever thread finishes first) and are
//! summed in shard order, so a run is bitwise reproducible for any number of
//! shards, and exact resume holds.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use tch::{Kind, Reduction, Tensor};

use super::{BnMode, Supernet, SupernetError};

/// What one step computed.
#[derive(Debug)]
pub(crate) struct StepOut {
    /// Cross-entropy of the whole batch (mean over images).
    pub(crate) loss: f64,
    /// Correctly classified images.
    pub(crate) hits: i64,
    /// Gradient of `loss` for each requested parameter, in request order.
    pub(crate) grads: Vec<Tensor>,
    /// The path's output distribution per image (softmax, no gradient):
    /// the teacher of in-place distillation.
    pub(crate) probs: Tensor,
}

/// One shard's work.
struct Job {
    images: Tensor,
    labels: Tensor,
    /// Soft targets instead of the labels (the labels still count hits).
    soft: Option<Tensor>,
    path: Vec<usize>,
    params: Vec<usize>,
    /// The shard's share of the batch's images (its loss weight).
    weight: f64,
    label_smoothing: f64,
}

/// A worker thread with its own handles to the supernet's tensors.
struct Worker {
    jobs: Option<Sender<Job>>,
    results: Receiver<Result<StepOut, SupernetError>>,
    handle: Option<JoinHandle<()>>,
}

/// Runs training steps on `n` shards; worker threads live as long as this
/// value (a thread per step would hand its malloc arena back to the kernel
/// at exit and fault the activations' pages back in at the next step).
pub(crate) struct Shards {
    workers: Vec<Worker>,
    /// Intra-op thread count to restore when done (set only when divided).
    restore_threads: Option<i32>,
}

impl Shards {
    /// `n` shards over `net` (1 runs everything on the calling thread).
    /// With `n > 1`, libtorch's intra-op pool gets `threads / n` threads
    /// each (at least one) until this value is dropped.
    pub(crate) fn new(net: &Supernet, n: usize) -> Result<Shards, SupernetError> {
        let mut restore_threads = None;
        if n > 1 {
            let threads = tch::get_num_threads();
            // Worker threads read the count when they first run a parallel
            // op, so it must be set before they start.
            tch::set_num_threads((threads / n as i32).max(1));
            restore_threads = Some(threads);
        }
        let mut shards = Shards {
            workers: Vec::new(),
            restore_threads,
        };
        for k in 1..n {
            let view = net.share();
            let (job_tx, job_rx) = channel::<Job>();
            let (res_tx, res_rx) = channel();
            let handle = std::thread::Builder::new()
                .name(format!("padnas-shard-{k}"))
                .spawn(move || {
                    for job in job_rx {
                        let out = shard_step(&view, &job, BnMode::BatchOnly);
                        if res_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| SupernetError::Shard(format!("cannot start shard {k}: {e}")))?;
            shards.workers.push(Worker {
                jobs: Some(job_tx),
                results: res_rx,
                handle: Some(handle),
            });
        }
        Ok(shards)
    }

    /// Number of shards.
    pub(crate) fn len(&self) -> usize {
        self.workers.len() + 1
    }

    /// Forward and backward of path `path` on one batch; gradients of the
    /// parameters `params` (indices into the supernet). With `soft`, the
    /// loss is the cross-entropy against those distributions (one row per
    /// image) rather than against `labels`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &self,
        net: &Supernet,
        images: &Tensor,
        labels: &Tensor,
        soft: Option<&Tensor>,
        path: &[usize],
        params: &[usize],
        label_smoothing: f64,
    ) -> Result<StepOut, SupernetError> {
        let total = images.size().first().copied().unwrap_or(0);
        let bounds = shard_bounds(total, self.len());
        let job = |(lo, len): (i64, i64)| -> Result<Job, SupernetError> {
            Ok(Job {
                images: images.f_narrow(0, lo, len)?,
                labels: labels.f_narrow(0, lo, len)?,
                soft: soft.map(|t| t.f_narrow(0, lo, len)).transpose()?,
                path: path.to_vec(),
                params: params.to_vec(),
                weight: len as f64 / total as f64,
                label_smoothing,
            })
        };
        // Hand out shards 1.. first, then compute shard 0 here meanwhile.
        let mut sent = Vec::new();
        for (w, &b) in self.workers.iter().zip(&bounds[1..]) {
            let tx = w.jobs.as_ref().expect("jobs open until drop");
            tx.send(job(b)?).map_err(|_| stopped())?;
            sent.push(w);
        }
        let mine = shard_step(net, &job(bounds[0])?, BnMode::Train);
        // Collect every result before looking at any, so that no stale one
        // waits for the next step.
        let theirs: Vec<_> = sent
            .into_iter()
            .map(|w| w.results.recv().map_err(|_| stopped()).and_then(|r| r))
            .collect();
        let mut out = mine?;
        let mut probs = vec![out.probs.shallow_clone()];
        for b in theirs {
            let b = b?;
            out.loss += b.loss;
            out.hits += b.hits;
            for (g, h) in out.grads.iter_mut().zip(&b.grads) {
                *g = g.f_add(h)?;
            }
            probs.push(b.probs);
        }
        if probs.len() > 1 {
            out.probs = Tensor::f_cat(&probs, 0)?;
        }
        Ok(out)
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the channel ends the worker's loop.
            w.jobs.take();
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        if let Some(t) = self.restore_threads {
            tch::set_num_threads(t);
        }
    }
}

/// A worker's channel closed: its thread ended (a panic in libtorch).
fn stopped() -> SupernetError {
    SupernetError::Shard("a shard's thread has stopped".into())
}

/// `(start, len)` of each of `n` shards of `total` images: sizes differ by
/// at most one, larger ones first; with fewer images than shards the extra
/// shards are dropped.
fn shard_bounds(total: i64, n: usize) -> Vec<(i64, i64)> {
    let n = (n as i64).min(total).max(1);
    let (base, extra) = (total / n, total % n);
    let mut lo = 0;
    (0..n)
        .map(|k| {
            let len = base + i64::from(k < extra);
            let b = (lo, len);
            lo += len;
            b
        })
        .collect()
}

/// Forward, weighted loss and its gradients on one shard.
fn shard_step(net: &Supernet, job: &Job, mode: BnMode) -> Result<StepOut, SupernetError> {
    let logits = net.forward(&job.images, &job.path, mode)?;
    let loss = match &job.soft {
        // −Σ q·log p, averaged over images: cross-entropy against the
        // teacher's distribution (its gradient is KL's).
        Some(q) => logits
            .f_log_softmax(-1, Kind::Float)?
            .f_mul(q)?
            .f_sum_dim_intlist(-1, false, Kind::Float)?
            .f_mean(Kind::Float)?
            .f_neg()?,
        None => logits.f_cross_entropy_loss::<Tensor>(
            &job.labels,
            None,
            Reduction::Mean,
            -100,
            job.label_smoothing,
        )?,
    }
    .f_mul_scalar(job.weight)?;
    let inputs: Vec<&Tensor> = job
        .params
        .iter()
        .map(|&i| &net.params()[i].tensor)
        .collect();
    let grads = Tensor::f_run_backward(&[&loss], &inputs, false, false)?;
    let (hits, probs) = tch::no_grad(|| -> Result<_, tch::TchError> {
        let hits = logits
            .f_argmax(-1, false)?
            .f_eq_tensor(&job.labels)?
            .f_sum(Kind::Int64)?;
        Ok((hits, logits.f_softmax(-1, Kind::Float)?))
    })?;
    Ok(StepOut {
        loss: loss.f_double_value(&[])?,
        hits: hits.f_int64_value(&[])?,
        grads,
        probs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_the_batch() {
        assert_eq!(shard_bounds(128, 1), [(0, 128)]);
        assert_eq!(shard_bounds(128, 2), [(0, 64), (64, 64)]);
        assert_eq!(shard_bounds(10, 3), [(0, 4), (4, 3), (7, 3)]);
        assert_eq!(shard_bounds(2, 4), [(0, 1), (1, 1)]);
    }
}
