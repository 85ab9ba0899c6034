//! Ground truth and scoring: the stratified draw, resumable measurement,
//! the ceiling, and scoring a real (tiny) supernet.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tch::Device;

use super::truth::*;
use super::*;
use crate::config::{Augment, TrainConfig};
use crate::search::arch::tests::{fmnist_small, model};
use crate::search::{OneShotSettings, Window};
use crate::space::Space;
use crate::supernet::tests::{TINY, synthetic};
use crate::supernet::{StepSampler, Supernet, TrainOptions, train as supernet_train};

#[test]
fn the_draw_spreads_over_latency_with_half_inside_the_window() {
    let space = fmnist_small();
    let m = model(&space);
    let window = Window::from_quantiles(&m, &space, 0.2, 0.6, 2000, 1).expect("window");
    let draw = draw_stratified(&space, &m, &window, 20, 2000, 0).expect("draw");
    let (archs, [lo, hi]) = (draw.archs, draw.range_ms);
    assert_eq!(archs.len(), 20);
    let distinct: BTreeSet<String> = archs.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(distinct.len(), 20, "distinct");
    for (a, ms) in &archs {
        space.check_arch(a).expect("in the space");
        let idx: Vec<usize> = space
            .layers()
            .iter()
            .zip(&a.ops)
            .map(|(l, op)| l.ops.iter().position(|o| o == op).expect("op"))
            .collect();
        assert!((m.ms(&idx) - ms).abs() < 1e-12, "its predicted latency");
    }
    let inside: Vec<f64> = archs
        .iter()
        .map(|(_, ms)| *ms)
        .filter(|&ms| window.contains(ms))
        .collect();
    assert_eq!(inside.len(), 10, "half inside the window");
    // One per equal-width bin across the window.
    let width = (window.hi_ms - window.lo_ms) / 10.0;
    let mut bins: Vec<usize> = inside
        .iter()
        .map(|ms| (((ms - window.lo_ms) / width) as usize).min(9))
        .collect();
    bins.sort_unstable();
    bins.dedup();
    assert!(bins.len() >= 9, "spread across the window: {inside:?}");
    // The others reach both tails, far beyond what a uniform draw gives.
    let below = archs.iter().filter(|(_, ms)| *ms < window.lo_ms).count();
    let above = archs.iter().filter(|(_, ms)| *ms > window.hi_ms).count();
    assert!(below >= 2 && above >= 2, "{below} below, {above} above");
    let min = archs.iter().map(|a| a.1).fold(f64::INFINITY, f64::min);
    let max = archs.iter().map(|a| a.1).fold(0.0, f64::max);
    assert!(min < lo + (hi - lo) * 0.15 && max > hi - (hi - lo) * 0.15);
    // Seeded.
    let again = draw_stratified(&space, &m, &window, 20, 2000, 0).expect("draw");
    assert_eq!(again.archs, archs);
    let other = draw_stratified(&space, &m, &window, 20, 2000, 1).expect("draw");
    assert_ne!(other.archs, archs);
    assert!(draw_stratified(&space, &m, &window, 1, 2000, 0).is_err());
    assert!(draw_stratified(&space, &m, &window, 20, 10, 0).is_err());
}

/// (architecture, inside the window, (seed, validation accuracy) of each run).
type ArchSpec<'a> = (&'a str, bool, &'a [(u64, f64)]);

