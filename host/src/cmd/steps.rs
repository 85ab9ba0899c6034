//! The pipeline of `padnas run` as a declared list of steps.
//!
//! Each [`Step`] names the steps whose results it reads, the settings it
//! depends on (dotted config keys with their values) and the files it
//! writes into the run directory. Its fingerprint hashes its settings and
//! the fingerprints of the steps it reads, so a changed setting changes the
//! fingerprint of its step and of every step downstream, and of nothing
//! else. `steps.json` records, for every step that ran, the fingerprint and
//! settings it ran with; [`stale`] compares them with the config's, and
//! [`supersede`] moves the outputs of stale steps aside so they run again.
//!
//! Settings that say *how* rather than *what* (threads, device, the data's
//! directory, checkpoint frequency, where tables are kept) are left out:
//! changing them does not change a result. The ground truth a rank step
//! reads enters by its content hash, so a grown or edited truth file
//! counts as a changed setting too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::JobConfig;
use crate::hash::hex_digest;

/// A step's settings: dotted config keys and their values.
pub type Settings = BTreeMap<String, Value>;

/// What a step does (the pipeline maps each to its code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Choose or measure the latency table; derive the window.
    Latency,
    /// SPOS training of the supernet on the initial space.
    Train,
    /// Score stage K's supernet against the ground truth.
    Rank(usize),
    /// NSGA-II on space K−1 with stage K−1's supernet.
    Search(usize),
    /// Prune space K−1 into space K from search K.
    Prune(usize),
    /// Fine-tune the supernet on space K.
    Finetune(usize),
    /// The final search on the last space, and its Pareto front.
    Final,
    /// Retrain the chosen architecture stand-alone.
    Retrain,
    /// Export it to ONNX.
    Export,
    /// Run the export on the target and compare it with the host.
    Verify,
    /// The report and its plots.
    Report,
}

/// One step of a run.
#[derive(Clone, Debug)]
pub struct Step {
    /// Its name in `--until`, `steps.json` and the report.
    pub name: String,
    /// What it does.
    pub action: Action,
    /// Names of the earlier steps whose outputs it reads.
    pub deps: Vec<String>,
    /// The settings its outputs depend on.
    pub settings: Settings,
    /// What it writes, relative to the run directory (files or folders).
    pub outputs: Vec<String>,
    /// Hash of `settings` and of the fingerprints of `deps`.
    pub fingerprint: String,
}

/// What `steps.json` keeps of one step.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepRecord {
    /// Wall seconds, summed over every session that worked on it.
    pub seconds: f64,
    /// Whether it finished.
    pub done: bool,
    /// The fingerprint it ran with (absent in runs made before fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The settings it ran with, so a change can be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
}

/// Every step name a run with `stages` prunings can have, in order
/// (`rank-K` only runs when the config names a ground truth).
pub fn step_names(stages: usize) -> Vec<String> {
    let mut v = vec!["latency".into(), "train".into(), "rank-0".to_string()];
    for k in 1..=stages {
        v.push(format!("search-{k}"));
        v.push(format!("prune-{k}"));
        v.push(format!("finetune-{k}"));
        v.push(format!("rank-{k}"));
    }
    for s in ["final", "retrain", "export", "verify", "report"] {
        v.push(s.into());
    }
    v
}

/// Flattens `value` into `out` under `prefix` (`train.lr`, …), leaving out
/// the keys in `skip` (relative to `prefix`).
fn flatten(prefix: &str, value: Value, skip: &[&str], out: &mut Settings) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if !skip.contains(&k.as_str()) {
                    flatten(&format!("{prefix}.{k}"), v, &[], out);
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), other);
        }
    }
}

fn section<T: Serialize>(prefix: &str, value: &T, skip: &[&str]) -> Settings {
    let mut out = Settings::new();
    // The config's types are plain data: serialising them cannot fail.
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    flatten(prefix, v, skip, &mut out);
    out
}

/// Content hash of a file a step reads from outside the run, or `missing`.
fn file_hash(p: &Path) -> Value {
    Value::String(std::fs::read(p).map_or_else(|_| "missing".into(), |b| hex_digest(&b)))
}

