//! A message's header in its two encodings: JSON (readable, self-describing:
//! what hosts and Linux agents speak) and binary (tag byte
//! [`BINARY_HEADER_TAG`], then postcard: what the microcontroller firmware
//! speaks, because a JSON parser and float formatter would take half of its
//! flash). A reader tells them apart by the first byte, which no JSON text
//! starts with; each build decodes the encodings its features include and
//! answers the other with [`ProtoError::UnsupportedEncoding`], which is how a
//! host learns to switch.
//!
//! Binary headers are not self-describing: fields are read in declaration
//! order, so new fields go at the end of a struct, a reader ignores bytes
//! past the fields it knows, and both sides of a binary session must share a
//! protocol minor version for the newest fields to arrive.

use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ProtoError;

/// First byte of a binary header. JSON text starts with `{`, whitespace or
/// nothing, never with a NUL.
pub const BINARY_HEADER_TAG: u8 = 0x00;

/// How a frame's header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEncoding {
    /// JSON text (an empty header reads as `{}`).
    Json,
    /// [`BINARY_HEADER_TAG`], then the fields in postcard's encoding.
    Binary,
}

impl HeaderEncoding {
    /// What this build writes unless told otherwise: JSON where it is
    /// compiled in (peers of every version read it), else binary.
    pub const PREFERRED: HeaderEncoding = if cfg!(feature = "json") {
        HeaderEncoding::Json
    } else {
        HeaderEncoding::Binary
    };

    /// The encoding a header is written in.
    pub fn of(header: &[u8]) -> HeaderEncoding {
        if header.first() == Some(&BINARY_HEADER_TAG) {
            HeaderEncoding::Binary
        } else {
            HeaderEncoding::Json
        }
    }

    /// Name for messages (`json`, `binary`).
    pub fn name(self) -> &'static str {
        match self {
            HeaderEncoding::Json => "json",
            HeaderEncoding::Binary => "binary",
        }
    }

    /// Whether this build can read and write it.
    pub fn supported(self) -> bool {
        match self {
            HeaderEncoding::Json => cfg!(feature = "json"),
            HeaderEncoding::Binary => cfg!(feature = "binary"),
        }
    }

    /// The header of a message without fields.
    pub fn empty(self) -> Vec<u8> {
        match self {
            HeaderEncoding::Json => b"{}".to_vec(),
            HeaderEncoding::Binary => alloc::vec![BINARY_HEADER_TAG],
        }
    }
}

/// Why a header did not parse, in the encoding it was written in.
#[derive(Debug)]
pub enum HeaderError {
    /// serde_json's reason, with line and column.
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// postcard's reason.
    #[cfg(feature = "binary")]
    Binary(postcard::Error),
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let _ = &f; // unused in a build with neither encoding
        match *self {
            #[cfg(feature = "json")]
            HeaderError::Json(ref e) => write!(f, "json: {e}"),
            #[cfg(feature = "binary")]
            HeaderError::Binary(ref e) => write!(f, "binary: {e}"),
        }
    }
}

/// Writes `value` as a header in `encoding`.
pub(crate) fn encode<T: Serialize>(
    value: &T,
    encoding: HeaderEncoding,
    kind: &'static str,
) -> Result<Vec<u8>, ProtoError> {
    // Our message structs always serialise; a failure would be a bug here,
    // reported as a malformed header rather than a panic.
    match encoding {
        #[cfg(feature = "json")]
        HeaderEncoding::Json => serde_json::to_vec(value).map_err(|e| ProtoError::BadHeader {
            kind,
            cause: HeaderError::Json(e),
        }),
        #[cfg(feature = "binary")]
        HeaderEncoding::Binary => postcard::to_extend(value, alloc::vec![BINARY_HEADER_TAG])
            .map_err(|e| ProtoError::BadHeader {
                kind,
                cause: HeaderError::Binary(e),
            }),
        #[allow(unreachable_patterns)]
        encoding => {
            let _ = value;
            Err(ProtoError::UnsupportedEncoding { kind, encoding })
        }
    }
}

/// Reads a header of `kind` in whichever encoding it was written.
pub(crate) fn decode<T: DeserializeOwned>(
    header: &[u8],
    kind: &'static str,
) -> Result<T, ProtoError> {
    match HeaderEncoding::of(header) {
        #[cfg(feature = "json")]
        HeaderEncoding::Json => {
            let bytes: &[u8] = if header.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                header
            };
            serde_json::from_slice(bytes).map_err(|e| ProtoError::BadHeader {
                kind,
                cause: HeaderError::Json(e),
            })
        }
        // Trailing bytes are fields a newer peer added: ignored.
        #[cfg(feature = "binary")]
        HeaderEncoding::Binary => {
            postcard::from_bytes(&header[1..]).map_err(|e| ProtoError::BadHeader {
                kind,
                cause: HeaderError::Binary(e),
            })
        }
        #[allow(unreachable_patterns)]
        encoding => Err(ProtoError::UnsupportedEncoding { kind, encoding }),
    }
}
