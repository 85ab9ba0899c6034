//! The stand-alone ground truth: architectures of a space, drawn so that
//! they spread over its predicted latency, each trained from scratch with
//! several seeds. One-shot rankings are scored against it ([`super::score`]),
//! and its own seed-to-seed agreement is the ceiling of any such score.
//!
//! The file is the measurement's state: it is written (atomically) after
//! every finished training, and a rerun trains only the (architecture,
//! seed) pairs it does not hold yet, so an interrupted measurement that
//! takes hours continues where it stopped. The architectures are drawn once,
//! when the file is created; a rerun never redraws them (a re-measured
//! latency table would otherwise change the set).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::RankError;
use crate::config::{Augment, Schedule, TrainConfig};
use crate::data::derive_seed;
use crate::files::write_atomic;
use crate::latency::stats::min_max;
use crate::search::{LatencyModel, Window};
use crate::space::{Arch, Space};

/// Seed of the bootstrap resamples: fixed, so a score repeats exactly.
pub const BOOTSTRAP_SEED: u64 = 20_261_130;

/// Version of the file layout.
pub const TRUTH_FORMAT: u32 = 1;

/// Everything about stand-alone training that changes its result (threads
/// and checkpoint intervals do not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Passes over the training images.
    pub epochs: usize,
    /// Training images (a seeded subset of the training split, the same
    /// subset for every network).
    pub train_images: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Warm-up length in epochs.
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// Training-time augmentation.
    pub augment: Augment,
}

impl Budget {
    /// The budget of `train` on `train_images` images.
    pub fn of(train: &TrainConfig, augment: Augment, train_images: usize) -> Budget {
        Budget {
            epochs: train.epochs,
            train_images,
            batch_size: train.batch_size,
            lr: train.lr,
            momentum: train.momentum,
            nesterov: train.nesterov,
            weight_decay: train.weight_decay,
            warmup_epochs: train.warmup_epochs,
            schedule: train.schedule,
            label_smoothing: train.label_smoothing,
            augment,
        }
    }
}

/// The data every network of the file was trained and scored on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Data set kind (`fashion-mnist`, …).
    pub kind: String,
    /// Seed of the validation split and of the training subset: fixed for
    /// the whole file, so every network sees the same images.
    pub split_seed: u64,
    /// Share of the training split held out for validation.
    pub val_split: f64,
    /// Images in the validation split (the accuracy that ranks, unless
    /// `pooled_images`).
    pub val_images: usize,
    /// Images in the test split.
    pub test_images: usize,
    /// With `rank truth --holdout`: the validation images plus the training
    /// images the budget's subset leaves out, which every network is also
    /// scored on. Their pooled accuracy is what ranks: the finite
    /// validation split alone makes two seeds of one network differ by
    /// about as much as two architectures do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled_images: Option<usize>,
}

impl DataInfo {
    /// Whether networks scored under `self` and `other` saw the same images:
    /// data set, split and scoring set (the image counts follow from them).
    pub fn same_images(&self, other: &DataInfo) -> bool {
        self.kind == other.kind
            && self.split_seed == other.split_seed
            && self.val_split == other.val_split
            && self.pooled_images == other.pooled_images
    }
}

/// The latency model the architectures were drawn with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyInfo {
    /// The table file.
    pub table: String,
    /// The table's label: the CPU, or *emulated …*.
    pub label: String,
    /// The job's latency window (ms): about half the architectures lie in it.
    pub window_ms: [f64; 2],
    /// Predicted latency range of the candidates drawn (ms).
    pub range_ms: [f64; 2],
}

/// How the architectures were drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrawInfo {
    /// Seed of the draw.
    pub seed: u64,
    /// Uniform candidates the strata were filled from.
    pub candidates: usize,
    /// Architectures inside the window.
    pub in_window: usize,
    /// Architectures outside it.
    pub outside: usize,
    /// The architectures were named (`padnas rank truth --arch`: networks a
    /// search chose), not drawn; `seed` and `candidates` then mean nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub named: bool,
}

