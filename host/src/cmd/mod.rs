//! One module per `padnas` subcommand; those that train or evaluate need
//! feature `train` (libtorch).

pub mod agent;
#[cfg(feature = "train")]
pub mod eval;
#[cfg(feature = "train")]
pub mod export;
#[cfg(feature = "train")]
pub mod job;
pub mod latency;
#[cfg(feature = "train")]
pub mod pipeline;
pub mod profile;
#[cfg(feature = "train")]
pub mod rank;
#[cfg(feature = "train")]
pub mod rank_stage;
#[cfg(feature = "train")]
pub mod report;
#[cfg(feature = "train")]
pub mod retrain;
#[cfg(feature = "train")]
pub mod stages;
#[cfg(feature = "train")]
pub mod steps;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod truth;
pub mod verify;
