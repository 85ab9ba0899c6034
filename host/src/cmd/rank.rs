//! `padnas rank …`: the two small tools behind `scripts/experiment-rank`
//! (does one-shot accuracy rank architectures the way stand-alone training
//! does?).
//!
//! - `padnas rank sample --space S --n N --seed K`: N distinct architectures
//!   drawn uniformly from a space, one per line.
//! - `padnas rank tau --file F --x KEY --y KEY`: Kendall's τ-b and Spearman's
//!   ρ between two numeric fields of the records in F; one JSON line.
//! - `padnas rank truth --config C --out F`: the stand-alone ground truth of
//!   C's space (see [`crate::rank::truth`]), measured resumably into F.
//! - `padnas rank score --run R [--weights W] --truth F`: the one-shot
//!   ranking of R's supernets against it; one JSON line per supernet.
//! - `padnas rank versus --truth F --chosen G`: the networks of G (trained
//!   by `rank truth --arch`) against F's best random in-window one.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::latency::stats::{kendall_tau_b, spearman};
use crate::rank::TruthFile;
use crate::rank::versus::versus;
use crate::space::{Arch, Space};

/// `padnas rank` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RankCmd {
    /// Print N distinct architectures drawn uniformly from a space, one per line.
    Sample(SampleArgs),
    /// Kendall τ-b and Spearman ρ between two fields of a set of records; one JSON line.
    Tau(TauArgs),
    /// Train a stand-alone ground truth (architectures stratified by
    /// latency, several seeds each), resumably: rerun to continue.
    Truth(super::truth::TruthArgs),
    /// Score a run's supernets (every stage, or --weights) against a ground
    /// truth: τ-b, ρ, bootstrap intervals, the ceiling; one JSON line each.
    Score(super::truth::ScoreArgs),
    /// The networks a search chose against the best random architecture of
    /// the same window, both trained stand-alone alike; one JSON line.
    Versus(VersusArgs),
}

/// Arguments of `padnas rank versus`.
#[derive(Debug, clap::Args)]
pub struct VersusArgs {
    /// A drawn ground truth (`padnas rank truth`): its in-window
    /// architectures are the random side.
    #[arg(long)]
    pub truth: PathBuf,
    /// The chosen networks trained with the same settings (`padnas rank
    /// truth --arch A --arch B …`).
    #[arg(long)]
    pub chosen: PathBuf,
}

/// Arguments of `padnas rank sample`.
#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// Space YAML, e.g. a run's `space.stage-K.yaml`.
    #[arg(long, short)]
    pub space: PathBuf,
    /// How many architectures (fewer when the space has fewer: then all of them).
    #[arg(long, short)]
    pub n: usize,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `padnas rank tau`.
#[derive(Debug, clap::Args)]
pub struct TauArgs {
    /// Records: a JSON array of objects, or one JSON object per line.
    #[arg(long)]
    pub file: PathBuf,
    /// Numeric field of the first ranking.
    #[arg(long)]
    pub x: String,
    /// Numeric field of the second ranking.
    #[arg(long)]
    pub y: String,
}

/// Runs a `rank` subcommand.
pub fn run(cmd: &RankCmd) -> anyhow::Result<()> {
    match cmd {
        RankCmd::Sample(a) => run_sample(a),
        RankCmd::Tau(a) => run_tau(a),
        RankCmd::Truth(a) => super::truth::run_truth(a),
        RankCmd::Score(a) => super::truth::run_score(a),
        RankCmd::Versus(a) => run_versus(a),
    }
}

fn run_versus(a: &VersusArgs) -> anyhow::Result<()> {
    let load = |p: &PathBuf| -> anyhow::Result<TruthFile> {
        TruthFile::load(p)?.ok_or_else(|| anyhow::anyhow!("{}: no such file", p.display()))
    };
    let (drawn, chosen) = (load(&a.truth)?, load(&a.chosen)?);
    if drawn.draw.named {
        bail!(
            "{}: its architectures were named, not drawn; --truth takes a drawn ground truth",
            a.truth.display()
        );
    }
    println!("{}", serde_json::to_string(&versus(&drawn, &chosen)?)?);
    Ok(())
}

/// `n` distinct architectures of `space`, drawn uniformly (each layer's op
/// uniform, duplicates redrawn) from one `ChaCha8Rng` seeded with `seed`;
/// every architecture, in lexicographic index order, when the space has at
/// most `n`. Distinct because a repeated architecture adds a pair tied on
/// both sides, which says nothing about ranking but costs a retrain.
pub fn sample_distinct(space: &Space, n: usize, seed: u64) -> Vec<Arch> {
    let to_arch = |idx: &[usize]| Arch {
        ops: space
            .layers()
            .iter()
            .zip(idx)
            .map(|(l, &i)| l.ops[i])
            .collect(),
    };
    let total = space.num_architectures_exact();
    if total.is_some_and(|t| t <= n as u128) {
        // Mixed-radix counting over the layers' candidate lists.
        let radix: Vec<usize> = space.layers().iter().map(|l| l.ops.len()).collect();
        let mut idx = vec![0; radix.len()];
        let mut out = Vec::new();
        loop {
            out.push(to_arch(&idx));
            let mut l = radix.len();
            loop {
                if l == 0 {
                    return out;
                }
                l -= 1;
                idx[l] += 1;
                if idx[l] < radix[l] {
                    break;
                }
                idx[l] = 0;
            }
        }
    }
    // More than n architectures exist, so the redraws end (after about
    // n·ln n draws in the worst case, total = n + 1).
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let idx = space.sample_indices(&mut rng);
        if seen.insert(idx.clone()) {
            out.push(to_arch(&idx));
        }
    }
    out
}

