use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::latency::fake::{Fake, info};
use crate::latency::table::tests::header;
use crate::latency::{BenchAgent, Connection};
use crate::space::Space;

pub(crate) const TINY: &str = "\
name: tiny
input: { channels: 3, height: 16, width: 16 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - { channels: 16, num_layers: 2, stride: 2, first_ops: [k3e3, k5e3], ops: [k3e3, k5e3, id] }
head: { channels: 32 }
";

fn tiny() -> (Space, Vec<BlockKey>) {
    let space = Space::from_yaml_str(TINY, "tiny.yaml").expect("tiny space");
    let blocks: Vec<BlockKey> = space.unique_blocks().into_iter().collect();
    (space, blocks)
}

/// [`profile`] with default limits, a fixed command and no progress bar.
fn run(
    table: &mut Table,
    path: &Path,
    blocks: &[BlockKey],
    link: &mut AgentLink<'_>,
) -> Result<ProfileSummary, LatencyError> {
    let cmd = ["padnas".to_string()];
    let pb = ProgressBar::hidden();
    profile(
        table,
        path,
        blocks,
        BlockFormat::Onnx,
        &BenchLimits::default(),
        link,
        &cmd,
        &pb,
    )
}

fn new_table(space: &Space) -> Table {
    let mut h = header();
    h.noise.sentinel_every = 3;
    h.noise.sentinel_block = Some(space.stem_block());
    Table::new(h)
}

fn link_to(fakes: Vec<Fake>) -> AgentLink<'static> {
    let mut fakes: VecDeque<Fake> = fakes.into();
    let first = fakes.pop_front().expect("one fake");
    let connect = move || {
        fakes
            .pop_front()
            .map(|f| Connection {
                device: Box::new(f) as Box<dyn BenchAgent>,
                info: info(),
            })
            .ok_or_else(|| LatencyError::InvalidArgument("no agent".into()))
    };
    AgentLink::new(
        Connection {
            device: Box::new(first),
            info: info(),
        },
        Box::new(connect),
        2,
    )
    .with_backoff(Duration::ZERO)
}

#[test]
fn cpu_slugs_are_short_and_stable() {
    assert_eq!(cpu_slug("AMD EPYC"), "amd-epyc");
    assert_eq!(
        cpu_slug("AMD EPYC 7B13 64-Core Processor"),
        "amd-epyc-7b13-64-core"
    );
    assert_eq!(cpu_slug("Intel(R) Xeon(R) CPU @ 2.20GHz"), "intel-xeon");
    assert_eq!(cpu_slug("Cortex-A72"), "cortex-a72");
    assert_eq!(cpu_slug("  "), "unknown-cpu");
    assert_eq!(slug("proxyless basic/2"), "proxyless-basic-2");
}

