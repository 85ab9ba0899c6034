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
                run.table
                    .header
                    .noise
                    .lower_sensor_floor(m.learned_floor_ms);
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
        self.table
            .header
            .noise
            .lower_sensor_floor(m.learned_floor_ms);
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
pub(crate) mod tests;
