//! The model runner: ONNX in, latency statistics out, through tract.
//!
//! A model is loaded once per handle: parsed, given a fully concrete input
//! shape (tract is far slower on symbolic shapes, and latency tables are per
//! shape anyway), optimised and turned into a plan. Everything that touches
//! tract runs on one long-lived worker thread, one job at a time: a panic
//! inside tract becomes an error instead of killing the agent (and retires
//! that thread), and two sessions never benchmark at once and skew each
//! other.
//!
//! Why long-lived: a thread per request cost 2–7 ms per Bench on this
//! machine, mostly at its exit, when glibc hands the thread's malloc arena
//! (tens of MB of activations) back to the kernel; the next request then
//! page-faulted the same memory in again during its first runs.
//!
//! Files: `worker` (the one tract thread, panics caught), `load` (parse,
//! concretise, optimise), `run` (warm-up and timed runs, threads, the
//! reference and sensor pairing), `pin` (CPU pinning of the worker).

use crate::proto::ErrorCode;

mod load;
mod pin;
mod run;
mod worker;

pub use load::{LoadedModel, load};
pub use run::check_limits;

/// Most threads a bench may ask for; more is a malformed request.
pub const MAX_THREADS: u32 = 256;

/// Why loading or running a model failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model does not parse, has an unsupported signature, or tract
    /// cannot optimise or run it.
    #[error("{0}")]
    BadModel(String),
    /// The input shape or tensor does not fit the model.
    #[error("{0}")]
    BadInput(String),
    /// The benchmark limits make no sense.
    #[error("{0}")]
    BadLimits(String),
    /// tract panicked; the message is the panic's.
    #[error("tract panicked while {doing}: {message}")]
    Panicked {
        /// What the agent was doing.
        doing: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// Anything else (thread or thread-pool creation, …).
    #[error("{0}")]
    Internal(String),
}

impl BenchError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            BenchError::BadModel(_) => ErrorCode::BadModel,
            BenchError::BadInput(_) => ErrorCode::BadInput,
            BenchError::BadLimits(_) => ErrorCode::BadMessage,
            // A panic while loading is the model's fault as far as the host
            // can act on it; while running, it is the agent's.
            BenchError::Panicked {
                doing: "loading the model",
                ..
            } => ErrorCode::BadModel,
            BenchError::Panicked { .. } | BenchError::Internal(_) => ErrorCode::Internal,
        }
    }
}
