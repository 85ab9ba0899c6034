//! The agent's side of a session: requests in, replies out, loaded models in
//! between.
//!
//! Robustness rules: every damaged frame, unknown kind, bad header, corrupt
//! model or bad input gets an [`ErrorReply`](crate::proto::ErrorReply) naming the problem and the
//! session goes on; only a protocol-major mismatch and a bad token close it.
//! tract runs on worker threads that catch panics (see [`crate::bench`]),
//! and [`serve_tcp`] also catches any panic of a whole session, so one bad
//! client never takes the agent down for the next.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::info;
use crate::proto::{
    ErrorCode, HelloRequest, MAX_PAYLOAD_BYTES, PROTOCOL_MAJOR, PROTOCOL_MINOR, ProtoError,
    Request, Response,
};
use crate::transport::tcp::TcpServer;
use crate::transport::{Transport, TransportError};

#[cfg(feature = "bench")]
type Model = crate::bench::LoadedModel;

/// Stands in for a model in builds without the runner: none can exist.
#[cfg(not(feature = "bench"))]
#[derive(Debug)]
enum Model {}

/// How the agent serves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Shared secret a Hello must carry; `None`: no check.
    pub token: Option<String>,
    /// How long a new connection may take, from its first byte to an
    /// accepted Hello, however it spends it (garbage, requests before Hello,
    /// one byte at a time): a port scanner or a stuck client cannot hold the
    /// single-client agent past it (TCP, serial).
    pub hello_timeout: Option<Duration>,
    /// Pause before answering a Hello with a wrong or missing token, so
    /// guesses come slowly.
    pub refusal_delay: Duration,
    /// How long a greeted host may stay silent between requests.
    pub idle_timeout: Option<Duration>,
    /// Models one session may hold at once; a board has little memory.
    pub max_models: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            hello_timeout: None,
            refusal_delay: Duration::from_secs(1),
            idle_timeout: None,
            max_models: 64,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The host closed the link.
    Closed,
    /// The host asked the agent to exit (after a Bye).
    Shutdown,
    /// The agent refused the host (protocol mismatch, bad token).
    Refused,
    /// The host said nothing for too long.
    TimedOut,
}

/// Errors that end a session.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A reply could not be encoded (a bug, or an output over the frame cap).
    #[error("encoding a reply: {0}")]
    Encode(crate::proto::ProtoError),
}

// By hand, not `#[from]`: the message shows the cause, so it is not also
// returned as the source (each cause is printed once).
impl From<crate::proto::ProtoError> for ServerError {
    fn from(e: crate::proto::ProtoError) -> ServerError {
        ServerError::Encode(e)
    }
}

/// What to do after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    Close(SessionEnd),
}

/// Largest frame payload the agent reads before a host has said Hello: a
/// Hello is a few hundred bytes, and an unauthenticated peer must not make a
/// small board hold a 256 MiB payload. Larger frames are refused from their
/// header.
pub const PRE_HELLO_MAX_PAYLOAD: u32 = 4096;

/// Shortest token the agent accepts: 16 characters, as from
/// `head -c 12 /dev/urandom | base64`.
pub const MIN_TOKEN_LEN: usize = 16;

/// Whether `given` is the token, in time that depends on the length of
/// `given` only (which the sender knows anyway): every byte of it is
/// compared, against the expected token repeated, and the lengths are
/// compared the same way, so neither the position of the first wrong byte
/// nor the expected length shows in the reply time.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut equal = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (i, b) in given.iter().enumerate() {
        equal &= b.ct_eq(&expected[i % expected.len()]);
    }
    bool::from(equal)
}

/// One host's session state.
pub struct Session {
    config: ServerConfig,
    greeted: bool,
    models: BTreeMap<u32, Model>,
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    next_handle: u32,
    peer: String,
}

impl Session {
    /// A fresh session (no Hello yet, no models).
    pub fn new(config: ServerConfig, peer: impl Into<String>) -> Session {
        Session {
            config,
            greeted: false,
            models: BTreeMap::new(),
            next_handle: 1,
            peer: peer.into(),
        }
    }

