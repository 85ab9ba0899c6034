//! Building a latency table: every block of a space measured once per pass
//! (`noise.passes` sweeps over the block list, an entry standing for its
//! fastest visit), the table rewritten atomically after each visit so a kill
//! loses at most the visit in flight, visits already in the table skipped, a
//! sentinel block re-measured now and then to catch drift (thermal
//! throttling, frequency changes).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;
use padnas_agent::proto::{AgentInfo, BenchLimits};
use serde::Serialize;

use super::link::AgentLink;
use super::link::BlockModel;
use super::measure::measure_block;
use super::table::{Entry, SentinelRecord, SessionRecord, Table};
use super::{LatencyError, now_rfc3339};
use crate::onnx;
use crate::space::BlockKey;
use crate::target::Target;

/// Where a table goes by default: `<dir>/<target>-<cpu>/<space>.json` for a
/// device, `<dir>/emulated/<target>/<space>.json` under emulation, so
/// emulated figures never sit among device tables.
pub fn default_table_path(
    dir: &Path,
    target: &Target,
    info: &AgentInfo,
    space_name: &str,
) -> PathBuf {
    let file = format!("{}.json", slug(space_name));
    if target.emulated() {
        dir.join("emulated").join(&target.name).join(file)
    } else {
        dir.join(format!("{}-{}", target.name, cpu_slug(&info.cpu)))
            .join(file)
    }
}

/// A CPU model as a path component: `AMD EPYC 7B13` → `amd-epyc-7b13`,
/// `Intel(R) Xeon(R) CPU @ 2.20GHz` → `intel-xeon`.
pub fn cpu_slug(cpu: &str) -> String {
    // The clock after `@` and the trademark marks say nothing about which
    // CPU it is, and would make the directory name long and unstable.
    let base = cpu.split('@').next().unwrap_or(cpu).to_lowercase();
    let base = base.replace("(r)", " ").replace("(tm)", " ");
    let words: Vec<&str> = base
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && *w != "cpu" && *w != "processor")
        .collect();
    let s: String = words.join("-").chars().take(48).collect();
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "unknown-cpu".to_string()
    } else {
        s
    }
}

fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        format!("space{out}")
    } else {
        out
    }
}

/// What a profile run did; printed as one JSON line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileSummary {
    /// Entries of the space now in the table.
    pub entries: usize,
    /// Visits measured by this run (entries × passes for a fresh table).
    pub measured_now: usize,
    /// Entries that already had every pass, not measured again.
    pub skipped: usize,
    /// Passes asked for (`noise.passes`).
    pub passes: u32,
    /// Sentinel measurements by this run.
    pub sentinels_now: usize,
    /// Whether the table has ever seen drift past the threshold.
    pub drift_detected: bool,
    /// Entries of this run whose interval did not reach the target.
    pub unconverged_now: usize,
    /// Reconnections to the agent during this run.
    pub reconnects: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// The table file.
    pub out: PathBuf,
}

/// A session record for `info`.
pub fn session_record(
    info: &AgentInfo,
    command: &[String],
    reconnect: bool,
    entries_before: usize,
) -> SessionRecord {
    SessionRecord {
        started: now_rfc3339(),
        command: command.to_vec(),
        reconnect,
        entries_before,
        governor: info.governor.clone(),
        cur_freq_khz: info.cur_freq_khz,
        temperature_c: info.temperature_c,
    }
}

/// Checks that an agent is the one the table was measured with.
pub fn check_agent(table: &Table, info: &AgentInfo, path: &Path) -> Result<(), LatencyError> {
    let h = &table.header;
    let checks: [(&'static str, &str, &str); 4] = [
        ("cpu", &h.cpu, &info.cpu),
        ("arch", &h.arch, &info.arch),
        ("agent_version", &h.agent_version, &info.agent_version),
        ("tract_version", &h.tract_version, &info.tract_version),
    ];
    for (field, a, b) in checks {
        if a != b {
            return Err(LatencyError::Mismatch {
                path: path.to_path_buf(),
                field,
                table: a.to_string(),
                now: b.to_string(),
            });
        }
    }
    Ok(())
}

/// How blocks reach the agent: ONNX for the Linux agent, int8 block
/// descriptions for the microcontroller firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFormat {
    /// ONNX with seeded random weights ([`onnx::BLOCK_SEED`]).
    Onnx,
    /// An int8 block from the same seed ([`crate::memory::int8_block`]).
    Int8,
}

