use std::time::Duration;

use super::*;
use crate::latency::Connection;
use crate::latency::fake::{Fake, info};
use crate::latency::table::tests::{entry, header};

fn row(pred: f64, meas: f64) -> Row {
    Row {
        seed: 0,
        arch: "k3e1".into(),
        predicted_ms: pred,
        calibrated_loo_ms: None,
        measured_ms: meas,
        measured_p10_ms: meas,
        measured_p90_ms: meas,
        runs: 10,
        ci95_halfwidth_pct: Some(1.0),
        converged: true,
        load_ms: 1.0,
        raw_measured_ms: None,
        raw_predicted_ms: None,
        visit_ms: Vec::new(),
        quiet: None,
    }
}

#[test]
fn repeatability_scores_second_visits_against_first() {
    // One visit per network: nothing to compare.
    let one: Vec<Row> = (0..5).map(|i| row(10.0, 10.0 + f64::from(i))).collect();
    assert!(evaluate(one, 1.0).repeatability.is_none());
    // Second visits 0%, +4%, −8%, +20% off the first (the row keeps the
    // faster visit, which must not matter); a third visit is ignored.
    let rows: Vec<Row> = [1.0, 1.04, 0.92, 1.2]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let first = 10.0 + i as f64;
            let visits = vec![first, first * f, first * 0.5];
            Row {
                visit_ms: visits,
                ..row(first, first.min(first * f))
            }
        })
        .collect();
    let v = evaluate(rows, 1.0);
    let r = v.repeatability.expect("two visits each");
    assert_eq!(r.n, 4);
    assert_eq!((r.within_5pct, r.within_10pct), (0.5, 0.75), "{r:?}");
    assert!((r.mape - 0.08).abs() < 1e-9, "{r:?}");
    assert!((r.bias - 0.04).abs() < 1e-9, "{r:?}");
}

#[test]
fn a_biased_table_is_corrected_honestly() {
    // Networks take 1 ms more than their blocks plus 10%, with ±1% noise.
    let rows: Vec<Row> = (0..20)
        .map(|i| {
            let p = 5.0 + f64::from(i);
            let noise = 1.0 + 0.01 * (f64::from(i % 3) - 1.0);
            row(p, (1.0 + 1.1 * p) * noise)
        })
        .collect();
    let v = evaluate(rows, 1.0);
    assert!(v.raw.within_10pct < 0.5, "raw is off: {:?}", v.raw);
    let c = v.calibrated_loo.as_ref().expect("calibrated");
    assert_eq!(c.within_5pct, 1.0, "{c:?}");
    assert!(c.mape < 0.02 && c.spearman > 0.99, "{c:?}");
    let f = v.fit.expect("fit");
    assert!(
        (f.slope - 1.1).abs() < 0.05 && (f.intercept_ms - 1.0).abs() < 0.5,
        "{f:?}"
    );
    assert!(v.rows.iter().all(|r| r.calibrated_loo_ms.is_some()));
    assert!(calibration_helps(&v));
    // An unbiased table with zero-mean noise: a fit only chases the
    // noise, so out of sample it is worse than the table as is.
    let noisy: Vec<Row> = (0..20)
        .map(|i| {
            let p = 10.0 + f64::from(i);
            row(p, p * (1.0 + 0.03 * f64::from((i * 7) % 5 - 2)))
        })
        .collect();
    assert!(!calibration_helps(&evaluate(noisy, 1.0)));
    // Too few networks for an honest check: no calibration.
    let v = evaluate(vec![row(1.0, 1.0), row(2.0, 2.1), row(3.0, 2.9)], 1.0);
    assert!(v.calibrated_loo.is_none() && v.fit.is_none());
    assert!(!calibration_helps(&v));
}

#[test]
fn plot_is_written_as_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.svg");
    let rows: Vec<Row> = (1..8)
        .map(|i| row(f64::from(i), f64::from(i) * 1.05))
        .collect();
    plot_svg(&evaluate(rows, 1.0), &path, "test plot").expect("plot");
    let text = std::fs::read_to_string(&path).expect("svg");
    assert!(
        text.starts_with("<svg") && text.contains("test plot") && text.contains("circle"),
        "{}",
        &text[..200.min(text.len())]
    );
}

/// The tiny space and a table whose every block takes 1 ms.
fn tiny_table() -> (Space, Table) {
    let space =
        Space::from_yaml_str(crate::latency::profile::tests::TINY, "tiny.yaml").expect("space");
    let mut table = Table::new(header());
    for k in space.unique_blocks() {
        table.entries.insert(k, entry(1.0));
    }
    (space, table)
}

