//! The whole PAD-NAS job on a tiny space and a data subset: `padnas run`
//! (latency table on the local agent, SPOS training, two pruning stages,
//! final search, retrain, export, verify, report), stopped part-way and
//! resumed, and a final search interrupted and resumed to the same result.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

/// 28×28 grey input with 3 × 3 × 4 = 36 architectures.
const SPACE: &str = "\
name: pipe28
input: { channels: 1, height: 28, width: 28 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1, k7e1] }
  - { channels: 16, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3, k3e6], ops: [k3e3, k5e3, k3e6, id] }
head: { channels: 32 }
";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes the space, a quick local target and the job config into `dir`.
fn job(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("space.yaml"), SPACE).expect("space");
    let triple = match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "x86_64-unknown-linux-gnu",
    };
    std::fs::write(
        dir.join("quick-local.yaml"),
        format!(
            "name: quick-local\ntriple: {triple}\ntransport: local\nthreads: 1\n\
             bench: {{ warmup_runs: 1, warmup_ms: 5, min_runs: 5, max_runs: 10, max_time_ms: 200 }}\n"
        ),
    )
    .expect("target");
    let cfg = dir.join("job.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: pipe\nrun_dir: run\nseed: 5\nspace: space.yaml\n\
             data: {{ kind: fashion-mnist, val_split: 0.05 }}\n\
             train: {{ epochs: 1, batch_size: 32, lr: 0.1, threads: 1, max_train_samples: 256 }}\n\
             target: {{ name: {}, table: table.json }}\n\
             search: {{ population: 6, generations: 2, bn_batches: 1, val_samples: 64, \
             window: {{ quantiles: [0.1, 0.9], samples: 200 }} }}\n\
             prune: {{ finetune_epochs: [1, 1], threshold: 0.2 }}\n\
             retrain: {{ epochs: 1 }}\n",
            s(&dir.join("quick-local.yaml"))
        ),
    )
    .expect("job");
    cfg
}

fn run_ok(args: &[&str]) -> Value {
    let (code, out, err) = padnas(args);
    assert_eq!(code, 0, "padnas {args:?} failed:\n{err}");
    json_line(&out)
}

/// The candidate op lists of each layer of a saved space.
fn layer_ops(path: &Path) -> Vec<Vec<String>> {
    let space = padnas::space::Space::load(path).expect("space");
    space
        .layers()
        .iter()
        .map(|l| l.ops.iter().map(ToString::to_string).collect())
        .collect()
}