/// A block made ready to send.
enum Prepared {
    Onnx(Vec<u8>),
    Int8(padnas_agent::proto::Int8Block),
}

impl Prepared {
    fn new(key: &BlockKey, format: BlockFormat, what: &str) -> Result<Prepared, LatencyError> {
        Ok(match format {
            BlockFormat::Onnx => {
                Prepared::Onnx(onnx::write_block(key, onnx::BLOCK_SEED).map_err(|source| {
                    LatencyError::Onnx {
                        what: what.to_string(),
                        cause: source,
                    }
                })?)
            }
            BlockFormat::Int8 => Prepared::Int8(crate::memory::int8_block(key, onnx::BLOCK_SEED)),
        })
    }

    fn model(&self) -> BlockModel<'_> {
        match self {
            Prepared::Onnx(bytes) => BlockModel::Onnx(bytes),
            Prepared::Int8(block) => BlockModel::Int8(*block),
        }
    }
}

/// Measures every block of `blocks` through `link` until it has
/// `noise.passes` visits in `table`, saving `table` to `path` after each
/// visit. `limits` gives threads and pinning;
/// the noise settings are the table header's.
#[allow(clippy::too_many_arguments)]
pub fn profile(
    table: &mut Table,
    path: &Path,
    blocks: &[BlockKey],
    format: BlockFormat,
    limits: &BenchLimits,
    link: &mut AgentLink<'_>,
    command: &[String],
    progress: &ProgressBar,
) -> Result<ProfileSummary, LatencyError> {
    let started = Instant::now();
    let generation_before = link.generation();
    let total = blocks.len();
    let passes = table.header.noise.passes.max(1);
    let visits = |t: &Table, k: &BlockKey| t.entries.get(k).map_or(0, Entry::visits);
    let to_measure: usize = blocks
        .iter()
        .map(|k| (passes as usize).saturating_sub(visits(table, k)))
        .sum();
    let skipped = blocks
        .iter()
        .filter(|k| visits(table, k) >= passes as usize)
        .count();
    let mut run = ProfileRun {
        table,
        path,
        format,
        limits,
        link,
        command,
        sentinels_now: 0,
    };
    let mut measured_now = 0usize;
    let mut unconverged_now = 0usize;
    progress.set_length(to_measure as u64);
    let result = (|| -> Result<(), LatencyError> {
        let every = run.table.header.noise.sentinel_every;
        if to_measure > 0 && every > 0 {
            run.sentinel()?;
        }
        // Pass by pass over the whole list, so that the visits to one block
        // lie a sweep apart rather than back to back: a slow spell of the
        // machine then spoils one visit of many blocks, not every visit of one.
        for pass in 1..=passes as usize {
            let todo: Vec<BlockKey> = blocks
                .iter()
                .filter(|k| visits(run.table, k) < pass)
                .copied()
                .collect();
            for key in &todo {
                let what = key.to_string();
                progress.set_message(if passes > 1 {
                    format!("{what} (pass {pass}/{passes})")
                } else {
                    what.clone()
                });
                let block = Prepared::new(key, run.format, &what)?;
                let noise = run.table.header.noise.clone();
                let m = run
                    .link
                    .run(|d| measure_block(d, block.model(), &what, run.limits, &noise))?;
                run.record_reconnects()?;
                let visit = Entry::from_measured(&m, now_rfc3339());
                if !visit.converged {
                    unconverged_now += 1;
                    tracing::warn!(
                        "{what}: median {:.4} ms known only to ±{} after {} runs (target ±{}%)",
                        visit.median_ms,
                        visit
                            .ci95_halfwidth_pct
                            .map_or("?".to_string(), |h| format!("{h:.1}%")),
                        visit.runs,
                        noise.ci_target_pct
                    );
                }
                tracing::debug!(
                    "{what}: {:.4} ms ({} runs, pass {pass})",
                    visit.median_ms,
                    visit.runs
                );
                let entry = match run.table.entries.remove(key) {
                    Some(earlier) => earlier.with_visit(visit),
                    None if passes > 1 => Entry {
                        visit_medians_ms: vec![visit.median_ms],
                        ..visit
                    },
                    None => visit,
                };
                run.table.entries.insert(*key, entry);
                run.table.header.updated = now_rfc3339();
                run.table.save(run.path)?;
                measured_now += 1;
                progress.inc(1);
                if every > 0 && measured_now.is_multiple_of(every) && measured_now < to_measure {
                    run.sentinel()?;
                }
            }
        }
        if measured_now > 0 && every > 0 {
            run.sentinel()?;
        }
        Ok(())
    })();
    let saved = blocks
        .iter()
        .filter(|k| run.table.entries.contains_key(k))
        .count();
    if let Err(e) = result {
        return Err(LatencyError::Interrupted {
            path: path.to_path_buf(),
            saved,
            total,
            cause: Box::new(e),
        });
    }
    Ok(ProfileSummary {
        entries: saved,
        measured_now,
        skipped,
        passes,
        sentinels_now: run.sentinels_now,
        drift_detected: run.table.drift_detected,
        unconverged_now,
        reconnects: run.link.generation() - generation_before,
        seconds: started.elapsed().as_secs_f64(),
        out: path.to_path_buf(),
    })
}