/// One finished stand-alone training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthRun {
    /// Seed of the initial weights and the data order.
    pub seed: u64,
    /// Validation accuracy (what one-shot accuracy is compared with).
    pub val_accuracy: f64,
    /// Test accuracy.
    pub test_accuracy: Option<f64>,
    /// Accuracy over [`DataInfo::pooled_images`] (validation and left-out
    /// training images together); what ranks when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled_accuracy: Option<f64>,
    /// Steps trained.
    pub steps: u64,
    /// Training seconds (summed over resumed calls only from the last one).
    pub seconds: f64,
    /// libtorch intra-op threads.
    pub threads: usize,
    /// The CPU that trained it (`/proc/cpuinfo`'s model name): libtorch
    /// picks its kernels by CPU, so one seed's run on another CPU takes
    /// another trajectory (measured: up to 0.9 points apart on the same
    /// seed, Intel Xeon vs AMD EPYC), i.e. it is another draw, not a repeat.
    /// Absent in records made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Commit of the code that trained it, when known.
    pub commit: Option<String>,
    /// When it finished (RFC 3339, UTC).
    pub date: String,
}

/// One architecture of the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthArch {
    /// The architecture, as text.
    pub arch: String,
    /// Predicted latency (ms) by the table in [`LatencyInfo`].
    pub predicted_ms: f64,
    /// Whether that lies inside the window.
    pub in_window: bool,
    /// Trainable parameters, once trained.
    pub parameters: Option<usize>,
    /// Finished trainings, one per seed.
    pub runs: Vec<TruthRun>,
}

impl TruthArch {
    /// The accuracy that ranks of seed `seed`, when trained: the pooled
    /// accuracy when the file has one, else the validation accuracy.
    pub fn accuracy(&self, seed: u64) -> Option<f64> {
        self.runs
            .iter()
            .find(|r| r.seed == seed)
            .map(|r| r.pooled_accuracy.unwrap_or(r.val_accuracy))
    }

    /// Ranking accuracies of the first two of `seeds` (seed A, seed B),
    /// when both are trained: one point of the ceiling.
    pub fn seed_pair(&self, seeds: &[u64]) -> Option<(f64, f64)> {
        match seeds {
            [a, b, ..] => Some((self.accuracy(*a)?, self.accuracy(*b)?)),
            _ => None,
        }
    }

    /// Mean ranking accuracy over `seeds`, when every one is trained.
    pub fn mean_accuracy(&self, seeds: &[u64]) -> Option<f64> {
        let accs: Option<Vec<f64>> = seeds.iter().map(|&s| self.accuracy(s)).collect();
        accs.filter(|a| !a.is_empty())
            .map(|a| a.iter().sum::<f64>() / a.len() as f64)
    }
}

/// A ground-truth file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthFile {
    /// [`TRUTH_FORMAT`].
    pub format: u32,
    /// The space's name.
    pub space: String,
    /// The space's hash: architectures are valid in it.
    pub space_hash: String,
    /// The job config the settings came from.
    pub config: String,
    /// Data every network was trained and scored on.
    pub data: DataInfo,
    /// Training budget of every network.
    pub budget: Budget,
    /// Seeds every architecture is trained with.
    pub seeds: Vec<u64>,
    /// The latency model of the draw.
    pub latency: LatencyInfo,
    /// How the architectures were drawn.
    pub draw: DrawInfo,
    /// The command that created the file.
    pub command: String,
    /// padnas version that created it.
    pub padnas_version: String,
    /// The architectures, in the order they are trained.
    pub archs: Vec<TruthArch>,
}

