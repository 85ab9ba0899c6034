//! Statistics for tables and their validation: the distribution-free
//! confidence interval of a median, prediction-accuracy metrics, and a linear
//! calibration checked by leave-one-out cross-validation; and the rank
//! correlations (Kendall's τ-b, Spearman's ρ, with bootstrap intervals) that
//! both latency tables and one-shot accuracy are judged by.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Confidence level of the median intervals in tables.
pub const CONFIDENCE: f64 = 0.95;

/// Sample standard deviation (n − 1 in the denominator); 0 for fewer than
/// two values.
pub fn sample_sd(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let m = values.iter().sum::<f64>() / n as f64;
    (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

/// Smallest and largest of `values`: `[∞, −∞]` when there are none.
pub fn min_max(values: impl Iterator<Item = f64> + Clone) -> [f64; 2] {
    [
        values.clone().fold(f64::INFINITY, f64::min),
        values.fold(f64::NEG_INFINITY, f64::max),
    ]
}

/// Ranks `(lo, hi)` (0-based, into sorted data) of the distribution-free
/// confidence interval of the median at `confidence`, or `None` when `n` is
/// too small for any interval to reach it (n < 6 at 95%).
///
/// The number of samples below the true median is Binomial(n, ½), so
/// `[x₍ₖ₎, x₍ₙ₋ₖ₊₁₎]` (1-based) covers it with probability
/// `1 − 2·P(X ≤ k−1)`; `k` is the largest rank that keeps this ≥
/// `confidence`. No assumption on the shape of the latency distribution is
/// needed, which matters because latencies are skewed (long right tail).
pub fn median_ci_ranks(n: usize, confidence: f64) -> Option<(usize, usize)> {
    if n == 0 {
        return None;
    }
    let alpha_half = (1.0 - confidence) / 2.0;
    // P(X = i) in log space, so large n neither under- nor overflows.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut cdf = 0.0f64; // P(X ≤ i − 1) before adding term i
    let mut k = 0usize; // the interval is [x_(k), x_(n−k+1)], 1-based
    for i in 0..n / 2 {
        cdf += (ln_choose + ln_half_n).exp();
        // cdf is now P(X ≤ i); rank i + 1 is usable when it is ≤ α/2.
        if cdf <= alpha_half {
            k = i + 1;
        } else {
            break;
        }
        ln_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (k > 0).then(|| (k - 1, n - k))
}

/// The 95% confidence interval of the median of `sorted` and its half-width
/// in percent of the median: `((lo, hi), half_width_pct)`. `None` when there
/// are too few samples for an interval, or the median is not positive.
pub fn median_ci(sorted: &[f64]) -> Option<((f64, f64), f64)> {
    let (lo, hi) = median_ci_ranks(sorted.len(), CONFIDENCE)?;
    let median = padnas_agent::stats::percentile(sorted, 0.5);
    if median <= 0.0 || !median.is_finite() {
        return None;
    }
    let (l, h) = (sorted[lo], sorted[hi]);
    Some(((l, h), (h - l) / 2.0 / median * 100.0))
}

/// How well predictions match measurements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of networks.
    pub n: usize,
    /// Fraction with |predicted − measured| ≤ 5% of measured.
    pub within_5pct: f64,
    /// Fraction with |predicted − measured| ≤ 10% of measured.
    pub within_10pct: f64,
    /// Mean absolute percentage error, as a fraction (0.03 = 3%).
    pub mape: f64,
    /// Mean signed error, as a fraction of measured (+: the table over-predicts).
    pub bias: f64,
    /// Spearman rank correlation of predicted and measured (ties averaged).
    pub spearman: f64,
}

/// Metrics of `predicted` against `measured` (same length, measured > 0).
pub fn metrics(predicted: &[f64], measured: &[f64]) -> Metrics {
    let n = predicted.len().min(measured.len());
    let rel: Vec<f64> = predicted
        .iter()
        .zip(measured)
        .map(|(p, m)| (p - m) / m)
        .collect();
    let frac = |limit: f64| {
        if n == 0 {
            0.0
        } else {
            // A hair of slack so 5.0% written as 0.05 counts as within 5%.
            rel.iter().filter(|r| r.abs() <= limit + 1e-12).count() as f64 / n as f64
        }
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let abs: Vec<f64> = rel.iter().map(|r| r.abs()).collect();
    Metrics {
        n,
        within_5pct: frac(0.05),
        within_10pct: frac(0.10),
        mape: mean(&abs),
        bias: mean(&rel),
        spearman: spearman(&predicted[..n], &measured[..n]),
    }
}

/// Ranks starting at 1, ties given their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = avg;
        }
        i = j + 1;
    }
    out
}

