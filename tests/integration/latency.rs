//! Latency tables end to end: `padnas profile`, `latency predict` and
//! `latency validate` over the real release agent on this machine (the
//! `local` transport), on tiny spaces written by the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The padnas binary under test.
fn padnas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_padnas"))
}

/// The release agent the `local` transport spawns; the tests need it built.
fn require_agent() {
    crate::util::agent_bin(None);
}

/// A `local` target with short benchmarks, written to `dir`.
fn write_target(dir: &Path, warmup_ms: u64) -> PathBuf {
    let path = dir.join("local-test.yaml");
    let yaml = format!(
        "name: local-test\ntriple: {}\ntransport: local\nthreads: 1\n\
         bench: {{ warmup_runs: 1, warmup_ms: {warmup_ms}, min_runs: 6, max_runs: 20, max_time_ms: 400 }}\n",
        host_triple()
    );
    std::fs::write(&path, yaml).expect("write target");
    path
}

fn host_triple() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    }
}

/// 7 blocks: stem, head, one k3e1, four MBConvs.
const TINY: &str = "\
name: tiny
input: { channels: 3, height: 16, width: 16 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - { channels: 16, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3], ops: [k3e3, k5e3, id] }
head: { channels: 32 }
";

/// 19 blocks, for the kill-and-resume tests (here and in `silent`).
pub(crate) const WIDER: &str = "\
name: wider
input: { channels: 3, height: 16, width: 16 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1, k7e1] }
  - { channels: 16, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3, k7e3], ops: [k3e3, k5e3, k7e3, id] }
  - { channels: 24, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3, k7e3], ops: [k3e3, k5e3, k7e3, id] }
  - { channels: 24, num_layers: 1, stride: 1, first_ops: [k3e6, k5e6] }
head: { channels: 32 }
";

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run padnas");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The last stdout line as JSON.
fn json_line(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

/// A fresh directory with a `local` target, a space and a table path in it:
/// where every profile test starts.
struct Setup {
    dir: tempfile::TempDir,
    target: PathBuf,
    space: PathBuf,
    table: PathBuf,
}

impl Setup {
    /// `name.yaml` holds `space_yaml`; the table is `name.json`.
    fn new(name: &str, space_yaml: &str, warmup_ms: u64) -> Setup {
        require_agent();
        let dir = tempfile::tempdir().expect("tempdir");
        let target = write_target(dir.path(), warmup_ms);
        let space = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&space, space_yaml).expect("space");
        let table = dir.path().join(format!("{name}.json"));
        Setup {
            dir,
            target,
            space,
            table,
        }
    }

    /// `padnas profile` of the space into `out`, with `extra` arguments.
    fn profile(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = padnas();
        c.args(["profile", "--target"])
            .arg(&self.target)
            .arg("--space")
            .arg(&self.space)
            .arg("--out")
            .arg(out)
            .args(extra);
        c
    }
}

