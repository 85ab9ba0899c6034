//! padnas device agent.
//!
//! The agent runs on the target board and measures how long ONNX blocks take
//! there, with tract; the padnas host drives it to build latency tables and
//! to verify exported models. This crate is both sides of that conversation:
//!
//! - [`proto`]: the wire format (frames, messages, versioning), re-exported
//!   from the `padnas-proto` crate;
//! - [`transport`]: TCP, stdio (local, qemu-user, ssh, adb) and serial links
//!   behind one [`transport::Transport`] trait;
//! - [`client`]: the host's typed calls;
//! - [`server`]: the agent's request loop;
//! - `bench` (feature `bench`): tract loading, warm-up, timed runs;
//! - `sensor` (feature `bench`): the contention sensor timed between runs;
//! - [`stats`], [`info`]: latency statistics and board description.

#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod info;
#[cfg(feature = "bench")]
pub mod onnx_fixture;
#[cfg(feature = "bench")]
pub mod sensor;
pub mod server;
pub mod transport;

/// The wire format, shared with the host and the microcontroller firmware
/// (crate `padnas-proto`, `no_std` + `alloc` underneath).
pub use padnas_proto as proto;
/// Latency statistics, shared with the firmware (`padnas-proto`).
pub use padnas_proto::stats;

pub use client::{Client, ClientError};
pub use proto::{Frame, FrameReader, Request, Response};
pub use transport::{Transport, TransportError};
