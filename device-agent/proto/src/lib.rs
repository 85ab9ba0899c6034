//! Wire protocol between the padnas host and the device agent.
//!
//! Every message travels in one frame:
//!
//! ```text
//! magic "PDNA" (4) | kind u8 | payload length u32 LE | payload | crc32 u32 LE
//! payload = header length u32 LE | header | binary blob
//! header  = JSON text, or 0x00 | postcard (binary headers, see `header`)
//! ```
//!
//! The CRC (IEEE, over kind, length and payload) matters on serial lines, where
//! bytes do get lost or flipped; the magic lets a reader resynchronise after
//! garbage instead of giving up on the link. The JSON header keeps the
//! protocol readable and easy to extend (message kinds are only ever added);
//! the binary one keeps a microcontroller's firmware small;
//! the blob carries the bulky parts (ONNX bytes, tensors) without base64.
//! The format is documented for people in `device-agent/README.md`.
//!
//! Layers, bottom up: [`Frame`] (bytes on the wire, [`Frame::encode`]), the
//! resynchronising [`FrameDecoder`] (bytes pushed in, frames out) and, with
//! `std`, [`FrameReader`] (the decoder fed from an `io::Read`, with a
//! deadline); then [`Request`] / [`Response`] (typed messages,
//! [`Request::to_frame`] / [`Request::from_frame`]).
//!
//! The crate is `no_std` + `alloc` without its default `std` feature, so the
//! host, the Linux agent and the microcontroller firmware share this one
//! definition and its tests.
//!
//! Files: `frame` (one frame's bytes), `decoder` (a stream of bytes →
//! frames), `reader` (std: `io::Read` → frames), `header` (a header's two
//! encodings), `messages` (the headers' fields), `request` (typed requests and responses ↔ frames), `tensor`
//! (the f32 blob codec), `error` (what goes wrong, and the codes the agent
//! answers with).

// With `std` the crate is an ordinary std crate (its tests use the std
// prelude); the firmware builds it without.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(not(any(feature = "json", feature = "binary")))]
compile_error!("padnas-proto needs a header encoding: feature `json`, `binary` or both");

mod crc;
mod decoder;
mod error;
mod frame;
mod header;
mod messages;
#[cfg(feature = "std")]
mod reader;
mod request;
pub mod stats;
mod tensor;
#[cfg(all(test, feature = "std"))]
mod tests;

pub use decoder::{FrameDecoder, Step};
pub use error::{ErrorCode, ErrorReply, ProtoError};
pub use frame::Frame;
pub use header::{BINARY_HEADER_TAG, HeaderEncoding, HeaderError};
pub use messages::*;
#[cfg(feature = "std")]
pub use reader::FrameReader;
pub use request::{Request, Response};
pub use tensor::{Dims, f32s_from_le, f32s_to_le, shape_elements};

/// Major protocol version: a host and an agent with different majors refuse to talk.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor protocol version: grows when message kinds or optional fields are added.
pub const PROTOCOL_MINOR: u16 = 4;
/// Frame magic, chosen to be unlikely in text a shell or login banner prints.
pub const MAGIC: [u8; 4] = *b"PDNA";
/// Hard cap on a frame's payload. Large enough for any ImageNet-scale MBConv
/// network in f32 (a few tens of MB), small enough that a corrupt length field
/// cannot make an agent on a 1 GB board allocate itself to death.
pub const MAX_PAYLOAD_BYTES: u32 = 256 << 20;
/// Bytes of frame overhead: magic, kind, length, crc.
pub const FRAME_OVERHEAD: usize = 4 + 1 + 4 + 4;

/// Declares [`Kind`] from one list of `name = byte` pairs, so that the enum,
/// its names and its decoding cannot drift apart when a kind is added.
macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $byte:literal,)+) => {
        /// Message kind byte. Values are stable forever; new kinds get new numbers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Kind {
            $($(#[$doc])* $name = $byte,)+
        }

        impl Kind {
            /// Every kind this build knows, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$name,)+];

            /// Name for logs and error messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$name => stringify!($name),)+
                }
            }

            /// Decodes a kind byte; `None` for kinds this build does not know.
            pub fn from_u8(b: u8) -> Option<Kind> {
                match b {
                    $($byte => Some(Kind::$name),)+
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// host → agent: [`HelloRequest`]
    Hello = 0x01,
    /// host → agent: [`LoadModel`] (header) + ONNX bytes (blob)
    LoadModel = 0x02,
    /// host → agent: [`BenchRequest`]
    Bench = 0x03,
    /// host → agent: [`InferRequest`] (header) + f32 LE tensor data (blob)
    Infer = 0x04,
    /// host → agent: [`UnloadRequest`]
    Unload = 0x05,
    /// host → agent: no header fields
    Shutdown = 0x06,
    /// agent → host: [`AgentInfo`]
    HelloReply = 0x81,
    /// agent → host: [`ModelLoaded`]
    Loaded = 0x82,
    /// agent → host: [`BenchStats`]
    Stats = 0x83,
    /// agent → host: [`TensorHeader`] (header) + f32 LE tensor data (blob)
    Output = 0x84,
    /// agent → host: empty header; acknowledges Unload
    Unloaded = 0x85,
    /// agent → host: empty header; acknowledges Shutdown, then the agent exits
    Bye = 0x86,
    /// agent → host: [`ErrorReply`]
    Error = 0xE0,
}

impl Kind {
    /// True for kinds the host sends (the agent's requests).
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }
}
