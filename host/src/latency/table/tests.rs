use super::*;
use crate::latency::noise::QuietRuns;

/// A header for tests.
pub(crate) fn header() -> Header {
    Header {
        target: "local".into(),
        emulated: false,
        label: "Test CPU (2 cores, x86_64)".into(),
        triple: "x86_64-unknown-linux-gnu".into(),
        transport: "local".into(),
        cpu: "Test CPU".into(),
        cores: 2,
        arch: "x86_64".into(),
        os: "linux".into(),
        threads: 1,
        pin_cpu: None,
        agent_version: "0.1.0".into(),
        tract_version: "0.23.9".into(),
        protocol: "1.0".into(),
        governor: None,
        cur_freq_khz: None,
        temperature_c: None,
        padnas_version: "0.1.0".into(),
        command: vec!["padnas".into(), "profile".into()],
        created: "2025-01-01T00:00:00.000Z".into(),
        updated: "2025-01-01T00:00:00.000Z".into(),
        spaces: Vec::new(),
        noise: NoiseSettings::default(),
        sessions: Vec::new(),
        calibration: None,
    }
}

/// An entry for tests.
pub(crate) fn entry(median_ms: f64) -> Entry {
    Entry {
        median_ms,
        p10_ms: median_ms * 0.98,
        p90_ms: median_ms * 1.03,
        mean_ms: median_ms,
        stddev_ms: median_ms * 0.01,
        min_ms: median_ms * 0.97,
        max_ms: median_ms * 1.1,
        runs: 20,
        rounds: 2,
        ci95_halfwidth_pct: Some(0.8),
        converged: true,
        load_ms: 3.0,
        measured_at: "2025-01-01T00:00:01.000Z".into(),
        ratio: None,
        ratio_ci95_halfwidth_pct: None,
        reference_median_ms: None,
        quiet: None,
        visit_medians_ms: Vec::new(),
    }
}

#[test]
fn an_entry_keeps_its_fastest_visit_and_lists_them_all() {
    let e = entry(3.0);
    assert_eq!(e.visits(), 1);
    let e = e.with_visit(Entry {
        runs: 40,
        ..entry(2.0)
    });
    assert_eq!((e.median_ms, e.runs, e.visits()), (2.0, 40, 2));
    let e = e.with_visit(entry(2.5));
    assert_eq!(
        e.median_ms, 2.0,
        "a slower visit changes nothing but the list"
    );
    assert_eq!(e.runs, 40);
    assert_eq!(e.visit_medians_ms, vec![3.0, 2.0, 2.5]);
    // With a reference block the ratio decides, not the raw median.
    let r = |raw: f64, ratio: f64| Entry {
        ratio: Some(ratio),
        ..entry(raw)
    };
    let e = r(2.0, 10.0).with_visit(r(3.0, 9.0));
    assert_eq!((e.median_ms, e.ratio), (3.0, Some(9.0)));
    // With the sensor gate, a visit that found quiet runs beats one that
    // found none, even a faster one; among either kind the median decides.
    let g = |median: f64, found: bool| Entry {
        quiet: Some(QuietRuns {
            kept: 10,
            of: 50,
            floor_ms: 0.4,
            found,
        }),
        ..entry(median)
    };
    let e = g(3.0, true).with_visit(g(2.0, false));
    assert_eq!(
        (e.median_ms, e.visit_medians_ms.clone()),
        (3.0, vec![3.0, 2.0])
    );
    let e = e.with_visit(g(2.9, true));
    assert_eq!(e.median_ms, 2.9);
    let e = g(3.0, false).with_visit(g(2.5, false));
    assert_eq!(e.median_ms, 2.5);
    // Serialised with the entry, absent without the gate.
    let json = serde_json::to_value(g(1.0, true)).unwrap();
    assert_eq!(json["quiet"]["found"], serde_json::json!(true));
    assert!(
        serde_json::to_value(entry(1.0))
            .unwrap()
            .get("quiet")
            .is_none()
    );
}