#[test]
fn builds_then_resumes_without_remeasuring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.json");
    let (space, blocks) = tiny();
    assert_eq!(blocks.len(), 7);
    let mut table = new_table(&space);
    // Build only the first four entries (as if killed after them).
    let mut link = link_to(vec![Fake::steady(1.0)]);
    let s = run(&mut table, &path, &blocks[..4], &mut link).expect("profile");
    assert_eq!((s.entries, s.measured_now, s.skipped), (4, 4, 0));
    assert_eq!(s.sentinels_now, 3, "start, after 3, end");
    let first = Table::load(&path).expect("saved");
    assert_eq!(first.entries.len(), 4);

    // Resume on the whole space: the four are skipped and kept as they were.
    let mut table = Table::load(&path).expect("load");
    let mut link = link_to(vec![Fake::steady(1.0)]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("profile");
    assert_eq!((s.entries, s.measured_now, s.skipped), (7, 3, 4));
    assert_eq!(s.measured_now, s.entries - s.skipped);
    let done = Table::load(&path).expect("saved");
    for (k, e) in &first.entries {
        assert_eq!(done.entries.get(k), Some(e), "{k} untouched");
    }
    for e in done.entries.values() {
        assert!(e.p10_ms <= e.median_ms && e.median_ms <= e.p90_ms);
        assert!(e.runs >= done.header.noise.min_runs);
        assert!(e.converged);
    }
    assert!(!done.drift_detected);

    // Nothing left: a third run measures nothing, not even the sentinel.
    let mut link = link_to(vec![Fake::steady(1.0)]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("profile");
    assert_eq!((s.measured_now, s.skipped, s.sentinels_now), (0, 7, 0));
}

#[test]
fn passes_keep_the_fastest_visit_and_resume_between_visits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.json");
    let (space, blocks) = tiny();
    let n = blocks.len();
    // A block costs its ONNX size (so every block differs), times the
    // machine's speed at that request.
    fn size(onnx: &[u8]) -> f64 {
        onnx.len() as f64 / 1000.0
    }
    let cost = |k: &BlockKey| size(&onnx::write_block(k, onnx::BLOCK_SEED).unwrap());
    let mut table = new_table(&space);
    table.header.noise.sentinel_every = 0;
    table.header.noise.passes = 3;

    // The machine is 1.5× slower for the whole first sweep (7 benches,
    // one per visit), and the agent drops for good after 10 benches:
    // three blocks have their second visit, four do not.
    let mut link = link_to(vec![Fake {
        cost: Some(size),
        phase: |b| if b <= 7 { 1.5 } else { 1.0 },
        drop_after: Some(10),
        ..Fake::steady(1.0)
    }]);
    let e = run(&mut table, &path, &blocks, &mut link).expect_err("dropped");
    assert!(
        matches!(e, LatencyError::Interrupted { saved: 7, .. }),
        "{e}"
    );
    let saved = Table::load(&path).expect("saved");
    let mut visits: Vec<usize> = saved.entries.values().map(Entry::visits).collect();
    visits.sort();
    assert_eq!(visits, [1, 1, 1, 1, 2, 2, 2]);
    for (k, e) in &saved.entries {
        assert_eq!(
            e.visit_medians_ms.len(),
            e.visits(),
            "{k}: every visit listed"
        );
        let slow = e.visit_medians_ms[0] / cost(k);
        assert!(
            (slow - 1.5).abs() < 0.01,
            "{k}: first sweep {slow}× its cost"
        );
    }

    // Resumed on a steady machine: only the missing visits are measured
    // (four second visits, seven third ones), none twice.
    let mut table = Table::load(&path).expect("load");
    let mut link = link_to(vec![Fake {
        cost: Some(size),
        phase: |_| 1.0,
        ..Fake::steady(1.0)
    }]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("resumed");
    assert_eq!((s.measured_now, s.skipped, s.passes), (4 + n, 0, 3));
    let done = Table::load(&path).expect("saved");
    for (k, e) in &done.entries {
        assert_eq!(e.visits(), 3, "{k}");
        // The entry is its fastest visit, not the slow first sweep nor a mean.
        let r = e.median_ms / cost(k);
        assert!((r - 1.0).abs() < 0.01, "{k}: entry {r}× its cost");
        assert!(e.p10_ms <= e.median_ms && e.median_ms <= e.p90_ms);
    }

    // Finished: nothing measured again; a fourth pass adds one visit each.
    let mut table = done;
    let mut link = link_to(vec![Fake::steady(1.0)]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("nothing to do");
    assert_eq!((s.measured_now, s.skipped), (0, n));
    table.header.noise.passes = 4;
    let mut link = link_to(vec![Fake {
        cost: Some(size),
        phase: |_| 1.0,
        ..Fake::steady(1.0)
    }]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("fourth pass");
    assert_eq!(s.measured_now, n);
    assert!(table.entries.values().all(|e| e.visits() == 4));
}

#[test]
fn a_dropped_device_is_reconnected_then_reported_with_the_saved_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.json");
    let (space, blocks) = tiny();

    // Drops after 3 benches; the second agent finishes the job.
    let mut table = new_table(&space);
    let mut link = link_to(vec![
        Fake {
            drop_after: Some(3),
            ..Fake::steady(1.0)
        },
        Fake::steady(1.0),
    ]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("reconnected");
    assert_eq!((s.entries, s.reconnects), (7, 1));
    assert!(table.header.sessions.iter().any(|r| r.reconnect));

    // Every agent drops: the error says how much is saved.
    let path2 = dir.path().join("t2.json");
    let mut table = new_table(&space);
    let mut link = link_to(vec![
        Fake {
            drop_after: Some(4),
            ..Fake::steady(1.0)
        },
        Fake {
            drop_after: Some(0),
            ..Fake::steady(1.0)
        },
    ]);
    let e = run(&mut table, &path2, &blocks, &mut link).expect_err("lost");
    let saved = Table::load(&path2).expect("saved").entries.len();
    assert!((1..7).contains(&saved), "{saved}");
    match &e {
        LatencyError::Interrupted {
            saved: s, total: 7, ..
        } => assert_eq!(*s, saved),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{saved} of 7 entries are saved")) && msg.contains("t2.json"),
        "{msg}"
    );
}

#[test]
fn another_agent_after_a_reconnect_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.json");
    let (space, blocks) = tiny();
    let mut table = new_table(&space);
    let first = Fake {
        drop_after: Some(2),
        ..Fake::steady(1.0)
    };
    let mut link = AgentLink::new(
        Connection {
            device: Box::new(first),
            info: info(),
        },
        Box::new(|| {
            let mut other = info();
            other.agent_version = "9.0.0".into();
            Ok(Connection {
                device: Box::new(Fake::steady(1.0)),
                info: other,
            })
        }),
        2,
    )
    .with_backoff(Duration::ZERO);
    let e = run(&mut table, &path, &blocks, &mut link).expect_err("mismatch");
    assert!(e.to_string().contains("agent_version"), "{e}");
}

#[test]
fn drift_is_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.json");
    let (space, blocks) = tiny();
    let mut table = new_table(&space);
    // The machine slows down by 20% after a few benches.
    let calls = Rc::new(Cell::new(0usize));
    let c = calls.clone();
    let mut fake = Fake::steady(1.0);
    fake.draw = Box::new(move |i| {
        c.set(c.get() + 1);
        let slow = if c.get() > 60 { 1.2 } else { 1.0 };
        slow * (1.0 + 0.001 * (i % 5) as f64)
    });
    let mut link = link_to(vec![fake]);
    let s = run(&mut table, &path, &blocks, &mut link).expect("profile");
    assert!(s.drift_detected);
    let t = Table::load(&path).expect("load");
    assert!(t.drift_detected);
    assert!(!t.sentinels[0].drift);
    let last = t.sentinels.last().expect("sentinel");
    assert!(
        last.drift && (last.drift_pct - 20.0).abs() < 1.0,
        "{last:?}"
    );
}
