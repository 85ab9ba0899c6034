//! TCP: the agent listens (loopback by default), the host connects.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{StreamTransport, Transport, TransportError};
use crate::proto::Frame;

/// Default address of `padnas-agent --listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// A connected TCP link.
pub struct TcpTransport {
    inner: StreamTransport<TcpStream, TcpStream>,
    /// A second handle on the socket, for timeouts.
    control: TcpStream,
    peer: SocketAddr,
    /// Per-read timeout asked for; a deadline may shorten it.
    read_timeout: Option<Duration>,
}

impl TcpTransport {
    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream) -> Result<TcpTransport, TransportError> {
        let peer = stream
            .peer_addr()
            .map_err(|e| TransportError::io("peer address", e))?;
        // Replies are small and answer a waiting peer: do not let Nagle hold them.
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        let reader = stream
            .try_clone()
            .map_err(|e| TransportError::io("cloning socket", e))?;
        let control = stream
            .try_clone()
            .map_err(|e| TransportError::io("cloning socket", e))?;
        Ok(TcpTransport {
            inner: StreamTransport::new(reader, stream, format!("tcp://{peer}")),
            control,
            peer,
            read_timeout: None,
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Bounds how long a send may block on a peer that stopped reading.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.control
            .set_write_timeout(timeout)
            .map_err(|e| TransportError::io("setting write timeout", e))
    }
}

impl TcpTransport {
    /// Sets the socket's read timeout to the shorter of the per-read timeout
    /// and the time left to the deadline: a read blocked on a silent peer
    /// then ends by the deadline, and the frame reader refuses to start
    /// another one after it.
    fn apply_socket_timeout(&mut self) -> Result<(), TransportError> {
        let left = self
            .inner
            .reader_mut()
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = match (self.read_timeout, left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A zero duration means "no timeout" to the OS; treat it as the
        // shortest one instead.
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        self.control
            .set_read_timeout(timeout)
            .map_err(|e| TransportError::io("setting read timeout", e))
    }
}

/// Connects to an agent at `addr` (`host:port`), trying every address the
/// name resolves to, each for at most `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpTransport, TransportError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|source| TransportError::Connect {
            addr: addr.to_string(),
            cause: source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => return TcpTransport::from_stream(stream),
            Err(e) => last = e,
        }
    }
    Err(TransportError::Connect {
        addr: addr.to_string(),
        cause: last,
    })
}

impl Transport for TcpTransport {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        self.inner.send(frame)
    }

    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.inner.recv()
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.read_timeout = timeout;
        self.apply_socket_timeout()
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        self.inner.reader_mut().set_deadline(deadline);
        self.apply_socket_timeout()
    }

    fn set_max_payload(&mut self, max: u32) {
        self.inner.set_max_payload(max);
    }

    fn peer(&self) -> String {
        self.inner.peer()
    }
}

/// The agent's listening socket.
pub struct TcpServer {
    listener: TcpListener,
}

impl TcpServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub fn bind(addr: &str) -> Result<TcpServer, TransportError> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| TransportError::io(format!("binding {addr}"), e))?;
        Ok(TcpServer { listener })
    }

    /// The bound address (tells the real port after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.listener
            .local_addr()
            .map_err(|e| TransportError::io("local address", e))
    }

    /// Waits for the next host.
    pub fn accept(&self) -> Result<TcpTransport, TransportError> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| TransportError::io("accepting a connection", e))?;
        TcpTransport::from_stream(stream)
    }
}

/// Whether every address `addr` resolves to is a loopback address; binding
/// anything else exposes the agent to the network.
pub fn is_loopback(addr: &str) -> Result<bool, TransportError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| TransportError::io(format!("resolving {addr}"), e))?
        .collect();
    Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
}
