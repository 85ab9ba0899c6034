//! SPOS training: at every step one path, drawn uniformly per layer from the
//! current (possibly pruned) layer-wise space, takes a forward/backward pass
//! on one batch and an SGD update of the parameters it used (with the
//! sandwich rule, several paths on the same batch and one update of their
//! summed gradients).
//!
//! Exact resume: the path and the batch of step `s` (its images, their
//! order, their augmentation) are functions of (seed, s) alone, and a
//! checkpoint holds the weights, the BN statistics and the momentum buffers.
//! Continuing from step `s` therefore replays exactly what an uninterrupted
//! run does next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::checkpoint::{TrainState, load_checkpoint, save_checkpoint};
use super::shards::Shards;
use super::{Sgd, Supernet, SupernetError, learning_rate};
use crate::config::{Augment, MomentumCarry, Sampling, Sandwich, TrainConfig, WeightSharing};
use crate::data::{Batch, ImageSet, Loader, derive_seed};
use crate::space::{Arch, Space};

/// Draws the path of each step from a sampling space: the supernet's own
/// space or a pruned copy of it (same layers, fewer candidates), so pruned
/// ops are never drawn.
///
/// Uniform sampling draws each layer's op independently at every step.
/// Fair sampling (FairNAS's strict fairness, per layer) walks each layer
/// through a fresh random permutation of its `n` ops every `n` steps, so
/// every op of a layer is trained exactly once per group of `n` steps: with
/// uniform draws an op can go unsampled for many steps while its momentum
/// buffer and BN statistics age. (FairNAS also sums the group's gradients
/// into one update; here every step still updates.)
///
/// With the sandwich rule (BigNAS) a step trains several paths: the largest
/// and the smallest of the sampling space, then drawn ones.
#[derive(Clone, Debug)]
pub struct StepSampler {
    space: Space,
    /// Per layer: sampling-space candidate index → supernet candidate index.
    to_net: Vec<Vec<usize>>,
    seed: u64,
    sampling: Sampling,
}