    /// Whether Hello has been accepted.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    fn hello(&mut self, hello: HelloRequest) -> (Response, Next) {
        // The token first: a host that does not know it learns nothing, not
        // even which protocol or version this agent speaks.
        if let Some(expected) = &self.config.token {
            let ok = hello
                .token
                .as_deref()
                .is_some_and(|t| same_token(t.as_bytes(), expected.as_bytes()));
            if !ok {
                tracing::warn!(
                    "{}: refusing Hello with a missing or wrong token",
                    self.peer
                );
                let why = if hello.token.is_some() {
                    "wrong token"
                } else {
                    "missing token"
                };
                std::thread::sleep(self.config.refusal_delay);
                return (
                    Response::error(
                        ErrorCode::Unauthorized,
                        format!("{why}: this agent requires the token it was started with"),
                    ),
                    Next::Close(SessionEnd::Refused),
                );
            }
        }
        if hello.protocol_major != PROTOCOL_MAJOR {
            tracing::warn!(
                "{}: refusing host protocol {}.{} (agent speaks {PROTOCOL_MAJOR}.{PROTOCOL_MINOR})",
                self.peer,
                hello.protocol_major,
                hello.protocol_minor
            );
            return (
                Response::error(
                    ErrorCode::ProtocolMismatch,
                    format!(
                        "host speaks protocol {}.{}, this agent (padnas-agent {}) speaks \
                         {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}; deploy the agent built with this host",
                        hello.protocol_major,
                        hello.protocol_minor,
                        info::AGENT_VERSION
                    ),
                ),
                Next::Close(SessionEnd::Refused),
            );
        }
        self.greeted = true;
        let info = info::gather();
        tracing::info!(
            "{}: hello from host protocol {}.{}; agent {} on {} ({} cores)",
            self.peer,
            hello.protocol_major,
            hello.protocol_minor,
            info.agent_version,
            info.cpu,
            info.cores
        );
        (Response::Hello(info), Next::Continue)
    }

    fn unknown_handle(&self, handle: u32) -> Response {
        let loaded: Vec<u32> = self.models.keys().copied().collect();
        Response::error(
            ErrorCode::UnknownHandle,
            format!("no model loaded under handle {handle} (loaded: {loaded:?})"),
        )
    }

    /// Answers one request.
    fn handle(&mut self, request: Request) -> (Response, Next) {
        let kind = request.kind();
        if let Request::Hello(hello) = request {
            return self.hello(hello);
        }
        if !self.greeted {
            return (
                Response::error(
                    ErrorCode::HelloRequired,
                    format!("{} before Hello: send Hello first", kind.name()),
                ),
                Next::Continue,
            );
        }
        match request {
            Request::Hello(_) => unreachable!("handled above"),
            Request::LoadModel { header, onnx } => (
                self.load(&onnx, header.input_shape.as_deref()),
                Next::Continue,
            ),
            Request::Bench(req) => (
                self.bench(req.handle, req.reference, req.sensor_every, &req.limits),
                Next::Continue,
            ),
            Request::Infer { header, data } => (
                self.infer(header.handle, &header.shape, &data),
                Next::Continue,
            ),
            Request::Unload(req) => {
                if self.models.remove(&req.handle).is_some() {
                    tracing::debug!("{}: unloaded model {}", self.peer, req.handle);
                    (Response::Unloaded, Next::Continue)
                } else {
                    (self.unknown_handle(req.handle), Next::Continue)
                }
            }
            Request::Shutdown => {
                tracing::info!("{}: shutdown requested", self.peer);
                (Response::Bye, Next::Close(SessionEnd::Shutdown))
            }
        }
    }

    #[cfg(feature = "bench")]
    fn load(&mut self, onnx: &[u8], input_shape: Option<&[usize]>) -> Response {
        use crate::proto::ModelLoaded;
        if onnx.is_empty() {
            return Response::error(ErrorCode::BadModel, "LoadModel carried no ONNX bytes");
        }
        if self.models.len() >= self.config.max_models {
            return Response::error(
                ErrorCode::Internal,
                format!(
                    "{} models are loaded, the most one session may hold; unload some first",
                    self.models.len()
                ),
            );
        }
        match crate::bench::load(onnx, input_shape) {
            Ok(model) => {
                let handle = self.next_handle;
                self.next_handle = self.next_handle.wrapping_add(1).max(1);
                let reply = ModelLoaded {
                    handle,
                    input_shape: model.input_shape().to_vec(),
                    output_shape: model.output_shape().to_vec(),
                    load_ms: model.load_ms(),
                };
                tracing::info!(
                    "{}: loaded model {handle} ({} bytes) {:?} -> {:?} in {:.1} ms",
                    self.peer,
                    onnx.len(),
                    reply.input_shape,
                    reply.output_shape,
                    reply.load_ms
                );
                self.models.insert(handle, model);
                Response::Loaded(reply)
            }
            Err(e) => {
                tracing::warn!("{}: model refused: {e}", self.peer);
                Response::error(e.code(), e.to_string())
            }
        }
    }

    #[cfg(not(feature = "bench"))]
    fn load(&mut self, _onnx: &[u8], _input_shape: Option<&[usize]>) -> Response {
        Response::error(
            ErrorCode::Internal,
            "this agent was built without the `bench` feature and cannot run models",
        )
    }

    /// Drops a model whose run panicked: its state can no longer be trusted.
    #[cfg(feature = "bench")]
    fn after_error(&mut self, handle: u32, e: &crate::bench::BenchError) -> Response {
        let mut message = e.to_string();
        if matches!(e, crate::bench::BenchError::Panicked { .. }) {
            self.models.remove(&handle);
            message.push_str(&format!("; model {handle} was unloaded"));
        }
        tracing::warn!("{}: model {handle}: {message}", self.peer);
        Response::Error(crate::proto::ErrorReply::new(e.code(), message))
    }

    #[cfg(feature = "bench")]
    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &crate::proto::BenchLimits,
    ) -> Response {
        let Some(model) = self.models.get(&handle) else {
            return self.unknown_handle(handle);
        };
        let reference = match reference {
            None => None,
            Some(r) if r == handle => {
                return Response::error(
                    ErrorCode::BadMessage,
                    format!("model {handle} cannot be its own reference"),
                );
            }
            Some(r) => match self.models.get(&r) {
                Some(m) => Some(m),
                None => return self.unknown_handle(r),
            },
        };
        let result = model.bench(reference, sensor_every, limits);
        match result {
            Ok(stats) => Response::Stats(stats),
            Err(e) => self.after_error(handle, &e),
        }
    }

    #[cfg(feature = "bench")]
    fn infer(&mut self, handle: u32, shape: &[usize], data: &[f32]) -> Response {
        let Some(model) = self.models.get(&handle) else {
            return self.unknown_handle(handle);
        };
        let result = model.infer(shape, data);
        match result {
            Ok((shape, data)) => Response::Output { shape, data },
            Err(e) => self.after_error(handle, &e),
        }
    }

    #[cfg(not(feature = "bench"))]
    fn bench(
        &mut self,
        handle: u32,
        _reference: Option<u32>,
        _sensor_every: Option<u32>,
        _limits: &crate::proto::BenchLimits,
    ) -> Response {
        match self.models.get(&handle) {
            None => self.unknown_handle(handle),
            Some(model) => match *model {},
        }
    }

    #[cfg(not(feature = "bench"))]
    fn infer(&mut self, handle: u32, _shape: &[usize], _data: &[f32]) -> Response {
        match self.models.get(&handle) {
            None => self.unknown_handle(handle),
            Some(model) => match *model {},
        }
    }
}

