//! [`FrameDecoder`]: turns bytes, however they arrive, into frames, skipping
//! garbage and damaged frames. It does no I/O, so the same resynchronising
//! logic serves `std` readers ([`FrameReader`](crate::FrameReader)) and a
//! microcontroller that pushes bytes from its UART or RTT channel.

use alloc::format;
use alloc::vec::Vec;

use crate::frame::HEAD_LEN;
use crate::{Frame, MAGIC, MAX_PAYLOAD_BYTES, ProtoError};

/// What [`FrameDecoder::step`] found in the buffered bytes.
#[derive(Debug)]
pub enum Step {
    /// An intact frame, consumed.
    Frame(Frame),
    /// Damaged input was reported and skipped; call [`FrameDecoder::step`]
    /// again to go on (the decoder is already where the next frame may start).
    Damaged(ProtoError),
    /// At least this many more bytes are needed before anything can be said.
    Need(usize),
    /// The stream ended cleanly (only when the caller said it ended).
    End,
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

/// Decodes frames from pushed bytes, resynchronising after damage.
///
/// Damage is reported as [`Step::Damaged`] and decoding moves on: garbage is
/// skipped up to the next magic and reported once per run when that magic
/// (or the end of the stream) is reached; an oversize length or a bad CRC is
/// reported and the decoder rescans from the byte after the bad frame's
/// magic, because a corrupt length says nothing about where the next frame
/// starts. Bytes skipped during such a rescan are not reported again.
pub struct FrameDecoder {
    /// Only `buf[pos..end]` holds data. The tail past `end` is kept
    /// allocated (and zeroed once) so refills never re-zero it.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    /// Garbage bytes skipped and not yet reported.
    garbage: usize,
    /// Rescanning after a reported error: skipped bytes are part of it.
    quiet: bool,
    max_payload: u32,
    /// Smallest and largest space [`FrameDecoder::spare`] offers: large on a
    /// host (few system calls for a big model), small on a microcontroller.
    chunk: (usize, usize),
    /// A buffer grown past this is given back once empty.
    shrink_above: usize,
}

impl FrameDecoder {
    /// A decoder with the standard [`MAX_PAYLOAD_BYTES`] cap, sized for a host.
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_max_payload(MAX_PAYLOAD_BYTES)
    }