impl StepSampler {
    /// A sampler over `space`, which must be `net`'s space or a pruning of it.
    pub fn new(net: &Supernet, space: &Space, seed: u64) -> Result<StepSampler, SupernetError> {
        let net_layers = net.space().layers();
        if space.layers().len() != net_layers.len() {
            return Err(SupernetError::Mismatch(format!(
                "sampling space has {} layers, the supernet {}",
                space.layers().len(),
                net_layers.len()
            )));
        }
        let mut to_net = Vec::new();
        for (l, nl) in space.layers().iter().zip(net_layers) {
            if (l.input, l.out_channels, l.stride) != (nl.input, nl.out_channels, nl.stride) {
                return Err(SupernetError::Mismatch(format!(
                    "layer {}: shape differs from the supernet's",
                    l.index
                )));
            }
            let map = l
                .ops
                .iter()
                .map(|op| {
                    nl.ops.iter().position(|o| o == op).ok_or_else(|| {
                        SupernetError::Mismatch(format!(
                            "layer {}: {op} is not in the supernet",
                            l.index
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            to_net.push(map);
        }
        Ok(StepSampler {
            space: space.clone(),
            to_net,
            seed,
            sampling: Sampling::Uniform,
        })
    }

    /// The same sampler, drawing paths as `sampling` says.
    pub fn with_sampling(mut self, sampling: Sampling) -> StepSampler {
        self.sampling = sampling;
        self
    }

    /// Sampling-space candidate index per layer at step `step`.
    fn indices(&self, step: u64) -> Vec<usize> {
        match self.sampling {
            Sampling::Uniform => {
                self.space
                    .sample_indices(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                        self.seed, "path", step,
                    )))
            }
            Sampling::Fair => self
                .space
                .layers()
                .iter()
                .map(|l| {
                    let n = l.ops.len() as u64;
                    let group = step / n;
                    let mut order: Vec<usize> = (0..l.ops.len()).collect();
                    let tag = format!("fair-path-{}", l.index);
                    order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                        self.seed, &tag, group,
                    )));
                    order[(step % n) as usize]
                })
                .collect(),
        }
    }

    /// The sampling space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The architecture of step `step`.
    pub fn arch(&self, step: u64) -> Arch {
        match self.sampling {
            // Kept as it was, so uniform runs repeat their old paths.
            Sampling::Uniform => self
                .space
                .sample(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                    self.seed, "path", step,
                ))),
            Sampling::Fair => Arch {
                ops: self
                    .space
                    .layers()
                    .iter()
                    .zip(self.indices(step))
                    .map(|(l, i)| l.ops[i])
                    .collect(),
            },
        }
    }

    /// The largest and the smallest path of the sampling space: per layer
    /// the candidate with the most and with the fewest multiply-accumulates
    /// (the first listed on a tie).
    pub fn extremes(&self) -> (Vec<usize>, Vec<usize>) {
        let pick = |largest: bool| -> Vec<usize> {
            (self.space.layers().iter().zip(&self.to_net))
                .map(|(l, map)| {
                    let macs = |i: usize| l.macs(l.ops[i]);
                    let best = (0..l.ops.len()).reduce(|a, b| {
                        let better = if largest {
                            macs(b) > macs(a)
                        } else {
                            macs(b) < macs(a)
                        };
                        if better { b } else { a }
                    });
                    map[best.unwrap_or(0)]
                })
                .collect()
        };
        (pick(true), pick(false))
    }

    /// The supernet paths step `step` trains: with `sandwich`, the largest,
    /// the smallest, then `random` drawn paths (those of the virtual steps
    /// `step·random + i`, so that fair sampling stays fair over them and no
    /// two steps share a draw); without it, the one of [`StepSampler::path`].
    pub fn step_paths(&self, step: u64, sandwich: Option<Sandwich>) -> Vec<Vec<usize>> {
        let Some(s) = sandwich else {
            return vec![self.path(step)];
        };
        let (large, small) = self.extremes();
        let k = s.random as u64;
        let mut out = vec![large, small];
        out.extend((0..k).map(|i| self.path(step * k + i)));
        out
    }

    /// The supernet path (candidate index per layer) of step `step`.
    pub fn path(&self, step: u64) -> Vec<usize> {
        self.indices(step)
            .iter()
            .zip(&self.to_net)
            .map(|(&i, map)| map[i])
            .collect()
    }
}

/// How to run [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Optimiser, schedule, epochs, batch size, checkpoint interval.
    pub config: TrainConfig,
    /// Job seed (data order and augmentation; the sampler has its own copy).
    pub seed: u64,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Checkpoint file; none means no checkpoints.
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint when it exists.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop (with a checkpoint) once this many steps are done, as if killed
    /// there; for tests and for splitting a run into sessions.
    pub stop_after: Option<u64>,
}

impl TrainOptions {
    /// Options with no checkpoint, no resume and no progress bar.
    pub fn new(config: TrainConfig, seed: u64, augment: Augment) -> Self {
        TrainOptions {
            config,
            seed,
            augment,
            checkpoint: None,
            resume: false,
            progress: false,
            stop_after: None,
        }
    }
}

/// What a call to [`train`] did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainSummary {
    /// Step reached (of `total_steps`).
    pub step: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Step this call started from (non-zero after a resume).
    pub start_step: u64,
    /// Whether the run is complete.
    pub finished: bool,
    /// Wall time of this call's steps.
    pub seconds: f64,
    /// Training images per second in this call.
    pub images_per_s: f64,
    /// Share of that time spent building batches (loader overhead).
    pub loader_share: f64,
    /// Mean training loss over the last epoch (or part) of this call.
    pub loss: f64,
    /// Training accuracy over the same steps.
    pub accuracy: f64,
}

