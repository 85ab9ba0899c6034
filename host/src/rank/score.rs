//! A supernet's one-shot ranking scored against a ground truth: every
//! ground-truth architecture that the supernet's space holds and that is
//! trained with every seed is scored one-shot, exactly as the search scores
//! (BN recalibration, then a fixed validation subset), and ranked against
//! its mean stand-alone accuracy.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::RankError;
use super::truth::{BOOTSTRAP_SEED, TruthFile};
use crate::data::ImageSet;
use crate::latency::stats::{Correlation, correlate};
use crate::search::{LatencyModel, OneShotSettings, Window, one_shot_accuracy};
use crate::space::Space;
use crate::supernet::Supernet;

/// The latency model and window of the run being scored. A ground truth
/// records the latency it was drawn with, which may come from another
/// machine or agent build; what is inside *this* run's window is decided by
/// this run's table.
#[derive(Clone, Copy, Debug)]
pub struct RunLatency<'a> {
    /// The space the model's indices refer to (the run's initial space).
    pub space: &'a Space,
    /// The run's latency model.
    pub model: &'a LatencyModel,
    /// The run's window.
    pub window: &'a Window,
}

/// One architecture's two accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchScore {
    /// The architecture.
    pub arch: String,
    /// Predicted latency (ms), from the ground truth.
    pub predicted_ms: f64,
    /// Inside the job's window.
    pub in_window: bool,
    /// Stand-alone validation accuracy, mean over the seeds.
    pub standalone: f64,
    /// One-shot validation accuracy.
    pub one_shot: f64,
}

/// The score of one supernet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Architectures scored.
    pub n: usize,
    /// Trained architectures left out because the supernet's space lacks
    /// one of their ops (pruned away).
    pub not_in_space: usize,
    /// Architectures left out because a seed is not trained yet.
    pub incomplete: usize,
    /// One-shot vs stand-alone over every architecture scored.
    pub all: Correlation,
    /// The same over those inside the window.
    pub in_window: Correlation,
    /// The ceiling: seed A's stand-alone accuracies vs seed B's (the first
    /// two seeds), over the same architectures; `None` with one seed.
    pub ceiling: Option<Correlation>,
    /// The ceiling inside the window.
    pub ceiling_in_window: Option<Correlation>,
    /// How one-shot accuracy was measured.
    pub settings: OneShotSettings,
    /// Seconds spent scoring.
    pub seconds: f64,
    /// Every architecture scored.
    pub archs: Vec<ArchScore>,
}

/// Scores `net` against `truth`: one-shot accuracy of each complete
/// ground-truth architecture in `space` (the space `net` was trained on; a
/// pipeline stage's supernet holds every tensor of the initial space, but
/// only the pruned space's paths were trained) on the first
/// `settings.val_samples` images of `val` (BN statistics from `train`),
/// correlated with its mean stand-alone accuracy; `resamples` bootstrap
/// resamples for the intervals. With `latency`, predicted latency and
/// window membership are the run's; else the ground truth's own.
pub fn score_supernet(
    net: &Supernet,
    space: &Space,
    truth: &TruthFile,
    train: &ImageSet,
    val: &ImageSet,
    settings: &OneShotSettings,
    resamples: usize,
    latency: Option<RunLatency<'_>>,
) -> Result<Score, RankError> {
    let t0 = Instant::now();
    if settings.val_samples == 0 || val.is_empty() {
        return Err(RankError::Invalid(
            "one-shot scoring needs validation images (data.val_split > 0, val_samples > 0)".into(),
        ));
    }
    let n_val = settings.val_samples.min(val.len());
    let val = val.subset(&(0..n_val).collect::<Vec<_>>());
    let (mut archs, mut seed_pairs) = (Vec::new(), Vec::new());
    let (mut not_in_space, mut incomplete) = (0, 0);
    for a in &truth.archs {
        let Some(standalone) = a.mean_accuracy(&truth.seeds) else {
            incomplete += 1;
            continue;
        };
        // Pruning removes ops: an architecture that uses one is not in the
        // pruned supernet and cannot be scored by it.
        let Ok(arch) = space.parse_arch(&a.arch) else {
            not_in_space += 1;
            continue;
        };
        let one_shot = one_shot_accuracy(net, &arch, train, &val, settings)?;
        seed_pairs.push(a.seed_pair(&truth.seeds));
        let (predicted_ms, in_window) = match latency {
            Some(l) => {
                let ms = l.model.ms(&l.space.arch_indices(&arch)?);
                (ms, l.window.contains(ms))
            }
            None => (a.predicted_ms, a.in_window),
        };
        archs.push(ArchScore {
            arch: a.arch.clone(),
            predicted_ms,
            in_window,
            standalone,
            one_shot,
        });
    }
    let pick = |inside: bool| -> (Vec<f64>, Vec<f64>) {
        archs
            .iter()
            .filter(|s| !inside || s.in_window)
            .map(|s| (s.one_shot, s.standalone))
            .unzip()
    };
    let ceiling = |inside: bool| -> Option<Correlation> {
        if truth.seeds.len() < 2 {
            return None;
        }
        let (a, b): (Vec<f64>, Vec<f64>) = archs
            .iter()
            .zip(&seed_pairs)
            .filter(|(s, _)| !inside || s.in_window)
            .filter_map(|(_, pair)| *pair)
            .unzip();
        Some(correlate(&a, &b, resamples, BOOTSTRAP_SEED))
    };
    let (x, y) = pick(false);
    let (xi, yi) = pick(true);
    Ok(Score {
        n: archs.len(),
        not_in_space,
        incomplete,
        all: correlate(&x, &y, resamples, BOOTSTRAP_SEED),
        in_window: correlate(&xi, &yi, resamples, BOOTSTRAP_SEED),
        ceiling: ceiling(false),
        ceiling_in_window: ceiling(true),
        settings: settings.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        archs,
    })
}