#[test]
fn profile_predict_and_validate_on_a_tiny_space() {
    let setup = Setup::new("tiny", TINY, 0);
    let (dir, target, table) = (&setup.dir, &setup.target, &setup.table);
    // `padnas profile [EXTRA…]` of the tiny space into the table.
    let profile = |extra: &[&str]| run_ok(&mut setup.profile(table, extra));

    let out = profile(&[]);
    let s = json_line(&out);
    assert_eq!(s["entries"], 7, "{s}");
    assert_eq!(s["measured_now"], 7, "{s}");
    assert_eq!(s["skipped"], 0, "{s}");
    assert_eq!(s["out"], table.display().to_string());

    let t = read_json(table);
    let h = &t["header"];
    assert_eq!(h["target"], "local-test");
    assert_eq!(h["emulated"], false);
    assert_eq!(h["threads"], 1);
    assert_eq!(h["noise"]["ci_target_pct"], 2.0);
    assert_eq!(h["spaces"][0]["name"], "tiny");
    for field in [
        "cpu",
        "agent_version",
        "tract_version",
        "label",
        "created",
        "updated",
        "protocol",
    ] {
        assert!(h[field].is_string(), "header.{field}: {h}");
    }
    let entries = t["entries"].as_object().expect("entries");
    assert_eq!(entries.len(), 7);
    assert!(
        entries.keys().any(|k| k.starts_with("stem:"))
            && entries.keys().any(|k| k.starts_with("head:"))
    );
    for (k, e) in entries {
        let f = |n: &str| e[n].as_f64().unwrap_or_else(|| panic!("{k}.{n}"));
        assert!(
            f("p10_ms") <= f("median_ms") && f("median_ms") <= f("p90_ms"),
            "{k}: {e}"
        );
        assert!(f("median_ms") > 0.0);
        assert!(
            e["runs"].as_u64().expect("runs") >= 6,
            "{k}: at least min_runs"
        );
        assert!(e["measured_at"].is_string());
    }
    assert!(!t["sentinels"].as_array().expect("sentinels").is_empty());

    // A second run has nothing to do.
    let out = profile(&[]);
    let s = json_line(&out);
    assert_eq!(
        (s["measured_now"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(7)),
        "{s}"
    );

    // A second pass: one more visit per entry, the entry is the faster one.
    let out = profile(&["--passes", "2"]);
    let s = json_line(&out);
    assert_eq!(
        (
            s["measured_now"].as_u64(),
            s["skipped"].as_u64(),
            s["passes"].as_u64()
        ),
        (Some(7), Some(0), Some(2)),
        "{s}"
    );
    let t = read_json(table);
    assert_eq!(t["header"]["noise"]["passes"], 2);
    let entries = t["entries"].as_object().expect("entries");
    for (k, e) in entries {
        let visits: Vec<f64> = e["visit_medians_ms"]
            .as_array()
            .unwrap_or_else(|| panic!("{k}: visit_medians_ms"))
            .iter()
            .map(|v| v.as_f64().expect("ms"))
            .collect();
        assert_eq!(visits.len(), 2, "{k}: {e}");
        assert_eq!(
            e["median_ms"].as_f64(),
            Some(visits[0].min(visits[1])),
            "{k}: the faster visit"
        );
    }

    // predict: the space comes from the header.
    let out = run_ok(
        padnas()
            .args(["latency", "predict", "--table"])
            .arg(table)
            .args(["--arch", "k3e1,k5e3,id"]),
    );
    let p = json_line(&out);
    let sum: f64 = ["stem:", "head:", "mbconv:k3e1:", "mbconv:k5e3:in8x8x8"]
        .iter()
        .map(|pre| {
            entries
                .iter()
                .find(|(k, _)| k.starts_with(pre))
                .map(|(_, e)| e["median_ms"].as_f64().expect("ms"))
                .expect(pre)
        })
        .sum();
    let got = p["predicted_ms"].as_f64().expect("predicted");
    assert!((got - sum).abs() < 1e-9, "{got} vs {sum}");
    assert_eq!(p["target"], "local-test");
    assert!(p["calibrated_ms"].is_null());

    // A check is read-only by default: the table is not touched, and the
    // report is named by seed, sample count and date beside the table.
    let table_bytes = std::fs::read(table).expect("table");
    let out = run_ok(
        padnas()
            .args(["latency", "validate", "--target"])
            .arg(target)
            .arg("--table")
            .arg(table)
            .args(["--samples", "4", "--seed", "5", "--passes", "1"]),
    );
    let check = json_line(&out);
    assert_eq!(check["calibration_stored"], false, "{check}");
    assert_eq!(
        std::fs::read(table).expect("table"),
        table_bytes,
        "the table was rewritten"
    );
    let check_report = check["report"].as_str().expect("report").to_string();
    let name = Path::new(&check_report)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        name.starts_with("tiny.validation-s5-n4-20") && name.ends_with(".json"),
        "{name}"
    );
    let check_text = std::fs::read(&check_report).expect("report written");

    // validate --store-calibration: metrics in range, plot and report
    // written, calibration stored exactly when it beat the raw table out of
    // sample; the earlier check's report is left as it was.
    let plot = dir.path().join("v.svg");
    let out = run_ok(
        padnas()
            .args(["latency", "validate", "--target"])
            .arg(target)
            .arg("--table")
            .arg(table)
            .args([
                "--samples",
                "6",
                "--seed",
                "3",
                "--store-calibration",
                "--plot",
            ])
            .arg(&plot),
    );
    assert_eq!(std::fs::read(&check_report).expect("report"), check_text);
    let v = json_line(&out);
    assert_eq!(v["n"], 6, "{v}");
    assert_eq!(v["passes"], 2, "the table's passes: {v}");
    for k in ["within_5pct", "within_10pct"] {
        let x = v[k].as_f64().expect(k);
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert!(v["mape"].as_f64().expect("mape") >= 0.0);
    assert!((-1.0..=1.0).contains(&v["spearman"].as_f64().expect("spearman")));
    assert!(v["calibrated_loo"]["within_10pct"].is_number(), "{v}");
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    let report = read_json(Path::new(v["report"].as_str().expect("report path")));
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(6));
    // Two visits each: the second scored against the first, in both.
    assert_eq!(v["repeatability"]["n"], 6, "{v}");
    assert_eq!(report["repeatability"], v["repeatability"]);
    assert!(report["rows"][0]["measured_ms"].as_f64().expect("measured") > 0.0);
    for r in report["rows"].as_array().expect("rows") {
        let visits = r["visit_ms"].as_array().expect("visit_ms");
        assert_eq!(visits.len(), 2, "{r}");
        let fastest = visits
            .iter()
            .filter_map(|v| v.as_f64())
            .fold(f64::MAX, f64::min);
        assert_eq!(r["measured_ms"].as_f64(), Some(fastest), "{r}");
    }
    let stored = v["calibration_stored"]
        .as_bool()
        .expect("calibration_stored");
    let loo_better =
        v["calibrated_loo"]["mape"].as_f64().expect("loo mape") < v["mape"].as_f64().expect("mape");
    assert_eq!(stored, loo_better, "{v}");
    assert!(report["calibration_note"].is_string());
    assert_eq!(
        read_json(table)["header"]["calibration"]["slope"].is_number(),
        stored
    );
    let out = run_ok(
        padnas()
            .args(["latency", "predict", "--table"])
            .arg(table)
            .args(["--arch", "k3e1,k5e3,id"]),
    );
    assert_eq!(json_line(&out)["calibrated_ms"].is_number(), stored);
}

