//! padnas: PAD-NAS (progressive automatic design of search space for one-shot
//! NAS) with latency measured on the user's own board.
//!
//! The binary `padnas` is a thin clap layer over these modules; see README.md.
//! Feature `train` (default) adds libtorch and what trains or evaluates:
//! `supernet`, `search` and their commands.
#![warn(missing_docs)]

pub mod cmd;
pub mod config;
pub mod data;
pub mod files;
pub mod hash;
pub mod latency;
pub mod memory;
pub mod naming;
pub mod onnx;
#[cfg(feature = "probe-rs")]
pub mod probe;
pub mod qemu_system;
#[cfg(feature = "train")]
pub mod rank;
pub mod remote;
#[cfg(feature = "train")]
pub mod search;
pub mod session;
pub mod space;
#[cfg(feature = "train")]
pub mod supernet;
pub mod target;
