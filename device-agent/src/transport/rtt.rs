//! Frames over RTT (SEGGER Real-Time Transfer): two ring buffers in a
//! microcontroller's RAM, an *up* channel the firmware writes and a *down*
//! channel it reads, which a debug probe reads and writes while the core
//! runs. No UART, no pins: the probe that flashes the board carries the
//! link.
//!
//! The transport is written against [`RttChannels`], the two operations a
//! probe offers (read what the up channel holds, write what fits into the
//! down channel). The host implements it with probe-rs (feature `probe-rs`
//! of the `padnas` crate); [`MemoryRing`] implements the ring buffers'
//! semantics in memory, so everything above the probe is tested here:
//! framing across wrap-arounds, a full down channel, partial reads, deadlines.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Transport, TransportError};
use crate::proto::{Frame, FrameDecoder, MAX_PAYLOAD_BYTES, Step};

/// How long an idle poll of the channels sleeps: a probe read is a USB round
/// trip (about a millisecond), so polling faster only loads the probe.
const POLL: Duration = Duration::from_millis(1);

/// The two RTT channels as a probe reaches them.
pub trait RttChannels: Send {
    /// Reads what the firmware wrote to the up channel, at most `buf.len()`
    /// bytes; 0 when it holds nothing.
    fn read_up(&mut self, buf: &mut [u8]) -> Result<usize, TransportError>;
    /// Writes as much of `bytes` into the down channel as it has room for,
    /// and says how much; 0 when it is full (the firmware has not read).
    fn write_down(&mut self, bytes: &[u8]) -> Result<usize, TransportError>;
    /// What is on the other side, for logs and errors.
    fn describe(&self) -> String;
}

/// Frames over a pair of RTT channels.
pub struct RttTransport<C> {
    channels: C,
    decoder: FrameDecoder,
    read_timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// How long a send may wait for room in the down channel.
    write_timeout: Duration,
}

impl<C: RttChannels> RttTransport<C> {
    /// Frames over `channels`; sends wait at most 10 s for the firmware to
    /// make room.
    pub fn new(channels: C) -> RttTransport<C> {
        RttTransport {
            channels,
            // RTT buffers are a few KiB: refill in small steps.
            decoder: FrameDecoder::with_max_payload(MAX_PAYLOAD_BYTES).with_chunk(256, 64 << 10),
            read_timeout: None,
            deadline: None,
            write_timeout: Duration::from_secs(10),
        }
    }

    /// Changes how long a send waits for room in the down channel.
    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// The channels underneath.
    pub fn channels_mut(&mut self) -> &mut C {
        &mut self.channels
    }
}

impl<C: RttChannels> Transport for RttTransport<C> {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let bytes = frame.encode().map_err(TransportError::Proto)?;
        let mut sent = 0;
        let mut last_progress = Instant::now();
        while sent < bytes.len() {
            let n = self.channels.write_down(&bytes[sent..])?;
            if n > 0 {
                sent += n;
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= self.write_timeout {
                return Err(TransportError::io(
                    format!(
                        "writing to {}: the RTT down channel stayed full for {:?} with {} of {} bytes sent \
                         (is the firmware reading?)",
                        self.channels.describe(),
                        self.write_timeout,
                        sent,
                        bytes.len()
                    ),
                    io::Error::new(io::ErrorKind::TimedOut, "down channel full"),
                ));
            } else {
                thread::sleep(POLL);
            }
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let started = Instant::now();
        loop {
            match self.decoder.step(false) {
                Step::Frame(frame) => return Ok(Some(frame)),
                Step::Damaged(e) => return Err(TransportError::Proto(e)),
                // Only when told the stream ended; a probe link never does.
                Step::End => return Ok(None),
                Step::Need(want) => {
                    let n = self.channels.read_up(self.decoder.spare(want))?;
                    self.decoder.commit(n);
                    if n > 0 {
                        continue;
                    }
                    let timed_out = self.deadline.is_some_and(|d| Instant::now() >= d)
                        || self.read_timeout.is_some_and(|t| started.elapsed() >= t);
                    if timed_out {
                        return Err(TransportError::TimedOut);
                    }
                    thread::sleep(POLL);
                }
            }
        }
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.read_timeout = timeout;
        Ok(())
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        self.deadline = deadline;
        Ok(())
    }

    fn set_max_payload(&mut self, max: u32) {
        self.decoder.set_max_payload(max);
    }

    fn peer(&self) -> String {
        self.channels.describe()
    }
}

/// One RTT ring buffer in memory, with the semantics of SEGGER's: the
/// writer only moves the write offset, the reader only the read offset,
/// empty when they are equal, full when the writer is one behind the reader
/// (so a buffer of `size` bytes holds `size - 1`), a write takes what fits
/// (the "no block, trim" mode) and wraps around the end.
#[derive(Clone)]
pub struct MemoryRing {
    inner: Arc<Mutex<RingState>>,
}

struct RingState {
    buf: Vec<u8>,
    wr: usize,
    rd: usize,
}

impl MemoryRing {
    /// A ring of `size` bytes (`size - 1` usable), `size` ≥ 2.
    pub fn new(size: usize) -> MemoryRing {
        MemoryRing {
            inner: Arc::new(Mutex::new(RingState {
                buf: vec![0; size.max(2)],
                wr: 0,
                rd: 0,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RingState> {
        // A panicking test thread must not hide the ring from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what fits; returns how many bytes.
    pub fn write(&self, bytes: &[u8]) -> usize {
        let mut s = self.state();
        let size = s.buf.len();
        let free = (s.rd + size - s.wr - 1) % size;
        let n = bytes.len().min(free);
        for &b in &bytes[..n] {
            let at = s.wr;
            s.buf[at] = b;
            s.wr = (at + 1) % size;
        }
        n
    }

    /// Reads what is there, up to `out.len()`; returns how many bytes.
    pub fn read(&self, out: &mut [u8]) -> usize {
        let mut s = self.state();
        let size = s.buf.len();
        let held = (s.wr + size - s.rd) % size;
        let n = out.len().min(held);
        for slot in &mut out[..n] {
            *slot = s.buf[s.rd];
            s.rd = (s.rd + 1) % size;
        }
        n
    }
}

/// The host's side of a pair of [`MemoryRing`]s.
pub struct MemoryChannels {
    /// Firmware → host.
    pub up: MemoryRing,
    /// Host → firmware.
    pub down: MemoryRing,
}

impl RttChannels for MemoryChannels {
    fn read_up(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        Ok(self.up.read(buf))
    }
    fn write_down(&mut self, bytes: &[u8]) -> Result<usize, TransportError> {
        Ok(self.down.write(bytes))
    }
    fn describe(&self) -> String {
        "RTT channels in memory".to_string()
    }
}

/// The firmware's side of a [`MemoryRing`] as a blocking byte stream, to run
/// an agent's server on a thread against an [`RttTransport`]: reads wait for
/// bytes, writes wait for room, both polling as firmware does.
pub struct RingStream {
    /// Read from (the down channel).
    pub rx: MemoryRing,
    /// Written to (the up channel).
    pub tx: MemoryRing,
}

impl Read for RingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.rx.read(buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            thread::sleep(POLL);
        }
    }
}

impl Write for RingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.tx.write(buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            thread::sleep(POLL);
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
