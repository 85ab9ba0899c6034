//! How well a ground truth can rank: the seed-vs-seed ceilings and the
//! spread of its architectures against its seed noise, with the τ-b a
//! perfect ranking could expect against its means.

use serde::{Deserialize, Serialize};

use super::truth::{BOOTSTRAP_SEED, TruthFile};
use crate::latency::stats::{Correlation, correlate, sample_sd};

impl TruthFile {
    /// The ceiling of any one-shot ranking: seed A's stand-alone accuracies
    /// against seed B's, over the architectures trained with both (only
    /// those inside the window when `in_window`); `None` with one seed.
    pub fn ceiling(&self, in_window: bool, resamples: usize) -> Option<Correlation> {
        if self.seeds.len() < 2 {
            return None;
        }
        let (a, b): (Vec<f64>, Vec<f64>) = self
            .archs
            .iter()
            .filter(|a| !in_window || a.in_window)
            .filter_map(|a| a.seed_pair(&self.seeds))
            .unzip();
        Some(correlate(&a, &b, resamples, BOOTSTRAP_SEED))
    }

    /// With four or more seeds, how well a mean over half of them ranks:
    /// the first half's mean accuracies against the second half's, over the
    /// architectures trained with every seed (only those inside the window
    /// when `in_window`); `None` with fewer seeds. Scores compare one-shot
    /// accuracy with the mean over all seeds, so with more seeds this, not
    /// the single-seed [`TruthFile::ceiling`], says whether the file can
    /// rank.
    pub fn ceiling_halves(&self, in_window: bool, resamples: usize) -> Option<Correlation> {
        if self.seeds.len() < 4 {
            return None;
        }
        let (first, second) = self.seeds.split_at(self.seeds.len() / 2);
        let (a, b): (Vec<f64>, Vec<f64>) = self
            .archs
            .iter()
            .filter(|a| !in_window || a.in_window)
            .filter_map(|a| Some((a.mean_accuracy(first)?, a.mean_accuracy(second)?)))
            .unzip();
        Some(correlate(&a, &b, resamples, BOOTSTRAP_SEED))
    }

    /// How far apart the architectures are against how far apart two
    /// trainings of one are, over the architectures trained with every
    /// seed (only those inside the window when `in_window`); `None` with
    /// fewer than 2 seeds or 2 such architectures. The file can rank only
    /// where the first clearly exceeds the second.
    pub fn spread(&self, in_window: bool) -> Option<Spread> {
        let k = self.seeds.len();
        let per_arch: Vec<Vec<f64>> = self
            .archs
            .iter()
            .filter(|a| !in_window || a.in_window)
            .filter_map(|a| {
                self.seeds
                    .iter()
                    .map(|&s| a.accuracy(s).map(|x| 100.0 * x))
                    .collect::<Option<Vec<f64>>>()
            })
            .collect();
        if k < 2 || per_arch.len() < 2 {
            return None;
        }
        let means: Vec<f64> = per_arch
            .iter()
            .map(|v| v.iter().sum::<f64>() / k as f64)
            .collect();
        let between = sample_sd(&means);
        // Seed noise as a ranking sees it: what is left of each run once its
        // architecture's mean and its seed's mean over all architectures are
        // taken out (the residual of the architecture × seed table). A seed
        // fixes the data order for every architecture, so a seed that is
        // better for all of them alike moves no rank and is not noise here.
        let n = per_arch.len();
        let seed_means: Vec<f64> = (0..k)
            .map(|j| per_arch.iter().map(|v| v[j]).sum::<f64>() / n as f64)
            .collect();
        let grand = means.iter().sum::<f64>() / n as f64;
        let residual: f64 = per_arch
            .iter()
            .zip(&means)
            .flat_map(|(v, m)| {
                v.iter()
                    .zip(&seed_means)
                    .map(move |(x, s)| (x - m - s + grand).powi(2))
            })
            .sum();
        let within = (residual / ((n - 1) * (k - 1)) as f64).sqrt();
        // A mean over k seeds carries within²/k of seed variance.
        let architecture = (between.powi(2) - within.powi(2) / k as f64)
            .max(0.0)
            .sqrt();
        // The means' correlation with the architectures' own accuracies is
        // architecture / between; Greiner's relation turns it into τ.
        let r = if between > 0.0 {
            architecture / between
        } else {
            0.0
        };
        Some(Spread {
            n,
            between_sd_pct: between,
            seed_sd_pct: within,
            architecture_sd_pct: architecture,
            reachable_tau_b: std::f64::consts::FRAC_2_PI * r.asin(),
        })
    }
}

/// [`TruthFile::spread`]: standard deviations in accuracy points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Architectures trained with every seed.
    pub n: usize,
    /// Between the architectures' mean accuracies over the seeds.
    pub between_sd_pct: f64,
    /// Between the seeds of one architecture, less each seed's effect on
    /// every architecture alike (the residual of the architecture × seed
    /// table): the noise a ranking by one seed carries.
    pub seed_sd_pct: f64,
    /// What is left of `between` once the seed noise in the means is taken
    /// out: the estimated spread of the architectures themselves.
    pub architecture_sd_pct: f64,
    /// The τ-b that a perfect ranking of the architectures can expect
    /// against this file's means over its seeds, when accuracies and seed
    /// noise are normal: (2/π)·asin(architecture / between). What a
    /// supernet's score is to be read against: the seed-vs-seed ceiling
    /// compares two single trainings, noisier than the means a score uses.
    pub reachable_tau_b: f64,
}