#[test]
fn a_tiny_run_goes_end_to_end_and_resumes_where_it_stopped() {
    agent_bin(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = job(dir.path());
    let run = dir.path().join("run");

    // Stopped after the first search: nothing beyond it exists.
    run_ok(&["run", s(&cfg), "--until", "search-1", "--quiet"]);
    let first = run.join("stage-1/search.json");
    assert_eq!(read_json(&first)["complete"], true);
    assert!(!run.join("space.stage-1.yaml").exists());
    assert!(!run.join("pareto.json").exists());
    let weights = run.join("supernet.safetensors");
    let mtime = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let (w_time, s_time) = (mtime(&weights), mtime(&first));
    let search_bytes = std::fs::read(&first).expect("search");

    // A typo in --until costs nothing and says what the steps are.
    let (code, _, err) = padnas(&["run", s(&cfg), "--until", "prune-9"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("not a step of this run") && err.contains("finetune-2"),
        "{err}"
    );

    // The rest: finished steps are reused, not redone.
    let out = run_ok(&["run", s(&cfg), "--quiet"]);
    assert_eq!(out["report"].as_str(), Some(s(&run.join("report.md"))));
    assert_eq!(mtime(&weights), w_time, "the supernet was trained again");
    assert_eq!(mtime(&first), s_time, "the first search ran again");
    assert_eq!(std::fs::read(&first).expect("search"), search_bytes);
    for f in [
        "space.stage-0.yaml",
        "space.stage-1.yaml",
        "space.stage-2.yaml",
        "stage-1/prune.json",
        "stage-1/supernet.safetensors",
        "stage-2/supernet.safetensors",
        "final/search.json",
        "pareto.json",
        "model.onnx",
        "verify.json",
        "report.md",
        "steps.json",
        "plots/pareto.svg",
        "plots/progress.svg",
        "plots/space-size.svg",
        "plots/survival-stage-1.svg",
        "plots/survival-stage-2.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }

    // Layer-wise spaces: each stage keeps a non-empty subset of the last.
    let spaces: Vec<_> = (0..=2)
        .map(|k| layer_ops(&run.join(format!("space.stage-{k}.yaml"))))
        .collect();
    for k in 1..=2 {
        for (now, before) in spaces[k].iter().zip(&spaces[k - 1]) {
            assert!(!now.is_empty());
            assert!(
                now.iter().all(|op| before.contains(op)),
                "{now:?} ⊄ {before:?}"
            );
        }
    }
    let pruned = read_json(&run.join("stage-1/prune.json"));
    let n_pruned = pruned["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .flat_map(|l| l.as_array().expect("ops").iter())
        .filter(|c| c["pruned"] == true)
        .count();
    let size = |k: usize| spaces[k].iter().map(Vec::len).product::<usize>();
    assert_eq!(size(1) < size(0), n_pruned > 0);

    // The window holds for every architecture every search evaluated.
    let window = &read_json(&run.join("latency.json"))["window"];
    let (lo, hi) = (
        window["lo_ms"].as_f64().expect("lo"),
        window["hi_ms"].as_f64().expect("hi"),
    );
    assert!(lo < hi);
    for f in [
        "stage-1/search.json",
        "stage-2/search.json",
        "final/search.json",
    ] {
        let rec = read_json(&run.join(f));
        let cands = rec["candidates"].as_array().expect("candidates");
        assert!(!cands.is_empty(), "{f}");
        for c in cands {
            let ms = c["latency_ms"].as_f64().expect("latency");
            assert!((lo..=hi).contains(&ms), "{f}: {c} outside [{lo}, {hi}]");
        }
    }

    // The front is mutually non-dominated; the deployed network is on it
    // and agrees with the host on the target.
    let pareto = read_json(&run.join("pareto.json"));
    let front: Vec<(f64, f64)> = pareto["pareto"]
        .as_array()
        .expect("front")
        .iter()
        .map(|c| {
            (
                c["accuracy"].as_f64().expect("acc"),
                c["latency_ms"].as_f64().expect("ms"),
            )
        })
        .collect();
    assert!(!front.is_empty());
    for a in &front {
        for b in &front {
            let dominates = b.0 >= a.0 && b.1 <= a.1 && (b.0 > a.0 || b.1 < a.1);
            assert!(!dominates, "{b:?} dominates {a:?} on the front");
        }
    }
    let verify = read_json(&run.join("verify.json"));
    assert_eq!(verify["agree"], true, "{verify}");
    assert!(verify["measured_ms"].as_f64().expect("measured") > 0.0);
    assert!(verify["predicted_ms"].as_f64().expect("predicted") > 0.0);
    let arch = verify["arch"].as_str().expect("arch");
    assert!(
        pareto["pareto"]
            .as_array()
            .expect("front")
            .iter()
            .any(|c| c["arch"] == arch)
    );
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    for needle in [
        "Pruning 1",
        "Pruning 2",
        "Final Pareto front",
        "test accuracy",
        arch,
    ] {
        assert!(report.contains(needle), "report lacks {needle:?}");
    }

    // An interrupted final search continues to the same result: cut the
    // saved state back to the initial population, as if killed there.
    let fin = run.join("final/search.json");
    let done = read_json(&fin);
    let mut cut = done.clone();
    let n0 = done["state"]["history"][0]["evaluations"]
        .as_u64()
        .expect("n0") as usize;
    cut["complete"] = Value::Bool(false);
    cut["candidates"] = Value::Array(Vec::new());
    cut["state"]["generation"] = 0.into();
    cut["state"]["history"] = Value::Array(vec![done["state"]["history"][0].clone()]);
    cut["state"]["archive"] =
        Value::Array(done["state"]["archive"].as_array().expect("archive")[..n0].to_vec());
    cut["state"]["population"] = Value::Array((0..n0).map(Value::from).collect());
    std::fs::write(&fin, serde_json::to_string(&cut).expect("json")).expect("write");
    run_ok(&["search", "--config", s(&cfg), "--quiet"]);
    let again = read_json(&fin);
    assert_eq!(again["complete"], true);
    assert_eq!(again["state"]["archive"], done["state"]["archive"]);
    assert_eq!(again["candidates"], done["candidates"]);

    // A changed setting: the run refuses, naming it, and leaves the run as
    // it was; with --rerun exactly the steps downstream of it run again,
    // their old outputs kept aside.
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replace("retrain: { epochs: 1 }", "retrain: { epochs: 2 }"),
    )
    .expect("edit");
    let saved = std::fs::read_to_string(run.join("config.yaml")).expect("saved config");
    let (code, _, err) = padnas(&["run", s(&cfg), "--quiet"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("retrain.epochs 1 → 2") && err.contains("--rerun"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("config.yaml")).expect("saved config"),
        saved,
        "a refused run rewrote config.yaml"
    );
    let model = run.join("model.onnx");
    let (f_time, m_time) = (mtime(&fin), mtime(&model));
    let f_bytes = std::fs::read(&fin).expect("final");
    run_ok(&["run", s(&cfg), "--quiet", "--rerun"]);
    assert_eq!(mtime(&weights), w_time, "the supernet was trained again");
    assert_eq!(mtime(&fin), f_time, "the final search ran again");
    assert_eq!(std::fs::read(&fin).expect("final"), f_bytes);
    assert_ne!(mtime(&model), m_time, "the network was not exported again");
    let retrained: Vec<_> = std::fs::read_dir(run.join("retrain"))
        .expect("retrain")
        .map(|e| read_json(&e.expect("entry").path().join("result.json")))
        .collect();
    assert_eq!(retrained.len(), 1);
    assert_eq!(retrained[0]["epochs"], 2);
    let superseded: Vec<_> = std::fs::read_dir(run.join("superseded"))
        .expect("superseded")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(superseded.len(), 1);
    for f in ["model.onnx", "verify.json", "report.md", "config.yaml"] {
        assert!(superseded[0].join(f).exists(), "{f} not kept aside");
    }
    assert!(
        std::fs::read_to_string(run.join("config.yaml"))
            .expect("config")
            .contains("epochs: 2")
    );
}

#[test]
fn a_bad_config_is_refused_with_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = job(dir.path());
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(&cfg, text.replace("population: 6", "populaton: 6")).expect("write");
    let (code, _, err) = padnas(&["run", s(&cfg)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("job.yaml") && err.contains("unknown field `populaton`"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        text.replace("quantiles: [0.1, 0.9], samples: 200", "lo_ms: 5, hi_ms: 1"),
    )
    .expect("write");
    let (code, _, err) = padnas(&["run", s(&cfg)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("search.window"), "{err}");
    assert!(
        !dir.path().join("run").exists(),
        "a refused config left a run directory"
    );
}

#[test]
fn a_ground_truth_is_measured_resumably_and_scores_the_supernet() {
    agent_bin(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = job(dir.path());
    let run = dir.path().join("run");
    run_ok(&["run", s(&cfg), "--until", "train", "--quiet"]);
    let truth = dir.path().join("truth.json");
    let truth_args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "rank",
            "truth",
            "--config",
            s(&cfg),
            "--out",
            s(&truth),
            "--n",
            "6",
            "--seeds",
            "1,2",
            "--max-train-samples",
            "128",
            "--candidates",
            "30",
            "--holdout",
            "300",
            "--jobs",
            "2",
            "--quiet",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        v.extend(extra.iter().map(ToString::to_string));
        v
    };
    // The config's retrain.epochs (1) is the default budget; two networks
    // train at once; each is also scored on 300 of the training images the
    // 128-image budget leaves out.
    let call = |extra: &[&'static str]| {
        let args = truth_args(extra);
        run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Stopped after 3 of 12 trainings, as a kill between two would.
    let out = call(&["--limit", "3"]);
    assert_eq!(
        (out["trained_now"].as_u64(), out["missing"].as_u64()),
        (Some(3), Some(9))
    );
    let first = read_json(&truth);
    let archs = first["archs"].as_array().expect("archs");
    assert_eq!(archs.len(), 6);
    let names: std::collections::BTreeSet<&str> =
        archs.iter().filter_map(|a| a["arch"].as_str()).collect();
    assert_eq!(names.len(), 6, "distinct");
    let inside = archs.iter().filter(|a| a["in_window"] == true).count();
    assert_eq!(inside, 3, "half inside the window");
    assert_eq!(first["budget"]["train_images"], 128);
    assert_eq!(
        first["data"]["pooled_images"].as_u64(),
        first["data"]["val_images"].as_u64().map(|v| v + 300)
    );

    // The rest: the 3 done are kept as they were, not trained again.
    let out = call(&[]);
    assert_eq!(
        (out["trained_now"].as_u64(), out["missing"].as_u64()),
        (Some(9), Some(0))
    );
    assert_eq!(out["ceiling"]["n"], 6);
    let second = read_json(&truth);
    for (a, b) in archs.iter().zip(second["archs"].as_array().expect("archs")) {
        assert_eq!(a["arch"], b["arch"], "the draw is not redone");
        for r in a["runs"].as_array().expect("runs") {
            assert!(
                b["runs"].as_array().expect("runs").contains(r),
                "{r} was trained again"
            );
        }
        assert_eq!(b["runs"].as_array().map(Vec::len), Some(2));
    }
    assert_eq!(call(&[])["trained_now"], 0);
    for r in second["archs"]
        .as_array()
        .expect("archs")
        .iter()
        .flat_map(|a| a["runs"].as_array().expect("runs"))
    {
        let (val, pooled) = (r["val_accuracy"].as_f64(), r["pooled_accuracy"].as_f64());
        assert!(val.is_some() && pooled.is_some(), "{r}");
        // The CPU is part of how a run was made: another CPU, another trajectory.
        assert!(r["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{r}");
    }
    // Finished checkpoints stay: a run taken out of the file is scored again
    // from its checkpoint, to the same figures, without training.
    let kept = dir
        .path()
        .join("truth.work")
        .read_dir()
        .expect("work")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".checkpoint.safetensors")
        })
        .count();
    assert_eq!(kept, 12, "one finished checkpoint per training");
    let mut edited = second.clone();
    let removed = edited["archs"][0]["runs"]
        .as_array_mut()
        .expect("runs")
        .pop()
        .expect("run");
    std::fs::write(&truth, serde_json::to_string_pretty(&edited).expect("json")).expect("write");
    assert_eq!(call(&[])["trained_now"], 1);
    let again = &read_json(&truth)["archs"][0]["runs"][1];
    for key in ["seed", "steps", "val_accuracy", "pooled_accuracy"] {
        assert_eq!(again[key], removed[key], "{key}");
    }
    // While another process holds the file's work directory, a second
    // measurement of it stops at once and says why.
    {
        let _held = padnas::files::lock_dir(&dir.path().join("truth.work")).expect("lock");
        let args = truth_args(&[]);
        let (code, _, err) = padnas(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ne!(code, 0);
        assert!(err.contains("another padnas process"), "{err}");
    }
    // Another budget or other scoring images would mix two ground truths:
    // refused; more left-out images than there are: refused.
    for (flag, value, says) in [
        ("--epochs", "2", "budget"),
        ("--holdout", "200", "data"),
        ("--holdout", "999999", "leaves only"),
    ] {
        let mut args = truth_args(&[]);
        match args.iter().position(|a| a == flag) {
            Some(at) => args[at + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
        let (code, _, err) = padnas(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ne!(code, 0);
        assert!(err.contains(says), "{err}");
    }

    // Named networks (as a search would choose) trained alike, then judged
    // against the drawn ones of the window.
    let chosen = dir.path().join("chosen.json");
    let named: Vec<String> = archs
        .iter()
        .take(2)
        .map(|a| a["arch"].as_str().expect("arch").to_string())
        .collect();
    let mut args = truth_args(&[]);
    let at = args.iter().position(|a| a == "--out").expect("--out") + 1;
    args[at] = s(&chosen).to_string();
    for a in &named {
        args.extend(["--arch".to_string(), a.clone()]);
    }
    let out = run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out["trained_now"], 4);
    let file = read_json(&chosen);
    assert_eq!(file["draw"]["named"], true);
    let held: Vec<&str> = file["archs"]
        .as_array()
        .expect("archs")
        .iter()
        .filter_map(|a| a["arch"].as_str())
        .collect();
    assert_eq!(held, named, "exactly the named ones, in order");
    let v = run_ok(&[
        "rank",
        "versus",
        "--truth",
        s(&truth),
        "--chosen",
        s(&chosen),
    ]);
    assert_eq!(v["random"]["n"], 3);
    let verdicts = v["candidates"].as_array().expect("candidates");
    assert_eq!(verdicts.len(), 2);
    for c in verdicts {
        assert!(c["beats"].as_u64().expect("beats") <= 3, "{c}");
        assert!(c["over_best"].as_f64().expect("over best") <= 1.0, "{c}");
        assert!(
            c["beats_best_beyond_noise"].is_null(),
            "3 random are too few: {c}"
        );
    }
    // The roles are not interchangeable, and a name outside the space is
    // refused with the name.
    let (code, _, err) = padnas(&[
        "rank",
        "versus",
        "--truth",
        s(&chosen),
        "--chosen",
        s(&truth),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("named, not drawn"), "{err}");
    let mut args = truth_args(&[]);
    args[at] = s(&dir.path().join("bad.json")).to_string();
    args.extend(["--arch".to_string(), "k9e9".to_string()]);
    let (code, _, err) = padnas(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(code, 0);
    assert!(err.contains("--arch k9e9"), "{err}");

    let out = run_ok(&[
        "rank",
        "score",
        "--run",
        s(&run),
        "--truth",
        s(&truth),
        "--resamples",
        "100",
    ]);
    assert_eq!(out["stage"], 0);
    assert_eq!(out["n"], 6);
    assert_eq!(out["all"]["n"], 6);
    assert_eq!(out["in_window"]["n"], 3);
    assert_eq!(out["ceiling"]["n"], 6);
    for a in out["archs"].as_array().expect("archs") {
        let acc = a["one_shot"].as_f64().expect("one-shot accuracy");
        assert!((0.0..=1.0).contains(&acc), "{a}");
    }

    // A run directory of `padnas train` alone: its supernet is stage 0.
    let alone = dir.path().join("alone");
    run_ok(&[
        "train",
        "--config",
        s(&cfg),
        "--run-dir",
        s(&alone),
        "--quiet",
    ]);
    let lone = run_ok(&[
        "rank",
        "score",
        "--run",
        s(&alone),
        "--truth",
        s(&truth),
        "--repeats",
        "2",
    ]);
    assert_eq!(
        (lone["stage"].as_u64(), lone["n"].as_u64()),
        (Some(0), Some(6))
    );
    assert_eq!(lone["noise"]["repeats"], 2);
    // One-shot accuracy over the validation images and 500 of the training
    // images the run's 256-image subset left out: 3 000 + 500 by default.
    let wide = run_ok(&[
        "rank",
        "score",
        "--run",
        s(&alone),
        "--truth",
        s(&truth),
        "--holdout",
        "500",
        "--resamples",
        "100",
    ]);
    assert_eq!(wide["holdout"], 500);
    assert_eq!(wide["settings"]["val_samples"], 3500);
    for a in wide["archs"].as_array().expect("archs") {
        let hits = a["one_shot"].as_f64().expect("one-shot") * 3500.0;
        assert!((hits - hits.round()).abs() < 1e-6, "{a}");
    }
    let (code, _, err) = padnas(&[
        "rank",
        "score",
        "--run",
        s(&alone),
        "--truth",
        s(&truth),
        "--holdout",
        "999999",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--holdout 999999"), "{err}");

    // A config that names the ground truth: `padnas run` scores every
    // stage's supernet, and the report shows τ per stage.
    let ranked = dir.path().join("ranked.yaml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&ranked, format!("{text}rank: {{ truth: truth.json }}\n")).expect("config");
    run_ok(&["run", s(&ranked), "--quiet"]);
    let mut scored = Vec::new();
    for k in 0..=2 {
        let score = read_json(&run.join(format!("rank/stage-{k}.json")));
        let (n, pruned) = (score["n"].as_u64(), score["not_in_space"].as_u64());
        // Pruning leaves fewer of the 6 in the stage's space.
        assert_eq!(
            n.zip(pruned).map(|(a, b)| a + b),
            Some(6),
            "stage {k}: {score}"
        );
        scored.push(n.unwrap_or(0));
    }
    assert_eq!(scored[0], 6);
    assert!(scored[2] <= scored[1] && scored[1] <= 6, "{scored:?}");
    // Stage 0 scores the same supernet with the same settings as above.
    let stage0 = read_json(&run.join("rank/stage-0.json"));
    assert_eq!(stage0["archs"], out["archs"]);
    let report = std::fs::read_to_string(run.join("report.md")).expect("report");
    assert!(report.contains("## Rank fidelity"), "{report}");
    // With the truth's own scale: what a perfect ranking could reach.
    assert!(report.contains("| reachable τ-b |"), "{report}");
    // And the ranking by one-shot loss beside the one by accuracy.
    assert!(report.contains("| τ-b by loss |"), "{report}");
    assert_eq!(stage0["by_loss"]["n"], 6, "{stage0}");
    let reach = stage0["truth_spread"]["reachable_tau_b"].as_f64();
    assert!(reach.is_some_and(|r| (0.0..=1.0).contains(&r)), "{stage0}");
    assert!(
        report.contains(&format!("| {:.3} |\n", reach.unwrap_or(-1.0))),
        "{report}"
    );
    for k in 0..=2 {
        assert!(
            report.contains(&format!("\n| {k} | ")),
            "stage {k} row:\n{report}"
        );
    }
    let steps = read_json(&run.join("steps.json"));
    assert_eq!(steps["rank-2"]["done"], true, "{steps}");
}