fn run_sample(a: &SampleArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let space = Space::load(&a.space)?;
    let archs = sample_distinct(&space, a.n, a.seed);
    if archs.len() < a.n {
        tracing::warn!(
            "{} has only {} architectures: printing all of them instead of {}",
            a.space.display(),
            archs.len(),
            a.n
        );
    }
    for arch in archs {
        println!("{arch}");
    }
    Ok(())
}

/// Parses records: a JSON array, or JSON lines (blank lines skipped).
fn parse_records(text: &str) -> anyhow::Result<Vec<Value>> {
    if text.trim_start().starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(text).context("not a JSON array")?;
        return Ok(v);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
        .collect()
}

/// The (x, y) pairs of records where both fields are numbers, and how many
/// records were skipped (a field missing or null: e.g. a retrain not done).
fn pairs(records: &[Value], x: &str, y: &str) -> (Vec<f64>, Vec<f64>, usize) {
    let (mut xs, mut ys, mut skipped) = (Vec::new(), Vec::new(), 0);
    for r in records {
        match (
            r.get(x).and_then(Value::as_f64),
            r.get(y).and_then(Value::as_f64),
        ) {
            (Some(a), Some(b)) => {
                xs.push(a);
                ys.push(b);
            }
            _ => skipped += 1,
        }
    }
    (xs, ys, skipped)
}

/// The JSON line of `padnas rank tau`.
pub fn tau_summary(records: &[Value], x: &str, y: &str) -> Value {
    let (xs, ys, skipped) = pairs(records, x, y);
    let k = kendall_tau_b(&xs, &ys);
    // Spearman, like τ-b, is undefined with a constant side; say so
    // rather than report stats::spearman's 0.
    let rho = k.tau_b.map(|_| spearman(&xs, &ys));
    json!({
        "x": x,
        "y": y,
        "n": k.n,
        "skipped": skipped,
        "kendall_tau_b": k.tau_b,
        "spearman": rho,
        "concordant": k.concordant,
        "discordant": k.discordant,
        "ties_x": k.ties_x,
        "ties_y": k.ties_y,
    })
}

fn run_tau(a: &TauArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let records = parse_records(&text).with_context(|| format!("parsing {}", a.file.display()))?;
    let line = tau_summary(&records, &a.x, &a.y);
    if line["n"].as_u64().unwrap_or(0) < 2 {
        bail!(
            "{}: fewer than 2 records have numbers in both {} and {}",
            a.file.display(),
            a.x,
            a.y
        );
    }
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::supernet::tests::TINY as SPACE;

    #[test]
    fn sample_distinct_draws_distinct_valid_archs_reproducibly() {
        let space = Space::from_yaml_str(SPACE, "s").expect("space");
        // 2 · 2 · 3 = 12 architectures.
        let a = sample_distinct(&space, 7, 5);
        assert_eq!(a.len(), 7);
        let set: BTreeSet<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(set.len(), 7, "distinct: {a:?}");
        for arch in &a {
            space.check_arch(arch).expect("in the space");
        }
        assert_eq!(a, sample_distinct(&space, 7, 5), "same seed, same draw");
        assert_ne!(a, sample_distinct(&space, 7, 6), "another seed");
        // 11 of 12: the redraws still end.
        assert_eq!(sample_distinct(&space, 11, 1).len(), 11);
    }

    #[test]
    fn sample_distinct_enumerates_a_small_space() {
        let space = Space::from_yaml_str(SPACE, "s").expect("space");
        for n in [12, 20] {
            let all = sample_distinct(&space, n, 0);
            assert_eq!(all.len(), 12);
            let set: BTreeSet<String> = all.iter().map(ToString::to_string).collect();
            assert_eq!(set.len(), 12);
        }
        let all = sample_distinct(&space, 12, 0);
        assert_eq!(all[0].to_string(), "k3e1,k3e3,k3e3");
        assert_eq!(all[11].to_string(), "k5e1,k5e2,id");
    }

    #[test]
    fn tau_reads_arrays_and_lines_and_skips_missing_values() {
        let lines = r#"{"a": 1, "b": 3}
{"a": 2, "b": 4}

{"a": 3, "b": 1}
{"a": 4, "b": 2}
{"a": 5, "b": 5}
{"a": 6, "b": null}
{"a": 7}
"#;
        let recs = parse_records(lines).expect("lines");
        assert_eq!(recs.len(), 7);
        let s = tau_summary(&recs, "a", "b");
        assert_eq!(s["n"], 5);
        assert_eq!(s["skipped"], 2);
        // The no-ties example of stats: C = 6, D = 4 → 0.2.
        assert!((s["kendall_tau_b"].as_f64().expect("tau") - 0.2).abs() < 1e-12);
        // Rank differences 2,2,2,2,0 → ρ = 1 − 6·16/(5·24) = 0.2.
        assert!((s["spearman"].as_f64().expect("rho") - 0.2).abs() < 1e-12);

        let arr = r#"[{"a": 1, "b": 2}, {"a": 2, "b": 2}]"#;
        let s = tau_summary(&parse_records(arr).expect("array"), "a", "b");
        assert_eq!(s["n"], 2);
        assert!(s["kendall_tau_b"].is_null(), "constant side: undefined");
        assert!(s["spearman"].is_null());
        assert!(parse_records("{not json").is_err());
    }
}