fn send(transport: &mut dyn Transport, response: Response) -> Result<(), ServerError> {
    let frame = match response.into_frame() {
        Ok(frame) => frame,
        // An output too large for a frame still gets an answer.
        Err(e) => Response::error(ErrorCode::Internal, format!("cannot encode the reply: {e}"))
            .into_frame()?,
    };
    transport.send(&frame)?;
    Ok(())
}

/// Serves one host over `transport` until it closes, is refused, times out
/// or asks for shutdown.
pub fn serve_session(
    transport: &mut dyn Transport,
    config: &ServerConfig,
) -> Result<SessionEnd, ServerError> {
    let peer = transport.peer();
    let mut session = Session::new(config.clone(), peer.clone());
    // Until Hello: small frames only, and one deadline for the whole
    // handshake. Not every transport can time out (stdio, whose peer is the
    // process that started the agent); that is fine.
    transport.set_max_payload(PRE_HELLO_MAX_PAYLOAD);
    if let Some(t) = config.hello_timeout {
        let _ = transport.set_deadline(Some(Instant::now() + t));
    }
    loop {
        let frame = match transport.recv() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::info!("{peer}: closed the link");
                return Ok(SessionEnd::Closed);
            }
            Err(TransportError::TimedOut) => {
                if session.greeted() {
                    tracing::info!("{peer}: silent too long; closing");
                } else {
                    tracing::info!("{peer}: no accepted Hello within the hello timeout; closing");
                }
                return Ok(SessionEnd::TimedOut);
            }
            // Bytes that were never a frame are not a request: answering
            // them would put every later reply one off. Log and go on.
            Err(TransportError::Proto(e @ ProtoError::Garbage { .. })) => {
                tracing::warn!("{peer}: {e}");
                continue;
            }
            Err(TransportError::Proto(e)) => {
                tracing::warn!("{peer}: {e}");
                // The peer may be gone already (a frame cut by a hang-up);
                // the next recv says so, so a failed reply is not fatal.
                if let Err(send_err) = send(transport, Response::error(e.code(), e.to_string())) {
                    tracing::debug!("{peer}: cannot report the bad frame: {send_err}");
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let kind = frame.kind;
        let request = match Request::from_frame(frame) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!("{peer}: kind {kind:#04x}: {e}");
                send(transport, Response::error(e.code(), e.to_string()))?;
                continue;
            }
        };
        tracing::debug!("{peer}: {}", request.kind().name());
        let was_greeted = session.greeted();
        let (response, next) = session.handle(request);
        // Logged after the reply is on its way: writing the line (and the
        // host relaying it) used to sit inside the host's round trip.
        let done = match &response {
            Response::Stats(s) => Some(format!(
                "{} runs, median {:.3} ms (p10 {:.3}, p90 {:.3}), {} thread(s){}",
                s.runs,
                s.median_ms,
                s.p10_ms,
                s.p90_ms,
                s.threads,
                s.ratio_median
                    .map_or(String::new(), |r| format!(", {r:.3}× the reference"))
            )),
            _ => None,
        };
        send(transport, response)?;
        if let Some(done) = done {
            tracing::info!("{peer}: bench: {done}");
        }
        if !was_greeted && session.greeted() {
            transport.set_max_payload(MAX_PAYLOAD_BYTES);
            let _ = transport.set_deadline(None);
            let _ = transport.set_read_timeout(config.idle_timeout);
        }
        if let Next::Close(end) = next {
            return Ok(end);
        }
    }
}

