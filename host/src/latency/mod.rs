//! Latency lookup tables: measured per block on a target through its agent,
//! summed per architecture, validated against whole networks.
//!
//! From the bottom up (each file imports only files above it):
//!
//! - [`stats`]: the order-statistic confidence interval of the median,
//!   accuracy metrics, rank correlations, the linear calibration;
//! - [`noise`]: how a block is measured (the settings a table records, the
//!   quiet sensor level, what the gate kept);
//! - [`link`]: the agent as measuring sees it ([`BenchAgent`]) and the
//!   [`AgentLink`] that reconnects to a dropped agent;
//! - [`measure`]: noise control (bench in rounds, pool samples until the
//!   median is known to ±`ci_target_pct`, reference pairing, sensor gate);
//! - [`table`]: the JSON table (provenance header, one entry per
//!   [`BlockKey`](crate::space::BlockKey), sentinel records);
//! - [`profile`]: building (and resuming) a table;
//! - [`predict`]: table lookups for an architecture;
//! - [`validate`]: random whole networks measured end to end, the report and
//!   the scatter plot.
//!
//! `fake` (tests only) is a scripted agent for all of them.

use std::path::PathBuf;

use padnas_agent::ClientError;

use crate::onnx::OnnxError;
use crate::session::SessionError;
use crate::space::SpaceError;

#[cfg(test)]
pub(crate) mod fake;
pub mod link;
pub mod measure;
pub mod noise;
pub mod predict;
pub mod profile;
pub mod stats;
pub mod table;
pub mod validate;

pub use link::{AgentLink, BenchAgent, Connection};
pub use noise::NoiseSettings;
pub use predict::{Prediction, predict};
pub use table::{Calibration, Entry, Header, SentinelRecord, SpaceRef, Table};

/// Everything that can go wrong building, reading or using a latency table.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// A file could not be read or written.
    #[error("{path}: cannot {action}: {cause}")]
    Io {
        /// The file (or directory).
        path: PathBuf,
        /// What was being done, e.g. `read`, `write`, `rename into place`.
        action: &'static str,
        /// Cause.
        cause: std::io::Error,
    },
    /// A table file is not valid JSON, or not a table.
    #[error("{path}: not a valid latency table: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_json's reason, with line and column.
        cause: serde_json::Error,
    },
    /// A table of another format or a newer format version.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An existing table was measured under other conditions than this run.
    #[error(
        "{path}: the table was measured with {field} = {table}, but this run has {field} = {now}; \
         entries measured under different conditions cannot share a table (pass another --out)"
    )]
    Mismatch {
        /// The table file.
        path: PathBuf,
        /// Which provenance field differs.
        field: &'static str,
        /// Value in the table.
        table: String,
        /// Value of this run.
        now: String,
    },
    /// Blocks an architecture needs are not in the table.
    #[error("{path}: {} block(s) missing from the table (profile the space first): {}", missing.len(), missing.join(", "))]
    MissingEntries {
        /// The table file.
        path: PathBuf,
        /// Missing block keys, as text.
        missing: Vec<String>,
    },
    /// The table does not say which space it was built for, or that file changed.
    #[error("{path}: {message}; pass --space")]
    NoSpace {
        /// The table file.
        path: PathBuf,
        /// What was tried.
        message: String,
    },
    /// A space or architecture problem.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// Writing a block or network as ONNX failed.
    #[error("writing {what} as ONNX: {cause}")]
    Onnx {
        /// The block key or architecture.
        what: String,
        /// Cause.
        cause: OnnxError,
    },
    /// Opening a session with the target's agent failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A request to the agent failed.
    #[error("{what}: {cause}")]
    Device {
        /// What was being done, e.g. `benchmarking mbconv:k3e6:…`.
        what: String,
        /// Cause.
        cause: ClientError,
    },
    /// The agent answered, but with something unusable.
    #[error("{what}: {message}")]
    BadReply {
        /// What was being done.
        what: String,
        /// What is wrong with the reply.
        message: String,
    },
    /// The link to the agent dropped and could not be re-established.
    #[error(
        "the link to the agent dropped and {attempts} reconnection attempt(s) failed; last error: {last}"
    )]
    LinkLost {
        /// Reconnection attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<LatencyError>,
    },
    /// A profile stopped early; what was measured is saved.
    #[error(
        "profiling stopped: {saved} of {total} entries are saved in {path}; run the same command again to resume: {cause}"
    )]
    Interrupted {
        /// The table file.
        path: PathBuf,
        /// Entries in the table now.
        saved: usize,
        /// Entries the space needs.
        total: usize,
        /// Why it stopped.
        cause: Box<LatencyError>,
    },
    /// Drawing the plot failed.
    #[error("{path}: cannot draw the plot: {message}")]
    Plot {
        /// Plot file.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// An argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
}

/// A failed atomic write is an I/O error on the file it names.
impl From<crate::files::WriteError> for LatencyError {
    fn from(e: crate::files::WriteError) -> Self {
        LatencyError::Io {
            path: e.path,
            action: e.action,
            cause: e.cause,
        }
    }
}

impl LatencyError {
    /// Whether the error is the user's input (a bad table, space, argument),
    /// as opposed to a failure of the device or the machine: `padnas` exits
    /// with 2 for these.
    pub fn is_bad_input(&self) -> bool {
        match self {
            LatencyError::Parse { .. }
            | LatencyError::Format { .. }
            | LatencyError::Mismatch { .. }
            | LatencyError::MissingEntries { .. }
            | LatencyError::NoSpace { .. }
            | LatencyError::Space(_)
            | LatencyError::InvalidArgument(_) => true,
            LatencyError::Interrupted { cause: source, .. } => source.is_bad_input(),
            _ => false,
        }
    }

    /// Whether the link to the agent is gone (so a fresh session may help),
    /// rather than the request itself having failed.
    pub fn is_link_failure(&self) -> bool {
        matches!(self, LatencyError::Device { cause: source, .. } if !source.session_usable())
    }
}

/// Now, as RFC 3339 in UTC with milliseconds (`2025-01-31T12:00:00.123Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