/// A link to `fake` that does not reconnect.
fn link_to(fake: Fake) -> AgentLink<'static> {
    AgentLink::new(
        Connection {
            device: Box::new(fake),
            info: info(),
        },
        Box::new(|| Err(LatencyError::InvalidArgument("no agent".into()))),
        0,
    )
    .with_backoff(Duration::ZERO)
}

/// [`validate`] of `archs` on `fake` from scratch, saving nothing.
fn run(
    table: &Table,
    space: &Space,
    archs: &[(u64, Arch)],
    fake: Fake,
    passes: u32,
) -> Result<Validation, LatencyError> {
    validate(
        table,
        Path::new("t.json"),
        space,
        archs,
        &mut link_to(fake),
        &BenchLimits::default(),
        passes,
        Vec::new(),
        &mut |_| Ok(()),
        &ProgressBar::hidden(),
    )
}

#[test]
fn missing_blocks_fail_before_measuring() {
    let (space, mut table) = tiny_table();
    table.entries.remove(&space.head_block());
    let archs = sample(&space, 3, 7);
    let fake = Fake {
        drop_after: Some(0),
        ..Fake::steady(1.0)
    };
    let e = run(&table, &space, &archs, fake, 1).expect_err("missing head");
    assert!(
        e.to_string().contains(&space.head_block().to_string()),
        "{e}"
    );
}

#[test]
fn a_referenced_validation_does_not_see_the_machine_change_speed() {
    // The fake's cost of a model is its ONNX size times the machine's
    // speed, which changes between requests. Validated twice, on two
    // machines whose speed changes differently, the referenced figures
    // agree exactly while the raw medians do not.
    let space =
        Space::from_yaml_str(crate::latency::profile::tests::TINY, "tiny.yaml").expect("space");
    fn size(onnx: &[u8]) -> f64 {
        onnx.len() as f64 / 1000.0
    }
    let fake = |phase: fn(usize) -> f64| Fake {
        cost: Some(size),
        phase,
        ..Fake::steady(1.0)
    };
    let mut table = Table::new(header());
    table.header.noise.reference_block = Some("mbconv:k3e3:in4x8x8:out4:s1".parse().unwrap());
    let noise = table.header.noise.clone();
    let mut dev = fake(|b| if b % 3 == 0 { 1.45 } else { 1.0 });
    for k in space.unique_blocks() {
        let bytes = crate::onnx::write_block(&k, crate::onnx::BLOCK_SEED).unwrap();
        let m = crate::latency::measure::measure_model(
            &mut dev,
            &bytes,
            "b",
            &BenchLimits::default(),
            &noise,
        )
        .unwrap();
        table
            .entries
            .insert(k, crate::latency::Entry::from_measured(&m, "t".into()));
    }
    let archs = sample(&space, 6, 3);
    let validated =
        |phase: fn(usize) -> f64| run(&table, &space, &archs, fake(phase), 1).expect("validate");
    let a = validated(|b| if b % 2 == 0 { 1.45 } else { 1.0 });
    let b = validated(|_| 1.0);
    assert!(a.without_reference.is_some() && b.without_reference.is_some());
    let mut raw_apart = 0;
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert!(
            (x.measured_ms / y.measured_ms - 1.0).abs() < 1e-9,
            "{x:?} {y:?}"
        );
        assert_eq!(x.predicted_ms, y.predicted_ms);
        let (rx, ry) = (x.raw_measured_ms.unwrap(), y.raw_measured_ms.unwrap());
        if (rx / ry - 1.0).abs() > 0.4 {
            raw_apart += 1;
        }
    }
    assert!(raw_apart >= 2, "the raw medians saw the speed change");
}

#[test]
fn passes_measure_every_network_again_and_keep_its_fastest_visit() {
    fn size(onnx: &[u8]) -> f64 {
        onnx.len() as f64 / 1000.0
    }
    let (space, table) = tiny_table();
    let archs = sample(&space, 5, 11);
    let validated = |phase: fn(usize) -> f64, passes: u32| {
        let fake = Fake {
            cost: Some(size),
            phase,
            ..Fake::steady(1.0)
        };
        run(&table, &space, &archs, fake, passes).expect("validate")
    };
    // Slowed 1.5× from outside during the first sweep over the 5 networks.
    // (The fake counts benches from 1.)
    let first_sweep_slow: fn(usize) -> f64 = |b| if b <= 5 { 1.5 } else { 1.0 };
    let steady = validated(|_| 1.0, 1);
    let one = validated(first_sweep_slow, 1);
    let three = validated(first_sweep_slow, 3);
    for ((s, o), t) in steady.rows.iter().zip(&one.rows).zip(&three.rows) {
        assert!(s.visit_ms.is_empty() && o.visit_ms.is_empty());
        assert!((o.measured_ms / s.measured_ms - 1.5).abs() < 1e-9, "{o:?}");
        assert_eq!(t.visit_ms.len(), 3, "{t:?}");
        assert!((t.visit_ms[0] / s.measured_ms - 1.5).abs() < 1e-9);
        assert!((t.measured_ms / s.measured_ms - 1.0).abs() < 1e-9, "{t:?}");
        assert_eq!((&t.arch, t.predicted_ms), (&s.arch, s.predicted_ms));
    }
}

