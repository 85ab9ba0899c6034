//! A supernet's one-shot ranking scored against a ground truth: every
//! ground-truth architecture that the supernet's space holds and that is
//! trained with every seed is scored one-shot, exactly as the search scores
//! (BN recalibration, then a fixed validation subset), and ranked against
//! its mean stand-alone accuracy.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::RankError;
use super::spread::Spread;
use super::truth::{BOOTSTRAP_SEED, TruthFile};
use crate::data::{ImageSet, derive_seed, permutation};
use crate::latency::stats::{Correlation, correlate, kendall_tau_b, sample_sd};
use crate::search::{LatencyModel, OneShotSettings, Window, one_shot_eval};
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
    /// One-shot validation accuracy (mean over the repeats).
    pub one_shot: f64,
    /// One-shot validation cross-entropy (mean over the repeats): a
    /// continuous score where accuracy moves in steps of one image.
    /// `None` in scores written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_shot_loss: Option<f64>,
    /// Each repeat's one-shot accuracy, when there were several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_shot_repeats: Vec<f64>,
}

/// The one-shot evaluation's own noise, from repeats that differ in their
/// BN-recalibration batches and validation subset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalNoise {
    /// Evaluations per architecture.
    pub repeats: usize,
    /// Root mean square over architectures of the standard deviation of
    /// one architecture's repeats (percentage points).
    pub within_sd_pct: f64,
    /// Standard deviation of the architectures' mean one-shot accuracy
    /// (percentage points): the spread a ranking has to resolve.
    pub between_sd_pct: f64,
    /// Kendall's τ-b between the first two repeats over the architectures:
    /// how well the evaluation ranks against itself.
    pub repeat_tau_b: Option<f64>,
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
    /// One-shot loss, negated (lower loss ranks higher), vs stand-alone
    /// accuracy over every architecture scored: whether the continuous
    /// score ranks better than accuracy. `None` in older scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_loss: Option<Correlation>,
    /// The ceiling: seed A's stand-alone accuracies vs seed B's (the first
    /// two seeds), over the same architectures; `None` with one seed.
    pub ceiling: Option<Correlation>,
    /// The ceiling inside the window.
    pub ceiling_in_window: Option<Correlation>,
    /// The ground truth's spread over its complete architectures, with the
    /// τ-b a perfect ranking could expect against it (`reachable_tau_b`):
    /// the scale to read `all` against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth_spread: Option<Spread>,
    /// How one-shot accuracy was measured.
    pub settings: OneShotSettings,
    /// The evaluation's own noise, with two or more repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<EvalNoise>,
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
/// window membership are the run's; else the ground truth's own. With
/// `repeats` > 1 each architecture is evaluated that many times (see
/// [`repeat_settings`]) and its one-shot accuracy is their mean.
#[allow(clippy::too_many_arguments)]
pub fn score_supernet(
    net: &Supernet,
    space: &Space,
    truth: &TruthFile,
    train: &ImageSet,
    val: &ImageSet,
    settings: &OneShotSettings,
    repeats: usize,
    resamples: usize,
    latency: Option<RunLatency<'_>>,
) -> Result<Score, RankError> {
    let t0 = Instant::now();
    if settings.val_samples == 0 || val.is_empty() {
        return Err(RankError::Invalid(
            "one-shot scoring needs validation images (data.val_split > 0, val_samples > 0)".into(),
        ));
    }
    let evals = (0..repeats.max(1))
        .map(|r| {
            let (s, v) = repeat_settings(settings, val, r);
            s.batches(net, train, &v)
        })
        .collect::<Result<Vec<_>, _>>()?;
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
        let results = evals
            .iter()
            .map(|b| one_shot_eval(net, &arch, b))
            .collect::<Result<Vec<_>, _>>()?;
        let accs: Vec<f64> = results.iter().map(|r| r.accuracy).collect();
        let one_shot = accs.iter().sum::<f64>() / accs.len() as f64;
        let loss = results.iter().map(|r| r.loss).sum::<f64>() / results.len() as f64;
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
            one_shot_loss: Some(loss),
            one_shot_repeats: if accs.len() > 1 { accs } else { Vec::new() },
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
        by_loss: Some(loss_ranking(&archs, resamples)),
        ceiling: ceiling(false),
        ceiling_in_window: ceiling(true),
        truth_spread: truth.spread(false),
        settings: settings.clone(),
        noise: eval_noise(&archs),
        seconds: t0.elapsed().as_secs_f64(),
        archs,
    })
}

/// One-shot loss against stand-alone accuracy over the architectures that
/// have a loss: lower loss ranks higher, so a loss that orders them as
/// their accuracies do gives τ-b = +1.
pub fn loss_ranking(archs: &[ArchScore], resamples: usize) -> Correlation {
    let (neg_loss, standalone): (Vec<f64>, Vec<f64>) = archs
        .iter()
        .filter_map(|s| Some((-s.one_shot_loss?, s.standalone)))
        .unzip();
    correlate(&neg_loss, &standalone, resamples, BOOTSTRAP_SEED)
}

/// The settings and validation images of evaluation `r`: repeat 0 is the
/// search's own (its BN batches, the first `val_samples` images); repeat
/// `r` > 0 draws other BN batches and another seeded subset of `val`, so
/// the repeats show how much a different draw of either moves the score.
pub fn repeat_settings(
    settings: &OneShotSettings,
    val: &ImageSet,
    r: usize,
) -> (OneShotSettings, ImageSet) {
    let n = settings.val_samples.min(val.len());
    if r == 0 {
        return (settings.clone(), val.subset(&(0..n).collect::<Vec<_>>()));
    }
    let mut idx = permutation(
        val.len(),
        derive_seed(settings.seed, "one-shot-val", r as u64),
    );
    idx.truncate(n);
    idx.sort_unstable();
    let s = OneShotSettings {
        seed: derive_seed(settings.seed, "one-shot-bn", r as u64),
        ..settings.clone()
    };
    (s, val.subset(&idx))
}

/// The evaluation's noise from the architectures' repeats; `None` with
/// fewer than two repeats or two architectures.
fn eval_noise(archs: &[ArchScore]) -> Option<EvalNoise> {
    let repeats = archs.first()?.one_shot_repeats.len();
    if repeats < 2 || archs.len() < 2 {
        return None;
    }
    let within = (archs
        .iter()
        .map(|a| sample_sd(&a.one_shot_repeats).powi(2))
        .sum::<f64>()
        / archs.len() as f64)
        .sqrt();
    let means: Vec<f64> = archs.iter().map(|a| a.one_shot).collect();
    let first: Vec<f64> = archs.iter().map(|a| a.one_shot_repeats[0]).collect();
    let second: Vec<f64> = archs.iter().map(|a| a.one_shot_repeats[1]).collect();
    Some(EvalNoise {
        repeats,
        within_sd_pct: 100.0 * within,
        between_sd_pct: 100.0 * sample_sd(&means),
        repeat_tau_b: kendall_tau_b(&first, &second).tau_b,
    })
}