/// Serves hosts one after another until one asks for shutdown. A host that
/// misbehaves, drops or even makes a session panic is logged and the next
/// one is served.
pub fn serve_tcp(server: &TcpServer, config: &ServerConfig) -> Result<(), ServerError> {
    loop {
        let mut transport = match server.accept() {
            Ok(transport) => transport,
            Err(e) => {
                // Transient (ECONNABORTED, EMFILE): back off a little, go on.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = transport.peer();
        tracing::info!("{peer}: connected");
        // A host that stops reading must not wedge the agent either.
        if let Err(e) = transport.set_write_timeout(config.idle_timeout) {
            tracing::warn!("{peer}: {e}");
        }
        match catch_unwind(AssertUnwindSafe(|| serve_session(&mut transport, config))) {
            Ok(Ok(SessionEnd::Shutdown)) => return Ok(()),
            Ok(Ok(end)) => tracing::info!("{peer}: session ended ({end:?})"),
            Ok(Err(e)) => tracing::warn!("{peer}: session failed: {e}"),
            Err(_) => tracing::error!("{peer}: session panicked; serving the next host"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ClientError};
    use crate::proto::{BenchLimits, Frame, HelloRequest, Kind, PROTOCOL_MAJOR, Request, Response};
    use crate::transport::memory::{self, MemoryTransport};
    use std::thread::{self, JoinHandle};

    type Server = JoinHandle<Result<SessionEnd, ServerError>>;

    fn start_raw(config: ServerConfig) -> (MemoryTransport, Server) {
        let (host, mut agent) = memory::duplex();
        let server = thread::spawn(move || serve_session(&mut agent, &config));
        (host, server)
    }

    fn start(config: ServerConfig) -> (Client, Server) {
        let (host, server) = start_raw(config);
        (Client::new(Box::new(host)), server)
    }

    fn code(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
        match result {
            Err(ClientError::Remote(reply)) => reply.code,
            other => panic!("expected a remote error, got {other:?}"),
        }
    }

    fn reply(host: &mut MemoryTransport) -> Response {
        Response::from_frame(host.recv().unwrap().unwrap()).unwrap()
    }

    fn error_code(response: Response) -> ErrorCode {
        match response {
            Response::Error(e) => e.code,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    fn quick() -> BenchLimits {
        BenchLimits {
            warmup_runs: 1,
            warmup_ms: 0,
            min_runs: 3,
            max_runs: 5,
            max_time_ms: 1000,
            ..BenchLimits::default()
        }
    }

    #[test]
    fn hello_is_required_first() {
        let (mut client, server) = start(ServerConfig::default());
        assert_eq!(code(client.bench(1, &quick())), ErrorCode::HelloRequired);
        assert_eq!(
            code(client.load_model(b"x", None)),
            ErrorCode::HelloRequired
        );
        // Shutdown before Hello must not stop the agent either.
        assert_eq!(code(client.shutdown()), ErrorCode::HelloRequired);
        let info = client.hello(None).unwrap();
        assert_eq!(info.protocol, PROTOCOL_MAJOR);
        client.shutdown().unwrap();
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Shutdown);
    }

    #[test]
    fn protocol_mismatch_is_refused_and_closed() {
        let (mut host, server) = start_raw(ServerConfig::default());
        let hello = Request::Hello(HelloRequest {
            protocol_major: PROTOCOL_MAJOR + 1,
            protocol_minor: 0,
            token: None,
        });
        host.send(&hello.into_frame().unwrap()).unwrap();
        match reply(&mut host) {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::ProtocolMismatch);
                assert!(
                    e.message.contains(&format!("{}.0", PROTOCOL_MAJOR + 1)),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
        assert!(
            host.recv().unwrap().is_none(),
            "the agent closes after refusing"
        );
    }

    #[test]
    fn client_reports_protocol_mismatch_as_its_own_error() {
        // A fake agent that refuses every Hello, as a newer agent would.
        let (host, mut agent) = memory::duplex();
        let fake = thread::spawn(move || {
            let _ = agent.recv();
            let refuse = Response::error(ErrorCode::ProtocolMismatch, "agent speaks 2.0");
            agent.send(&refuse.into_frame().unwrap()).unwrap();
        });
        let mut client = Client::new(Box::new(host));
        match client.hello(None) {
            Err(ClientError::ProtocolMismatch {
                host,
                agent: None,
                message,
            }) => {
                assert_eq!(host, PROTOCOL_MAJOR);
                assert!(message.contains("2.0"));
            }
            other => panic!("{other:?}"),
        }
        fake.join().unwrap();
    }

    const TOKEN: &str = "correct-horse-battery";

    #[test]
    fn token_is_checked_and_a_refusal_waits() {
        let delay = Duration::from_millis(150);
        let config = ServerConfig {
            token: Some(TOKEN.into()),
            refusal_delay: delay,
            ..ServerConfig::default()
        };
        let near = &TOKEN[..TOKEN.len() - 1];
        let longer = format!("{TOKEN}!");
        for token in [None, Some("wrong"), Some(near), Some(longer.as_str())] {
            let (mut client, server) = start(config.clone());
            let t0 = std::time::Instant::now();
            assert_eq!(
                code(client.hello(token)),
                ErrorCode::Unauthorized,
                "{token:?}"
            );
            // A lower bound only: the refusal came no sooner than the delay.
            assert!(t0.elapsed() >= delay, "{token:?} answered without delay");
            assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
        }
        let (mut client, server) = start(config);
        client.hello(Some(TOKEN)).unwrap();
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn same_token_compares_every_byte_and_the_length() {
        let t = TOKEN.as_bytes();
        assert!(same_token(t, t));
        assert!(!same_token(&t[..t.len() - 1], t));
        assert!(!same_token(b"", t));
        assert!(!same_token(t, b""));
        // A repetition of the token is not the token.
        let twice = [t, t].concat();
        assert!(!same_token(&twice, t));
        let mut flipped = t.to_vec();
        flipped[t.len() - 1] ^= 1;
        assert!(!same_token(&flipped, t));
    }

    #[test]
    fn without_the_token_a_protocol_mismatch_says_nothing_about_the_agent() {
        let config = ServerConfig {
            token: Some(TOKEN.into()),
            refusal_delay: Duration::ZERO,
            ..ServerConfig::default()
        };
        let (mut host, server) = start_raw(config);
        let hello = Request::Hello(HelloRequest {
            protocol_major: PROTOCOL_MAJOR + 1,
            protocol_minor: 0,
            token: Some("guess".into()),
        });
        host.send(&hello.into_frame().unwrap()).unwrap();
        match reply(&mut host) {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::Unauthorized);
                assert!(
                    !e.message.contains(info::AGENT_VERSION) && !e.message.contains("protocol"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Refused);
    }

    #[test]
    fn an_oversize_frame_before_hello_is_refused_from_its_header() {
        let (mut host, server) = start_raw(ServerConfig::default());
        // A LoadModel header that declares 200 MiB, and no payload: the
        // agent must answer from the header alone, not wait for the bytes.
        let mut head = crate::proto::MAGIC.to_vec();
        head.push(Kind::LoadModel as u8);
        head.extend((200u32 << 20).to_le_bytes());
        host.send_raw(&head).unwrap();
        match reply(&mut host) {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::Oversize);
                assert!(
                    e.message.contains(&PRE_HELLO_MAX_PAYLOAD.to_string()),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        // A real host is then served, and after Hello large frames pass.
        let mut client = Client::new(Box::new(host));
        client.hello(None).unwrap();
        let big = Frame::new(Kind::Unload, b"{}".to_vec(), vec![0; 64 << 10]);
        client.transport_mut().send(&big).unwrap();
        let answer = client.transport_mut().recv().unwrap().unwrap();
        assert!(
            !matches!(Response::from_frame(answer).unwrap(), Response::Error(e) if e.code == ErrorCode::Oversize)
        );
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_dripping_host_is_closed_at_the_hello_deadline() {
        let config = ServerConfig {
            hello_timeout: Some(Duration::from_millis(300)),
            ..ServerConfig::default()
        };
        let (mut host, server) = start_raw(config);
        // One byte of garbage every 20 ms, far more often than any per-read
        // timeout would allow, for up to 30 s: the agent must close anyway.
        let drip = thread::spawn(move || {
            for _ in 0..1500 {
                if host.send_raw(b"x").is_err() {
                    return true;
                }
                thread::sleep(Duration::from_millis(20));
            }
            false
        });
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::TimedOut);
        assert!(
            drip.join().unwrap(),
            "the agent stopped reading: writes fail"
        );
    }

    #[test]
    fn damaged_frames_get_error_replies_and_the_session_goes_on() {
        let (mut host, server) = start_raw(ServerConfig::default());
        let hello = Request::Hello(HelloRequest {
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: 0,
            token: None,
        })
        .into_frame()
        .unwrap();

        // Garbage, then a good frame: the garbage is logged, not answered
        // (it was no request), so the first reply answers the frame.
        let mut bytes = b"garbage!".to_vec();
        bytes.extend(hello.encode().unwrap());
        host.send_raw(&bytes).unwrap();
        assert!(matches!(reply(&mut host), Response::Hello(_)));

        // Bad CRC.
        let mut bad = hello.encode().unwrap();
        let n = bad.len();
        bad[n - 1] ^= 1;
        host.send_raw(&bad).unwrap();
        assert_eq!(error_code(reply(&mut host)), ErrorCode::BadFrame);

        // Oversize length.
        let mut big = b"PDNA\x02".to_vec();
        big.extend(u32::MAX.to_le_bytes());
        host.send_raw(&big).unwrap();
        assert_eq!(error_code(reply(&mut host)), ErrorCode::Oversize);

        // Unknown kind.
        host.send(&Frame {
            kind: 0x42,
            header: b"{}".to_vec(),
            blob: vec![],
        })
        .unwrap();
        match reply(&mut host) {
            Response::Error(e) => {
                assert_eq!(e.code, ErrorCode::UnknownKind);
                assert!(e.message.contains("0x42"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }

        // Bad JSON in a known kind.
        host.send(&Frame {
            kind: Kind::Bench as u8,
            header: b"{not json".to_vec(),
            blob: vec![],
        })
        .unwrap();
        assert_eq!(error_code(reply(&mut host)), ErrorCode::BadMessage);

        // A reply kind sent to the agent.
        host.send(&Response::Bye.into_frame().unwrap()).unwrap();
        assert_eq!(error_code(reply(&mut host)), ErrorCode::BadMessage);

        // Still serving.
        host.send(&Request::Shutdown.into_frame().unwrap()).unwrap();
        assert_eq!(reply(&mut host), Response::Bye);
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Shutdown);
    }

    #[test]
    fn truncated_input_then_close_ends_the_session_cleanly() {
        let (mut host, server) = start_raw(ServerConfig::default());
        host.send_raw(b"PDNA\x01\x10\x00").unwrap();
        drop(host);
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::Closed);
    }

    #[test]
    fn silent_host_times_out() {
        let config = ServerConfig {
            hello_timeout: Some(Duration::from_millis(100)),
            ..ServerConfig::default()
        };
        let (_host, server) = start_raw(config);
        assert_eq!(server.join().unwrap().unwrap(), SessionEnd::TimedOut);
    }

    #[cfg(feature = "bench")]
    mod with_models {
        use super::*;
        use crate::onnx_fixture::{ConvClip, Dim, relu};

        #[test]
        fn corrupt_onnx_is_bad_model_and_the_next_request_works() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            for junk in [&b"definitely not onnx"[..], &[0xFF; 64][..], &[][..]] {
                assert_eq!(code(client.load_model(junk, None)), ErrorCode::BadModel);
            }
            let model = ConvClip::default();
            let loaded = client.load_model(&model.encode(), None).unwrap();
            assert_eq!(loaded.input_shape, vec![1, 3, 16, 16]);
            assert_eq!(loaded.output_shape, vec![1, 8, 16, 16]);
            let stats = client.bench(loaded.handle, &quick()).unwrap();
            assert!((3..=5).contains(&stats.runs));
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn unknown_handles_are_reported() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            assert_eq!(code(client.bench(42, &quick())), ErrorCode::UnknownHandle);
            assert_eq!(
                code(client.infer(42, &[1], &[0.0])),
                ErrorCode::UnknownHandle
            );
            assert_eq!(code(client.unload(42)), ErrorCode::UnknownHandle);
            let loaded = client
                .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
                .unwrap();
            client.unload(loaded.handle).unwrap();
            assert_eq!(code(client.unload(loaded.handle)), ErrorCode::UnknownHandle);
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn infer_runs_the_model() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let loaded = client
                .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
                .unwrap();
            let (shape, data) = client
                .infer(loaded.handle, &[1, 4], &[-1.0, 2.0, -3.0, 4.5])
                .unwrap();
            assert_eq!(shape, vec![1, 4]);
            assert_eq!(data, vec![0.0, 2.0, 0.0, 4.5]);
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn bad_input_shapes_are_refused() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let conv = ConvClip::default().encode();
            // Wrong rank, and a disagreeing fixed dimension.
            assert_eq!(
                code(client.load_model(&conv, Some(&[1, 3, 16]))),
                ErrorCode::BadInput
            );
            assert_eq!(
                code(client.load_model(&conv, Some(&[1, 4, 16, 16]))),
                ErrorCode::BadInput
            );
            assert_eq!(
                code(client.load_model(&conv, Some(&[1, 3, 0, 16]))),
                ErrorCode::BadInput
            );
            let loaded = client.load_model(&conv, None).unwrap();
            // Infer with a shape other than the loaded one.
            let data = vec![0.0; 3 * 8 * 8];
            assert_eq!(
                code(client.infer(loaded.handle, &[1, 3, 8, 8], &data)),
                ErrorCode::BadInput
            );
            // Shape and data that disagree never leave the host.
            assert!(matches!(
                client.infer(loaded.handle, &[1, 3, 16, 16], &data),
                Err(ClientError::InvalidArgument(_))
            ));
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn symbolic_input_needs_a_shape() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let spec = ConvClip {
                batch: None,
                ..ConvClip::default()
            };
            match client.load_model(&spec.encode(), None) {
                Err(ClientError::Remote(e)) => {
                    assert_eq!(e.code, ErrorCode::BadModel);
                    assert!(e.message.contains("not fully concrete"), "{}", e.message);
                    assert!(e.message.contains("[N, 3, 16, 16]"), "{}", e.message);
                }
                other => panic!("{other:?}"),
            }
            let loaded = client
                .load_model(&spec.encode(), Some(&[1, 3, 16, 16]))
                .unwrap();
            assert_eq!(loaded.output_shape, vec![1, 8, 16, 16]);
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        /// A CPU this process may run on (containers may not offer CPU 0).
        fn allowed_cpu() -> usize {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: zeroed cpu_set_t is the empty set; getaffinity fills it.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                let size = std::mem::size_of::<libc::cpu_set_t>();
                if unsafe { libc::sched_getaffinity(0, size, &mut set) } == 0 {
                    let cpus = libc::CPU_SETSIZE as usize;
                    if let Some(cpu) = (0..cpus).find(|&c| unsafe { libc::CPU_ISSET(c, &set) }) {
                        return cpu;
                    }
                }
            }
            0
        }

        #[test]
        fn bench_statistics_are_consistent() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let spec = ConvClip {
                stride: 2,
                ..ConvClip::default()
            };
            let loaded = client.load_model(&spec.encode(), None).unwrap();
            assert_eq!(loaded.output_shape, vec![1, 8, 8, 8]);
            let limits = BenchLimits {
                warmup_runs: 2,
                warmup_ms: 0,
                min_runs: 4,
                max_runs: 8,
                max_time_ms: 10_000,
                threads: Some(2),
                pin_cpu: Some(allowed_cpu()),
                return_samples: true,
            };
            let s = client.bench(loaded.handle, &limits).unwrap();
            assert_eq!(s.runs, 8);
            assert!(s.warmup_runs >= 2);
            assert_eq!(s.threads, 2);
            assert!(s.min_ms <= s.p10_ms && s.p10_ms <= s.median_ms);
            assert!(s.median_ms <= s.p90_ms && s.p90_ms <= s.max_ms);
            assert!(s.min_ms > 0.0 && s.stddev_ms >= 0.0);
            let samples = s.samples_ms.unwrap();
            assert_eq!(samples.len(), 8);
            assert!((samples.iter().sum::<f64>() - s.total_ms).abs() < 1e-9);
            if cfg!(target_os = "linux") {
                assert_eq!(s.pinned_cpu, Some(allowed_cpu()));
            }
            // max_time stops early once min_runs are done.
            let timed = BenchLimits {
                min_runs: 2,
                max_runs: 1_000_000,
                max_time_ms: 0,
                ..quick()
            };
            assert_eq!(client.bench(loaded.handle, &timed).unwrap().runs, 2);
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn paired_bench_alternates_with_the_reference() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let big = ConvClip {
                in_channels: 32,
                out_channels: 64,
                size: 32,
                ..ConvClip::default()
            };
            let model = client.load_model(&big.encode(), None).unwrap();
            let small = client
                .load_model(&relu(&[Dim::Fixed(1), Dim::Fixed(4)]), None)
                .unwrap();
            let limits = BenchLimits {
                min_runs: 6,
                max_runs: 6,
                return_samples: true,
                ..quick()
            };
            let s = client
                .bench_paired(model.handle, Some(small.handle), &limits)
                .unwrap();
            let samples = s.samples_ms.clone().unwrap();
            let refs = s.reference_samples_ms.clone().unwrap();
            assert_eq!((samples.len(), refs.len()), (6, 6));
            let mut ratios: Vec<f64> = samples.iter().zip(&refs).map(|(x, r)| x / r).collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = s.ratio_median.unwrap();
            assert!((ratio - (ratios[2] + ratios[3]) / 2.0).abs() <= 1e-9 * ratio);
            // A 32→64-channel 3×3 convolution on 32×32 against a 4-value
            // ReLU: the pairing must not have swapped the two.
            assert!(ratio > 10.0, "ratio {ratio}");
            assert!(s.reference_median_ms.unwrap() < s.median_ms);
            let (wall, timed) = (s.wall_ms.unwrap(), s.timed_wall_ms.unwrap());
            // The timed loop holds both models' runs.
            let both = s.total_ms + refs.iter().sum::<f64>();
            assert!(timed >= both && wall >= timed, "{both} {timed} {wall}");

            // Without a reference, no reference fields; without samples, no
            // reference samples either.
            let plain = client.bench(model.handle, &limits).unwrap();
            assert!(plain.ratio_median.is_none() && plain.reference_samples_ms.is_none());
            let quiet = BenchLimits {
                return_samples: false,
                ..limits.clone()
            };
            let s = client
                .bench_paired(model.handle, Some(small.handle), &quiet)
                .unwrap();
            assert!(s.reference_samples_ms.is_none() && s.ratio_median.is_some());

            assert_eq!(
                code(client.bench_paired(model.handle, Some(model.handle), &limits)),
                ErrorCode::BadMessage
            );
            assert_eq!(
                code(client.bench_paired(model.handle, Some(99), &limits)),
                ErrorCode::UnknownHandle
            );
            assert!(client.bench(model.handle, &quick()).is_ok());
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn the_sensor_is_read_between_every_k_runs() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let model = client
                .load_model(&ConvClip::default().encode(), None)
                .unwrap();
            let request = |every: u32, return_samples: bool| crate::proto::BenchRequest {
                handle: model.handle,
                limits: BenchLimits {
                    min_runs: 7,
                    max_runs: 7,
                    return_samples,
                    ..quick()
                },
                reference: None,
                sensor_every: Some(every),
            };
            // Before run 0, after runs 3 and 6, after the last: ⌈7/3⌉ + 1.
            let s = client.bench_request(request(3, true)).unwrap();
            let readings = s.sensor_samples_ms.clone().expect("readings");
            assert_eq!((s.runs, readings.len()), (7, 4));
            assert!(
                readings.iter().all(|r| r.is_finite() && *r > 0.0),
                "{readings:?}"
            );
            // Readings after the first (and the untimed run after each) lie
            // outside the model's samples but inside the timed loop.
            let (timed, sensed) = (s.timed_wall_ms.unwrap(), readings[1..].iter().sum::<f64>());
            assert!(
                timed >= s.total_ms + sensed,
                "{timed} {} {sensed}",
                s.total_ms
            );
            // Every run: one more reading than runs. Readings come with the
            // request, samples or not; without the sensor there are none.
            let s = client.bench_request(request(1, false)).unwrap();
            assert_eq!(s.sensor_samples_ms.map(|r| r.len()), Some(8));
            let plain = client.bench(model.handle, &quick()).unwrap();
            assert!(plain.sensor_samples_ms.is_none());
            assert_eq!(
                code(client.bench_request(request(0, true))),
                ErrorCode::BadMessage,
                "a reading every 0 runs"
            );
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn bad_limits_are_refused() {
            let (mut client, server) = start(ServerConfig::default());
            client.hello(None).unwrap();
            let loaded = client.load_model(&relu(&[Dim::Fixed(2)]), None).unwrap();
            for limits in [
                BenchLimits {
                    max_runs: 0,
                    min_runs: 0,
                    ..quick()
                },
                BenchLimits {
                    min_runs: 9,
                    max_runs: 3,
                    ..quick()
                },
                BenchLimits {
                    threads: Some(0),
                    ..quick()
                },
            ] {
                assert_eq!(
                    code(client.bench(loaded.handle, &limits)),
                    ErrorCode::BadMessage
                );
            }
            assert!(client.bench(loaded.handle, &quick()).is_ok());
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }

        #[test]
        fn model_limit_is_enforced() {
            let config = ServerConfig {
                max_models: 1,
                ..ServerConfig::default()
            };
            let (mut client, server) = start(config);
            client.hello(None).unwrap();
            let model = relu(&[Dim::Fixed(2)]);
            let first = client.load_model(&model, None).unwrap();
            assert_eq!(code(client.load_model(&model, None)), ErrorCode::Internal);
            client.unload(first.handle).unwrap();
            client.load_model(&model, None).unwrap();
            client.shutdown().unwrap();
            server.join().unwrap().unwrap();
        }
    }

    #[test]
    fn tcp_server_survives_bad_clients() {
        use crate::transport::tcp;
        let listener = tcp::TcpServer::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = ServerConfig {
            hello_timeout: Some(Duration::from_millis(300)),
            idle_timeout: Some(Duration::from_secs(30)),
            ..ServerConfig::default()
        };
        let server = thread::spawn(move || serve_tcp(&listener, &config));
        let timeout = Duration::from_secs(5);

        // 1. Connects and drops at once.
        drop(tcp::connect(&addr, timeout).unwrap());
        // 2. Sends garbage and half a frame, then drops.
        {
            use std::io::Write;
            let mut raw = std::net::TcpStream::connect(&addr).unwrap();
            raw.write_all(b"GET / HTTP/1.0\r\n\r\nPDNA\x01").unwrap();
        }
        // 3. Connects and says nothing: dropped after the hello timeout.
        let silent = tcp::connect(&addr, timeout).unwrap();
        // 4. Refused for a wrong protocol.
        let mut refused = tcp::connect(&addr, timeout).unwrap();
        let hello = Request::Hello(HelloRequest {
            protocol_major: 99,
            protocol_minor: 0,
            token: None,
        });
        refused.send(&hello.into_frame().unwrap()).unwrap();
        let reply = Response::from_frame(refused.recv().unwrap().unwrap()).unwrap();
        assert!(matches!(reply, Response::Error(e) if e.code == ErrorCode::ProtocolMismatch));
        drop(silent);

        // 5. A well-behaved host still gets served, and can stop the agent.
        let mut client = Client::new(Box::new(tcp::connect(&addr, timeout).unwrap()));
        client.hello(None).unwrap();
        assert_eq!(code(client.unload(7)), ErrorCode::UnknownHandle);
        client.shutdown().unwrap();
        server.join().unwrap().unwrap();
    }
}