struct ProfileRun<'r, 'l> {
    table: &'r mut Table,
    path: &'r Path,
    format: BlockFormat,
    limits: &'r BenchLimits,
    link: &'r mut AgentLink<'l>,
    command: &'r [String],
    sentinels_now: usize,
}

impl ProfileRun<'_, '_> {
    /// Records (and checks) sessions opened since the last call.
    fn record_reconnects(&mut self) -> Result<(), LatencyError> {
        for info in self.link.take_reconnected() {
            check_agent(self.table, &info, self.path)?;
            let before = self.table.entries.len();
            self.table
                .header
                .sessions
                .push(session_record(&info, self.command, true, before));
        }
        Ok(())
    }

    /// Measures the sentinel block and records its drift.
    fn sentinel(&mut self) -> Result<(), LatencyError> {
        let noise = self.table.header.noise.clone();
        let Some(key) = noise.sentinel_block else {
            return Ok(());
        };
        let what = format!("sentinel {key}");
        let block = Prepared::new(&key, self.format, &what)?;
        let limits = self.limits;
        let m = self
            .link
            .run(|d| measure_block(d, block.model(), &what, limits, &noise))?;
        self.record_reconnects()?;
        let median = m.summary.median;
        let base = self.table.sentinels.first().map_or(median, |s| s.median_ms);
        let drift_pct = if base > 0.0 {
            (median - base) / base * 100.0
        } else {
            0.0
        };
        let drift = drift_pct.abs() > noise.drift_threshold_pct;
        if drift {
            self.table.drift_detected = true;
            tracing::warn!(
                "drift: sentinel {key} now takes {median:.4} ms, {drift_pct:+.1}% from its first \
                 measurement ({base:.4} ms; threshold ±{}%): the CPU may be throttling or changing \
                 frequency; entries measured around now are flagged by this record",
                noise.drift_threshold_pct
            );
        } else {
            tracing::debug!("sentinel {key}: {median:.4} ms ({drift_pct:+.1}%)");
        }
        self.table.sentinels.push(SentinelRecord {
            after_entries: self.table.entries.len(),
            at: now_rfc3339(),
            median_ms: median,
            ci95_halfwidth_pct: m.ci95_halfwidth_pct,
            drift_pct,
            drift,
        });
        self.table.header.updated = now_rfc3339();
        self.table.save(self.path)?;
        self.sentinels_now += 1;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
}
