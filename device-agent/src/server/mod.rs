//! The agent's side of a session: requests in, replies out, loaded models in
//! between.
//!
//! Robustness rules: every damaged frame, unknown kind, bad header, corrupt
//! model or bad input gets an [`ErrorReply`](crate::proto::ErrorReply) naming the problem and the
//! session goes on; only a protocol-major mismatch and a bad token close it.
//! tract runs on worker threads that catch panics (see [`crate::bench`]),
//! and [`serve_tcp`] also catches any panic of a whole session, so one bad
//! client never takes the agent down for the next.
//!
//! Files: `session` (one host's state machine: Hello first, then the
//! requests, each answered), `serve` (the loops over a transport and a TCP
//! listener, with their deadlines).

use std::time::Duration;

use crate::transport::TransportError;

mod serve;
mod session;
#[cfg(test)]
mod tests;

pub use serve::{serve_session, serve_tcp};
pub use session::Session;

/// How the agent serves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Shared secret a Hello must carry; `None`: no check.
    pub token: Option<String>,
    /// How long a new connection may take, from its first byte to an
    /// accepted Hello, however it spends it (garbage, requests before Hello,
    /// one byte at a time): a port scanner or a stuck client cannot hold the
    /// single-client agent past it (TCP, serial).
    pub hello_timeout: Option<Duration>,
    /// Pause before answering a Hello with a wrong or missing token, so
    /// guesses come slowly.
    pub refusal_delay: Duration,
    /// How long a greeted host may stay silent between requests.
    pub idle_timeout: Option<Duration>,
    /// Models one session may hold at once; a board has little memory.
    pub max_models: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            hello_timeout: None,
            refusal_delay: Duration::from_secs(1),
            idle_timeout: None,
            max_models: 64,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The host closed the link.
    Closed,
    /// The host asked the agent to exit (after a Bye).
    Shutdown,
    /// The agent refused the host (protocol mismatch, bad token).
    Refused,
    /// The host said nothing for too long.
    TimedOut,
}

/// Errors that end a session.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A reply could not be encoded (a bug, or an output over the frame cap).
    #[error("encoding a reply: {0}")]
    Encode(crate::proto::ProtoError),
}

// By hand, not `#[from]`: the message shows the cause, so it is not also
// returned as the source (each cause is printed once).
impl From<crate::proto::ProtoError> for ServerError {
    fn from(e: crate::proto::ProtoError) -> ServerError {
        ServerError::Encode(e)
    }
}

/// Largest frame payload the agent reads before a host has said Hello: a
/// Hello is a few hundred bytes, and an unauthenticated peer must not make a
/// small board hold a 256 MiB payload. Larger frames are refused from their
/// header.
pub const PRE_HELLO_MAX_PAYLOAD: u32 = 4096;

/// Shortest token the agent accepts: 16 characters, as from
/// `head -c 12 /dev/urandom | base64`.
pub const MIN_TOKEN_LEN: usize = 16;
