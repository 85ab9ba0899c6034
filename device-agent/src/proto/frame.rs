//! Frames: bytes on the wire ([`Frame::encode`]) and the resynchronising
//! [`FrameReader`], which skips garbage and damaged frames and keeps reading.

use std::io::{self, Read};
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::{FRAME_OVERHEAD, Kind, MAGIC, MAX_PAYLOAD_BYTES, ProtoError};

/// One frame: a kind byte, a JSON header and a binary blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Kind byte; see [`Kind`]. Kept raw so unknown kinds can be reported.
    pub kind: u8,
    /// JSON header (UTF-8). Empty is read as `{}`.
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
        let crc = crc32fast::hash(&out[4..]);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    pub(super) fn decode_header<T: DeserializeOwned>(&self, kind: Kind) -> Result<T, ProtoError> {
        let bytes: &[u8] = if self.header.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.header
        };
        serde_json::from_slice(bytes).map_err(|source| ProtoError::BadHeader {
            kind: kind.name(),
            cause: source,
        })
    }
}

/// Bytes of a frame header: magic, kind, payload length.
pub(super) const HEAD_LEN: usize = 4 + 1 + 4;

/// Reads frames from a byte stream, resynchronising after damage.
///
/// Damage is reported as a recoverable [`ProtoError`] and the reader moves on:
/// garbage is skipped up to the next magic and reported once per run when
/// that magic (or the end of the stream) is reached; an oversize length or a
/// bad CRC is reported and the reader rescans from the byte after the bad
/// frame's magic, because a corrupt length says nothing about where the next
/// frame starts. Bytes skipped during such a rescan are not reported again.
pub struct FrameReader<R> {
    inner: R,
    /// Read buffer; only `buf[pos..end]` holds data. The tail past `end` is
    /// kept allocated (and zeroed once) so reads never re-zero it.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    eof: bool,
    /// Garbage bytes skipped and not yet reported.
    garbage: usize,
    /// Rescanning after a reported error: skipped bytes are part of it.
    quiet: bool,
    max_payload: u32,
    /// No read starts after this instant (see [`FrameReader::set_deadline`]).
    deadline: Option<Instant>,
}

/// Where a magic is in a buffer.
enum MagicScan {
    At(usize),
    /// Not found; the last `keep` bytes may be the start of one.
    Absent {
        keep: usize,
    },
}

fn scan_magic(bytes: &[u8]) -> MagicScan {
    if let Some(i) = bytes.windows(MAGIC.len()).position(|w| w == MAGIC) {
        return MagicScan::At(i);
    }
    let max_keep = (MAGIC.len() - 1).min(bytes.len());
    let keep = (1..=max_keep)
        .rev()
        .find(|&k| bytes[bytes.len() - k..] == MAGIC[..k])
        .unwrap_or(0);
    MagicScan::Absent { keep }
}