#[test]
fn a_reference_block_pairs_every_measurement() {
    let setup = Setup::new("tiny", TINY, 0);
    let (target, table) = (&setup.target, &setup.table);
    let reference = "mbconv:k3e3:in8x8x8:out8:s1";
    let profile = |reference: Option<&str>| match reference {
        Some(r) => setup.profile(table, &["--reference", r]),
        None => setup.profile(table, &[]),
    };
    run_ok(&mut profile(Some(reference)));
    let t = read_json(table);
    assert_eq!(t["header"]["noise"]["reference_block"], reference);
    let entries = t["entries"].as_object().expect("entries");
    assert_eq!(entries.len(), 7);
    let mut refs: Vec<f64> = Vec::new();
    for (k, e) in entries {
        let ratio = e["ratio"].as_f64().unwrap_or_else(|| panic!("{k}: {e}"));
        let r = e["reference_median_ms"].as_f64().expect("reference ms");
        assert!(ratio > 0.0 && r > 0.0, "{k}: {e}");
        // The ratio is of paired runs, so it sits near the medians' ratio
        // (loosely: the two medians come from different runs).
        let medians = e["median_ms"].as_f64().expect("median") / r;
        assert!(ratio / medians > 0.5 && ratio / medians < 2.0, "{k}: {e}");
        refs.push(r);
    }
    refs.sort_by(f64::total_cmp);
    let scale = refs[3];

    // predict sums ratio × scale.
    let out = run_ok(
        padnas()
            .args(["latency", "predict", "--table"])
            .arg(table)
            .args(["--arch", "k3e1,k5e3,id"]),
    );
    let want: f64 = ["stem:", "head:", "mbconv:k3e1:", "mbconv:k5e3:in8x8x8"]
        .iter()
        .map(|pre| {
            let (_, e) = entries.iter().find(|(k, _)| k.starts_with(pre)).expect(pre);
            e["ratio"].as_f64().expect("ratio") * scale
        })
        .sum();
    let got = json_line(&out)["predicted_ms"].as_f64().expect("predicted");
    assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");

    // validate measures networks against the same reference and reports
    // the plain-median comparison beside it.
    let out = run_ok(
        padnas()
            .args(["latency", "validate", "--target"])
            .arg(target)
            .arg("--table")
            .arg(table)
            .args(["--samples", "4", "--seed", "1", "--no-calibrate"]),
    );
    let v = json_line(&out);
    assert_eq!(v["reference"]["block"], reference, "{v}");
    assert!((v["reference"]["scale_ms"].as_f64().expect("scale") - scale).abs() < 1e-12);
    assert_eq!(v["without_reference"]["n"], 4, "{v}");
    let report = read_json(Path::new(v["report"].as_str().expect("report path")));
    for row in report["rows"].as_array().expect("rows") {
        assert!(row["raw_measured_ms"].as_f64().expect("raw") > 0.0, "{row}");
        assert!(
            row["raw_predicted_ms"].as_f64().expect("raw") > 0.0,
            "{row}"
        );
    }

    // The reference is the table's unit: another one is refused by name,
    // none keeps the table's.
    let out = profile(Some("mbconv:k3e3:in16x8x8:out16:s1"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reference_block") && err.contains("tiny.json"),
        "{err}"
    );
    run_ok(&mut profile(None));
    assert_eq!(
        read_json(table)["header"]["noise"]["reference_block"],
        reference
    );
}

#[test]
fn the_sensor_gate_measures_through_the_real_agent() {
    let setup = Setup::new("tiny", TINY, 0);
    let (target, table) = (&setup.target, &setup.table);
    let profile = |extra: &[&str]| setup.profile(table, extra);
    // A loose confidence target: this test is about what the gate keeps,
    // not about how long a noisy machine takes to converge.
    run_ok(&mut profile(&["--sensor-gate", "50", "--ci-pct", "50"]));
    let t = read_json(table);
    let noise = &t["header"]["noise"];
    assert_eq!(noise["sensor_gate_pct"], 50.0, "{noise}");
    let level = noise["sensor_floor_ms"]
        .as_f64()
        .expect("a learned quiet level");
    assert!(level > 0.0, "{noise}");
    let entries = t["entries"].as_object().expect("entries");
    assert_eq!(entries.len(), 7);
    for (k, e) in entries {
        let q = &e["quiet"];
        let (kept, of) = (
            q["kept"].as_u64().expect("kept"),
            q["of"].as_u64().expect("of"),
        );
        // The statistics describe the kept runs, judged against a level no
        // lower than the one the table learned.
        assert!(kept >= 1 && kept <= of, "{k}: {e}");
        assert_eq!(e["runs"].as_u64(), Some(kept), "{k}: {e}");
        assert!(q["floor_ms"].as_f64().expect("floor") >= level, "{k}: {e}");
        assert!(q["found"].is_boolean(), "{k}: {e}");
    }

    // validate gates networks the same way, against the table's level.
    let out = run_ok(
        padnas()
            .args(["latency", "validate", "--target"])
            .arg(target)
            .arg("--table")
            .arg(table)
            .args(["--samples", "3", "--seed", "2", "--no-calibrate"]),
    );
    let v = json_line(&out);
    assert_eq!(v["n"], 3, "{v}");
    assert_eq!(v["sensor_gate"]["pct"], 50.0, "{v}");
    let without = v["sensor_gate"]["networks_without_quiet_runs"].as_u64();
    assert!(without.is_some_and(|n| n <= 3), "{v}");
    let report = read_json(Path::new(v["report"].as_str().expect("report path")));
    for row in report["rows"].as_array().expect("rows") {
        let kept = row["quiet"]["kept"].as_u64().expect("kept");
        assert_eq!(row["runs"].as_u64(), Some(kept), "{row}");
    }

    // The gate is fixed for the life of a table; it does not combine with
    // a reference block.
    let out = profile(&["--sensor-gate", "20"]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sensor_gate_pct") && err.contains("tiny.json"),
        "{err}"
    );
    let out = profile(&["--sensor-gate", "20", "--reference"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--reference"), "{err}");
}

#[test]
fn a_killed_profile_resumes_without_measuring_twice() {
    // Each entry takes ≥ 120 ms of warm-up, so the run is still going when
    // the first entry lands.
    let setup = Setup::new("wider", WIDER, 120);
    let (dir, target, table) = (&setup.dir, &setup.target, &setup.table);
    let profile = |t: &Path| setup.profile(t, &[]);

    let mut child = profile(table)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "no entry appeared in {}",
            table.display()
        );
        if let Ok(bytes) = std::fs::read(table) {
            // The file is replaced atomically, so any read is a whole table.
            let t: Value = serde_json::from_slice(&bytes).expect("never a torn table");
            if t["entries"].as_object().is_some_and(|e| !e.is_empty()) {
                child.kill().expect("kill -9");
                break t;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.wait();
    // Entries may have landed between the read and the kill: compare with
    // the table as the kill left it.
    let before = read_json(table);
    let saved = before["entries"].as_object().expect("entries").clone();
    assert!(!saved.is_empty());
    assert!(
        saved.len() < 19,
        "the run finished before the kill; make entries slower"
    );
    for (k, e) in first["entries"].as_object().expect("entries") {
        assert_eq!(saved.get(k), Some(e));
    }

    let out = run_ok(&mut profile(table));
    let s = json_line(&out);
    let total = s["entries"].as_u64().expect("entries");
    assert_eq!(total, 19, "{s}");
    assert_eq!(s["skipped"].as_u64(), Some(saved.len() as u64), "{s}");
    assert_eq!(
        s["measured_now"].as_u64(),
        Some(total - saved.len() as u64),
        "nothing measured twice: {s}"
    );
    let after = read_json(table);
    let all = after["entries"].as_object().expect("entries");
    assert_eq!(all.len(), 19);
    for (k, e) in &saved {
        assert_eq!(
            all.get(k),
            Some(e),
            "{k}: measured before the kill, must be untouched"
        );
    }
    let sessions = after["header"]["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "one session per run");

    // A validation killed mid-run keeps its measured networks beside the
    // report, and the rerun measures only the others.
    let report = dir.path().join("v.json");
    let partial = dir.path().join("v.partial.json");
    let validate = || {
        let mut c = padnas();
        c.args(["latency", "validate", "--target"])
            .arg(target)
            .arg("--table")
            .arg(table)
            .args([
                "--samples",
                "5",
                "--seed",
                "1",
                "--no-calibrate",
                "--report",
            ])
            .arg(&report)
            .arg("--plot")
            .arg(dir.path().join("v.svg"));
        c
    };
    let mut child = validate()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no progress file appeared");
        if let Ok(bytes) = std::fs::read(&partial) {
            let p: Value = serde_json::from_slice(&bytes).expect("never a torn file");
            if p["rows"].as_array().is_some_and(|r| !r[0].is_null()) {
                child.kill().expect("kill -9");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    let kept = read_json(&partial);
    let kept: Vec<Value> = kept["rows"].as_array().expect("rows").clone();
    let measured = kept.iter().filter(|r| !r.is_null()).count();
    assert!(
        (1..5).contains(&measured),
        "{measured} of 5 networks measured before the kill; make them slower"
    );
    let out = run_ok(&mut validate());
    assert_eq!(json_line(&out)["n"], 5);
    assert!(!partial.exists(), "the report replaces the progress file");
    let rows = read_json(&report)["rows"].as_array().expect("rows").clone();
    assert_eq!(rows.len(), 5);
    for (old, new) in kept.iter().zip(&rows) {
        if !old.is_null() {
            assert_eq!(
                old["measured_ms"], new["measured_ms"],
                "measured before the kill, not again"
            );
        }
    }
}

#[test]
fn bad_tables_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let space = dir.path().join("tiny.yaml");
    std::fs::write(&space, TINY).expect("space");
    let table = dir.path().join("broken.json");
    std::fs::write(
        &table,
        "{\"format\": \"padnas-latency-table\", \"format_version\": 1, \"header\": {",
    )
    .expect("write");
    let out = padnas()
        .args(["latency", "predict", "--table"])
        .arg(&table)
        .arg("--space")
        .arg(&space)
        .args(["--arch", "k3e1,k5e3,id"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.json") && err.contains("not a valid latency table"),
        "{err}"
    );

    // A table from elsewhere is not resumed into.
    require_agent();
    let target = write_target(dir.path(), 0);
    let good = dir.path().join("good.json");
    let mut profile = padnas();
    profile
        .args(["profile", "--target"])
        .arg(&target)
        .arg("--space")
        .arg(&space)
        .arg("--out")
        .arg(&good);
    run_ok(&mut profile);
    let mut t = read_json(&good);
    t["header"]["threads"] = 4.into();
    std::fs::write(&good, serde_json::to_string(&t).expect("json")).expect("write");
    let out = profile.output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("good.json") && err.contains("threads"),
        "{err}"
    );

    // Missing entries are listed.
    let mut t = read_json(&good);
    t["header"]["threads"] = 1.into();
    let entries = t["entries"].as_object_mut().expect("entries");
    let head = entries
        .keys()
        .find(|k| k.starts_with("head:"))
        .cloned()
        .expect("head");
    entries.remove(&head);
    std::fs::write(&good, serde_json::to_string(&t).expect("json")).expect("write");
    let out = padnas()
        .args(["latency", "predict", "--table"])
        .arg(&good)
        .args(["--arch", "k3e1,k5e3,id"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&head) && err.contains("missing"), "{err}");
}

/// The emulated aarch64 agent builds a whole table for the embedded demo's
/// space: every block answered by the ARM build under qemu-user, the table
/// labelled emulated and filed under `emulated/` by default, never as
/// device data.
#[test]
fn qemu_aarch64_builds_an_emulated_fmnist_small_table() {
    crate::util::agent_bin(Some("aarch64-unknown-linux-gnu"));
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = crate::util::repo();
    let space = repo.join("configs/spaces/fmnist-small.yaml");
    let out = run_ok(
        padnas()
            .current_dir(&repo)
            .args(["profile", "--target", "qemu-aarch64", "--space"])
            .arg(&space)
            .arg("--tables-dir")
            .arg(dir.path())
            .args(["--max-runs", "3", "--ci-pct", "50", "--sentinel-every", "0"]),
    );
    let summary = json_line(&out);
    let table = PathBuf::from(summary["out"].as_str().expect("out"));
    assert!(
        table.starts_with(dir.path().join("emulated/qemu-aarch64")),
        "{}",
        table.display()
    );
    let t = read_json(&table);
    assert_eq!(t["header"]["emulated"], true);
    assert!(
        t["header"]["label"]
            .as_str()
            .is_some_and(|l| l.contains("emulated")),
        "{}",
        t["header"]["label"]
    );
    assert_eq!(t["header"]["arch"], "aarch64");
    let entries = t["entries"].as_object().expect("entries");
    let space = padnas::space::Space::load(&space).expect("space");
    // Every block of the space, plus stem and head.
    assert_eq!(entries.len(), space.unique_blocks().len());
    assert!(
        entries
            .values()
            .all(|e| e["median_ms"].as_f64().is_some_and(|m| m > 0.0))
    );
}