/// Pearson correlation; 0 when either side is constant or n < 2.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Spearman rank correlation (Pearson on average ranks, so ties are handled).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's τ-b of two rankings, with the pair counts it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KendallTau {
    /// Number of paired observations.
    pub n: usize,
    /// Pairs ordered the same way on both sides.
    pub concordant: usize,
    /// Pairs ordered oppositely.
    pub discordant: usize,
    /// Pairs tied in `x` (including those tied on both sides).
    pub ties_x: usize,
    /// Pairs tied in `y` (including those tied on both sides).
    pub ties_y: usize,
    /// τ-b; `None` when undefined (fewer than 2 observations, or one side
    /// constant): a made-up 0 would read as "no correlation measured".
    pub tau_b: Option<f64>,
}

/// Kendall's τ-b: `(C − D) / √((n₀ − n₁)(n₀ − n₂))` over all pairs, with
/// `n₀ = n(n−1)/2` and `n₁`, `n₂` the pairs tied in `x` and in `y`. τ-b
/// rather than τ-a because accuracies tie (few validation images, or
/// architectures that collapse to the same accuracy), and τ-b still reaches
/// ±1 for identical rankings with ties. All pairs are compared (O(n²)): the
/// rankings compared here have tens of entries, and the direct count is
/// easy to check by hand.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> KendallTau {
    let n = x.len().min(y.len());
    let (mut concordant, mut discordant, mut ties_x, mut ties_y) = (0, 0, 0, 0);
    for i in 0..n {
        for j in i + 1..n {
            let a = x[i].total_cmp(&x[j]) as i8;
            let b = y[i].total_cmp(&y[j]) as i8;
            if a == 0 {
                ties_x += 1;
            }
            if b == 0 {
                ties_y += 1;
            }
            match a * b {
                1 => concordant += 1,
                -1 => discordant += 1,
                _ => {}
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as f64;
    let denom = ((n0 - ties_x as f64) * (n0 - ties_y as f64)).sqrt();
    KendallTau {
        n,
        concordant,
        discordant,
        ties_x,
        ties_y,
        tau_b: (denom > 0.0).then(|| (concordant as f64 - discordant as f64) / denom),
    }
}

/// Two rank correlations of paired observations, each with a percentile
/// bootstrap 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// Pairs.
    pub n: usize,
    /// Kendall's τ-b; `None` when undefined.
    pub kendall_tau_b: Option<f64>,
    /// Its bootstrap 95% interval.
    pub kendall_ci95: Option<[f64; 2]>,
    /// Spearman's ρ; `None` when undefined (as τ-b).
    pub spearman: Option<f64>,
    /// Its bootstrap 95% interval.
    pub spearman_ci95: Option<[f64; 2]>,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
}

/// The 2.5th and 97.5th percentiles of `stat` over `resamples` resamples of
/// the pairs drawn with replacement (seeded); resamples where `stat` is
/// undefined (e.g. every pair drawn is the same one) are left out. `None`
/// when fewer than 3 pairs or fewer than 20 defined resamples remain: with
/// N = 12 and one seed, the interval is what shows that 0 and 0.5 cannot be
/// told apart.
pub fn bootstrap_ci95(
    x: &[f64],
    y: &[f64],
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[f64], &[f64]) -> Option<f64>,
) -> Option<[f64; 2]> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut xs, mut ys) = (vec![0.0; n], vec![0.0; n]);
    let mut values: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            for k in 0..n {
                let i = rng.random_range(0..n);
                xs[k] = x[i];
                ys[k] = y[i];
            }
            stat(&xs, &ys)
        })
        .collect();
    if values.len() < 20 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some([at(0.025), at(0.975)])
}