/// The steps of a run of `cfg` whose initial space hashes to `space_hash`.
pub fn plan(cfg: &JobConfig, space_hash: &str) -> Vec<Step> {
    let stages = cfg.prune.finetune_epochs.len();
    let mut base = Settings::new();
    base.insert("seed".into(), cfg.seed.into());
    base.insert("space".into(), space_hash.into());

    let mut training = base.clone();
    training.extend(section("data", &cfg.data, &["path"]));
    training.extend(section(
        "train",
        &cfg.train,
        &["threads", "checkpoint_every_steps"],
    ));

    let mut latency = base.clone();
    // A given table enters by its path, not its content: the run itself
    // completes a table that lacks blocks of the space.
    latency.extend(section(
        "target",
        &cfg.target,
        &["targets_dir", "tables_dir"],
    ));
    latency.extend(section("search.window", &cfg.search.window, &[]));

    let mut searching = section(
        "search",
        &cfg.search,
        &["window"], // the window comes with the latency step
    );
    searching.insert("seed".into(), cfg.seed.into());
    searching.insert("train.batch_size".into(), cfg.train.batch_size.into());

    let rank = cfg.rank.as_ref().map(|r| {
        let mut s = section("rank", r, &["truth"]);
        s.insert("rank.truth".into(), file_hash(&r.truth));
        s.insert("seed".into(), cfg.seed.into());
        s.insert("train.batch_size".into(), cfg.train.batch_size.into());
        s
    });

    let mut steps: Vec<Step> = Vec::new();
    add(
        &mut steps,
        "latency".into(),
        Action::Latency,
        vec![],
        latency,
        vec!["latency.json".into(), "space.stage-0.yaml".into()],
    );
    add(
        &mut steps,
        "train".into(),
        Action::Train,
        vec![],
        training.clone(),
        vec![
            "supernet.safetensors".into(),
            "checkpoint.safetensors".into(),
        ],
    );
    // Weights after stage k come from this step; space k from `prune-k`.
    let weights_step = |k: usize| {
        if k == 0 {
            "train".to_string()
        } else {
            format!("finetune-{k}")
        }
    };
    let space_deps = |k: usize| {
        if k == 0 {
            vec![]
        } else {
            vec![format!("prune-{k}")]
        }
    };
    let rank_step = |k: usize| {
        rank.as_ref().map(|s| {
            let mut deps = vec![weights_step(k)];
            deps.extend(space_deps(k));
            (
                format!("rank-{k}"),
                Action::Rank(k),
                deps,
                s.clone(),
                vec![format!("rank/stage-{k}.json")],
            )
        })
    };
    if let Some((n, a, d, s, o)) = rank_step(0) {
        add(&mut steps, n, a, d, s, o);
    }
    for k in 1..=stages {
        let mut deps = vec!["latency".to_string(), weights_step(k - 1)];
        deps.extend(space_deps(k - 1));
        add(
            &mut steps,
            format!("search-{k}"),
            Action::Search(k),
            deps,
            searching.clone(),
            vec![format!("stage-{k}/search.json")],
        );
        let mut pruning = section(
            "prune",
            &cfg.prune,
            &["finetune_epochs", "finetune_lr", "finetune_warmup_epochs"],
        );
        pruning.insert("space".into(), space_hash.into());
        add(
            &mut steps,
            format!("prune-{k}"),
            Action::Prune(k),
            vec![format!("search-{k}")],
            pruning,
            vec![
                format!("stage-{k}/prune.json"),
                format!("space.stage-{k}.yaml"),
            ],
        );
        let mut tuning = training.clone();
        tuning.insert(
            format!("prune.finetune_epochs[{}]", k - 1),
            cfg.prune.finetune_epochs[k - 1].into(),
        );
        tuning.insert(
            "prune.finetune_lr".into(),
            serde_json::json!(cfg.prune.finetune_lr),
        );
        tuning.insert(
            "prune.finetune_warmup_epochs".into(),
            cfg.prune.finetune_warmup_epochs.into(),
        );
        add(
            &mut steps,
            format!("finetune-{k}"),
            Action::Finetune(k),
            vec![format!("prune-{k}"), weights_step(k - 1)],
            tuning,
            vec![
                format!("stage-{k}/supernet.safetensors"),
                format!("stage-{k}/checkpoint.safetensors"),
            ],
        );
        if let Some((n, a, d, s, o)) = rank_step(k) {
            add(&mut steps, n, a, d, s, o);
        }
    }
    let mut deps = vec!["latency".to_string(), weights_step(stages)];
    deps.extend(space_deps(stages));
    add(
        &mut steps,
        "final".into(),
        Action::Final,
        deps,
        searching,
        vec!["final".into(), "pareto.json".into()],
    );
    let mut retraining = training;
    retraining.extend(section("retrain", &cfg.retrain, &[]));
    add(
        &mut steps,
        "retrain".into(),
        Action::Retrain,
        vec!["final".into()],
        retraining,
        vec!["retrain".into()],
    );
    add(
        &mut steps,
        "export".into(),
        Action::Export,
        vec!["latency".into(), "final".into(), "retrain".into()],
        Settings::new(),
        // model.int8.onnx only for a microcontroller target.
        vec!["model.onnx".into(), "model.int8.onnx".into()],
    );
    add(
        &mut steps,
        "verify".into(),
        Action::Verify,
        vec!["latency".into(), "export".into()],
        section("data", &cfg.data, &["path", "val_split", "augment"]),
        vec!["verify.json".into()],
    );
    let everything: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    add(
        &mut steps,
        "report".into(),
        Action::Report,
        everything,
        Settings::new(),
        vec!["report.md".into(), "plots".into()],
    );
    // Fingerprints in order: every dependency comes earlier.
    let mut done: BTreeMap<String, String> = BTreeMap::new();
    for s in &mut steps {
        let deps: Vec<(&str, &str)> = s
            .deps
            .iter()
            .map(|d| (d.as_str(), done.get(d).map_or("", String::as_str)))
            .collect();
        let text = serde_json::to_string(&(&s.settings, deps)).unwrap_or_default();
        s.fingerprint = hex_digest(text.as_bytes());
        done.insert(s.name.clone(), s.fingerprint.clone());
    }
    steps
}