#[test]
fn a_referenced_table_answers_in_ratio_times_scale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.json");
    let mut t = Table::new(header());
    t.header.noise.reference_block = Some("mbconv:k3e3:in16x28x28:out16:s1".parse().unwrap());
    let a: BlockKey = "mbconv:k3e6:in24x56x56:out40:s2".parse().unwrap();
    let b: BlockKey = "mbconv:k5e3:in24x56x56:out24:s1".parse().unwrap();
    let c: BlockKey = "mbconv:k7e3:in24x56x56:out24:s1".parse().unwrap();
    // Measured in different phases: raw medians 1.45× off, ratios not.
    for (k, raw, ratio, reference) in [
        (a, 3.0, 10.0, 0.30),
        (b, 8.7, 20.0, 0.435),
        (c, 1.0, 4.0, 0.25),
    ] {
        t.entries.insert(
            k,
            Entry {
                ratio: Some(ratio),
                reference_median_ms: Some(reference),
                ..entry(raw)
            },
        );
    }
    assert_eq!(
        t.reference_scale_ms(),
        Some(0.30),
        "median of 0.25, 0.30, 0.435"
    );
    assert!((t.latency_ms(&b).unwrap() - 6.0).abs() < 1e-12);
    assert_eq!(t.median_ms(&b), Some(8.7), "the raw median stays on record");
    t.save(&path).expect("save");
    assert_eq!(Table::load(&path).expect("load"), t);

    // An entry without a ratio in a referenced table is refused by name.
    t.entries.insert(a, entry(3.0));
    t.save(&path).expect("save");
    let msg = Table::load(&path).expect_err("mixed units").to_string();
    assert!(
        msg.contains("r.json") && msg.contains(&a.to_string()) && msg.contains("ratio"),
        "{msg}"
    );

    // Without a reference block, latency is the median.
    let mut plain = Table::new(header());
    plain.entries.insert(a, entry(3.0));
    assert_eq!(plain.latency_ms(&a), Some(3.0));
    assert_eq!(plain.reference_scale_ms(), None);
}

#[test]
fn round_trip_and_atomic_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/t.json");
    let mut t = Table::new(header());
    let key: BlockKey = "mbconv:k3e6:in24x56x56:out40:s2".parse().expect("key");
    t.entries.insert(key, entry(2.5));
    t.header.calibration = Some(Calibration {
        fit: LinearFit {
            intercept_ms: 0.3,
            slope: 1.05,
        },
        n: 10,
        fitted_at: "x".into(),
        space_hash: "h".into(),
        loo_mape: 0.02,
        loo_within_5pct: 0.9,
        loo_within_10pct: 1.0,
        report: None,
    });
    t.save(&path).expect("save");
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("\"mbconv:k3e6:in24x56x56:out40:s2\""),
        "keyed by text"
    );
    assert!(text.contains("\"median_ms\": 2.5") && text.contains("\"intercept_ms\": 0.3"));
    assert_eq!(Table::load(&path).expect("load"), t);
    // No temp file left behind.
    let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn bad_files_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.json");
    fs::write(
        &path,
        "{\"format\": \"padnas-latency-table\", \"format_version\": 1, \"head",
    )
    .expect("write");
    let e = Table::load(&path).expect_err("corrupt");
    assert!(matches!(e, LatencyError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("broken.json") && msg.contains("not a valid latency table"),
        "{msg}"
    );
    assert!(e.is_bad_input());

    fs::write(
        &path,
        "{\"format\": \"something-else\", \"format_version\": 1}",
    )
    .expect("write");
    let msg = Table::load(&path).expect_err("other format").to_string();
    assert!(
        msg.contains("broken.json") && msg.contains("something-else"),
        "{msg}"
    );

    fs::write(
        &path,
        "{\"format\": \"padnas-latency-table\", \"format_version\": 99}",
    )
    .expect("write");
    let msg = Table::load(&path).expect_err("newer").to_string();
    assert!(msg.contains("newer"), "{msg}");

    let mut t = Table::new(header());
    t.entries.insert(
        "mbconv:k3e6:in24x56x56:out40:s2".parse().expect("key"),
        entry(2.5),
    );
    let text = serde_json::to_string(&t)
        .expect("json")
        .replace("mbconv:k3e6", "mbconv:k4e6");
    fs::write(&path, text).expect("write");
    let msg = Table::load(&path).expect_err("bad key").to_string();
    assert!(msg.contains("broken.json") && msg.contains("k4e6"), "{msg}");

    let missing = dir.path().join("nope.json");
    let msg = Table::load(&missing).expect_err("missing").to_string();
    assert!(
        msg.contains("nope.json") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn compatibility_names_the_field() {
    let t = Table::new(header());
    let mut now = header();
    t.check_compatible(&now, Path::new("t.json")).expect("same");
    now.spaces.push(SpaceRef {
        name: None,
        hash: "x".into(),
        path: None,
    });
    t.check_compatible(&now, Path::new("t.json"))
        .expect("space may differ");
    now.threads = 2;
    let e = t
        .check_compatible(&now, Path::new("t.json"))
        .expect_err("threads");
    assert!(
        matches!(
            e,
            LatencyError::Mismatch {
                field: "threads",
                ..
            }
        ),
        "{e}"
    );
    let mut now = header();
    now.agent_version = "9.9.9".into();
    let msg = t
        .check_compatible(&now, Path::new("t.json"))
        .expect_err("agent")
        .to_string();
    assert!(
        msg.contains("agent_version") && msg.contains("9.9.9") && msg.contains("t.json"),
        "{msg}"
    );
}
