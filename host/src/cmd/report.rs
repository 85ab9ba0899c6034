//! The run's report: `pareto.json`, `report.md` and its plots, written
//! from what the run directory holds.

use anyhow::Context;
use serde_json::json;

use super::job::{Job, LatencyRecord, MODEL_FILE, PARETO_FILE, VERIFY_FILE, read_steps};
use super::stages::choose;
use super::steps::step_names;
use crate::files::write_atomic;
use crate::search::{Pruning, SearchRecord, plot};
use crate::space::format_count;

/// Writes the final search's Pareto front to `pareto.json`.
pub(crate) fn write_pareto(
    job: &Job,
    latency: &LatencyRecord,
    rec: &SearchRecord,
) -> anyhow::Result<()> {
    let front: Vec<_> = rec
        .pareto()
        .iter()
        .map(|c| {
            let mut entry =
                json!({"arch": c.arch, "accuracy": c.accuracy, "latency_ms": c.latency_ms});
            if let Some(m) = &c.memory {
                entry["int8_flash_bytes"] = m.flash_bytes.into();
                entry["int8_peak_sram_bytes"] = m.sram_bytes.into();
            }
            entry
        })
        .collect();
    let mut out = json!({
        "target": latency.target,
        "label": latency.label,
        "table": latency.table,
        "window": latency.window,
        "space_hash": rec.space_hash,
        "accuracy": "one-shot, validation split",
        "pareto": front,
    });
    if let Some(limit) = &latency.memory {
        out["memory_limit"] = serde_json::to_value(limit)?;
    }
    write_atomic(
        &job.path(PARETO_FILE),
        serde_json::to_string_pretty(&out)?.as_bytes(),
    )?;
    Ok(())
}

/// The searches of a run that exist, in order, with their names.
fn searches(job: &Job) -> anyhow::Result<Vec<(String, SearchRecord)>> {
    let mut out = Vec::new();
    for k in 1..=job.stages() {
        if let Some(r) = SearchRecord::load(&job.path(format!("stage-{k}/search.json")))?
            && r.complete
        {
            out.push((format!("stage {k} (space {})", k - 1), r));
        }
    }
    if let Some(r) = SearchRecord::load(&job.path("final/search.json"))?
        && r.complete
    {
        out.push((format!("final (space {})", job.stages()), r));
    }
    Ok(out)
}