impl<R: Read> FrameReader<R> {
    /// A reader with the standard [`MAX_PAYLOAD_BYTES`] cap.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader::with_max_payload(inner, MAX_PAYLOAD_BYTES)
    }

    /// A reader with a lower payload cap (tests, small boards).
    pub fn with_max_payload(inner: R, max_payload: u32) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            garbage: 0,
            quiet: false,
            max_payload: max_payload.min(MAX_PAYLOAD_BYTES),
            deadline: None,
        }
    }

    /// Changes the payload cap from the next frame header on (the agent
    /// lowers it until a host has said Hello). Never above
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.max_payload = max_payload.min(MAX_PAYLOAD_BYTES);
    }

    /// The payload cap in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Makes every read from the underlying stream that would start at or
    /// after `deadline` fail with [`io::ErrorKind::TimedOut`] instead, so a
    /// peer that drips a byte at a time cannot keep [`FrameReader::read_frame`]
    /// going past it. Bounding a single blocked read is the stream's job
    /// (a socket timeout, `poll`); buffered bytes are kept either way.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The deadline in force.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying reader, mutably (to set timeouts).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes read but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// True when part of a frame (at least its magic) is buffered: a read
    /// timeout now means the sender stalled mid-frame.
    pub fn in_frame(&self) -> bool {
        self.buffered() >= MAGIC.len() && self.buf[self.pos..self.end].starts_with(&MAGIC)
    }

    /// Gives up on a partly received frame (a serial line that lost bytes and
    /// went quiet) and returns what that error is; the reader rescans from
    /// the byte after its magic.
    pub fn abandon_partial(&mut self) -> Option<ProtoError> {
        if !self.in_frame() {
            return None;
        }
        let have = self.buffered();
        let need = self.needed_len().unwrap_or(HEAD_LEN);
        self.pos += 1;
        self.quiet = true;
        Some(ProtoError::Truncated { have, need })
    }

    /// Total length of the buffered frame, once its header is in.
    fn needed_len(&self) -> Option<usize> {
        if self.buffered() < HEAD_LEN {
            return None;
        }
        let head = &self.buf[self.pos..self.pos + HEAD_LEN];
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        Some(HEAD_LEN + len + 4)
    }

    /// Marks `n` buffered bytes as skipped garbage.
    fn skip(&mut self, n: usize) {
        self.pos += n;
        self.garbage += n;
    }

    /// One read from the underlying stream into the buffer, sized for `want`
    /// more bytes. Sets `eof` on a zero-byte read.
    pub(super) fn fill(&mut self, want: usize) -> Result<(), ProtoError> {
        if self.pos > 0 {
            // Only the unconsumed tail moves, and after the first fill of a
            // frame `pos` stays 0, so a large frame is not copied repeatedly.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ProtoError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed",
            )));
        }
        let chunk = want.clamp(64 << 10, 4 << 20);
        if self.buf.len() < self.end + chunk {
            self.buf.resize(self.end + chunk, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..self.end + chunk]) {
                Ok(n) => {
                    self.end += n;
                    if n == 0 {
                        self.eof = true;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ProtoError::Io(e)),
            }
        }
    }

    /// Marks everything consumed; gives a large buffer back so one big model
    /// does not pin its size in memory for the rest of the session.
    fn reset_if_empty(&mut self) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > 1 << 20 {
                self.buf = Vec::new();
            }
        }
    }

    /// Reports the end of the stream: pending garbage first, then a partial
    /// frame, then `None` forever.
    fn finish_eof(&mut self) -> Result<Option<Frame>, ProtoError> {
        let rest = self.buffered();
        if rest > 0 && rest < MAGIC.len() {
            // A partial magic at the very end is just more garbage.
            self.skip(rest);
        }
        if self.garbage > 0 {
            let skipped = std::mem::take(&mut self.garbage);
            if !std::mem::take(&mut self.quiet) {
                return Err(ProtoError::Garbage { skipped });
            }
        }
        let have = self.buffered();
        if have > 0 {
            let need = self.needed_len().unwrap_or(HEAD_LEN);
            self.pos = self.end;
            self.reset_if_empty();
            return Err(ProtoError::Truncated { have, need });
        }
        Ok(None)
    }

    /// The next frame; `Ok(None)` once the stream has ended cleanly.
    ///
    /// Errors other than [`ProtoError::Io`] are reports about damaged input;
    /// call again to go on reading. An `Io` error of kind `TimedOut` or
    /// `WouldBlock` keeps the buffered bytes, so reading can resume as well.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            // 1. Synchronise on a magic.
            match scan_magic(&self.buf[self.pos..self.end]) {
                MagicScan::At(0) => {}
                MagicScan::At(i) => {
                    self.skip(i);
                    continue;
                }
                MagicScan::Absent { keep } => {
                    let drop = self.buffered() - keep;
                    self.skip(drop);
                    if self.eof {
                        return self.finish_eof();
                    }
                    self.fill(HEAD_LEN)?;
                    continue;
                }
            }
            if self.garbage > 0 {
                let skipped = std::mem::take(&mut self.garbage);
                if !std::mem::take(&mut self.quiet) {
                    return Err(ProtoError::Garbage { skipped });
                }
            }
            self.quiet = false;

            // 2. Header: kind and length.
            let have = self.buffered();
            if have < HEAD_LEN {
                if self.eof {
                    return self.finish_eof();
                }
                self.fill(HEAD_LEN - have)?;
                continue;
            }
            let head = &self.buf[self.pos..self.pos + HEAD_LEN];
            let kind = head[4];
            let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
            if len > self.max_payload {
                self.pos += 1;
                self.quiet = true;
                return Err(ProtoError::Oversize {
                    len: u64::from(len),
                    max: self.max_payload,
                });
            }

            // 3. The whole frame.
            let total = HEAD_LEN + len as usize + 4;
            if have < total {
                if self.eof {
                    return self.finish_eof();
                }
                self.fill(total - have)?;
                continue;
            }
            let frame = &self.buf[self.pos..self.pos + total];
            let crc_at = total - 4;
            let expected = u32::from_le_bytes([
                frame[crc_at],
                frame[crc_at + 1],
                frame[crc_at + 2],
                frame[crc_at + 3],
            ]);
            let actual = crc32fast::hash(&frame[4..crc_at]);
            if expected != actual {
                self.pos += 1;
                self.quiet = true;
                return Err(ProtoError::BadCrc { expected, actual });
            }

            // 4. Split the payload. The frame is intact, so it is consumed
            //    whole even when its inner layout is wrong.
            let payload = &frame[HEAD_LEN..crc_at];
            self.pos += total;
            if payload.len() < 4 {
                return Err(ProtoError::BadPayload(format!(
                    "payload of {} byte(s) has no header length",
                    payload.len()
                )));
            }
            let header_len =
                u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
            if header_len > payload.len() - 4 {
                return Err(ProtoError::BadPayload(format!(
                    "header length {header_len} exceeds the {}-byte payload",
                    payload.len() - 4
                )));
            }
            let header = payload[4..4 + header_len].to_vec();
            let blob = payload[4 + header_len..].to_vec();
            self.reset_if_empty();
            return Ok(Some(Frame { kind, header, blob }));
        }
    }

    /// The underlying reader, dropping anything buffered.
    pub fn into_inner(self) -> R {
        self.inner
    }
}
