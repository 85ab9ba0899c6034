//! Latency statistics over timed samples. Kept apart from the tract runner so
//! the host can summarise its own samples the same way.

/// `f64::sqrt` lives in std; without it (the firmware) `libm`'s, which is
/// correctly rounded as well, so both give the same bits.
#[cfg(feature = "std")]
fn sqrt(x: f64) -> f64 {
    x.sqrt()
}
#[cfg(not(feature = "std"))]
fn sqrt(x: f64) -> f64 {
    libm::sqrt(x)
}

/// Summary of a set of samples (same unit as the samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// 50th percentile.
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
    /// Sample standard deviation (n − 1); 0 for fewer than two samples, so
    /// the JSON never carries a NaN.
    pub stddev: f64,
    /// Sum.
    pub total: f64,
}

/// Percentile `q` in `[0, 1]` of sorted data, interpolating linearly between
/// neighbours (numpy's default), so p10/p90 of few runs stay meaningful.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
            // rank ≥ 0, so truncation is floor (and core has no f64::floor).
            let lo = rank as usize;
            let hi = if (lo as f64) < rank { lo + 1 } else { lo };
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// Summarises samples; `None` when there are none. NaNs sort last.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    // Unstable is the same here: values equal under total_cmp have equal bits.
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    summarize_sorted(&sorted)
}

/// [`summarize`] of samples the caller has already sorted in ascending
/// order (as `total_cmp` orders them), summed in that order: the same bits.
/// For a caller with a smaller sort of its own: the microcontroller agent
/// sorts its integer cycle counts with a small heapsort, where
/// `sort_unstable_by` takes about 2.5 KB of its flash.
pub fn summarize_sorted(sorted: &[f64]) -> Option<Summary> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let total: f64 = sorted.iter().sum();
    let mean = total / n as f64;
    let stddev = if n < 2 {
        0.0
    } else {
        sqrt(sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64)
    };
    Some(Summary {
        n,
        min: sorted[0],
        median: percentile(sorted, 0.5),
        mean,
        p10: percentile(sorted, 0.1),
        p90: percentile(sorted, 0.9),
        max: sorted[n - 1],
        stddev,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_to_ten() {
        let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.n, 10);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.median, 5.5);
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.total, 55.0);
        assert!((s.p10 - 1.9).abs() < 1e-12);
        assert!((s.p90 - 9.1).abs() < 1e-12);
        // Sample stddev of 1..=10 is sqrt(82.5/9).
        assert!((s.stddev - (82.5f64 / 9.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn single_sample_has_zero_spread() {
        let s = summarize(&[2.5]).unwrap();
        assert_eq!(
            (s.min, s.median, s.p10, s.p90, s.max, s.stddev),
            (2.5, 2.5, 2.5, 2.5, 2.5, 0.0)
        );
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn presorted_samples_summarise_to_the_same_bits() {
        let samples = [0.3, 7.25, 1.0 / 3.0, 2.5, 1e-3, 7.25, 4.0];
        let mut sorted = samples.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        assert_eq!(summarize_sorted(&sorted), summarize(&samples));
        assert!(summarize_sorted(&[]).is_none());
    }

    #[test]
    fn odd_count_median_is_middle() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.0);
    }
}