impl TruthFile {
    /// Reads a file; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<TruthFile>, RankError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RankError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let file: TruthFile = serde_json::from_str(&text).map_err(|e| RankError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if file.format != TRUTH_FORMAT {
            return Err(RankError::Format {
                path: path.to_path_buf(),
                message: format!("format {} (this padnas reads {TRUTH_FORMAT})", file.format),
            });
        }
        Ok(Some(file))
    }

    /// Writes the file atomically (pretty JSON: it is committed and diffed).
    pub fn save(&self, path: &Path) -> Result<(), RankError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| RankError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(write_atomic(path, format!("{text}\n").as_bytes())?)
    }

    /// The (architecture, seed) pairs not trained yet, in training order:
    /// architecture by architecture, every seed of one before the next, so
    /// that a partial file already holds complete pairs for the ceiling.
    pub fn missing(&self) -> Vec<(usize, u64)> {
        self.archs
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                self.seeds
                    .iter()
                    .filter(|&&s| a.accuracy(s).is_none())
                    .map(move |&s| (i, s))
            })
            .collect()
    }

    /// Refuses to continue `self` with other settings: a file holds one
    /// budget, one data split and one space. More seeds are allowed (they
    /// are added), fewer are not (results would be dropped).
    pub fn check_continues(&self, other: &TruthFile, path: &Path) -> Result<(), RankError> {
        let differs = |what: &str, a: String, b: String| {
            Err(RankError::Mismatch(format!(
                "{}: was measured with {what} {a}, now {b}; write to another file (--out) or delete it to start over",
                path.display()
            )))
        };
        if self.space_hash != other.space_hash {
            return differs("space", self.space_hash.clone(), other.space_hash.clone());
        }
        if self.budget != other.budget {
            return differs(
                "budget",
                format!("{:?}", self.budget),
                format!("{:?}", other.budget),
            );
        }
        if !self.data.same_images(&other.data) {
            return differs(
                "data",
                format!("{:?}", self.data),
                format!("{:?}", other.data),
            );
        }
        if !self.seeds.iter().all(|s| other.seeds.contains(s)) {
            return differs(
                "seeds",
                format!("{:?}", self.seeds),
                format!("{:?}", other.seeds),
            );
        }
        Ok(())
    }
}

/// What [`draw_stratified`] drew.
#[derive(Clone, Debug, PartialEq)]
pub struct Draw {
    /// The architectures with their predicted latency (ms), in training order.
    pub archs: Vec<(Arch, f64)>,
    /// Predicted latency range of the candidates (ms).
    pub range_ms: [f64; 2],
}

