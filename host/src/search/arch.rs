//! The architecture search problem: genomes are op indices into the current
//! layer-wise space; objectives are the one-shot validation error (after BN
//! recalibration) and the latency predicted by the target's table; the
//! latency window is the hard constraint.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SearchError;
use super::nsga2::Problem;
use crate::data::{ImageSet, derive_seed};
use crate::latency::LatencyError;
use crate::latency::stats::LinearFit;
use crate::latency::table::Table;
use crate::memory::{MemoryLimit, MemoryModel};
use crate::space::{Arch, Space};
use crate::supernet::{EVAL_BATCH, EvalResult, OneShotBatches, Supernet};

/// Predicted latency of every architecture of a space, as a sum of per-layer
/// costs precomputed from a table (a search asks millions of times).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyModel {
    /// Stem + head (ms).
    pub base_ms: f64,
    /// Cost of each candidate op of each layer (ms; identity 0).
    pub per_layer: Vec<Vec<f64>>,
    /// The table's stored correction, applied to the sum when present.
    pub calibration: Option<LinearFit>,
}

impl LatencyModel {
    /// Builds the model of `space` from `table` (read from `path`); every
    /// block the space needs must be in the table.
    pub fn new(table: &Table, path: &Path, space: &Space) -> Result<LatencyModel, SearchError> {
        let mut missing = Vec::new();
        let mut get = |key: crate::space::BlockKey| match table.latency_ms(&key) {
            Some(ms) => ms,
            None => {
                let k = key.to_string();
                if !missing.contains(&k) {
                    missing.push(k);
                }
                f64::NAN
            }
        };
        let base_ms = get(space.stem_block()) + get(space.head_block());
        let per_layer = space
            .layers()
            .iter()
            .map(|l| {
                l.ops
                    .iter()
                    .map(|&op| l.block(op).map_or(0.0, &mut get))
                    .collect()
            })
            .collect();
        if !missing.is_empty() {
            return Err(LatencyError::MissingEntries {
                path: path.to_path_buf(),
                missing,
            }
            .into());
        }
        Ok(LatencyModel {
            base_ms,
            per_layer,
            calibration: table.header.calibration.as_ref().map(|c| c.fit),
        })
    }

    /// Predicted latency (ms) of the op indices `genome`.
    pub fn ms(&self, genome: &[usize]) -> f64 {
        let sum = self.base_ms
            + self
                .per_layer
                .iter()
                .zip(genome)
                .map(|(c, &i)| c[i])
                .sum::<f64>();
        self.calibration.map_or(sum, |f| f.apply(sum))
    }
}

/// The latency window: architectures outside `[lo_ms, hi_ms]` are never admitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Lower bound (ms).
    pub lo_ms: f64,
    /// Upper bound (ms).
    pub hi_ms: f64,
    /// How it was set (for reports).
    pub source: String,
}

impl Window {
    /// Whether `ms` lies inside.
    pub fn contains(&self, ms: f64) -> bool {
        (self.lo_ms..=self.hi_ms).contains(&ms)
    }

    /// The window between the `q_lo` and `q_hi` quantiles of the predicted
    /// latency of `samples` architectures drawn uniformly from `space`.
    pub fn from_quantiles(
        model: &LatencyModel,
        space: &Space,
        q_lo: f64,
        q_hi: f64,
        samples: usize,
        seed: u64,
    ) -> Result<Window, SearchError> {
        Window::from_quantiles_of(model, space, q_lo, q_hi, samples, seed, &|_| true)
    }

    /// As [`Window::from_quantiles`], over the architectures `admit`
    /// accepts (those that fit a microcontroller's memory): a window set
    /// among networks the board cannot hold would admit too few that it can.
    pub fn from_quantiles_of(
        model: &LatencyModel,
        space: &Space,
        q_lo: f64,
        q_hi: f64,
        samples: usize,
        seed: u64,
        admit: &dyn Fn(&[usize]) -> bool,
    ) -> Result<Window, SearchError> {
        if !(0.0 <= q_lo && q_lo < q_hi && q_hi <= 1.0) || samples < 2 {
            return Err(SearchError::Invalid(format!(
                "window quantiles [{q_lo}, {q_hi}] over {samples} samples: need 0 ≤ lo < hi ≤ 1 and ≥ 2 samples"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "latency-window", 0));
        let max_draws = samples.saturating_mul(1000);
        let mut ms = Vec::with_capacity(samples);
        let mut draws = 0usize;
        while ms.len() < samples {
            if draws == max_draws {
                return Err(SearchError::Invalid(format!(
                    "only {} of {max_draws} random architectures fit the target's memory; \
                     a window needs {samples}: raise the memory or shrink the space",
                    ms.len()
                )));
            }
            draws += 1;
            let genome = space.sample_indices(&mut rng);
            if admit(&genome) {
                ms.push(model.ms(&genome));
            }
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((samples - 1) as f64 * q).round() as usize];
        Ok(Window {
            lo_ms: at(q_lo),
            hi_ms: at(q_hi),
            source: format!(
                "quantiles {q_lo}–{q_hi} of the predicted latency of {samples} random architectures (seed {seed})"
            ),
        })
    }
}

/// How one-shot accuracy is measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneShotSettings {
    /// Training batches used to re-estimate BN statistics of each path.
    pub bn_batches: usize,
    /// Batch size (BN recalibration and evaluation).
    pub batch_size: usize,
    /// Validation images scored (a fixed subset).
    pub val_samples: usize,
    /// Seed of the recalibration batches.
    pub seed: u64,
}

/// Search over `space` (a possibly pruned space) with a supernet trained on
/// (a superset of) it: objectives `[1 − accuracy, latency_ms]`.
pub struct ArchProblem<'a> {
    space: &'a Space,
    net: &'a Supernet,
    model: LatencyModel,
    window: Window,
    memory: Option<(MemoryModel, MemoryLimit)>,
    batches: OneShotBatches,
    cards: Vec<usize>,
}

