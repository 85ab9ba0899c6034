//! `search:`: NSGA-II settings and the latency window, shared by every
//! search of a run; one-shot evaluation settings.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ctx};

/// Search section (paper defaults when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// Individuals per generation; 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<usize>,
    /// Generations; 40.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generations: Option<usize>,
    /// Two-point crossover probability; 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossover_prob: Option<f64>,
    /// Per-layer mutation probability; 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_prob: Option<f64>,
    /// The hard latency constraint; quantiles 0.25–0.75 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RawWindow>,
    /// Training batches for BN recalibration of each architecture; 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_batches: Option<usize>,
    /// Validation images scored per architecture (a fixed subset); 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_samples: Option<usize>,
}

/// Latency window: either bounds in ms or quantiles of random architectures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Lower bound (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo_ms: Option<f64>,
    /// Upper bound (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi_ms: Option<f64>,
    /// `[lo, hi]` quantiles of the predicted latency of random architectures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<[f64; 2]>,
    /// Random architectures drawn for the quantiles; 2000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// How the latency window is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSpec {
    /// Fixed bounds.
    Ms {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Quantiles of the predicted latency of random architectures of the
    /// run's initial space (computed once, kept for every stage).
    Quantiles {
        /// Lower quantile.
        lo: f64,
        /// Upper quantile.
        hi: f64,
        /// Architectures drawn.
        samples: usize,
    },
}

/// The search section, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Individuals per generation.
    pub population: usize,
    /// Generations.
    pub generations: usize,
    /// Crossover probability.
    pub crossover_prob: f64,
    /// Per-layer mutation probability.
    pub mutation_prob: f64,
    /// The latency window.
    pub window: WindowSpec,
    /// BN recalibration batches per architecture.
    pub bn_batches: usize,
    /// Validation images per architecture.
    pub val_samples: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            population: 64,
            generations: 40,
            crossover_prob: 0.9,
            mutation_prob: 0.1,
            window: WindowSpec::Quantiles {
                lo: 0.25,
                hi: 0.75,
                samples: 2000,
            },
            bn_batches: 4,
            val_samples: 1000,
        }
    }
}

impl SearchConfig {
    /// The section, or the paper's defaults when it is absent.
    pub(super) fn from_raw(raw: Option<&RawSearch>, cx: &Ctx) -> Result<SearchConfig, ConfigError> {
        let d = SearchConfig::default();
        let Some(r) = raw else { return Ok(d) };
        let population = r.population.unwrap_or(d.population);
        if population < 2 {
            return Err(cx.bad("search.population", format!("{population} must be ≥ 2")));
        }
        let prob = |key: &str, v: Option<f64>, default: f64| {
            let v = v.unwrap_or(default);
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(cx.bad(key, format!("{v} must be in [0, 1]")))
            }
        };
        let window = match &r.window {
            None => d.window.clone(),
            Some(w) => WindowSpec::from_raw(w, cx)?,
        };
        Ok(SearchConfig {
            population,
            generations: r.generations.unwrap_or(d.generations),
            crossover_prob: prob("search.crossover_prob", r.crossover_prob, d.crossover_prob)?,
            mutation_prob: prob("search.mutation_prob", r.mutation_prob, d.mutation_prob)?,
            window,
            bn_batches: r.bn_batches.unwrap_or(d.bn_batches),
            val_samples: cx
                .positive("search.val_samples", r.val_samples.unwrap_or(d.val_samples))?,
        })
    }

    pub(super) fn to_raw(&self) -> RawSearch {
        RawSearch {
            population: Some(self.population),
            generations: Some(self.generations),
            crossover_prob: Some(self.crossover_prob),
            mutation_prob: Some(self.mutation_prob),
            window: Some(self.window.to_raw()),
            bn_batches: Some(self.bn_batches),
            val_samples: Some(self.val_samples),
        }
    }
}

impl WindowSpec {
    fn from_raw(w: &RawWindow, cx: &Ctx) -> Result<WindowSpec, ConfigError> {
        match (w.lo_ms, w.hi_ms, w.quantiles) {
            (Some(lo), Some(hi), None) if w.samples.is_none() => {
                if !(lo >= 0.0 && lo < hi && hi.is_finite()) {
                    return Err(cx.bad(
                        "search.window",
                        format!("lo_ms {lo} and hi_ms {hi}: need 0 ≤ lo_ms < hi_ms"),
                    ));
                }
                Ok(WindowSpec::Ms { lo, hi })
            }
            (None, None, Some([lo, hi])) => {
                if !(0.0 <= lo && lo < hi && hi <= 1.0) {
                    return Err(cx.bad(
                        "search.window.quantiles",
                        format!("[{lo}, {hi}]: need 0 ≤ lo < hi ≤ 1"),
                    ));
                }
                let samples = w.samples.unwrap_or(2000);
                if samples < 2 {
                    return Err(cx.bad("search.window.samples", format!("{samples} must be ≥ 2")));
                }
                Ok(WindowSpec::Quantiles { lo, hi, samples })
            }
            _ => Err(cx.bad(
                "search.window",
                "give either lo_ms and hi_ms, or quantiles (and samples)",
            )),
        }
    }

    fn to_raw(&self) -> RawWindow {
        match *self {
            WindowSpec::Ms { lo, hi } => RawWindow {
                lo_ms: Some(lo),
                hi_ms: Some(hi),
                quantiles: None,
                samples: None,
            },
            WindowSpec::Quantiles { lo, hi, samples } => RawWindow {
                lo_ms: None,
                hi_ms: None,
                quantiles: Some([lo, hi]),
                samples: Some(samples),
            },
        }
    }
}