/// `n` distinct architectures of `space`, stratified by predicted latency:
/// `ceil(n / 2)` in equal-width latency bins across `window`, the rest in
/// equal-width bins across the part of the candidates' range outside it
/// (shared between below and above by width). Each bin takes one candidate
/// drawn uniformly among the `candidates` uniform draws that fall in it, or
/// the unused candidate nearest the bin's centre when none does (the tails
/// of the range are sparse). Returned in a seeded random order, so that a
/// partly measured file already spreads over the range.
pub fn draw_stratified(
    space: &Space,
    model: &LatencyModel,
    window: &Window,
    n: usize,
    candidates: usize,
    seed: u64,
) -> Result<Draw, RankError> {
    if n < 2 || candidates < n {
        return Err(RankError::Invalid(format!(
            "a ground truth needs at least 2 architectures and at least as many candidates (n {n}, candidates {candidates})"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "truth-draw", 0));
    let mut seen = BTreeSet::new();
    let mut pool: Vec<(Vec<usize>, f64)> = Vec::new();
    // Distinct candidates; the attempt cap ends the loop on a space with
    // fewer architectures than asked for.
    for _ in 0..candidates * 4 {
        if pool.len() == candidates {
            break;
        }
        let idx = space.sample_indices(&mut rng);
        if seen.insert(idx.clone()) {
            let ms = model.ms(&idx);
            pool.push((idx, ms));
        }
    }
    if pool.len() < n {
        return Err(RankError::Invalid(format!(
            "the space has only {} distinct architectures for {n}",
            pool.len()
        )));
    }
    let [lo, hi] = min_max(pool.iter().map(|p| p.1));
    let (wlo, whi) = (window.lo_ms.max(lo), window.hi_ms.min(hi));
    let n_in = n.div_ceil(2);
    let n_out = n - n_in;
    let (below, above) = ((wlo - lo).max(0.0), (hi - whi).max(0.0));
    let n_below = if below + above > 0.0 {
        ((n_out as f64) * below / (below + above)).round() as usize
    } else {
        0
    };
    // (from, to, inside the window): a bin draws only from its own side of
    // the window, so the split between inside and outside is exact.
    let mut bins: Vec<(f64, f64, bool)> = Vec::new();
    let mut split = |a: f64, b: f64, k: usize, inside: bool| {
        let w = (b - a) / k.max(1) as f64;
        for i in 0..k {
            bins.push((a + w * i as f64, a + w * (i + 1) as f64, inside));
        }
    };
    let all_inside = below + above == 0.0;
    split(wlo, whi, n_in + if all_inside { n_out } else { 0 }, true);
    split(lo, wlo, n_below, false);
    split(whi, hi, n_out - n_below.min(n_out), false);
    let mut used = vec![false; pool.len()];
    let mut out = Vec::with_capacity(n);
    for (a, b, inside) in bins {
        let side: Vec<usize> = (0..pool.len())
            .filter(|&i| !used[i] && window.contains(pool[i].1) == inside)
            .collect();
        let in_bin: Vec<usize> = side
            .iter()
            .copied()
            .filter(|&i| pool[i].1 >= a && pool[i].1 <= b)
            .collect();
        // The tails are sparse: an empty bin takes its side's unused
        // candidate nearest the bin's centre (or any side's, when its own
        // side has none left).
        let nearest = |from: &[usize]| {
            let mid = (a + b) / 2.0;
            from.iter()
                .copied()
                .min_by(|&i, &j| (pool[i].1 - mid).abs().total_cmp(&(pool[j].1 - mid).abs()))
        };
        let pick = match in_bin.as_slice() {
            [] if side.is_empty() => {
                nearest(&(0..pool.len()).filter(|&i| !used[i]).collect::<Vec<_>>())
            }
            [] => nearest(&side),
            some => some.choose(&mut rng).copied(),
        };
        if let Some(i) = pick {
            used[i] = true;
            out.push((space.arch_from_indices(&pool[i].0)?, pool[i].1));
        }
    }
    out.shuffle(&mut rng);
    Ok(Draw {
        archs: out,
        range_ms: [lo, hi],
    })
}

/// Trains every (architecture, seed) pair `file` does not hold yet with
/// `train` (which returns the run and the network's parameter count), in
/// [`TruthFile::missing`]'s order, `jobs` at a time, saving the file after
/// each, so a kill loses at most the trainings under way (whose checkpoints
/// `train` resumes). Stops after `limit` trainings when given; returns how
/// many it did. After a failed training no new one starts; those under way
/// finish and are kept, and the first error is returned.
pub fn measure<F>(
    file: &mut TruthFile,
    path: &Path,
    limit: Option<usize>,
    jobs: usize,
    train: F,
) -> Result<usize, RankError>
where
    F: Fn(&TruthArch, u64) -> Result<(TruthRun, usize), RankError> + Sync,
{
    let mut todo = file.missing();
    if let Some(l) = limit {
        todo.truncate(l);
    }
    struct Shared<'f> {
        file: &'f mut TruthFile,
        done: usize,
        error: Option<RankError>,
    }
    let shared = Mutex::new(Shared {
        file,
        done: 0,
        error: None,
    });
    // A worker that panicked already ends the scope with its panic; the
    // others only need the data, which a panic leaves consistent.
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let next = AtomicUsize::new(0);
    let worker = || {
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(i, seed)) = todo.get(k) else {
                return;
            };
            let arch = {
                let g = lock();
                if g.error.is_some() {
                    return;
                }
                g.file.archs[i].clone()
            };
            let result = train(&arch, seed);
            let mut g = lock();
            let result = result.and_then(|(run, parameters)| {
                let a = &mut g.file.archs[i];
                a.parameters = Some(parameters);
                a.runs.push(run);
                a.runs.sort_by_key(|r| r.seed);
                g.file.save(path)
            });
            match result {
                Ok(()) => g.done += 1,
                Err(e) => {
                    g.error.get_or_insert(e);
                    return;
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, todo.len().max(1)) {
            s.spawn(worker);
        }
    });
    let g = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    match g.error {
        Some(e) => Err(e),
        None => Ok(g.done),
    }
}
