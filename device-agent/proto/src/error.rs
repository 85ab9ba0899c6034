//! What goes wrong on the wire ([`ProtoError`]) and the codes an agent
//! answers with ([`ErrorCode`], [`ErrorReply`]).

use alloc::string::String;

use serde::{Deserialize, Serialize};

use super::{HeaderEncoding, HeaderError};

/// Declares [`ErrorCode`] from one list of `Variant = "wire_name"` pairs: the
/// enum, its serde names and [`ErrorCode::as_str`] come from the same line, so
/// a new code cannot be spelled two ways.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $wire:literal,)+) => {
        /// Machine-readable reason in an [`ErrorReply`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $wire)] $name,)+
            /// A code this build does not know, from a newer peer (codes are
            /// only ever added). Never sent.
            #[serde(other, rename = "other")]
            Other,
        }

        impl ErrorCode {
            /// Every code this build sends, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)+];

            /// The code as it is spelled on the wire (`bad_frame`, …).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $wire,)+
                    ErrorCode::Other => "other",
                }
            }
        }
    };
}

error_codes! {
    /// Bytes that are not a frame: bad magic, bad CRC, truncated.
    BadFrame = "bad_frame",
    /// Frame larger than [`MAX_PAYLOAD_BYTES`](super::MAX_PAYLOAD_BYTES).
    Oversize = "oversize",
    /// A message kind this agent does not know.
    UnknownKind = "unknown_kind",
    /// A known kind whose header or blob does not parse.
    BadMessage = "bad_message",
    /// Protocol major versions differ.
    ProtocolMismatch = "protocol_mismatch",
    /// Missing or wrong token.
    Unauthorized = "unauthorized",
    /// A request came before Hello.
    HelloRequired = "hello_required",
    /// The ONNX model does not parse, or tract cannot run it.
    BadModel = "bad_model",
    /// No model loaded under that handle.
    UnknownHandle = "unknown_handle",
    /// Input tensor of the wrong shape or size.
    BadInput = "bad_input",
    /// Anything else went wrong on the agent.
    Internal = "internal",
    /// A header in an encoding this agent was built without (a JSON one to
    /// the microcontroller firmware): the host resends in the other (added
    /// in 1.4).
    UnsupportedEncoding = "unsupported_encoding",
}

/// An error, as the agent reports it. The agent keeps serving after sending one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// What went wrong and where, for people.
    pub message: String,
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorReply {
    /// Shorthand constructor.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

impl core::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Everything that can go wrong turning bytes into frames and frames into
/// messages. All variants but [`ProtoError::Io`] leave the stream usable: the
/// reader has already skipped to where the next frame may start.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The underlying reader failed (including read timeouts).
    #[cfg(feature = "std")]
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// Bytes that do not start a frame were skipped up to the next magic.
    #[error("skipped {skipped} byte(s) of garbage before a frame magic")]
    Garbage {
        /// Bytes skipped in this run of garbage.
        skipped: usize,
    },
    /// A frame header announced a payload larger than the cap.
    #[error("frame payload of {len} bytes exceeds the {max}-byte cap")]
    Oversize {
        /// Announced (or, when encoding, actual) payload length.
        len: u64,
        /// The cap in force.
        max: u32,
    },
    /// A whole frame arrived but its CRC does not match.
    #[error("frame CRC mismatch: frame says {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc {
        /// CRC carried by the frame.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// The stream ended (or stalled, on serial) in the middle of a frame.
    #[error("stream ended inside a frame ({have} of {need} byte(s))")]
    Truncated {
        /// Bytes of the frame that did arrive.
        have: usize,
        /// Bytes the frame needed, as far as known.
        need: usize,
    },
    /// The frame is intact but its payload is not `header len | header | blob`.
    #[error("bad frame payload: {0}")]
    BadPayload(String),
    /// A kind byte this build does not know.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// A known kind, but not one that is valid here (a reply sent to the agent, …).
    #[error("unexpected message kind {kind} ({code:#04x}) {context}")]
    UnexpectedKind {
        /// Name of the kind.
        kind: &'static str,
        /// Its byte.
        code: u8,
        /// Where it was not expected.
        context: &'static str,
    },
    /// The header of a known kind does not parse.
    #[error("bad {kind} header ({cause})")]
    BadHeader {
        /// Name of the kind.
        kind: &'static str,
        /// The encoding's reason.
        cause: HeaderError,
    },
    /// A header in an encoding this build does not read or write.
    #[error(
        "{kind} header is {}, which this build does not speak (it speaks {})",
        encoding.name(),
        spoken()
    )]
    UnsupportedEncoding {
        /// Name of the kind.
        kind: &'static str,
        /// The encoding found or asked for.
        encoding: HeaderEncoding,
    },
    /// A tensor whose shape and data disagree, or whose data is not f32 LE.
    #[error("bad tensor: {0}")]
    BadTensor(String),
}

impl ProtoError {
    /// The code an agent answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            #[cfg(feature = "std")]
            ProtoError::Io(_) => ErrorCode::Internal,
            ProtoError::Garbage { .. }
            | ProtoError::BadCrc { .. }
            | ProtoError::Truncated { .. }
            | ProtoError::BadPayload(_) => ErrorCode::BadFrame,
            ProtoError::Oversize { .. } => ErrorCode::Oversize,
            ProtoError::UnknownKind(_) => ErrorCode::UnknownKind,
            ProtoError::UnexpectedKind { .. } | ProtoError::BadHeader { .. } => {
                ErrorCode::BadMessage
            }
            ProtoError::BadTensor(_) => ErrorCode::BadInput,
            ProtoError::UnsupportedEncoding { .. } => ErrorCode::UnsupportedEncoding,
        }
    }

    /// Whether the stream can still be read after this error.
    pub fn is_recoverable(&self) -> bool {
        #[cfg(feature = "std")]
        if matches!(self, ProtoError::Io(_)) {
            return false;
        }
        true
    }
}

/// The header encodings this build speaks, for messages.
fn spoken() -> &'static str {
    match (
        HeaderEncoding::Json.supported(),
        HeaderEncoding::Binary.supported(),
    ) {
        (true, true) => "json and binary",
        (true, false) => "json only",
        (false, true) => "binary only",
        (false, false) => "neither",
    }
}