fn truth(archs: &[ArchSpec<'_>], seeds: &[u64]) -> TruthFile {
    TruthFile {
        format: TRUTH_FORMAT,
        space: "tiny".into(),
        space_hash: Space::from_yaml_str(TINY, "tiny").expect("space").hash(),
        config: "job.yaml".into(),
        data: DataInfo {
            kind: "fashion-mnist".into(),
            split_seed: 1,
            val_split: 0.1,
            val_images: 60,
            test_images: 60,
            pooled_images: None,
        },
        budget: Budget::of(&TrainConfig::default(), Augment::default(), 120),
        seeds: seeds.to_vec(),
        latency: LatencyInfo {
            table: "t.json".into(),
            label: "cpu".into(),
            window_ms: [1.0, 2.0],
            range_ms: [0.5, 3.0],
        },
        draw: DrawInfo {
            seed: 0,
            candidates: 10,
            in_window: 1,
            outside: 1,
            named: false,
        },
        command: "test".into(),
        padnas_version: "0".into(),
        archs: archs
            .iter()
            .map(|(a, inside, runs)| TruthArch {
                arch: a.to_string(),
                predicted_ms: if *inside { 1.5 } else { 2.5 },
                in_window: *inside,
                parameters: None,
                runs: runs.iter().map(|&(seed, acc)| run(seed, acc)).collect(),
            })
            .collect(),
    }
}

fn run(seed: u64, val_accuracy: f64) -> TruthRun {
    TruthRun {
        seed,
        val_accuracy,
        test_accuracy: None,
        pooled_accuracy: None,
        steps: 1,
        seconds: 0.0,
        threads: 1,
        cpu: None,
        commit: None,
        date: "now".into(),
    }
}

#[test]
fn an_interrupted_measurement_resumes_without_training_anything_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("truth.json");
    let no_runs: &[(u64, f64)] = &[];
    let mut file = truth(
        &[
            ("k3e1,k3e3,k3e3", true, no_runs),
            ("k5e1,k5e2,id", false, no_runs),
            ("k3e1,k5e2,k3e3", true, no_runs),
        ],
        &[1, 2],
    );
    file.save(&path).expect("save");
    let trained = Mutex::new(Vec::new());
    let train = |a: &TruthArch, seed: u64| {
        let mut t = trained.lock().unwrap();
        t.push((a.arch.clone(), seed));
        if t.len() == 3 {
            return Err(RankError::Invalid("killed".into()));
        }
        Ok((run(seed, 0.5 + seed as f64 / 10.0), 42))
    };
    assert!(measure(&mut file, &path, None, 1, train).is_err());
    // What finished before the failure is on disk.
    let mut file = TruthFile::load(&path).expect("load").expect("exists");
    assert_eq!(file.archs[0].runs.len(), 2);
    assert_eq!(file.archs[0].parameters, Some(42));
    assert_eq!(file.missing().len(), 4);
    let done_before: Vec<(String, u64)> = trained.lock().unwrap()[..2].to_vec();

    // --limit: one more, then stop.
    trained.lock().unwrap().clear();
    let again = |a: &TruthArch, s: u64| {
        trained.lock().unwrap().push((a.arch.clone(), s));
        Ok((run(s, 0.7), 7))
    };
    assert_eq!(
        measure(&mut file, &path, Some(1), 1, again).expect("measure"),
        1
    );
    assert_eq!(
        measure(&mut file, &path, None, 1, again).expect("measure"),
        3
    );
    let now: Vec<(String, u64)> = trained.lock().unwrap().clone();
    assert_eq!(now.len(), 4, "exactly the missing pairs: {now:?}");
    for p in &done_before {
        assert!(!now.contains(p), "{p:?} trained twice");
    }
    let file = TruthFile::load(&path).expect("load").expect("exists");
    assert!(file.missing().is_empty());
    assert!(file.archs.iter().all(|a| a.runs.len() == 2));
    assert_eq!(
        file.archs[0].accuracy(1),
        Some(0.6),
        "kept from the first call"
    );
}

