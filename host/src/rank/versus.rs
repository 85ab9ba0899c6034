//! Does the search beat chance? Networks it chose (a ground-truth file of
//! named architectures, `padnas rank truth --arch`) against the random
//! architectures of a drawn ground truth that lie in the same latency
//! window, every one trained stand-alone with the same budget, data and
//! seeds. The bar is the one PAD-NAS's claim needs: the searched network's
//! mean over seeds above the *best* random one's by more than two trainings
//! of one architecture differ.

use serde::Serialize;

use super::RankError;
use super::truth::{TruthArch, TruthFile};
use crate::latency::stats::{min_max, sample_sd};

/// Fewest complete random in-window architectures a verdict needs.
pub const MIN_RANDOM: usize = 10;

/// One architecture's stand-alone result over the files' seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// The architecture, as text.
    pub arch: String,
    /// Predicted latency (ms) by the file's table.
    pub predicted_ms: f64,
    /// Inside the job's window.
    pub in_window: bool,
    /// Validation accuracy per seed, in the files' seed order.
    pub accuracies: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Largest minus smallest of them.
    pub range: f64,
}

impl Entry {
    fn of(a: &TruthArch, seeds: &[u64]) -> Option<Entry> {
        let mean = a.mean_accuracy(seeds)?;
        let accuracies: Vec<f64> = seeds.iter().filter_map(|&s| a.accuracy(s)).collect();
        let [min, max] = min_max(accuracies.iter().copied());
        Some(Entry {
            arch: a.arch.clone(),
            predicted_ms: a.predicted_ms,
            in_window: a.in_window,
            mean,
            range: max - min,
            accuracies,
        })
    }
}

/// The random side: the drawn file's complete architectures in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RandomSide {
    /// How many.
    pub n: usize,
    /// The best of them by mean accuracy (`None` when there are none).
    pub best: Option<Entry>,
    /// Mean of their means.
    pub mean: f64,
    /// Standard deviation of their means: the spread between architectures.
    pub sd: f64,
}

/// A chosen network against the best random one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The chosen network.
    pub candidate: Entry,
    /// Its mean minus the best random one's (accuracy, 0–1).
    pub over_best: Option<f64>,
    /// Its mean minus the random ones' mean.
    pub over_mean: f64,
    /// Random in-window architectures it beats (by mean).
    pub beats: usize,
    /// `over_best` exceeds the seed-to-seed spread, with at least
    /// [`MIN_RANDOM`] random architectures; `None` with fewer.
    pub beats_best_beyond_noise: Option<bool>,
}

/// The comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Versus {
    /// Seeds every figure is a mean over.
    pub seeds: Vec<u64>,
    /// Random in-window architectures.
    pub random: RandomSide,
    /// Seed-to-seed spread: the mean over the drawn file's complete
    /// architectures (all of them, in the window or not) of the absolute
    /// difference between the first two seeds' accuracies.
    pub seed_spread: Option<f64>,
    /// Architectures of the drawn file with both seeds behind `seed_spread`.
    pub seed_spread_n: usize,
    /// One verdict per complete chosen network.
    pub candidates: Vec<Verdict>,
    /// Chosen networks not trained with every seed yet.
    pub incomplete: usize,
}

/// Compares the named networks of `chosen` with the random in-window ones
/// of `drawn`. Both files must hold one space, budget, data split and seed
/// set, or the comparison would not be like for like.
pub fn versus(drawn: &TruthFile, chosen: &TruthFile) -> Result<Versus, RankError> {
    let mismatch = |what: &str| {
        Err(RankError::Mismatch(format!(
            "the chosen networks' file and the drawn ground truth differ in {what}: \
             train the chosen ones with the drawn file's settings (padnas rank truth --arch)"
        )))
    };
    if drawn.space_hash != chosen.space_hash {
        return mismatch("space");
    }
    if drawn.budget != chosen.budget {
        return mismatch("training budget");
    }
    if !drawn.data.same_images(&chosen.data) {
        return mismatch("data split or scoring images");
    }
    if drawn.seeds != chosen.seeds {
        return mismatch("seeds");
    }
    let seeds = &drawn.seeds;
    let random: Vec<Entry> = drawn
        .archs
        .iter()
        .filter(|a| a.in_window)
        .filter_map(|a| Entry::of(a, seeds))
        .collect();
    let n = random.len();
    let mean = if n == 0 {
        0.0
    } else {
        random.iter().map(|e| e.mean).sum::<f64>() / n as f64
    };
    let sd = sample_sd(&random.iter().map(|e| e.mean).collect::<Vec<_>>());
    let best = random
        .iter()
        .max_by(|a, b| a.mean.total_cmp(&b.mean))
        .cloned();
    let diffs: Vec<f64> = drawn
        .archs
        .iter()
        .filter_map(|a| a.seed_pair(seeds))
        .map(|(x, y)| (x - y).abs())
        .collect();
    let seed_spread = (!diffs.is_empty()).then(|| diffs.iter().sum::<f64>() / diffs.len() as f64);
    let complete: Vec<Entry> = chosen
        .archs
        .iter()
        .filter_map(|a| Entry::of(a, seeds))
        .collect();
    let incomplete = chosen.archs.len() - complete.len();
    let candidates = complete
        .into_iter()
        .map(|c| {
            let over_best = best.as_ref().map(|b| c.mean - b.mean);
            Verdict {
                over_mean: c.mean - mean,
                beats: random.iter().filter(|r| c.mean > r.mean).count(),
                beats_best_beyond_noise: match (over_best, seed_spread) {
                    (Some(o), Some(s)) if n >= MIN_RANDOM => Some(o > s),
                    _ => None,
                },
                over_best,
                candidate: c,
            }
        })
        .collect();
    Ok(Versus {
        seeds: seeds.clone(),
        random: RandomSide { n, best, mean, sd },
        seed_spread,
        seed_spread_n: diffs.len(),
        candidates,
        incomplete,
    })
}
