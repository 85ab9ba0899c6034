//! One module per `padnas` subcommand.

pub mod agent;
pub mod eval;
pub mod export;
pub mod job;
pub mod latency;
pub mod pipeline;
pub mod profile;
pub mod rank;
pub mod retrain;
pub mod train;
pub mod truth;
pub mod verify;