/// Settings that change the result; a resume refuses a checkpoint whose
/// fingerprint differs. Threads and checkpoint interval are left out: they
/// do not change what is computed. Shards do (batch statistics per shard).
fn fingerprint(opts: &TrainOptions, set: &ImageSet) -> String {
    let c = &opts.config;
    let mut settings_key = serde_json::json!({
        "epochs": c.epochs, "batch_size": c.batch_size, "lr": c.lr, "momentum": c.momentum,
        "nesterov": c.nesterov, "weight_decay": c.weight_decay, "warmup_epochs": c.warmup_epochs,
        "schedule": c.schedule, "label_smoothing": c.label_smoothing, "augment": opts.augment,
        "train_images": set.len(),
    });
    // Only when sharded, so checkpoints written before shards existed resume.
    if c.shards > 1 {
        settings_key["shards"] = c.shards.into();
    }
    // Likewise only when not the original uniform sampling.
    if c.sampling != Sampling::Uniform {
        settings_key["sampling"] = serde_json::json!(c.sampling);
    }
    if c.zero_residual_gamma {
        settings_key["zero_residual_gamma"] = true.into();
    }
    if c.momentum_carry != MomentumCarry::Keep {
        settings_key["momentum_carry"] = serde_json::json!(c.momentum_carry);
    }
    if let Some(s) = c.sandwich {
        settings_key["sandwich"] = serde_json::json!(s);
    }
    if c.weight_sharing != WeightSharing::None {
        settings_key["weight_sharing"] = serde_json::json!(c.weight_sharing);
    }
    settings_key.to_string()
}

/// What one step's paths computed together.
pub(super) struct StepGrads {
    /// Mean loss over the paths.
    pub(super) loss: f64,
    /// Correct images summed over the paths.
    pub(super) hits: i64,
    /// Summed gradient of each parameter any path used, by first use.
    pub(super) grads: Vec<(usize, Tensor)>,
}

/// Forward and backward of every path of a step on one batch. The first of
/// several paths is the sandwich's largest: with distillation the others
/// learn its output distribution. Gradients are summed, not averaged, as in
/// BigNAS: each path's loss counts in full.
pub(super) fn step_grads(
    net: &Supernet,
    shards: &Shards,
    batch: &Batch,
    paths: &[Vec<usize>],
    cfg: &TrainConfig,
) -> Result<StepGrads, SupernetError> {
    let distill = cfg.sandwich.is_some_and(|s| s.distill);
    let mut teacher: Option<Tensor> = None;
    let mut out = StepGrads {
        loss: 0.0,
        hits: 0,
        grads: Vec::new(),
    };
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for path in paths {
        let params = net.trainable_of(path);
        let r = shards.step(
            net,
            &batch.images,
            &batch.labels,
            teacher.as_ref(),
            path,
            &params,
            cfg.label_smoothing,
        )?;
        if distill && teacher.is_none() {
            teacher = Some(r.probs);
        }
        out.loss += r.loss / paths.len() as f64;
        out.hits += r.hits;
        for (i, g) in params.into_iter().zip(r.grads) {
            match slot.get(&i) {
                Some(&k) if g.defined() && out.grads[k].1.defined() => {
                    out.grads[k].1 = out.grads[k].1.f_add(&g)?;
                }
                Some(&k) if g.defined() => out.grads[k].1 = g,
                Some(_) => {}
                None => {
                    slot.insert(i, out.grads.len());
                    out.grads.push((i, g));
                }
            }
        }
    }
    Ok(out)
}