/// Writes `report.md` and its plots from what the run directory holds.
pub fn write_report(
    job: &Job,
    latency: &LatencyRecord,
    final_search: &SearchRecord,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let plots = job.path("plots");
    std::fs::create_dir_all(&plots)?;
    let found = searches(job)?;
    let refs: Vec<(&str, &SearchRecord)> = found.iter().map(|(n, r)| (n.as_str(), r)).collect();
    plot::pareto(&refs, &plots.join("pareto.svg"))?;
    plot::progress(&refs, &plots.join("progress.svg"))?;
    let mut sizes = Vec::new();
    for k in 0..=job.stages() {
        if let Some(s) = job.space(k)? {
            sizes.push((format!("stage {k}"), s.num_architectures()));
        }
    }
    plot::space_size(&sizes, &plots.join("space-size.svg"))?;
    let mut prunings: Vec<(usize, Pruning)> = Vec::new();
    for k in 1..=job.stages() {
        let p = job.path(format!("stage-{k}/prune.json"));
        if p.exists() {
            let pr: Pruning = serde_json::from_str(&std::fs::read_to_string(&p)?)
                .with_context(|| format!("{}: not a pruning record", p.display()))?;
            plot::survival(
                &pr,
                &format!(
                    "op frequency (%) among rank < {} architectures, stage {k} (✕ pruned)",
                    pr.rank_limit
                ),
                &plots.join(format!("survival-stage-{k}.svg")),
            )?;
            prunings.push((k, pr));
        }
    }

    let cfg = &job.cfg;
    let mut md = String::new();
    let _ = writeln!(md, "# PAD-NAS run `{}`\n", cfg.name);
    let _ = writeln!(
        md,
        "Config `{}` (copy in `config.yaml`), seed {}, space `{}`, data {} ({} train / {} validation / {} test images), device {}, {} libtorch threads.\n",
        cfg.origin,
        cfg.seed,
        cfg.space.display(),
        cfg.data.kind,
        job.splits.train.len(),
        job.splits.val.len(),
        job.splits.test.len(),
        cfg.device,
        tch::get_num_threads()
    );
    let _ = writeln!(md, "## Latency\n");
    let _ = writeln!(
        md,
        "Target `{}`, table `{}`, measured on **{}**{}. Latency window **{:.3}–{:.3} ms** ({}); every searched architecture lies inside it.\n",
        latency.target,
        latency.table.display(),
        latency.label,
        if latency.emulated {
            " (emulated: meaningless as device latency)"
        } else {
            ""
        },
        latency.window.lo_ms,
        latency.window.hi_ms,
        latency.window.source
    );
    let _ = writeln!(md, "## Stages\n");
    let _ = writeln!(
        md,
        "| stage | space | architectures | search: evaluated | eval/s | Pareto front | best one-shot accuracy |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (name, r) in &found {
        let best = r.candidates.iter().map(|c| c.accuracy).fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| {name} | `{}` | {} | {} | {:.2} | {} | {:.2}% |",
            &r.space_hash[..12.min(r.space_hash.len())],
            format_count(r.num_architectures),
            r.candidates.len(),
            r.evaluations_per_s,
            r.pareto().len(),
            100.0 * best
        );
    }
    let _ = writeln!(md, "\n![Pareto fronts](plots/pareto.svg)\n");
    let _ = writeln!(md, "![Search progress](plots/progress.svg)\n");
    let _ = writeln!(md, "![Space size per stage](plots/space-size.svg)\n");
    for (k, p) in &prunings {
        let _ = writeln!(
            md,
            "### Pruning {k}\n\n{} architectures with rank < {} counted; ops at or below {:.1}% pruned: {} in all.\n",
            p.counted,
            p.rank_limit,
            100.0 * p.threshold,
            p.num_pruned()
        );
        let _ = writeln!(md, "| layer | kept | pruned |\n|---|---|---|");
        for (l, ops) in p.layers.iter().enumerate() {
            let list = |pruned: bool| {
                ops.iter()
                    .filter(|c| c.pruned == pruned)
                    .map(|c| format!("{} ({:.0}%)", c.op, 100.0 * c.frequency))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(md, "| {l} | {} | {} |", list(false), list(true));
        }
        let _ = writeln!(
            md,
            "\n![Op survival, stage {k}](plots/survival-stage-{k}.svg)\n"
        );
    }
    if let Some(section) = super::rank_stage::rank_report(job, job.stages()) {
        let _ = writeln!(md, "{section}");
    }
    let _ = writeln!(md, "## Final Pareto front (`pareto.json`)\n");
    if let Some(limit) = &latency.memory {
        let _ = writeln!(
            md,
            "Every network admitted fits the target's memory: int8 weights ≤ {} bytes of flash, \
             peak activations ≤ {} bytes of SRAM.\n",
            limit.flash_bytes, limit.sram_bytes
        );
        let _ = writeln!(
            md,
            "| architecture | one-shot accuracy | predicted latency (ms) | int8 flash (bytes) | peak SRAM (bytes) |\n|---|---|---|---|---|"
        );
    } else {
        let _ = writeln!(
            md,
            "| architecture | one-shot accuracy | predicted latency (ms) |\n|---|---|---|"
        );
    }
    for c in final_search.pareto() {
        let memory = c.memory.map_or(String::new(), |m| {
            format!(" {} | {} |", m.flash_bytes, m.sram_bytes)
        });
        let _ = writeln!(
            md,
            "| `{}` | {:.2}% | {:.3} |{memory}",
            c.arch,
            100.0 * c.accuracy,
            c.latency_ms
        );
    }
    if let Ok(chosen) = choose(final_search) {
        let _ = writeln!(md, "\n## Deployed network\n");
        let _ = writeln!(
            md,
            "Chosen from the final front: `{}` (the most accurate one-shot; {:.2}% validation, {:.3} ms predicted).\n",
            chosen.arch,
            100.0 * chosen.accuracy,
            chosen.latency_ms
        );
        if let Ok(arch) = job.full.parse_arch(&chosen.arch)
            && let Ok(r) =
                super::retrain::read_result(&super::retrain::retrain_dir(&job.run, &arch))
        {
            let pct =
                |v: Option<f64>| v.map_or("–".to_string(), |a| format!("{:.2}%", 100.0 * a));
            let _ = writeln!(
                md,
                "Retrained {} for {} epoch(s) ({} steps, {:.0} s, {} parameters): **test accuracy {}** on the untouched test split ({} images), validation {}.\n",
                if r.inherit {
                    "from the supernet's weights"
                } else {
                    "from scratch"
                },
                r.epochs,
                r.steps,
                r.seconds,
                r.parameters,
                pct(r.test_accuracy),
                r.test_samples,
                pct(r.val_accuracy)
            );
        }
        if job.path(MODEL_FILE).exists() {
            let _ = writeln!(
                md,
                "Exported to `{MODEL_FILE}` (ONNX, BN folded, metadata: architecture, space hash, accuracy, target, predicted latency).\n"
            );
        }
        if let Ok(text) = std::fs::read_to_string(job.path(VERIFY_FILE))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let _ = writeln!(
                md,
                "On target `{}` ({}): outputs on {} test images within {:.1e} of the host's (same class: {}); latency **measured {:.3} ms** (median, p10 {:.3}, p90 {:.3}, {} runs, {} thread(s)){} vs **predicted {:.3} ms** by the table.{}\n",
                v["target"].as_str().unwrap_or("?"),
                v["label"].as_str().unwrap_or("?"),
                v["images"],
                v["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
                v["agree"],
                v["measured_ms"].as_f64().unwrap_or(f64::NAN),
                v["p10_ms"].as_f64().unwrap_or(f64::NAN),
                v["p90_ms"].as_f64().unwrap_or(f64::NAN),
                v["runs"],
                v["threads"],
                // A table with a reference block predicts ratio × its scale:
                // the comparable figure, named as such.
                v["reference_scaled_ms"]
                    .as_f64()
                    .map_or(String::new(), |ms| format!(
                        "; {:.3} × the reference block = **{ms:.3} ms** in the table's units",
                        v["ratio_to_reference"].as_f64().unwrap_or(f64::NAN)
                    )),
                v["predicted_ms"].as_f64().unwrap_or(f64::NAN),
                if v["emulated"].as_bool() == Some(true) {
                    " Emulated: these times are not device latency."
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(md, "\n## Time per step\n\n| step | seconds |\n|---|---|");
    let steps = read_steps(&job.run);
    let mut total = 0.0;
    for name in step_names(job.stages()) {
        if let Some(s) = steps.get(&name) {
            total += s.seconds;
            let _ = writeln!(
                md,
                "| {name} | {:.1}{} |",
                s.seconds,
                if s.done { "" } else { " (unfinished)" }
            );
        }
    }
    let _ = writeln!(md, "| total | {total:.1} |");
    write_atomic(&job.path("report.md"), md.as_bytes())?;
    Ok(())
}