#[test]
fn a_gated_table_measures_networks_through_the_gate() {
    fn size(onnx: &[u8]) -> f64 {
        onnx.len() as f64 / 1000.0
    }
    let (space, mut table) = tiny_table();
    table.header.noise.sensor_gate_pct = Some(10.0);
    table.header.noise.sensor_wait_ms = 50;
    table.header.noise.sensor_floor_ms = Some(0.4);
    let archs = sample(&space, 4, 3);
    // Busy (1.8× slower) 40 ticks out of every 50.
    let busy: fn(usize) -> f64 = |t| if t % 50 < 10 { 1.0 } else { 1.8 };
    let measured = |machine: fn(usize) -> f64| {
        let fake = Fake {
            cost: Some(size),
            machine,
            ..Fake::steady(1.0)
        };
        run(&table, &space, &archs, fake, 1).expect("validate")
    };
    let quiet = measured(|_| 1.0);
    let gated = measured(busy);
    for (q, g) in quiet.rows.iter().zip(&gated.rows) {
        let kept = g.quiet.clone().expect("the gate's report");
        assert!(kept.found && kept.kept < kept.of, "{kept:?}");
        assert_eq!(g.runs, kept.kept);
        // Only quiet runs count: the busy machine measures as the quiet one.
        assert!(
            (g.measured_ms / q.measured_ms - 1.0).abs() < 0.01,
            "{g:?} vs {q:?}"
        );
    }
    // A visit that found quiet runs beats a faster one that found none.
    let with = |ms: f64, found: bool| Row {
        quiet: Some(crate::latency::noise::QuietRuns {
            kept: 5,
            of: 9,
            floor_ms: 0.4,
            found,
        }),
        ..row(1.0, ms)
    };
    let r = with(2.0, true).with_visit(with(1.5, false));
    assert_eq!((r.measured_ms, r.visit_ms.clone()), (2.0, vec![2.0, 1.5]));
}

#[test]
fn a_stopped_validation_resumes_without_measuring_twice() {
    let (space, table) = tiny_table();
    let archs = sample(&space, 5, 4);
    // 5 networks × 2 passes = 10 visits, one bench each.
    let run = |drop_after: usize, done: Vec<Option<Row>>, saved: &mut Vec<Option<Row>>| {
        let mut link = link_to(Fake {
            drop_after: Some(drop_after),
            ..Fake::steady(2.0)
        });
        validate(
            &table,
            Path::new("t.json"),
            &space,
            &archs,
            &mut link,
            &BenchLimits::default(),
            2,
            done,
            &mut |rows| {
                *saved = rows.to_vec();
                Ok(())
            },
            &ProgressBar::hidden(),
        )
    };
    let mut saved = Vec::new();
    run(7, Vec::new(), &mut saved).expect_err("the device dropped");
    let visits: Vec<usize> = saved
        .iter()
        .map(|r| r.as_ref().map_or(0, Row::visits))
        .collect();
    assert_eq!(visits, [2, 2, 1, 1, 1], "7 visits saved");
    // The second device would drop on a 4th bench: only the 3 missing
    // visits may be measured.
    let mut again = Vec::new();
    let v = run(3, saved, &mut again).expect("resumed");
    assert_eq!(v.rows.len(), 5);
    for (r, (seed, arch)) in v.rows.iter().zip(&archs) {
        assert_eq!((r.seed, r.visits()), (*seed, 2), "{r:?}");
        assert_eq!(r.arch, arch.to_string());
    }
}

#[test]
fn fake_networks_validate() {
    let (space, table) = tiny_table();
    let archs = sample(&space, 6, 7);
    assert_eq!(sample(&space, 6, 7), archs, "reproducible");
    let v = run(&table, &space, &archs, Fake::steady(4.0), 1).expect("validate");
    assert_eq!(v.rows.len(), 6);
    assert!(
        v.rows
            .iter()
            .all(|r| r.measured_ms > 3.9 && r.predicted_ms >= 4.0)
    );
    assert!((0.0..=1.0).contains(&v.raw.within_10pct));
}
