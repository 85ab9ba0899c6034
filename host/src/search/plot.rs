//! SVG plots of a PAD-NAS run: Pareto fronts of each search, op survival
//! per layer, search progress per generation, space size per stage.

use std::path::Path;

use plotters::prelude::*;

use super::{Pruning, SearchError, SearchRecord};
use crate::files::write_atomic;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> SearchError + '_ {
    move |e| SearchError::File {
        path: path.to_path_buf(),
        message: format!("plot: {e}"),
    }
}

fn span(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let d = (hi - lo).max(hi.abs() * 1e-3).max(1e-9);
    (lo - pad * d, hi + pad * d)
}

/// Accuracy against predicted latency: every evaluated architecture of each
/// search (small dots) and its Pareto front (line), the window shaded.
pub fn pareto(searches: &[(&str, &SearchRecord)], path: &Path) -> Result<(), SearchError> {
    let e = err(path);
    let all = || searches.iter().flat_map(|(_, r)| r.candidates.iter());
    let (x0, x1) = span(
        all().map(|c| c.latency_ms).chain(
            searches
                .iter()
                .flat_map(|(_, r)| [r.window.lo_ms, r.window.hi_ms]),
        ),
        0.05,
    );
    let (y0, y1) = span(all().map(|c| 100.0 * c.accuracy), 0.08);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Pareto fronts: one-shot accuracy vs predicted latency",
                ("sans-serif", 16),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("predicted latency (ms)")
            .y_desc("one-shot validation accuracy (%)")
            .draw()
            .map_err(|x| e(&x))?;
        if let Some((_, r)) = searches.last() {
            let w = &r.window;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(w.lo_ms, y0), (w.hi_ms, y1)],
                    RGBColor(200, 200, 200).mix(0.3).filled(),
                )))
                .map_err(|x| e(&x))?
                .label(format!("window {:.3}–{:.3} ms", w.lo_ms, w.hi_ms))
                .legend(|(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 16, y + 5)],
                        RGBColor(200, 200, 200).filled(),
                    )
                });
        }
        for (i, (name, r)) in searches.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(
                    r.candidates
                        .iter()
                        .filter(|k| k.rank > 0)
                        .map(|k| Circle::new((k.latency_ms, 100.0 * k.accuracy), 1, c.mix(0.35))),
                )
                .map_err(|x| e(&x))?;
            let front: Vec<(f64, f64)> = r
                .pareto()
                .iter()
                .map(|k| (k.latency_ms, 100.0 * k.accuracy))
                .collect();
            chart
                .draw_series(LineSeries::new(front.clone(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(format!(
                    "{name}: {} evaluated, {} on the front",
                    r.candidates.len(),
                    front.len()
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(front.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

/// Heat map of op frequencies among the top-ranked architectures, one
/// column per layer, one row per op; pruned ops crossed out, ops a layer
/// never had left blank.
pub fn survival(p: &Pruning, title: &str, path: &Path) -> Result<(), SearchError> {
    let e = err(path);
    let mut ops: Vec<crate::space::Op> = p.layers.iter().flatten().map(|c| c.op).collect();
    ops.sort();
    ops.dedup();
    let (nl, no) = (p.layers.len(), ops.len());
    let mut svg = String::new();
    {
        let w = (160 + 56 * nl).max(480) as u32;
        let h = (140 + 34 * no) as u32;
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..nl as f64, 0.0..no as f64)
            .map_err(|x| e(&x))?;
        let names: Vec<String> = ops.iter().map(ToString::to_string).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nl)
            .y_labels(no)
            .x_label_formatter(&|v| format!("{}", v.floor() as usize))
            .y_label_formatter(&|v| names.get(v.floor() as usize).cloned().unwrap_or_default())
            .x_desc("layer")
            .draw()
            .map_err(|x| e(&x))?;
        for (l, layer) in p.layers.iter().enumerate() {
            for c in layer {
                let Some(r) = ops.iter().position(|o| *o == c.op) else {
                    continue;
                };
                let (x, y) = (l as f64, r as f64);
                // White (never chosen) to deep blue (always chosen).
                let f = c.frequency.clamp(0.0, 1.0);
                let shade = RGBColor(
                    (255.0 - 224.0 * f) as u8,
                    (255.0 - 136.0 * f) as u8,
                    (255.0 - 75.0 * f) as u8,
                );
                chart
                    .draw_series([
                        Rectangle::new(
                            [(x + 0.04, y + 0.06), (x + 0.96, y + 0.94)],
                            shade.filled(),
                        ),
                        Rectangle::new(
                            [(x + 0.04, y + 0.06), (x + 0.96, y + 0.94)],
                            BLACK.mix(0.3),
                        ),
                    ])
                    .map_err(|x| e(&x))?;
                let text = if f >= 0.995 {
                    "100".to_string()
                } else {
                    format!("{:.0}", 100.0 * f)
                };
                let ink = if f > 0.55 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x + 0.3, y + 0.7),
                        ("sans-serif", 12).into_font().color(&ink),
                    )))
                    .map_err(|x| e(&x))?;
                if c.pruned {
                    let red = RGBColor(214, 39, 40).stroke_width(2);
                    chart
                        .draw_series([
                            PathElement::new(vec![(x + 0.1, y + 0.12), (x + 0.9, y + 0.88)], red),
                            PathElement::new(vec![(x + 0.1, y + 0.88), (x + 0.9, y + 0.12)], red),
                        ])
                        .map_err(|x| e(&x))?;
                }
            }
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

/// Best one-shot accuracy in the population and hypervolume of its front,
/// per generation, for each search.
pub fn progress(searches: &[(&str, &SearchRecord)], path: &Path) -> Result<(), SearchError> {
    let e = err(path);
    let gens = searches
        .iter()
        .map(|(_, r)| r.state.history.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let acc = |r: &SearchRecord| -> Vec<(f64, f64)> {
        r.state
            .history
            .iter()
            .map(|h| (h.generation as f64, 100.0 * (1.0 - h.best[0])))
            .collect()
    };
    let hv = |r: &SearchRecord| -> Vec<(f64, f64)> {
        r.state
            .history
            .iter()
            .filter_map(|h| h.hypervolume.map(|v| (h.generation as f64, v)))
            .collect()
    };
    let (a0, a1) = span(searches.iter().flat_map(|(_, r)| acc(r)).map(|p| p.1), 0.1);
    let (h0, h1) = span(searches.iter().flat_map(|(_, r)| hv(r)).map(|p| p.1), 0.1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let halves = root.split_evenly((1, 2));
        for (k, area) in halves.iter().enumerate() {
            let (lo, hi, title, desc) = if k == 0 {
                (
                    a0,
                    a1,
                    "best one-shot accuracy in the population",
                    "accuracy (%)",
                )
            } else {
                (
                    h0,
                    h1,
                    "hypervolume of the first front",
                    "hypervolume (accuracy × ms)",
                )
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 15))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..gens - 1.0, lo..hi)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc("generation")
                .y_desc(desc)
                .draw()
                .map_err(|x| e(&x))?;
            for (i, (name, r)) in searches.iter().enumerate() {
                let c = color(i);
                let pts = if k == 0 { acc(r) } else { hv(r) };
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(|x| e(&x))?
                    .label(name.to_string())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

/// Number of architectures (log scale) of each stage's space.
pub fn space_size(stages: &[(String, f64)], path: &Path) -> Result<(), SearchError> {
    let e = err(path);
    let logs: Vec<f64> = stages.iter().map(|(_, n)| n.max(1.0).log10()).collect();
    let top = logs.iter().copied().fold(1.0, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let n = stages.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption("size of the search space per stage", ("sans-serif", 15))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)
            .map_err(|x| e(&x))?;
        let names: Vec<String> = stages.iter().map(|(s, _)| s.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| names.get(v.floor() as usize).cloned().unwrap_or_default())
            .y_desc("log10(architectures)")
            .draw()
            .map_err(|x| e(&x))?;
        for (i, ((_, count), l)) in stages.iter().zip(&logs).enumerate() {
            let x = i as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.2, 0.0), (x + 0.8, *l)],
                    color(0).filled(),
                )])
                .map_err(|x| e(&x))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    crate::space::format_count(*count),
                    (x + 0.25, l + top * 0.03),
                    ("sans-serif", 12),
                )))
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}