impl<'a> ArchProblem<'a> {
    /// A problem over `space`; `model` must be the latency model of `space`.
    pub fn new(
        space: &'a Space,
        net: &'a Supernet,
        model: LatencyModel,
        window: Window,
        train: &'a ImageSet,
        val: &ImageSet,
        settings: OneShotSettings,
    ) -> Result<ArchProblem<'a>, SearchError> {
        if settings.val_samples == 0 || val.is_empty() {
            return Err(SearchError::Invalid(
                "one-shot evaluation needs validation images (data.val_split > 0, search.val_samples > 0)".into(),
            ));
        }
        let n = settings.val_samples.min(val.len());
        let val = val.subset(&(0..n).collect::<Vec<_>>());
        let batches = settings.batches(net, train, &val)?;
        let cards = space.layers().iter().map(|l| l.ops.len()).collect();
        Ok(ArchProblem {
            space,
            net,
            model,
            window,
            memory: None,
            batches,
            cards,
        })
    }

    /// Admits only architectures whose int8 footprint fits `limit` (a
    /// microcontroller target), beside the latency window.
    pub fn with_memory(mut self, limit: Option<MemoryLimit>) -> Result<Self, SearchError> {
        self.memory = match limit {
            Some(l) => Some((MemoryModel::new(self.space)?, l)),
            None => None,
        };
        Ok(self)
    }

    /// The architecture of `genome`.
    pub fn arch(&self, genome: &[usize]) -> Result<Arch, SearchError> {
        Ok(self.space.arch_from_indices(genome)?)
    }

    /// Predicted latency (ms) of `genome`.
    pub fn latency_ms(&self, genome: &[usize]) -> f64 {
        self.model.ms(genome)
    }

    /// One-shot validation accuracy of `arch` (BN recalibrated first).
    pub fn accuracy(&self, arch: &Arch) -> Result<f64, SearchError> {
        Ok(one_shot_eval(self.net, arch, &self.batches)?.accuracy)
    }
}

impl OneShotSettings {
    /// The data these settings score with, built once for every
    /// architecture: `bn_batches` batches of `train` for BN recalibration
    /// and all of `val` (the caller's fixed subset).
    pub fn batches(
        &self,
        net: &Supernet,
        train: &ImageSet,
        val: &ImageSet,
    ) -> Result<OneShotBatches, SearchError> {
        Ok(OneShotBatches::new(
            net,
            train,
            (self.bn_batches, self.batch_size, self.seed),
            val,
            EVAL_BATCH,
        )?)
    }
}

/// One-shot accuracy and loss of `arch`: the path's BN statistics
/// re-estimated on the recalibration batches, then scored on the validation
/// batches, as the search scores.
pub fn one_shot_eval(
    net: &Supernet,
    arch: &Arch,
    batches: &OneShotBatches,
) -> Result<EvalResult, SearchError> {
    let path = net.path_of(arch)?;
    Ok(batches.score(net, &path)?)
}

impl Problem for ArchProblem<'_> {
    fn cardinalities(&self) -> &[usize] {
        &self.cards
    }

    fn feasible(&mut self, genome: &[usize]) -> Result<bool, SearchError> {
        Ok(self.window.contains(self.model.ms(genome))
            && self
                .memory
                .as_ref()
                .is_none_or(|(model, limit)| model.footprint(genome).fits(limit)))
    }

    fn evaluate(&mut self, genome: &[usize]) -> Result<Vec<f64>, SearchError> {
        let arch = self.arch(genome)?;
        let acc = self.accuracy(&arch)?;
        Ok(vec![1.0 - acc, self.model.ms(genome)])
    }
}

#[cfg(test)]
pub(crate) mod tests;
