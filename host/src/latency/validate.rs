//! Validating a table: random whole networks of the space, measured end to
//! end on the target, against the table's additive prediction; a linear bias
//! correction scored by leave-one-out; a scatter plot.

use std::path::Path;
use std::time::Instant;

use indicatif::ProgressBar;
use padnas_agent::proto::BenchLimits;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::LatencyError;
use super::link::AgentLink;
use super::measure::measure_model;
use super::predict::predict;
use super::stats::{LinearFit, Metrics, fit_linear, loo_predictions, metrics};
use super::table::Table;
use crate::files::write_atomic;
use crate::onnx::{self, RandomWeights};
use crate::space::{Arch, Space};

/// One validated network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Seed of the architecture draw and of its random weights.
    pub seed: u64,
    /// The architecture, in its text form.
    pub arch: String,
    /// Sum of the table's blocks (ms).
    pub predicted_ms: f64,
    /// Calibrated prediction from a fit on all *other* networks (ms).
    pub calibrated_loo_ms: Option<f64>,
    /// Measured median of the whole network (ms).
    pub measured_ms: f64,
    /// Measured 10th percentile (ms).
    pub measured_p10_ms: f64,
    /// Measured 90th percentile (ms).
    pub measured_p90_ms: f64,
    /// Timed runs pooled.
    pub runs: u32,
    /// Confidence half-width of the measured median (%).
    pub ci95_halfwidth_pct: Option<f64>,
    /// Whether the measurement reached the confidence target.
    pub converged: bool,
    /// Agent-side load and optimisation time (ms).
    pub load_ms: f64,
    /// With a reference block: the measured median itself, before the
    /// ratio (`measured_ms` is then ratio × the table's reference scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_measured_ms: Option<f64>,
    /// With a reference block: the sum of the table's raw medians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_predicted_ms: Option<f64>,
    /// With several passes: `measured_ms` of every visit, in the order
    /// measured; the other fields are those of the fastest visit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_ms: Vec<f64>,
    /// With the table's sensor gate: what it kept of the runs (the figures
    /// above are those of the kept runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<super::noise::QuietRuns>,
}

impl Row {
    /// Visits measured (a row of a one-pass validation has one).
    pub fn visits(&self) -> usize {
        self.visit_ms.len().max(1)
    }

    /// This row with one more visit, as [`super::Entry::with_visit`]: the
    /// faster visit supplies the figures, the list grows.
    fn with_visit(self, visit: Row) -> Row {
        let mut list = if self.visit_ms.is_empty() {
            vec![self.measured_ms]
        } else {
            self.visit_ms.clone()
        };
        list.push(visit.measured_ms);
        // As for table entries: a visit in which the gate found quiet runs
        // beats one in which it found none.
        let key = |r: &Row| super::noise::QuietRuns::visit_key(r.quiet.as_ref(), r.measured_ms);
        let mut best = if key(&visit) < key(&self) {
            visit
        } else {
            self
        };
        best.visit_ms = list;
        best
    }
}

/// Outcome of a validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// The additive table as is.
    pub raw: Metrics,
    /// The linear correction, scored leave-one-out; `None` below 4 networks.
    pub calibrated_loo: Option<Metrics>,
    /// The correction fitted on all networks (what `predict` will apply).
    pub fit: Option<LinearFit>,
    /// With a reference block: the same comparison on raw medians (sum of
    /// the blocks' medians against the network's median), which the
    /// machine's speed changes hit unevenly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_reference: Option<Metrics>,
    /// With two or more passes: each network's second visit scored against
    /// its first, as if it were a prediction. This is the machine's own
    /// spread: where two measurements of one network often differ by more
    /// than 5%, a table cannot be within 5% of every measurement either
    /// (the fastest-of-N visit that rows keep is steadier than one visit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeatability: Option<Metrics>,
    /// Per-network rows.
    pub rows: Vec<Row>,
    /// Wall time of the measurements (s).
    pub seconds: f64,
}

/// What a validation has measured so far, saved beside its report after
/// every visit so that a killed run, or one whose device dropped for good,
/// resumes where it stopped instead of measuring for an hour again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Where the networks ran (the table's label) and with which agent:
    /// rows measured elsewhere are not reused.
    pub label: String,
    /// Agent version.
    pub agent_version: String,
    /// Hash of the space the networks were drawn from.
    pub space_hash: String,
    /// Seed of the draw.
    pub seed: u64,
    /// One slot per network; `None` until its first visit.
    pub rows: Vec<Option<Row>>,
}

impl Progress {
    /// Whether these rows belong to a validation with these settings.
    pub fn matches(
        &self,
        label: &str,
        agent_version: &str,
        space_hash: &str,
        seed: u64,
        n: usize,
    ) -> bool {
        self.label == label
            && self.agent_version == agent_version
            && self.space_hash == space_hash
            && self.seed == seed
            && self.rows.len() == n
    }
}

/// Receives a validation's rows after every visit (see [`Progress`]).
pub type SaveRows<'a> = dyn FnMut(&[Option<Row>]) -> Result<(), LatencyError> + 'a;

