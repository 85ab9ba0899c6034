//! PAD-NAS search: latency-constrained NSGA-II over a layer-wise space
//! ([`nsga2`], [`arch`]), progressive op pruning ([`prune`]), the records a
//! search leaves in a run directory ([`SearchRecord`]) and the plots of the
//! report ([`plot`]).

pub mod arch;
pub mod nsga2;
pub mod plot;
pub mod prune;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use arch::{ArchProblem, LatencyModel, OneShotSettings, Window, one_shot_eval};
pub use nsga2::{Nsga2Config, Problem, State};
pub use prune::{Pruning, prune};

use crate::files::WriteError;
use crate::latency::LatencyError;
use crate::memory::{Footprint, MemoryLimit, MemoryModel};
use crate::space::{Space, SpaceError};
use crate::supernet::SupernetError;

/// Everything that can go wrong in a search or a pruning step.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Settings or inputs that cannot work (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// The latency window admits (almost) no architecture.
    #[error(
        "the latency window admits too few architectures: {found} of {wanted} found, \
         giving up after {tries} draws for the next; widen search.window"
    )]
    NoFeasible {
        /// Feasible individuals found.
        found: usize,
        /// Population size.
        wanted: usize,
        /// Draws tried for the missing one.
        tries: usize,
    },
    /// An architecture or space is invalid.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The latency table is missing entries or unreadable.
    #[error(transparent)]
    Latency(#[from] LatencyError),
    /// A block the int8 memory model cannot cost.
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    /// One-shot evaluation failed.
    #[error(transparent)]
    Supernet(#[from] SupernetError),
    /// A record or plot could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A record could not be read or serialised, or a plot not drawn.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Name of the format of [`SearchRecord`] files.
pub const RECORD_FORMAT: &str = "padnas-search";

/// One evaluated architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// `k3e6,id,…`.
    pub arch: String,
    /// One-shot validation accuracy.
    pub accuracy: f64,
    /// Predicted latency (ms).
    pub latency_ms: f64,
    /// Non-domination rank among all evaluated architectures (0: Pareto).
    pub rank: usize,
    /// int8 flash and peak SRAM, for a microcontroller target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Footprint>,
}

/// A search as saved in a run directory: settings, the resumable NSGA-II
/// state, and once complete the ranked candidates and the Pareto front.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchRecord {
    /// [`RECORD_FORMAT`].
    pub format: String,
    /// Which search (`stage-1`, `final`, …).
    pub stage: String,
    /// Hash of the space searched.
    pub space_hash: String,
    /// Its number of architectures.
    pub num_architectures: f64,
    /// The hard constraint.
    pub window: Window,
    /// The other hard constraint, for a microcontroller target: what a
    /// network's int8 weights and activations may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryLimit>,
    /// NSGA-II settings.
    pub nsga2: Nsga2Config,
    /// How accuracy was measured.
    pub one_shot: OneShotSettings,
    /// Supernet weights used.
    pub weights: PathBuf,
    /// Whether every generation ran.
    pub complete: bool,
    /// Resumable state.
    pub state: State,
    /// Unique architectures evaluated per second of evaluation.
    pub evaluations_per_s: f64,
    /// Every evaluated architecture with its rank (once complete).
    pub candidates: Vec<Candidate>,
}

impl SearchRecord {
    /// Fills `candidates` from the state: every archive entry, ranked over
    /// the whole archive, sorted by rank then latency.
    pub fn rank(&mut self, space: &Space) -> Result<(), SearchError> {
        let objs: Vec<&[f64]> = self
            .state
            .archive
            .iter()
            .map(|e| e.objectives.as_slice())
            .collect();
        let ranks = nsga2::ranks(&objs);
        let memory = match self.memory {
            Some(_) => Some(MemoryModel::new(space)?),
            None => None,
        };
        let mut out = Vec::with_capacity(ranks.len());
        for (e, r) in self.state.archive.iter().zip(ranks) {
            out.push(Candidate {
                arch: space.arch_from_indices(&e.genome)?.to_string(),
                accuracy: 1.0 - e.objectives[0],
                latency_ms: e.objectives[1],
                rank: r,
                memory: memory.as_ref().map(|m| m.footprint(&e.genome)),
            });
        }
        out.sort_by(|a, b| {
            a.rank
                .cmp(&b.rank)
                .then(a.latency_ms.total_cmp(&b.latency_ms))
                .then(a.arch.cmp(&b.arch))
        });
        self.candidates = out;
        self.evaluations_per_s = if self.state.eval_seconds > 0.0 {
            self.state.archive.len() as f64 / self.state.eval_seconds
        } else {
            0.0
        };
        Ok(())
    }

    /// The Pareto front (rank 0), by latency.
    pub fn pareto(&self) -> Vec<&Candidate> {
        self.candidates.iter().filter(|c| c.rank == 0).collect()
    }

    /// Reads a record; `None` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<SearchRecord>, SearchError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SearchError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        let rec: SearchRecord = serde_json::from_str(&text).map_err(|e| SearchError::File {
            path: path.to_path_buf(),
            message: format!("not a search record: {e}"),
        })?;
        if rec.format != RECORD_FORMAT {
            return Err(SearchError::File {
                path: path.to_path_buf(),
                message: format!("format {:?}, expected {RECORD_FORMAT:?}", rec.format),
            });
        }
        Ok(Some(rec))
    }

    /// Writes the record atomically.
    pub fn save(&self, path: &Path) -> Result<(), SearchError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| SearchError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(write_atomic(path, text.as_bytes())?)
    }
}

// `cmd::pipeline` imports it from here; the one implementation is in `files`.
pub use crate::files::write_atomic;
