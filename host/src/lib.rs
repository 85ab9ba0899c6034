//! padnas: PAD-NAS (progressive automatic design of search space for one-shot
//! NAS) with latency measured on the user's own board.
//!
//! The binary `padnas` is a thin clap layer over these modules; see README.md.
#![warn(missing_docs)]

pub mod cmd;
pub mod config;
pub mod data;
pub mod latency;
pub mod onnx;
pub mod remote;
pub mod search;
pub mod session;
pub mod space;
pub mod supernet;
pub mod target;