/// The `n` architectures a validation with `seed` draws: network `i` uses
/// seed `seed + i` for both its ops and its weights, so one row can be
/// rebuilt on its own.
pub fn sample(space: &Space, n: usize, seed: u64) -> Vec<(u64, Arch)> {
    (0..n as u64)
        .map(|i| {
            let s = seed.wrapping_add(i);
            (s, space.sample_seeded(s))
        })
        .collect()
}

/// Measures `archs` through `link` and compares them with `table`. Networks
/// are measured with the table's own noise settings, so both sides of the
/// comparison are estimated the same way; `passes` sweeps over the list
/// (the table's `noise.passes` unless a caller overrides it), each network
/// standing for its fastest visit, as entries do. `done` holds rows already
/// measured (from [`Progress`], one slot per network): only their missing
/// visits are measured, and `save` receives the rows after every visit.
/// Every prediction is made before anything is measured, so a table that
/// lacks blocks fails at once, listing them all.
#[allow(clippy::too_many_arguments)]
pub fn validate(
    table: &Table,
    table_path: &Path,
    space: &Space,
    archs: &[(u64, Arch)],
    link: &mut AgentLink<'_>,
    limits: &BenchLimits,
    passes: u32,
    done: Vec<Option<Row>>,
    save: &mut SaveRows<'_>,
    progress: &ProgressBar,
) -> Result<Validation, LatencyError> {
    let mut noise = table.header.noise.clone();
    let scale = match noise.reference_block {
        Some(key) => Some(
            table
                .reference_scale_ms()
                .ok_or_else(|| LatencyError::Format {
                    path: table_path.to_path_buf(),
                    message: format!("reference block {key} but no entries to scale it by"),
                })?,
        ),
        None => None,
    };
    let started = Instant::now();
    let mut missing: Vec<String> = Vec::new();
    let mut predicted = Vec::with_capacity(archs.len());
    for (_, arch) in archs {
        match predict(table, table_path, space, arch) {
            Ok(p) => predicted.push(p.predicted_ms),
            Err(LatencyError::MissingEntries { missing: m, .. }) => {
                for k in m {
                    if !missing.contains(&k) {
                        missing.push(k);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(LatencyError::MissingEntries {
            path: table_path.to_path_buf(),
            missing,
        });
    }
    let passes = passes.max(1) as usize;
    let mut rows: Vec<Option<Row>> = if done.len() == archs.len() {
        done
    } else {
        vec![None; archs.len()]
    };
    let visits = |r: &Option<Row>| r.as_ref().map_or(0, Row::visits);
    let to_measure: usize = rows.iter().map(|r| passes.saturating_sub(visits(r))).sum();
    progress.set_length(to_measure as u64);
    for pass in 1..=passes {
        for i in 0..archs.len() {
            if visits(&rows[i]) >= pass {
                continue;
            }
            let ((seed, arch), pred) = (&archs[i], &predicted[i]);
            let slot = &mut rows[i];
            let what = format!("network {arch}");
            progress.set_message(if passes > 1 {
                format!("seed {seed} (pass {pass}/{passes})")
            } else {
                format!("seed {seed}")
            });
            let bytes = onnx::write_network(space, arch, &mut RandomWeights::new(*seed)).map_err(
                |source| LatencyError::Onnx {
                    what: what.clone(),
                    cause: source,
                },
            )?;
            let m = link.run(|d| measure_model(d, &bytes, &what, limits, &noise))?;
            // Networks learn the quiet level as blocks did, here only: a
            // check does not change the table.
            noise.lower_sensor_floor(m.learned_floor_ms);
            let s = &m.summary;
            let (measured, raw_measured, raw_predicted) = match (scale, &m.paired) {
                (Some(scale), Some(p)) => {
                    let raw_sum: f64 = space
                        .arch_blocks(arch)?
                        .iter()
                        .filter_map(|k| table.median_ms(k))
                        .sum();
                    (p.ratio * scale, Some(s.median), Some(raw_sum))
                }
                _ => (s.median, None, None),
            };
            tracing::debug!(
                "{what}: predicted {pred:.3} ms, measured {measured:.3} ms (pass {pass})"
            );
            let visit = Row {
                seed: *seed,
                arch: arch.to_string(),
                predicted_ms: *pred,
                calibrated_loo_ms: None,
                measured_ms: measured,
                measured_p10_ms: s.p10,
                measured_p90_ms: s.p90,
                runs: s.n as u32,
                ci95_halfwidth_pct: m.ci95_halfwidth_pct,
                converged: m.converged,
                load_ms: m.load_ms,
                raw_measured_ms: raw_measured,
                raw_predicted_ms: raw_predicted,
                visit_ms: Vec::new(),
                quiet: m.quiet.clone(),
            };
            *slot = Some(match slot.take() {
                Some(earlier) => earlier.with_visit(visit),
                None if passes > 1 => Row {
                    visit_ms: vec![measured],
                    ..visit
                },
                None => visit,
            });
            save(&rows)?;
            progress.inc(1);
        }
    }
    // Rows carried over from an earlier run were predicted by the table as it
    // was then; compare them with the table as it is now.
    let rows: Vec<Row> = rows
        .into_iter()
        .flatten()
        .zip(&predicted)
        .map(|(r, p)| Row {
            predicted_ms: *p,
            ..r
        })
        .collect();
    Ok(evaluate(rows, started.elapsed().as_secs_f64()))
}

/// Metrics of measured rows: raw, and the linear correction leave-one-out.
pub fn evaluate(mut rows: Vec<Row>, seconds: f64) -> Validation {
    let x: Vec<f64> = rows.iter().map(|r| r.predicted_ms).collect();
    let y: Vec<f64> = rows.iter().map(|r| r.measured_ms).collect();
    let raw = metrics(&x, &y);
    let loo = loo_predictions(&x, &y);
    let calibrated_loo = loo.as_ref().map(|p| metrics(p, &y));
    if let Some(p) = &loo {
        for (r, v) in rows.iter_mut().zip(p) {
            r.calibrated_loo_ms = Some(*v);
        }
    }
    let fit = loo.as_ref().and_then(|_| fit_linear(&x, &y));
    let unreferenced: Option<(Vec<f64>, Vec<f64>)> = rows
        .iter()
        .map(|r| Some((r.raw_predicted_ms?, r.raw_measured_ms?)))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
        .map(|v| v.into_iter().unzip());
    let without_reference = unreferenced.map(|(x, y)| metrics(&x, &y));
    let (second, first): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.visit_ms.len() >= 2)
        .map(|r| (r.visit_ms[1], r.visit_ms[0]))
        .unzip();
    let repeatability = (!first.is_empty()).then(|| metrics(&second, &first));
    Validation {
        raw,
        calibrated_loo,
        fit,
        without_reference,
        repeatability,
        rows,
        seconds,
    }
}

/// Whether the linear correction is worth storing: only when it beats the
/// raw table out of sample (lower leave-one-out MAPE). On a noisy machine a
/// fit can chase noise and make predictions worse; such a fit must not be
/// applied by `predict`.
pub fn calibration_helps(v: &Validation) -> bool {
    match (&v.fit, &v.calibrated_loo) {
        (Some(_), Some(loo)) => loo.mape < v.raw.mape,
        _ => false,
    }
}

/// Draws predicted vs measured as SVG: the y = x line, the ±10% band
/// (|predicted − measured| ≤ 10% of measured), raw and leave-one-out
/// calibrated predictions. Written atomically.
pub fn plot_svg(v: &Validation, path: &Path, title: &str) -> Result<(), LatencyError> {
    let err = |e: &dyn std::fmt::Display| LatencyError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let values = v
        .rows
        .iter()
        .flat_map(|r| {
            [
                Some(r.predicted_ms),
                Some(r.measured_ms),
                r.calibrated_loo_ms,
            ]
        })
        .flatten()
        .filter(|x| x.is_finite() && *x > 0.0);
    let (mut lo, mut hi) = values.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
    if !lo.is_finite() || hi <= 0.0 {
        (lo, hi) = (0.5, 2.0);
    }
    let (lo, hi) = (lo / 1.15, hi * 1.15);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 780)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(18)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("predicted latency (ms)")
            .y_desc("measured latency (ms)")
            .draw()
            .map_err(|e| err(&e))?;
        // measured ∈ [predicted/1.1, predicted/0.9], clipped to the axes.
        let band = vec![
            (lo, lo),
            (lo * 1.1, lo),
            (hi, hi / 1.1),
            (hi, hi),
            (hi * 0.9, hi),
            (lo, lo / 0.9),
        ];
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(std::iter::once(Polygon::new(band, grey.mix(0.25).filled())))
            .map_err(|e| err(&e))?
            .label("±10%")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], grey.mix(0.25).filled())
            });
        chart
            .draw_series(LineSeries::new(
                vec![(lo, lo), (hi, hi)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("y = x")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(
                v.rows
                    .iter()
                    .map(|r| Circle::new((r.predicted_ms, r.measured_ms), 3, blue.filled())),
            )
            .map_err(|e| err(&e))?
            .label(format!(
                "table sum: {:.0}% within ±5%, {:.0}% within ±10%",
                v.raw.within_5pct * 100.0,
                v.raw.within_10pct * 100.0
            ))
            .legend(move |(x, y)| Circle::new((x + 8, y), 3, blue.filled()));
        if let Some(c) = &v.calibrated_loo {
            let orange = RGBColor(255, 127, 14);
            chart
                .draw_series(v.rows.iter().filter_map(|r| {
                    r.calibrated_loo_ms
                        .map(|p| TriangleMarker::new((p, r.measured_ms), 4, orange.filled()))
                }))
                .map_err(|e| err(&e))?
                .label(format!(
                    "calibrated (leave-one-out): {:.0}% within ±5%, {:.0}% within ±10%",
                    c.within_5pct * 100.0,
                    c.within_10pct * 100.0
                ))
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 4, orange.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

#[cfg(test)]
mod tests;