/// Trains `net` by SPOS on `set`, paths from `sampler`, until the run is
/// finished or `opts.stop_after` steps are done.
pub fn train(
    net: &Supernet,
    sampler: &StepSampler,
    set: &ImageSet,
    opts: &TrainOptions,
) -> Result<TrainSummary, SupernetError> {
    let cfg = &opts.config;
    let mut loader = Loader::new(set, cfg.batch_size, opts.augment, opts.seed, net.device())?;
    let steps_per_epoch = loader.steps_per_epoch() as u64;
    let total = cfg.epochs as u64 * steps_per_epoch;
    let warmup = (cfg.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let settings_key = fingerprint(opts, set);
    let mut sgd = Sgd::new(cfg);
    let mut start = 0;
    if let Some(ck) = opts
        .checkpoint
        .as_deref()
        .filter(|p| opts.resume && p.exists())
    {
        let state = load_checkpoint(net, &mut sgd, ck)?;
        let theirs = (&state.fingerprint, &state.space_hash, state.seed);
        if theirs != (&settings_key, &sampler.space().hash(), opts.seed) {
            return Err(SupernetError::Mismatch(format!(
                "{}: checkpoint was written with other settings (seed {}, space {}, {}); now seed {}, space {}, {settings_key}",
                ck.display(),
                state.seed,
                state.space_hash,
                state.fingerprint,
                opts.seed,
                sampler.space().hash()
            )));
        }
        start = state.step.min(total);
        tracing::info!(step = start, total, "resumed from {}", ck.display());
    }
    let end = opts.stop_after.map_or(total, |s| s.min(total)).max(start);
    let save = |sgd: &Sgd, step: u64| -> Result<(), SupernetError> {
        match &opts.checkpoint {
            Some(path) => {
                let state = TrainState {
                    step,
                    total_steps: total,
                    seed: opts.seed,
                    space_hash: sampler.space().hash(),
                    fingerprint: settings_key.clone(),
                };
                save_checkpoint(net, sgd, &state, path)
            }
            None => Ok(()),
        }
    };

    let bar = if opts.progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(start);

    let shards = Shards::new(net, cfg.shards)?;
    let started = Instant::now();
    let mut loading = Duration::ZERO;
    // Running sums over the current epoch (reset at each epoch's start).
    let (mut loss_sum, mut correct, mut seen, mut epoch_steps) = (0.0f64, 0i64, 0usize, 0u64);
    let mut last = (0.0, 0.0);
    for step in start..end {
        if step.is_multiple_of(steps_per_epoch) || step == start {
            (loss_sum, correct, seen, epoch_steps) = (0.0, 0, 0, 0);
        }
        let t0 = Instant::now();
        let batch = loader.train_batch(step)?;
        loading += t0.elapsed();
        let paths = sampler.step_paths(step, cfg.sandwich);
        let lr = learning_rate(cfg, step, total, warmup);
        let out = step_grads(net, &shards, &batch, &paths, cfg)?;
        sgd.step(net, out.grads, lr)?;

        let loss_v = out.loss;
        if !loss_v.is_finite() {
            return Err(SupernetError::Diverged { step, loss: loss_v });
        }
        loss_sum += loss_v;
        correct += out.hits;
        seen += batch.len * paths.len();
        epoch_steps += 1;
        last = (loss_sum / epoch_steps as f64, correct as f64 / seen as f64);

        let done = step + 1;
        let epoch_end = done.is_multiple_of(steps_per_epoch);
        let every = cfg
            .checkpoint_every_steps
            .is_some_and(|n| done.is_multiple_of(n as u64));
        if epoch_end || every || done == end {
            save(&sgd, done)?;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let ips = (done - start) as f64 * cfg.batch_size as f64 / elapsed;
        if done.is_multiple_of(10) || done == end {
            bar.set_message(format!(
                "epoch {}/{} loss {:.3} acc {:.1}% {:.0} img/s lr {:.4}",
                step / steps_per_epoch + 1,
                cfg.epochs,
                last.0,
                100.0 * last.1,
                ips,
                lr
            ));
        }
        bar.set_position(done);
        if epoch_end {
            bar.suspend(|| {
                tracing::info!(
                    epoch = done / steps_per_epoch,
                    loss = format!("{:.4}", last.0),
                    accuracy = format!("{:.4}", last.1),
                    images_per_s = format!("{ips:.0}"),
                    "epoch done"
                )
            });
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let images = (end - start) as f64 * cfg.batch_size as f64;
    Ok(TrainSummary {
        step: end,
        total_steps: total,
        start_step: start,
        finished: end == total,
        seconds,
        images_per_s: if seconds > 0.0 { images / seconds } else { 0.0 },
        loader_share: if seconds > 0.0 {
            loading.as_secs_f64() / seconds
        } else {
            0.0
        },
        loss: last.0,
        accuracy: last.1,
    })
}