/// Kendall's τ-b and Spearman's ρ of `x` and `y` with their bootstrap 95%
/// intervals (`resamples` resamples, seeded).
pub fn correlate(x: &[f64], y: &[f64], resamples: usize, seed: u64) -> Correlation {
    let tau = |a: &[f64], b: &[f64]| kendall_tau_b(a, b).tau_b;
    // ρ is undefined exactly where τ-b is (a constant side); stats'
    // `spearman` would say 0 there.
    let rho = |a: &[f64], b: &[f64]| tau(a, b).map(|_| spearman(a, b));
    Correlation {
        n: x.len().min(y.len()),
        kendall_tau_b: tau(x, y),
        kendall_ci95: bootstrap_ci95(x, y, resamples, seed, tau),
        spearman: rho(x, y),
        spearman_ci95: bootstrap_ci95(x, y, resamples, seed, rho),
        resamples,
    }
}

/// `measured ≈ intercept_ms + slope · predicted`, by ordinary least squares.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    /// Offset in ms: what the sum of blocks misses (or double counts) per
    /// network, e.g. the stem/head fusion or per-run overhead.
    pub intercept_ms: f64,
    /// Scale: how much slower (> 1) a block is inside a network than alone.
    pub slope: f64,
}

impl LinearFit {
    /// The corrected prediction.
    pub fn apply(&self, predicted_ms: f64) -> f64 {
        self.intercept_ms + self.slope * predicted_ms
    }
}

/// Least-squares fit of `y ≈ a + b·x`; `None` for fewer than 3 points. With
/// no spread in `x` the slope stays 1 and only the offset is fitted.
pub fn fit_linear(x: &[f64], y: &[f64]) -> Option<LinearFit> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let sxx: f64 = x[..n].iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x[..n]
        .iter()
        .zip(&y[..n])
        .map(|(a, b)| (a - mx) * (b - my))
        .sum();
    let slope = if sxx > 1e-12 * mx.abs().max(1.0) {
        sxy / sxx
    } else {
        1.0
    };
    Some(LinearFit {
        intercept_ms: my - slope * mx,
        slope,
    })
}