/// Appends a step (its fingerprint is set once the plan is complete).
fn add(
    steps: &mut Vec<Step>,
    name: String,
    action: Action,
    deps: Vec<String>,
    settings: Settings,
    outputs: Vec<String>,
) {
    steps.push(Step {
        name,
        action,
        deps,
        settings,
        outputs,
        fingerprint: String::new(),
    });
}

/// A step whose recorded run no longer matches the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Stale {
    /// The step.
    pub step: String,
    /// What changed: settings as `key old → new`, or the steps it reads.
    pub why: String,
}

fn show(v: Option<&Value>) -> String {
    v.map_or("(absent)".into(), Value::to_string)
}

/// The steps of `plan` that ran (or started) with other settings, or read a
/// step that did, in order. Records without a fingerprint (runs from before
/// fingerprints) are taken as they are.
pub fn stale(plan: &[Step], records: &BTreeMap<String, StepRecord>) -> Vec<Stale> {
    let mut out: Vec<Stale> = Vec::new();
    for s in plan {
        let Some(old) = records.get(&s.name).and_then(|r| r.fingerprint.as_ref()) else {
            continue;
        };
        if *old == s.fingerprint {
            continue;
        }
        let before = records[&s.name].settings.clone().unwrap_or_default();
        let mut changed: Vec<String> = s
            .settings
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} {} → {v}", show(before.get(k))))
            .collect();
        changed.extend(
            before
                .iter()
                .filter(|(k, _)| !s.settings.contains_key(*k))
                .map(|(k, v)| format!("{k} {v} → (absent)")),
        );
        let why = if changed.is_empty() {
            let upstream: Vec<&str> = s
                .deps
                .iter()
                .filter(|d| out.iter().any(|o| &o.step == *d))
                .map(String::as_str)
                .collect();
            if upstream.is_empty() {
                "it reads a step that changed".to_string()
            } else {
                format!("it reads {}", upstream.join(", "))
            }
        } else {
            changed.join(", ")
        };
        out.push(Stale {
            step: s.name.clone(),
            why,
        });
    }
    out
}

/// Moves the outputs of the `stale` steps of `plan` from `run` into
/// `run/superseded/<time>/` (with the old config and step records), drops
/// their records from `records`, and returns that folder.
pub fn supersede(
    run: &Path,
    plan: &[Step],
    stale: &[Stale],
    records: &mut BTreeMap<String, StepRecord>,
) -> std::io::Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let dir = run.join("superseded").join(stamp);
    std::fs::create_dir_all(&dir)?;
    for keep in ["config.yaml", "steps.json"] {
        let p = run.join(keep);
        if p.exists() {
            std::fs::copy(&p, dir.join(keep))?;
        }
    }
    for s in stale {
        let Some(step) = plan.iter().find(|p| p.name == s.step) else {
            continue;
        };
        for rel in &step.outputs {
            let from = run.join(rel);
            if from.exists() {
                let to = dir.join(rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(&from, &to)?;
            }
        }
        records.remove(&s.step);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests;
