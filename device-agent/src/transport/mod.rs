//! Transports: how frames get between the host and the agent.
//!
//! Everything speaks [`Transport`] (send a frame, receive a frame), so the
//! client and the server never know whether they sit on a TCP socket, a
//! child's stdio (local, qemu-user, ssh, adb) or a serial line. Damage on the
//! link arrives as a recoverable [`TransportError::Proto`]; the next `recv`
//! goes on reading.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::proto::{Frame, FrameReader, ProtoError};

pub mod memory;
pub mod poll;
pub mod rtt;
#[cfg(feature = "serial")]
pub mod serial;
pub mod stdio;
pub mod tcp;

/// Errors of any transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Damaged input; the stream is still usable (see [`ProtoError::is_recoverable`]).
    #[error(transparent)]
    Proto(ProtoError),
    /// The link failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        cause: io::Error,
    },
    /// No frame arrived within the read timeout or before the deadline.
    #[error("timed out waiting for a frame")]
    TimedOut,
    /// Could not reach the agent.
    #[error("cannot connect to {addr}: {cause}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Last failure.
        cause: io::Error,
    },
    /// Could not start the agent process.
    #[error("cannot start `{command}`: {cause}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        cause: io::Error,
    },
    /// The agent process ended; its last stderr lines say why.
    #[error("agent process `{command}` ended ({status}){}", tail_suffix(.stderr_tail))]
    ChildExited {
        /// The command line.
        command: String,
        /// Exit status as text.
        status: String,
        /// Last lines the process wrote to stderr.
        stderr_tail: String,
    },
    /// The serial port could not be opened or configured.
    #[error("serial port {path}: {message}")]
    Serial {
        /// Device path.
        path: String,
        /// serialport's reason.
        message: String,
    },
    /// This transport cannot do that (e.g. read timeouts on stdio).
    #[error("not supported by this transport: {0}")]
    Unsupported(&'static str),
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{tail}")
    }
}

impl TransportError {
    /// True when the link itself is still usable.
    pub fn is_recoverable(&self) -> bool {
        match self {
            TransportError::Proto(e) => e.is_recoverable(),
            TransportError::TimedOut | TransportError::Unsupported(_) => true,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> TransportError {
        TransportError::Io {
            context: context.into(),
            cause: source,
        }
    }
}

impl From<ProtoError> for TransportError {
    fn from(e: ProtoError) -> TransportError {
        match e {
            ProtoError::Io(source) => match source.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::TimedOut,
                _ => TransportError::io("reading a frame", source),
            },
            other => TransportError::Proto(other),
        }
    }
}

/// A bidirectional frame link.
pub trait Transport: Send {
    /// Sends one frame (flushed).
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError>;
    /// The next frame; `Ok(None)` when the peer closed the link cleanly.
    fn recv(&mut self) -> Result<Option<Frame>, TransportError>;
    /// Limits how long [`Transport::recv`] waits; `None` waits forever.
    /// Transports that cannot time out answer [`TransportError::Unsupported`].
    fn set_read_timeout(&mut self, _timeout: Option<Duration>) -> Result<(), TransportError> {
        Err(TransportError::Unsupported("read timeouts"))
    }
    /// Makes [`Transport::recv`] give up with [`TransportError::TimedOut`]
    /// once `deadline` has passed, however the bytes trickle in (unlike a
    /// read timeout, which a byte now and then keeps resetting); `None`
    /// lifts it. Transports that cannot bound a read answer
    /// [`TransportError::Unsupported`].
    fn set_deadline(&mut self, _deadline: Option<Instant>) -> Result<(), TransportError> {
        Err(TransportError::Unsupported("deadlines"))
    }
    /// Caps the payload of the frames [`Transport::recv`] accepts from the
    /// next header on: larger frames are refused from their header alone
    /// (the agent keeps it low until a host has said Hello).
    fn set_max_payload(&mut self, max: u32);
    /// Who is on the other side, for logs.
    fn peer(&self) -> String {
        "peer".to_string()
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        (**self).send(frame)
    }
    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        (**self).recv()
    }
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        (**self).set_read_timeout(timeout)
    }
    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        (**self).set_deadline(deadline)
    }
    fn set_max_payload(&mut self, max: u32) {
        (**self).set_max_payload(max)
    }
    fn peer(&self) -> String {
        (**self).peer()
    }
}

/// Frames over any byte stream pair (pipes, sockets, files).
pub struct StreamTransport<R, W> {
    reader: FrameReader<R>,
    writer: W,
    peer: String,
}

impl<R: Read + Send, W: Write + Send> StreamTransport<R, W> {
    /// Frames read from `reader`, written to `writer`; `peer` names the other
    /// side in logs.
    pub fn new(reader: R, writer: W, peer: impl Into<String>) -> StreamTransport<R, W> {
        StreamTransport {
            reader: FrameReader::new(reader),
            writer,
            peer: peer.into(),
        }
    }

    /// The frame reader (for its buffered state or the raw reader).
    pub fn reader_mut(&mut self) -> &mut FrameReader<R> {
        &mut self.reader
    }

    /// The raw writer.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// Writes raw bytes, bypassing framing (tests of damaged input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .map_err(|e| TransportError::io(format!("writing to {}", self.peer), e))
    }
}

impl<R: Read + Send, W: Write + Send> Transport for StreamTransport<R, W> {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        let bytes = frame.encode().map_err(TransportError::Proto)?;
        self.send_raw(&bytes)
    }

    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.reader.read_frame().map_err(TransportError::from)
    }

    fn set_max_payload(&mut self, max: u32) {
        self.reader.set_max_payload(max);
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }
}
