//! [`FrameReader`]: a [`FrameDecoder`] fed from a `std::io::Read`, with a
//! deadline so a peer that drips bytes cannot hold a read forever.

use std::io::{self, Read};
use std::time::Instant;

use crate::decoder::{FrameDecoder, Step};
use crate::{Frame, MAX_PAYLOAD_BYTES, ProtoError};

/// Reads frames from a byte stream, resynchronising after damage (see
/// [`FrameDecoder`] for what is skipped and reported).
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    eof: bool,
    /// No read starts after this instant (see [`FrameReader::set_deadline`]).
    deadline: Option<Instant>,
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
            decoder: FrameDecoder::with_max_payload(max_payload),
            eof: false,
            deadline: None,
        }
    }

    /// Changes the payload cap from the next frame header on (the agent
    /// lowers it until a host has said Hello). Never above
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.decoder.set_max_payload(max_payload);
    }

    /// The payload cap in force.
    pub fn max_payload(&self) -> u32 {
        self.decoder.max_payload()
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
        self.decoder.buffered()
    }

    /// True when part of a frame (at least its magic) is buffered: a read
    /// timeout now means the sender stalled mid-frame.
    pub fn in_frame(&self) -> bool {
        self.decoder.in_frame()
    }

    /// Gives up on a partly received frame (a serial line that lost bytes and
    /// went quiet) and returns what that error is; the reader rescans from
    /// the byte after its magic.
    pub fn abandon_partial(&mut self) -> Option<ProtoError> {
        self.decoder.abandon_partial()
    }

    /// One read from the underlying stream, sized for `want` more bytes.
    /// Sets `eof` on a zero-byte read.
    pub(crate) fn fill(&mut self, want: usize) -> Result<(), ProtoError> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ProtoError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed",
            )));
        }
        let space = self.decoder.spare(want);
        loop {
            match self.inner.read(space) {
                Ok(n) => {
                    self.decoder.commit(n);
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

    /// The next frame; `Ok(None)` once the stream has ended cleanly.
    ///
    /// Errors other than [`ProtoError::Io`] are reports about damaged input;
    /// call again to go on reading. An `Io` error of kind `TimedOut` or
    /// `WouldBlock` keeps the buffered bytes, so reading can resume as well.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            match self.decoder.step(self.eof) {
                Step::Frame(frame) => return Ok(Some(frame)),
                Step::Damaged(e) => return Err(e),
                Step::End => return Ok(None),
                Step::Need(want) => self.fill(want)?,
            }
        }
    }

    /// The underlying reader, dropping anything buffered.
    pub fn into_inner(self) -> R {
        self.inner
    }
}
