use std::collections::BTreeSet;

use super::*;

const JOB: &str = "
name: t
seed: 3
space: space.yaml
data: { kind: fashion-mnist }
train: { epochs: 2, batch_size: 32, lr: 0.1, threads: 1 }
search: { population: 4, generations: 1 }
prune: { finetune_epochs: [1, 1] }
retrain: { epochs: 1 }
rank: { truth: truth.json }
";

fn config(dir: &Path, edit: impl FnOnce(&mut JobConfig)) -> JobConfig {
    let mut cfg = JobConfig::from_yaml_str(JOB, "job.yaml", dir).expect("config");
    edit(&mut cfg);
    cfg
}

/// The names of the steps whose fingerprint differs between two plans.
fn changed(a: &[Step], b: &[Step]) -> BTreeSet<String> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.fingerprint != y.fingerprint)
        .map(|(x, _)| x.name.clone())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn all_but(plan: &[Step], keep: &[&str]) -> BTreeSet<String> {
    plan.iter()
        .map(|s| s.name.clone())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn the_plan_has_every_step_in_order_with_ranks_only_when_asked_for() {
    let dir = tempfile::tempdir().expect("tmp");
    let with = plan(&config(dir.path(), |_| {}), "h");
    let all: Vec<String> = with.iter().map(|s| s.name.clone()).collect();
    assert_eq!(all, step_names(2));
    let without = plan(&config(dir.path(), |c| c.rank = None), "h");
    assert!(without.iter().all(|s| !s.name.starts_with("rank-")));
    assert_eq!(without.len(), with.len() - 3);
    // Every dependency is an earlier step.
    for (i, s) in with.iter().enumerate() {
        for d in &s.deps {
            assert!(
                with[..i].iter().any(|p| &p.name == d),
                "{} reads {d}",
                s.name
            );
        }
    }
}

#[test]
fn a_changed_setting_changes_its_step_and_everything_downstream_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = plan(&config(dir.path(), |_| {}), "h");
    let with = |edit: fn(&mut JobConfig)| plan(&config(dir.path(), edit), "h");

    assert_eq!(
        changed(&base, &with(|c| c.retrain.epochs = 2)),
        names(&["retrain", "export", "verify", "report"])
    );
    assert_eq!(
        changed(&base, &with(|c| c.train.lr = 0.05)),
        all_but(&base, &["latency"])
    );
    assert_eq!(
        changed(&base, &with(|c| c.prune.threshold = 0.2)),
        all_but(&base, &["latency", "train", "rank-0", "search-1"])
    );
    assert_eq!(
        changed(&base, &with(|c| c.prune.finetune_epochs[1] = 3)),
        names(&[
            "finetune-2",
            "rank-2",
            "final",
            "retrain",
            "export",
            "verify",
            "report"
        ])
    );
    assert_eq!(
        changed(&base, &with(|c| c.search.val_samples = 10)),
        all_but(&base, &["latency", "train", "rank-0"])
    );
    // The space and the seed reach everything.
    assert_eq!(
        changed(&base, &plan(&config(dir.path(), |_| {}), "other")).len(),
        base.len()
    );
    assert_eq!(changed(&base, &with(|c| c.seed = 4)).len(), base.len());
}

#[test]
fn how_a_run_is_executed_is_not_a_setting() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = plan(&config(dir.path(), |_| {}), "h");
    let moved = plan(
        &config(dir.path(), |c| {
            c.train.threads = Some(8);
            c.train.checkpoint_every_steps = Some(10);
            c.data.path = "/elsewhere".into();
            c.device = crate::config::DeviceSpec::Cuda(0);
            c.target.tables_dir = "/tables".into();
        }),
        "h",
    );
    assert!(changed(&base, &moved).is_empty());
}

#[test]
fn a_grown_ground_truth_reruns_the_rank_steps_and_the_report() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("truth.json"), "{}").expect("truth");
    let base = plan(&config(dir.path(), |_| {}), "h");
    std::fs::write(dir.path().join("truth.json"), "{\"archs\": []}").expect("truth");
    let grown = plan(&config(dir.path(), |_| {}), "h");
    assert_eq!(
        changed(&base, &grown),
        names(&["rank-0", "rank-1", "rank-2", "report"])
    );
}

fn records(plan: &[Step]) -> BTreeMap<String, StepRecord> {
    plan.iter()
        .map(|s| {
            (
                s.name.clone(),
                StepRecord {
                    seconds: 1.0,
                    done: true,
                    fingerprint: Some(s.fingerprint.clone()),
                    settings: Some(s.settings.clone()),
                },
            )
        })
        .collect()
}

#[test]
fn stale_steps_name_the_changed_setting_or_the_step_they_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = plan(&config(dir.path(), |_| {}), "h");
    let mut rec = records(&old);
    let new = plan(&config(dir.path(), |c| c.retrain.epochs = 2), "h");
    assert!(stale(&old, &rec).is_empty());
    let found = stale(&new, &rec);
    let steps: Vec<&str> = found.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["retrain", "export", "verify", "report"]);
    assert_eq!(found[0].why, "retrain.epochs 1 → 2");
    assert_eq!(found[1].why, "it reads retrain");
    assert!(found[3].why.contains("retrain") && found[3].why.contains("export"));

    // A run from before fingerprints is taken as it is.
    for r in rec.values_mut() {
        r.fingerprint = None;
        r.settings = None;
    }
    assert!(stale(&new, &rec).is_empty());
}

#[test]
fn superseding_moves_only_the_stale_outputs_and_forgets_their_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("run");
    let old = plan(&config(dir.path(), |_| {}), "h");
    let mut rec = records(&old);
    for f in [
        "supernet.safetensors",
        "model.onnx",
        "verify.json",
        "config.yaml",
    ] {
        std::fs::create_dir_all(&run).expect("run");
        std::fs::write(run.join(f), f).expect("file");
    }
    std::fs::create_dir_all(run.join("retrain/k3e3")).expect("retrain");
    std::fs::write(run.join("retrain/k3e3/result.json"), "{}").expect("result");

    let new = plan(&config(dir.path(), |c| c.retrain.epochs = 2), "h");
    let found = stale(&new, &rec);
    let moved = supersede(&run, &new, &found, &mut rec).expect("supersede");

    assert!(moved.starts_with(run.join("superseded")));
    for f in ["model.onnx", "verify.json", "retrain/k3e3/result.json"] {
        assert!(!run.join(f).exists(), "{f} still in the run");
        assert!(moved.join(f).exists(), "{f} not kept");
    }
    assert!(run.join("supernet.safetensors").exists());
    assert!(run.join("config.yaml").exists() && moved.join("config.yaml").exists());
    for s in ["retrain", "export", "verify", "report"] {
        assert!(!rec.contains_key(s), "{s} still recorded");
    }
    assert!(rec.contains_key("train") && rec.contains_key("final"));
}