/// Two workers: both trainings under way at once, every missing pair
/// trained exactly once, and a failure in one keeps what the other
/// finishes.
#[test]
fn parallel_workers_train_each_pair_once_and_keep_finished_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("truth.json");
    let no_runs: &[(u64, f64)] = &[];
    let archs = [
        ("k3e1,k3e3,k3e3", true, no_runs),
        ("k5e1,k5e2,id", false, no_runs),
        ("k3e1,k5e2,k3e3", true, no_runs),
    ];
    let mut file = truth(&archs, &[1, 2]);
    // (running now, most at once, pairs trained)
    let state = Mutex::new((0usize, 0usize, Vec::new()));
    let changed = Condvar::new();
    let train = |a: &TruthArch, seed: u64| {
        let mut g = state.lock().unwrap();
        g.0 += 1;
        g.1 = g.1.max(g.0);
        g.2.push((a.arch.clone(), seed));
        changed.notify_all();
        // The first training waits (with a deadline) for a second to start:
        // with one worker at a time it never would.
        if g.2.len() == 1 {
            g = changed
                .wait_timeout_while(g, Duration::from_secs(20), |g| g.2.len() < 2)
                .unwrap()
                .0;
        }
        g.0 -= 1;
        Ok((run(seed, 0.5), 1))
    };
    assert_eq!(
        measure(&mut file, &path, None, 2, train).expect("measure"),
        6
    );
    let g = state.lock().unwrap();
    assert_eq!(g.1, 2, "two trainings at once");
    let pairs: BTreeSet<(String, u64)> = g.2.iter().cloned().collect();
    assert_eq!(
        (g.2.len(), pairs.len()),
        (6, 6),
        "each pair once: {:?}",
        g.2
    );
    drop(g);
    assert!(
        TruthFile::load(&path)
            .unwrap()
            .unwrap()
            .missing()
            .is_empty()
    );

    // The first training fails while the second is under way: the second
    // is kept, no third starts.
    let mut file = truth(&archs, &[1, 2]);
    file.save(&path).expect("save");
    let calls = Mutex::new(0usize);
    let failing = |_: &TruthArch, seed: u64| {
        let mut c = calls.lock().unwrap();
        *c += 1;
        changed.notify_all();
        if *c == 1 {
            // Fails once the second training is under way.
            let _ = changed.wait_timeout_while(c, Duration::from_secs(20), |c| *c < 2);
            return Err(RankError::Invalid("out of memory".into()));
        }
        drop(c);
        // Finishes after the failure is recorded.
        std::thread::sleep(Duration::from_millis(300));
        Ok((run(seed, 0.5), 1))
    };
    let e = measure(&mut file, &path, None, 2, failing).expect_err("fails");
    assert!(e.to_string().contains("out of memory"), "{e}");
    let kept = TruthFile::load(&path).unwrap().unwrap();
    assert_eq!(
        kept.missing().len(),
        5,
        "the other worker's training is kept"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        2,
        "no training starts after a failure"
    );
}

#[test]
fn the_pooled_accuracy_ranks_when_present() {
    let mut file = truth(&[("a", true, &[(1, 0.80), (2, 0.90)])], &[1, 2]);
    file.archs[0].runs[0].pooled_accuracy = Some(0.85);
    assert_eq!(file.archs[0].accuracy(1), Some(0.85));
    assert_eq!(file.archs[0].accuracy(2), Some(0.90), "no pooled accuracy");
    let mut pooled = file.clone();
    pooled.data.pooled_images = Some(36000);
    let e = file
        .check_continues(&pooled, Path::new("t.json"))
        .expect_err("other scoring images");
    assert!(e.to_string().contains("data"), "{e}");
}

#[test]
fn a_file_continues_only_with_its_own_settings() {
    let old = truth(&[], &[1, 2]);
    let p = Path::new("t.json");
    old.check_continues(&old.clone(), p).expect("same");
    let mut more = old.clone();
    more.seeds = vec![1, 2, 3];
    old.check_continues(&more, p).expect("more seeds are added");
    let mut fewer = old.clone();
    fewer.seeds = vec![1];
    assert!(old.check_continues(&fewer, p).is_err());
    let mut longer = old.clone();
    longer.budget.epochs += 1;
    let e = old.check_continues(&longer, p).expect_err("budget");
    assert!(e.to_string().contains("budget"), "{e}");
    let mut split = old.clone();
    split.data.split_seed = 9;
    assert!(old.check_continues(&split, p).is_err());
    let mut space = old.clone();
    space.space_hash = "x".into();
    assert!(old.check_continues(&space, p).is_err());
}

#[test]
fn lower_loss_ranks_higher() {
    let score = |arch: &str, loss: Option<f64>, standalone: f64| ArchScore {
        arch: arch.into(),
        predicted_ms: 1.0,
        in_window: true,
        standalone,
        one_shot: 0.5,
        one_shot_loss: loss,
        one_shot_repeats: Vec::new(),
    };
    // Losses in the reverse order of the accuracies: a perfect ranking.
    let archs = vec![
        score("a", Some(0.30), 0.91),
        score("b", Some(0.40), 0.90),
        score("c", Some(0.50), 0.89),
        score("d", None, 0.95),
    ];
    let c = loss_ranking(&archs, 50);
    assert_eq!(
        c.n, 3,
        "a score written before losses were kept is left out"
    );
    assert_eq!(c.kendall_tau_b, Some(1.0));
    // Losses in the same order as the accuracies rank backwards.
    let backwards: Vec<ArchScore> = archs
        .iter()
        .map(|a| ArchScore {
            one_shot_loss: a.one_shot_loss.map(|l| 1.0 - l),
            ..a.clone()
        })
        .collect();
    assert_eq!(loss_ranking(&backwards, 50).kendall_tau_b, Some(-1.0));
}

