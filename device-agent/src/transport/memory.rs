//! In-process transport: a pair of byte pipes. For tests and for a host that
//! wants to run the agent's server on a thread (no process, no socket).

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use super::{StreamTransport, Transport, TransportError};
use crate::proto::Frame;

/// Reading end of a [`pipe`]. Reads return 0 (end of stream) once every
/// writer is dropped.
pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
    timeout: Option<Duration>,
}

/// Writing end of a [`pipe`]; every `write` is delivered as one chunk.
pub struct PipeWriter {
    tx: Sender<Vec<u8>>,
}

/// A one-way in-memory byte pipe.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = channel();
    (
        PipeWriter { tx },
        PipeReader {
            rx,
            pending: Vec::new(),
            pos: 0,
            timeout: None,
        },
    )
}

impl PipeReader {
    /// Makes reads fail with `TimedOut` after waiting this long.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.pending.len() {
            let next = match self.timeout {
                None => self.rx.recv().ok(),
                Some(t) => match self.rx.recv_timeout(t) {
                    Ok(chunk) => Some(chunk),
                    Err(RecvTimeoutError::Timeout) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "pipe read timed out",
                        ));
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match next {
                Some(chunk) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "pipe reader dropped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One end of an in-memory duplex link.
pub struct MemoryTransport {
    inner: StreamTransport<PipeReader, PipeWriter>,
}

/// Two connected ends: what one sends, the other receives.
pub fn duplex() -> (MemoryTransport, MemoryTransport) {
    let (a_tx, b_rx) = pipe();
    let (b_tx, a_rx) = pipe();
    (
        MemoryTransport {
            inner: StreamTransport::new(a_rx, a_tx, "memory peer b"),
        },
        MemoryTransport {
            inner: StreamTransport::new(b_rx, b_tx, "memory peer a"),
        },
    )
}

impl MemoryTransport {
    /// Sends raw bytes, bypassing framing (tests of damaged input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.inner.send_raw(bytes)
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        self.inner.send(frame)
    }

    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.inner.recv()
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.inner.reader_mut().get_mut().set_timeout(timeout);
        Ok(())
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        // The pipe's timeout bounds the one read that may block; the frame
        // reader refuses any read after the deadline.
        let reader = self.inner.reader_mut();
        reader.set_deadline(deadline);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            reader
                .get_mut()
                .set_timeout(Some(left.max(Duration::from_millis(1))));
        }
        Ok(())
    }

    fn set_max_payload(&mut self, max: u32) {
        self.inner.set_max_payload(max);
    }

    fn peer(&self) -> String {
        self.inner.peer()
    }
}