    /// A decoder with a lower payload cap (tests, small boards).
    pub fn with_max_payload(max_payload: u32) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            garbage: 0,
            quiet: false,
            max_payload: max_payload.min(MAX_PAYLOAD_BYTES),
            chunk: (64 << 10, 4 << 20),
            shrink_above: 1 << 20,
        }
    }

    /// Bounds the space [`FrameDecoder::spare`] offers per refill, for a
    /// board whose whole RAM is a few hundred KiB.
    pub fn with_chunk(mut self, min: usize, max: usize) -> FrameDecoder {
        self.chunk = (min.max(1), max.max(min.max(1)));
        self.shrink_above = self.shrink_above.min(self.chunk.1);
        self
    }

    /// Changes the payload cap from the next frame header on (an agent
    /// lowers it until a host has said Hello). Never above
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.max_payload = max_payload.min(MAX_PAYLOAD_BYTES);
    }

    /// The payload cap in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// True when part of a frame (at least its magic) is buffered: a stall
    /// now means the sender stopped mid-frame.
    pub fn in_frame(&self) -> bool {
        self.buffered() >= MAGIC.len() && self.buf[self.pos..self.end].starts_with(&MAGIC)
    }

    /// Gives up on a partly received frame (a serial line that lost bytes and
    /// went quiet) and returns what that error is; decoding rescans from the
    /// byte after its magic.
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

    /// Space for the next bytes, sized for `want` more within the chunk
    /// bounds; write into it and then [`FrameDecoder::commit`] how many.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.pos > 0 {
            // Only the unconsumed tail moves, and after the first refill of a
            // frame `pos` stays 0, so a large frame is not copied repeatedly.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        // `with_chunk` keeps min ≤ max, so this is `clamp` without its
        // assertion, whose message formats both bounds with `Debug` (150 B
        // of a microcontroller's flash).
        let chunk = want.max(self.chunk.0).min(self.chunk.1);
        if self.buf.len() < self.end + chunk {
            self.buf.resize(self.end + chunk, 0);
        }
        &mut self.buf[self.end..self.end + chunk]
    }

    /// Marks `n` bytes written into the last [`FrameDecoder::spare`] as received.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends received bytes (for callers that already hold them).
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let space = self.spare(bytes.len());
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            self.commit(n);
            bytes = &bytes[n..];
        }
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

    /// Marks everything consumed; gives a large buffer back so one big model
    /// does not pin its size in memory for the rest of the session.
    fn reset_if_empty(&mut self) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > self.shrink_above {
                self.buf = Vec::new();
            }
        }
    }

    /// Reports the end of the stream: pending garbage first, then a partial
    /// frame, then [`Step::End`] forever. After a partial frame the bytes
    /// behind its magic are scanned again, as they are mid-stream after a bad
    /// CRC: a damaged length may have swallowed whole frames that follow.
    fn finish(&mut self) -> Step {
        let rest = self.buffered();
        if rest > 0 && rest < MAGIC.len() {
            // A partial magic at the very end is just more garbage.
            self.skip(rest);
        }
        if self.garbage > 0 {
            let skipped = core::mem::take(&mut self.garbage);
            if !core::mem::take(&mut self.quiet) {
                return Step::Damaged(ProtoError::Garbage { skipped });
            }
        }
        let have = self.buffered();
        if have > 0 {
            let need = self.needed_len().unwrap_or(HEAD_LEN);
            self.pos += 1;
            self.quiet = true;
            return Step::Damaged(ProtoError::Truncated { have, need });
        }
        self.reset_if_empty();
        Step::End
    }

    /// What the buffered bytes hold. `at_end` says that no more bytes will
    /// come, so a partial frame is reported instead of waited for.
    pub fn step(&mut self, at_end: bool) -> Step {
        // 1. Synchronise on a magic.
        match scan_magic(&self.buf[self.pos..self.end]) {
            MagicScan::At(0) => {}
            MagicScan::At(i) => self.skip(i),
            MagicScan::Absent { keep } => {
                let drop = self.buffered() - keep;
                self.skip(drop);
                return if at_end {
                    self.finish()
                } else {
                    Step::Need(HEAD_LEN)
                };
            }
        }
        if self.garbage > 0 {
            let skipped = core::mem::take(&mut self.garbage);
            if !core::mem::take(&mut self.quiet) {
                return Step::Damaged(ProtoError::Garbage { skipped });
            }
        }
        self.quiet = false;

        // 2. Header: kind and length.
        let have = self.buffered();
        if have < HEAD_LEN {
            return if at_end {
                self.finish()
            } else {
                Step::Need(HEAD_LEN - have)
            };
        }
        let head = &self.buf[self.pos..self.pos + HEAD_LEN];
        let kind = head[4];
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if len > self.max_payload {
            self.pos += 1;
            self.quiet = true;
            return Step::Damaged(ProtoError::Oversize {
                len: u64::from(len),
                max: self.max_payload,
            });
        }

        // 3. The whole frame.
        let total = HEAD_LEN + len as usize + 4;
        if have < total {
            return if at_end {
                self.finish()
            } else {
                Step::Need(total - have)
            };
        }
        let frame = &self.buf[self.pos..self.pos + total];
        let crc_at = total - 4;
        let expected = u32::from_le_bytes([
            frame[crc_at],
            frame[crc_at + 1],
            frame[crc_at + 2],
            frame[crc_at + 3],
        ]);
        let actual = crate::crc::crc32(&frame[4..crc_at]);
        if expected != actual {
            self.pos += 1;
            self.quiet = true;
            return Step::Damaged(ProtoError::BadCrc { expected, actual });
        }

        // 4. Split the payload. The frame is intact, so it is consumed whole
        //    even when its inner layout is wrong.
        let payload = &frame[HEAD_LEN..crc_at];
        self.pos += total;
        if payload.len() < 4 {
            let len = payload.len();
            self.reset_if_empty();
            return Step::Damaged(ProtoError::BadPayload(format!(
                "payload of {len} byte(s) has no header length"
            )));
        }
        let header_len =
            u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if header_len > payload.len() - 4 {
            let len = payload.len() - 4;
            self.reset_if_empty();
            return Step::Damaged(ProtoError::BadPayload(format!(
                "header length {header_len} exceeds the {len}-byte payload"
            )));
        }
        let header = payload[4..4 + header_len].to_vec();
        let blob = payload[4 + header_len..].to_vec();
        self.reset_if_empty();
        Step::Frame(Frame { kind, header, blob })
    }
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new()
    }
}