/// Leave-one-out predictions of the linear calibration: point `i` corrected
/// by a fit on all the other points, so the metrics on them are honest
/// (never scored on data the fit saw). `None` for fewer than 4 points.
pub fn loo_predictions(x: &[f64], y: &[f64]) -> Option<Vec<f64>> {
    let n = x.len().min(y.len());
    if n < 4 {
        return None;
    }
    (0..n)
        .map(|i| {
            let xs: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| x[j]).collect();
            let ys: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| y[j]).collect();
            fit_linear(&xs, &ys).map(|f| f.apply(x[i]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_and_sample_sd_on_known_values() {
        let v = [3.0, -1.5, 7.25, 0.0];
        assert_eq!(min_max(v.iter().copied()), [-1.5, 7.25]);
        assert_eq!(min_max([].into_iter()), [f64::INFINITY, f64::NEG_INFINITY]);
        // Mean 2, squared deviations 1 + 1 + 9 + 9 = 20, over n − 1 = 3.
        assert!((sample_sd(&[1.0, 3.0, -1.0, 5.0]) - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(sample_sd(&[4.0]), 0.0);
    }

    #[test]
    fn median_ci_ranks_match_the_binomial_table() {
        // Classic table of distribution-free 95% intervals for the median
        // (1-based ranks): n=6 → (1,6), n=10 → (2,9), n=20 → (6,15),
        // n=50 → (18,33), n=100 → (40,61).
        assert_eq!(median_ci_ranks(5, 0.95), None);
        assert_eq!(median_ci_ranks(6, 0.95), Some((0, 5)));
        assert_eq!(median_ci_ranks(10, 0.95), Some((1, 8)));
        assert_eq!(median_ci_ranks(20, 0.95), Some((5, 14)));
        assert_eq!(median_ci_ranks(50, 0.95), Some((17, 32)));
        assert_eq!(median_ci_ranks(100, 0.95), Some((39, 60)));
        // Large n neither overflows nor degenerates: close to the normal
        // approximation n/2 ± 1.96·√n/2.
        let (lo, hi) = median_ci_ranks(10_000, 0.95).expect("interval");
        assert!((4899..=4902).contains(&lo), "{lo}");
        assert_eq!(lo + hi, 9_999, "symmetric");
    }

    #[test]
    fn median_ci_on_known_samples() {
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        let ((lo, hi), hw) = median_ci(&sorted).expect("interval");
        assert_eq!((lo, hi), (2.0, 9.0));
        // median 5.5, half-width 3.5 → 63.6%
        assert!((hw - 3.5 / 5.5 * 100.0).abs() < 1e-9, "{hw}");
        assert!(median_ci(&[1.0, 2.0, 3.0]).is_none(), "too few samples");
        assert!(median_ci(&[0.0; 10]).is_none(), "zero median");
        // Tight samples converge: 100 values within ±1% of 10.
        let tight: Vec<f64> = (0..100).map(|i| 9.9 + 0.2 * f64::from(i) / 99.0).collect();
        let (_, hw) = median_ci(&tight).expect("interval");
        assert!(hw < 0.5, "{hw}");
    }

    #[test]
    fn ranks_average_ties_and_spearman_is_rank_based() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let cubes: Vec<f64> = x.iter().map(|v: &f64| v.powi(3)).collect();
        assert!((spearman(&x, &cubes) - 1.0).abs() < 1e-12, "monotone → 1");
        let rev: Vec<f64> = x.iter().rev().copied().collect();
        assert!((spearman(&x, &rev) + 1.0).abs() < 1e-12, "reversed → −1");
        assert_eq!(spearman(&x, &[2.0; 5]), 0.0, "constant side");
    }

    #[test]
    fn kendall_tau_b_on_hand_counted_examples() {
        let close = |t: KendallTau, want: f64| {
            let got = t.tau_b.expect("defined");
            assert!((got - want).abs() < 1e-12, "{got} vs {want} ({t:?})");
        };
        // No ties: C = 6, D = 4 over 10 pairs → 0.2.
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 1.0, 2.0, 5.0]);
        assert_eq!(
            (t.n, t.concordant, t.discordant, t.ties_x, t.ties_y),
            (5, 6, 4, 0, 0)
        );
        close(t, 0.2);
        // One tie per side on different pairs: C = 3, D = 1, n₀ = 6, n₁ = n₂ = 1
        // → 2 / √(5·5) = 0.4 (τ-a would say 2/6).
        let t = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 2.0]);
        assert_eq!(
            (t.concordant, t.discordant, t.ties_x, t.ties_y),
            (3, 1, 1, 1)
        );
        close(t, 0.4);
        // SciPy's documented example (scipy.stats.kendalltau): C = 2, D = 6,
        // n₁ = 2, n₂ = 1 → −4 / √(8·9) = −0.47140452079103173.
        let t = kendall_tau_b(&[12.0, 2.0, 1.0, 12.0, 2.0], &[1.0, 4.0, 7.0, 1.0, 0.0]);
        assert_eq!(
            (t.concordant, t.discordant, t.ties_x, t.ties_y),
            (2, 6, 2, 1)
        );
        close(t, -0.471_404_520_791_031_73);
        // Identical rankings with a pair tied on both sides still give 1.
        close(kendall_tau_b(&[1.0, 1.0, 2.0], &[5.0, 5.0, 9.0]), 1.0);
        close(kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // Undefined, not 0: a constant side, or too few observations.
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[4.0; 3]).tau_b, None);
        assert_eq!(kendall_tau_b(&[1.0], &[1.0]).tau_b, None);
        assert_eq!(kendall_tau_b(&[], &[]).n, 0);
    }

    #[test]
    fn metrics_count_within_bands() {
        let measured = [10.0, 10.0, 10.0, 10.0];
        let predicted = [10.4, 9.5, 10.9, 12.0];
        let m = metrics(&predicted, &measured);
        assert_eq!(m.n, 4);
        assert_eq!(m.within_5pct, 0.5);
        assert_eq!(m.within_10pct, 0.75);
        assert!((m.mape - (0.04 + 0.05 + 0.09 + 0.2) / 4.0).abs() < 1e-12);
        assert!((m.bias - (0.04 - 0.05 + 0.09 + 0.2) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn linear_fit_and_leave_one_out() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y: Vec<f64> = x.iter().map(|v| 0.5 + 1.2 * v).collect();
        let f = fit_linear(&x, &y).expect("fit");
        assert!(
            (f.intercept_ms - 0.5).abs() < 1e-12 && (f.slope - 1.2).abs() < 1e-12,
            "{f:?}"
        );
        // Exact data: leave-one-out recovers every point.
        let loo = loo_predictions(&x, &y).expect("loo");
        for (p, m) in loo.iter().zip(&y) {
            assert!((p - m).abs() < 1e-9);
        }
        // An outlier is not used to predict itself: its LOO prediction stays
        // on the line of the others.
        let mut y2 = y.clone();
        y2[4] = 100.0;
        let loo = loo_predictions(&x, &y2).expect("loo");
        assert!((loo[4] - (0.5 + 1.2 * 5.0)).abs() < 1e-9, "{}", loo[4]);
        assert!(fit_linear(&x[..2], &y[..2]).is_none());
        // No spread in x: slope 1, offset only.
        let f = fit_linear(&[2.0; 4], &[3.0, 3.0, 3.5, 2.5]).expect("fit");
        assert_eq!(f.slope, 1.0);
        assert!((f.intercept_ms - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_intervals_cover_the_estimate_and_shrink_with_n() {
        // Perfectly ranked pairs: every defined resample is +1 (ties drawn
        // twice tie on both sides, which τ-b leaves at 1).
        let x: Vec<f64> = (0..30).map(f64::from).collect();
        let c = correlate(&x, &x, 500, 1);
        assert_eq!(c.kendall_tau_b, Some(1.0));
        assert_eq!(c.kendall_ci95, Some([1.0, 1.0]));
        assert_eq!(c.spearman_ci95, Some([1.0, 1.0]));
        // A noisy monotone relation: the interval holds the estimate, and
        // is narrower with 200 pairs than with 12.
        let noisy = |n: usize| -> (Vec<f64>, Vec<f64>) {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let y = x
                .iter()
                .map(|v| v + rng.random_range(-1.0..1.0) * n as f64 * 0.4)
                .collect();
            (x, y)
        };
        let (x12, y12) = noisy(12);
        let (x200, y200) = noisy(200);
        let small = correlate(&x12, &y12, 1000, 3);
        let big = correlate(&x200, &y200, 1000, 3);
        for c in [small, big] {
            let t = c.kendall_tau_b.expect("tau");
            let [lo, hi] = c.kendall_ci95.expect("ci");
            assert!(lo <= t && t <= hi, "{lo} ≤ {t} ≤ {hi}");
            let r = c.spearman.expect("rho");
            let [lo, hi] = c.spearman_ci95.expect("ci");
            assert!(lo <= r && r <= hi, "{lo} ≤ {r} ≤ {hi}");
        }
        let width = |c: &Correlation| c.kendall_ci95.map(|[a, b]| b - a).expect("ci");
        assert!(width(&big) < width(&small) / 2.0, "{big:?} vs {small:?}");
        // Same seed, same interval; too few pairs, none.
        assert_eq!(correlate(&x12, &y12, 1000, 3), small);
        assert_eq!(correlate(&x[..2], &x[..2], 100, 1).kendall_ci95, None);
        // A constant side: τ-b, ρ and their intervals are undefined.
        let c = correlate(&x, &[1.0; 30], 100, 1);
        assert_eq!(
            (c.kendall_tau_b, c.spearman, c.kendall_ci95),
            (None, None, None)
        );
    }
}