#[test]
fn the_ceiling_is_seed_a_against_seed_b() {
    let file = truth(
        &[
            ("a", true, &[(1, 0.1), (2, 0.1)]),
            ("b", true, &[(1, 0.2), (2, 0.2)]),
            ("c", false, &[(1, 0.3), (2, 0.4)]),
            ("d", false, &[(1, 0.4), (2, 0.3)]),
            ("e", true, &[(1, 0.5)]),
        ],
        &[1, 2],
    );
    let c = file.ceiling(false, 200).expect("two seeds");
    assert_eq!(c.n, 4, "e has one seed");
    // C = 5, D = 1 over 6 pairs.
    assert!((c.kendall_tau_b.expect("tau") - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(file.ceiling(true, 200).expect("ceiling").n, 2);
    assert_eq!(file.archs[2].mean_accuracy(&file.seeds), Some(0.35));
    assert_eq!(file.archs[4].mean_accuracy(&file.seeds), None);
    assert!(truth(&[], &[1]).ceiling(false, 10).is_none());
}

#[test]
fn the_spread_sets_architectures_against_seeds() {
    // In points: a runs 10 and 30, b 40 and 40. Means 20 and 40: sd
    // √200. Seed means 25 and 35, grand mean 30: residuals ∓5 and ±5,
    // 100 over (2 − 1)(2 − 1) degrees of freedom: sd 10.
    let file = truth(
        &[
            ("a", true, &[(1, 0.1), (2, 0.3)]),
            ("b", false, &[(1, 0.4), (2, 0.4)]),
            ("c", true, &[(1, 0.9)]),
        ],
        &[1, 2],
    );
    let s = file.spread(false).expect("two complete");
    assert_eq!(s.n, 2, "c has one seed");
    assert!((s.between_sd_pct - 200f64.sqrt()).abs() < 1e-9, "{s:?}");
    assert!((s.seed_sd_pct - 10.0).abs() < 1e-9, "{s:?}");
    // 200 − 100 / 2 = 150.
    assert!(
        (s.architecture_sd_pct - 150f64.sqrt()).abs() < 1e-9,
        "{s:?}"
    );
    // r² = 150 / 200, r = cos(π/6): τ = (2/π)·(π/3) = 2/3.
    assert!((s.reachable_tau_b - 2.0 / 3.0).abs() < 1e-9, "{s:?}");
    assert!(file.spread(true).is_none(), "one complete inside");
    // Seed 2 better by 20 points for both: no rank moves, so no seed noise,
    // and the means' spread is all the architectures'.
    let shifted = truth(
        &[
            ("a", true, &[(1, 0.1), (2, 0.3)]),
            ("b", false, &[(1, 0.4), (2, 0.6)]),
        ],
        &[1, 2],
    );
    let s = shifted.spread(false).expect("two complete");
    assert!(s.seed_sd_pct.abs() < 1e-9, "{s:?}");
    assert!(
        (s.architecture_sd_pct - s.between_sd_pct).abs() < 1e-9,
        "{s:?}"
    );
    assert!((s.reachable_tau_b - 1.0).abs() < 1e-9, "{s:?}");
    assert!(
        truth(&[("a", true, &[(1, 0.5)])], &[1])
            .spread(false)
            .is_none()
    );
}

#[test]
fn with_four_seeds_the_halves_means_are_compared() {
    // Single seeds disagree on a/b and c/d; the means of seeds {1, 2} and
    // {3, 4} agree on every pair.
    let file = truth(
        &[
            ("a", true, &[(1, 0.10), (2, 0.30), (3, 0.30), (4, 0.11)]),
            ("b", true, &[(1, 0.20), (2, 0.21), (3, 0.10), (4, 0.32)]),
            ("c", false, &[(1, 0.60), (2, 0.50), (3, 0.40), (4, 0.71)]),
            ("d", false, &[(1, 0.50), (2, 0.62), (3, 0.70), (4, 0.43)]),
            ("e", false, &[(1, 0.9), (2, 0.9), (3, 0.9)]),
        ],
        &[1, 2, 3, 4],
    );
    let single = file.ceiling(false, 100).expect("ceiling");
    assert_eq!(single.n, 5, "seeds 1 and 2 of all five");
    assert!(single.kendall_tau_b.expect("tau") < 1.0);
    let halves = file.ceiling_halves(false, 100).expect("four seeds");
    assert_eq!(halves.n, 4, "e lacks seed 4");
    assert_eq!(halves.kendall_tau_b, Some(1.0));
    assert_eq!(file.ceiling_halves(true, 100).expect("inside").n, 2);
    assert!(truth(&[], &[1, 2, 3]).ceiling_halves(false, 10).is_none());
}

#[test]
fn a_supernet_is_scored_on_the_archs_its_space_holds() {
    tch::set_num_threads(1);
    let full = Space::from_yaml_str(TINY, "tiny").expect("space");
    // Pruned: layer 1 loses k5e2.
    let mut ops = full.layer_ops();
    ops[1].retain(|o| o.to_string() != "k5e2");
    let pruned = full.with_layer_ops(&ops).expect("pruned");
    let file = truth(
        &[
            ("k3e1,k3e3,k3e3", true, &[(1, 0.6), (2, 0.62)]),
            ("k5e1,k3e3,id", false, &[(1, 0.7), (2, 0.68)]),
            ("k3e1,k3e3,k5e2", true, &[(1, 0.5), (2, 0.55)]),
            ("k5e1,k3e3,k3e3", false, &[(1, 0.8), (2, 0.79)]),
            ("k3e1,k5e2,k3e3", true, &[(1, 0.9), (2, 0.9)]),
            ("k5e1,k3e3,k5e2", true, &[(1, 0.9)]),
        ],
        &[1, 2],
    );
    // As in a pipeline stage: the supernet holds every tensor of the
    // initial space; only the pruned space's paths count.
    let net = Supernet::new(&full, Device::Cpu, 3).expect("net");
    let (train, val) = (synthetic(96, 1), synthetic(60, 2));
    // A few SPOS epochs, so that paths differ and scores mean something.
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.1,
        ..TrainConfig::default()
    };
    let sampler = StepSampler::new(&net, &pruned, 3).expect("sampler");
    let opts = TrainOptions::new(cfg, 3, Augment::default());
    supernet_train(&net, &sampler, &train, &opts).expect("train");
    let settings = OneShotSettings {
        bn_batches: 2,
        batch_size: 16,
        val_samples: 40,
        seed: 1,
    };
    let s =
        score_supernet(&net, &pruned, &file, &train, &val, &settings, 1, 200, None).expect("score");
    assert_eq!((s.n, s.not_in_space, s.incomplete), (4, 1, 1));
    assert_eq!(s.all.n, 4);
    assert_eq!(s.in_window.n, 2);
    assert_eq!(s.ceiling.expect("ceiling").n, 4);
    // The truth's own scale comes with the score: its complete
    // architectures, pruned ones too (the file's, not the space's).
    assert_eq!(s.truth_spread, file.spread(false));
    assert_eq!(s.truth_spread.expect("spread").n, 5);
    // The loss ranking covers the same architectures, and ranks by lower
    // loss: the loss of each is a positive cross-entropy.
    assert_eq!(s.by_loss.as_ref().expect("by loss").n, 4);
    for a in &s.archs {
        assert!(a.one_shot_loss.is_some_and(|l| l > 0.0), "{a:?}");
        assert!((0.0..=1.0).contains(&a.one_shot), "{a:?}");
        // 40 validation images: accuracy in steps of 1/40.
        assert!(((a.one_shot * 40.0) - (a.one_shot * 40.0).round()).abs() < 1e-9);
    }
    let mid = &s.archs[1];
    assert_eq!(mid.arch, "k5e1,k3e3,id");
    assert!((mid.standalone - 0.69).abs() < 1e-12, "mean of the seeds");
    // Scoring repeats exactly (fixed BN batches, subset and bootstrap).
    let again =
        score_supernet(&net, &pruned, &file, &train, &val, &settings, 1, 200, None).expect("score");
    assert_eq!(again.archs, s.archs);
    assert_eq!(again.all, s.all);
    // Repeats: the first is the search's own evaluation; the others draw
    // other BN batches and validation subsets, and their spread is reported.
    let r =
        score_supernet(&net, &pruned, &file, &train, &val, &settings, 3, 200, None).expect("score");
    let noise = r.noise.clone().expect("noise with 3 repeats");
    assert_eq!(noise.repeats, 3);
    assert!(s.noise.is_none(), "one evaluation: no noise figure");
    for (a, b) in r.archs.iter().zip(&s.archs) {
        assert_eq!(a.one_shot_repeats.len(), 3);
        assert_eq!(
            a.one_shot_repeats[0], b.one_shot,
            "repeat 0 is the search's"
        );
        let mean = a.one_shot_repeats.iter().sum::<f64>() / 3.0;
        assert!((a.one_shot - mean).abs() < 1e-12);
    }
    assert!(
        r.archs
            .iter()
            .any(|a| a.one_shot_repeats[1] != a.one_shot_repeats[0]),
        "other subsets and BN batches change some score"
    );
    assert!(noise.within_sd_pct > 0.0 && noise.between_sd_pct >= 0.0);
    let (s2, v2) = repeat_settings(&settings, &val, 2);
    assert_eq!(v2.len(), 40);
    assert_ne!(s2.seed, settings.seed);
    let none = OneShotSettings {
        val_samples: 0,
        ..settings
    };
    assert!(score_supernet(&net, &pruned, &file, &train, &val, &none, 1, 10, None).is_err());
}

#[test]
fn a_chosen_network_is_judged_against_the_best_random_one_in_the_window() {
    // Ten in-window architectures at 80–89%, each's two seeds 0.4 points
    // apart, and two better ones outside the window, which do not count.
    let names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let runs: Vec<[(u64, f64); 2]> = (0..12)
        .map(|i| {
            let m = if i < 10 { 0.80 + 0.01 * i as f64 } else { 0.95 };
            [(1, m + 0.002), (2, m - 0.002)]
        })
        .collect();
    let specs: Vec<ArchSpec<'_>> = (0..12)
        .map(|i| (names[i].as_str(), i < 10, &runs[i][..]))
        .collect();
    let drawn = truth(&specs, &[1, 2]);
    let chosen = truth(
        &[
            ("x", true, &[(1, 0.90), (2, 0.90)]),
            ("y", true, &[(1, 0.891), (2, 0.889)]),
            ("z", true, &[(1, 0.99)]),
        ],
        &[1, 2],
    );
    let v = versus::versus(&drawn, &chosen).expect("comparable");
    assert_eq!(v.random.n, 10);
    let best = v.random.best.as_ref().expect("a best one");
    assert_eq!(best.arch, "r9");
    assert!((best.mean - 0.89).abs() < 1e-12 && (best.range - 0.004).abs() < 1e-12);
    assert!((v.random.mean - 0.845).abs() < 1e-12);
    assert!((v.random.sd - (0.01f64 * 0.01 * 110.0 / 12.0).sqrt()).abs() < 1e-9);
    assert_eq!(v.seed_spread_n, 12, "the spread counts every complete pair");
    assert!((v.seed_spread.expect("spread") - 0.004).abs() < 1e-12);
    assert_eq!(v.incomplete, 1, "z has one seed");
    let [x, y] = &v.candidates[..] else {
        panic!("two complete candidates: {:?}", v.candidates)
    };
    assert_eq!((x.candidate.arch.as_str(), x.beats), ("x", 10));
    assert!((x.over_best.expect("best") - 0.01).abs() < 1e-12);
    assert!((x.over_mean - 0.055).abs() < 1e-12);
    assert_eq!(x.beats_best_beyond_noise, Some(true));
    // Level with the best: not beyond the noise, though above nine.
    assert_eq!((y.beats, y.beats_best_beyond_noise), (9, Some(false)));

    // Nine random ones are too few for a verdict.
    let fewer = truth(&specs[1..], &[1, 2]);
    let v = versus::versus(&fewer, &chosen).expect("comparable");
    assert_eq!(v.random.n, 9);
    assert_eq!(v.candidates[0].beats_best_beyond_noise, None);
}

#[test]
fn networks_trained_otherwise_are_not_compared() {
    let drawn = truth(&[("a", true, &[(1, 0.8), (2, 0.8)])], &[1, 2]);
    let mut longer = truth(&[("x", true, &[(1, 0.9), (2, 0.9)])], &[1, 2]);
    longer.budget.epochs += 1;
    let e = versus::versus(&drawn, &longer).expect_err("budget");
    assert!(e.to_string().contains("budget"), "{e}");
    let one_seed = truth(&[("x", true, &[(1, 0.9)])], &[1]);
    let e = versus::versus(&drawn, &one_seed).expect_err("seeds");
    assert!(e.to_string().contains("seeds"), "{e}");
    let mut split = truth(&[], &[1, 2]);
    split.data.split_seed = 7;
    assert!(versus::versus(&drawn, &split).is_err());
}
