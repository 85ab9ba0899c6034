//! Frames: one message's bytes on the wire ([`Frame::encode`]) and the
//! header inside. Turning a byte stream into frames is `decoder`'s job.

use alloc::vec::Vec;

use serde::de::DeserializeOwned;

use super::{FRAME_OVERHEAD, HeaderEncoding, Kind, MAGIC, MAX_PAYLOAD_BYTES, ProtoError};

/// One frame: a kind byte, a header and a binary blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Kind byte; see [`Kind`]. Kept raw so unknown kinds can be reported.
    pub kind: u8,
    /// Header: JSON (UTF-8; empty is read as `{}`) or binary; see `header`.
    pub header: Vec<u8>,
    /// Binary blob (ONNX bytes, f32 LE tensor data), often empty.
    pub blob: Vec<u8>,
}

impl Frame {
    /// A frame of a known kind.
    pub fn new(kind: Kind, header: Vec<u8>, blob: Vec<u8>) -> Frame {
        Frame {
            kind: kind as u8,
            header,
            blob,
        }
    }

    /// The kind, if this build knows it.
    pub fn known_kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }

    /// Payload length on the wire.
    pub fn payload_len(&self) -> usize {
        4 + self.header.len() + self.blob.len()
    }

    /// The frame's bytes, ready to write. Fails with [`ProtoError::Oversize`]
    /// when the payload exceeds [`MAX_PAYLOAD_BYTES`], so a host finds out
    /// before it sends a model the agent would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let payload_len = self.payload_len();
        if payload_len > MAX_PAYLOAD_BYTES as usize {
            return Err(ProtoError::Oversize {
                len: payload_len as u64,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let mut out = Vec::with_capacity(payload_len + FRAME_OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.push(self.kind);
        // Both fit in u32: the cap is below u32::MAX.
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.blob);
        let crc = crate::crc::crc32(&out[4..]);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// The encoding of this frame's header.
    pub fn header_encoding(&self) -> HeaderEncoding {
        HeaderEncoding::of(&self.header)
    }

    pub(super) fn decode_header<T: DeserializeOwned>(&self, kind: Kind) -> Result<T, ProtoError> {
        crate::header::decode(&self.header, kind.name())
    }
}

/// Bytes of a frame header: magic, kind, payload length.
pub(crate) const HEAD_LEN: usize = 4 + 1 + 4;
