//! The host's side: typed calls over any [`Transport`].
//!
//! Calls are strictly request → reply. A remote failure comes back as
//! [`ClientError::Remote`] carrying the agent's [`ErrorReply`], after which
//! the session is still good (the host logs it and goes on); transport and
//! protocol errors mean the session should be dropped.

use crate::proto::{
    AgentInfo, BenchLimits, BenchRequest, BenchStats, ErrorCode, ErrorReply, HeaderEncoding,
    HelloRequest, InferRequest, Int8Block, Kind, LoadModel, ModelLoaded, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, ProtoError, Request, Response, UnloadRequest, shape_elements,
};
use crate::transport::{Transport, TransportError};

use std::time::{Duration, Instant};

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent answered with an error; the session goes on.
    #[error("agent error {0}")]
    Remote(ErrorReply),
    /// Host and agent speak different protocol majors.
    #[error("protocol mismatch: host speaks {host}.x, agent {}: {message}", agent.map(|a| format!("speaks {a}.x")).unwrap_or_else(|| "refused".to_string()))]
    ProtocolMismatch {
        /// Host's [`PROTOCOL_MAJOR`].
        host: u16,
        /// Agent's major, when it said.
        agent: Option<u16>,
        /// Details.
        message: String,
    },
    /// The link failed or delivered damaged frames.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A reply (or the request) could not be encoded or decoded.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The agent closed the link.
    #[error("the agent closed the connection")]
    Closed,
    /// The agent answered with the wrong kind of reply.
    #[error("expected a {expected} reply, got {got}")]
    Unexpected {
        /// Kind expected.
        expected: &'static str,
        /// Kind received.
        got: &'static str,
    },
    /// The call's arguments are inconsistent (checked before sending).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No reply came before the request's deadline: the agent is stopped,
    /// wedged or cut off. The session is unusable (a late reply would be
    /// taken for the next request's).
    #[error(
        "no reply to {request} from {peer} within {:.1} s (the agent may be stopped, wedged or cut off; deadlines: the target's deadline_s, plus deadline_margin × the bench time for Bench)",
        .after.as_secs_f64()
    )]
    DeadlineExceeded {
        /// Who was asked (the target's name, or the transport's peer).
        peer: String,
        /// The request kind.
        request: &'static str,
        /// The deadline it had.
        after: Duration,
    },
}

/// How long each request may wait for its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    /// Every request's allowance, and the whole of it for all but Bench.
    pub base: Duration,
    /// Bench gets `base` plus this many times the time its limits allow
    /// (warm-up plus timed runs, twice that with a reference model).
    pub bench_margin: f64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            // Generous: an emulated agent (qemu-user) loads a network in
            // tens of seconds; a silent device is found out within minutes.
            base: Duration::from_secs(120),
            bench_margin: 3.0,
        }
    }
}

impl Deadlines {
    /// The deadline of `request`, from now.
    pub fn for_request(&self, request: &Request) -> Duration {
        match request {
            Request::Bench(b) => {
                let mut ms = b.limits.warmup_ms.saturating_add(b.limits.max_time_ms) as f64;
                if b.reference.is_some() {
                    ms *= 2.0;
                }
                let extra = (ms * self.bench_margin.max(0.0) / 1e3).min(1e9);
                self.base + Duration::from_secs_f64(extra)
            }
            _ => self.base,
        }
    }
}

impl ClientError {
    /// The agent's error code, for remote errors.
    pub fn remote_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote(reply) => Some(reply.code),
            _ => None,
        }
    }

    /// Whether the session can go on after this error: remote errors, bad
    /// arguments, and a damaged reply (lost, but the stream is back in step).
    pub fn session_usable(&self) -> bool {
        match self {
            ClientError::Remote(_) | ClientError::InvalidArgument(_) => true,
            ClientError::DeadlineExceeded { .. } => false,
            ClientError::Transport(TransportError::Proto(e)) => {
                !matches!(e, ProtoError::Truncated { .. }) && e.is_recoverable()
            }
            _ => false,
        }
    }
}

/// A session with one agent.
pub struct Client {
    transport: Box<dyn Transport>,
    info: Option<AgentInfo>,
    deadlines: Option<Deadlines>,
    /// Names the agent in errors.
    name: String,
    /// How requests' headers are written: JSON until an agent answers that
    /// it reads binary only (the microcontroller firmware).
    encoding: HeaderEncoding,
}

impl Client {
    /// A client over `transport`; call [`Client::hello`] first.
    pub fn new(transport: Box<dyn Transport>) -> Client {
        let name = transport.peer();
        Client {
            transport,
            info: None,
            deadlines: None,
            name,
            encoding: HeaderEncoding::Json,
        }
    }

    /// Gives every request a deadline (see [`Deadlines`]); `name` names the
    /// agent in [`ClientError::DeadlineExceeded`] (the host uses the target's
    /// name). Without this, requests wait as long as the transport does.
    pub fn with_deadlines(mut self, deadlines: Deadlines, name: impl Into<String>) -> Client {
        self.deadlines = Some(deadlines);
        self.name = name.into();
        self
    }

    /// What the agent said in Hello.
    pub fn info(&self) -> Option<&AgentInfo> {
        self.info.as_ref()
    }

    /// How this session writes request headers.
    pub fn header_encoding(&self) -> HeaderEncoding {
        self.encoding
    }

    /// The transport, e.g. to set a read timeout for long benchmarks.
    pub fn transport_mut(&mut self) -> &mut dyn Transport {
        self.transport.as_mut()
    }

    /// Gives the transport back (dropping a child transport stops the agent).
    pub fn into_transport(self) -> Box<dyn Transport> {
        self.transport
    }

    /// Sends `request` and waits for its reply of kind `expected`.
    fn call(&mut self, request: Request, expected: Kind) -> Result<Response, ClientError> {
        let limit = self.deadlines.as_ref().map(|d| d.for_request(&request));
        let kind = request.kind();
        let frame = request.into_frame_as(self.encoding)?;
        if let Some(limit) = limit {
            match self.transport.set_deadline(Some(Instant::now() + limit)) {
                Ok(()) => {}
                Err(TransportError::Unsupported(_)) => {
                    tracing::debug!("{}: this transport cannot bound a wait", self.name);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let result = self.exchange(&frame, expected);
        let result = match (result, limit) {
            (Err(ClientError::Transport(TransportError::TimedOut)), Some(after)) => {
                Err(ClientError::DeadlineExceeded {
                    peer: self.name.clone(),
                    request: kind.name(),
                    after,
                })
            }
            (result, _) => result,
        };
        if limit.is_some() {
            // Best effort: a transport that cannot bound a wait said so above.
            let _ = self.transport.set_deadline(None);
        }
        result
    }

    /// Sends a frame and waits for the reply of kind `expected`.
    fn exchange(
        &mut self,
        frame: &crate::proto::Frame,
        expected: Kind,
    ) -> Result<Response, ClientError> {
        self.transport.send(frame)?;
        let response = loop {
            match self.transport.recv() {
                Ok(Some(frame)) => break Response::from_frame(frame)?,
                Ok(None) => return Err(ClientError::Closed),
                // A login banner or motd before the agent's first frame
                // (ssh, adb) is skipped, not fatal.
                Err(TransportError::Proto(ProtoError::Garbage { skipped })) => {
                    tracing::warn!(
                        "skipped {skipped} byte(s) of non-frame output from {}",
                        self.transport.peer()
                    );
                }
                Err(e) => return Err(e.into()),
            }
        };
        match response {
            Response::Error(reply) => Err(ClientError::Remote(reply)),
            r if r.kind() == expected => Ok(r),
            r => Err(ClientError::Unexpected {
                expected: expected.name(),
                got: r.kind().name(),
            }),
        }
    }

    /// Opens the session. Fails with [`ClientError::ProtocolMismatch`] when
    /// the agent speaks another protocol major.
    ///
    /// Hello goes out with a JSON header, which every agent version reads
    /// but the firmware, built without JSON to save flash; it answers
    /// `unsupported_encoding` (in binary), and the session goes on in binary
    /// from the repeated Hello on.
    pub fn hello(&mut self, token: Option<&str>) -> Result<AgentInfo, ClientError> {
        let request = Request::Hello(HelloRequest {
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            token: token.map(str::to_string),
        });
        let first = self.call(request.clone(), Kind::HelloReply);
        let reply = match first {
            Err(ClientError::Remote(reply))
                if reply.code == ErrorCode::UnsupportedEncoding
                    && self.encoding == HeaderEncoding::Json =>
            {
                tracing::debug!(
                    "{}: the agent reads binary headers only ({}); switching",
                    self.name,
                    reply.message
                );
                self.encoding = HeaderEncoding::Binary;
                self.call(request, Kind::HelloReply)
            }
            other => other,
        };
        match reply {
            Ok(Response::Hello(info)) => {
                if info.protocol != PROTOCOL_MAJOR {
                    return Err(ClientError::ProtocolMismatch {
                        host: PROTOCOL_MAJOR,
                        agent: Some(info.protocol),
                        message: format!(
                            "agent {} reports protocol {}.{}",
                            info.agent_version, info.protocol, info.protocol_minor
                        ),
                    });
                }
                self.info = Some(info.clone());
                Ok(info)
            }
            Err(ClientError::Remote(reply)) if reply.code == ErrorCode::ProtocolMismatch => {
                Err(ClientError::ProtocolMismatch {
                    host: PROTOCOL_MAJOR,
                    agent: None,
                    message: reply.message,
                })
            }
            Err(e) => Err(e),
            Ok(other) => Err(unexpected(Kind::HelloReply, &other)),
        }
    }

    /// Loads an ONNX model; `input_shape` concretises a symbolic input.
    pub fn load_model(
        &mut self,
        onnx: &[u8],
        input_shape: Option<&[usize]>,
    ) -> Result<ModelLoaded, ClientError> {
        let request = Request::LoadModel {
            header: LoadModel {
                input_shape: input_shape.map(<[usize]>::to_vec),
                int8_block: None,
            },
            onnx: onnx.to_vec(),
        };
        match self.call(request, Kind::Loaded)? {
            Response::Loaded(loaded) => Ok(loaded),
            other => Err(unexpected(Kind::Loaded, &other)),
        }
    }

    /// Loads one int8 block on a microcontroller agent, its weights drawn
    /// from the block's seed (see [`Int8Block`]).
    pub fn load_int8_block(&mut self, block: Int8Block) -> Result<ModelLoaded, ClientError> {
        self.load_int8_block_with(block, Vec::new())
    }

    /// Loads one int8 block with its parameters given: `params` as
    /// `padnas-int8`'s codec writes them (empty: drawn from the seed).
    pub fn load_int8_block_with(
        &mut self,
        block: Int8Block,
        params: Vec<u8>,
    ) -> Result<ModelLoaded, ClientError> {
        let request = Request::LoadModel {
            header: LoadModel {
                input_shape: None,
                int8_block: Some(block),
            },
            onnx: params,
        };
        match self.call(request, Kind::Loaded)? {
            Response::Loaded(loaded) => Ok(loaded),
            other => Err(unexpected(Kind::Loaded, &other)),
        }
    }

    /// Benchmarks a loaded model.
    pub fn bench(&mut self, handle: u32, limits: &BenchLimits) -> Result<BenchStats, ClientError> {
        self.bench_paired(handle, None, limits)
    }

    /// Benchmarks a loaded model, alternating run for run with the loaded
    /// model `reference` when given (see [`BenchRequest::reference`]).
    pub fn bench_paired(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        self.bench_request(BenchRequest {
            handle,
            limits: limits.clone(),
            reference,
            sensor_every: None,
        })
    }

    /// Sends any Bench request (reference, sensor: see [`BenchRequest`]).
    pub fn bench_request(&mut self, request: BenchRequest) -> Result<BenchStats, ClientError> {
        let request = Request::Bench(request);
        match self.call(request, Kind::Stats)? {
            Response::Stats(stats) => Ok(stats),
            other => Err(unexpected(Kind::Stats, &other)),
        }
    }

    /// Runs a loaded model once; returns the first output's shape and data.
    pub fn infer(
        &mut self,
        handle: u32,
        shape: &[usize],
        data: &[f32],
    ) -> Result<(Vec<usize>, Vec<f32>), ClientError> {
        if shape_elements(shape) != Some(data.len()) {
            return Err(ClientError::InvalidArgument(format!(
                "shape {shape:?} does not hold {} values",
                data.len()
            )));
        }
        let request = Request::Infer {
            header: InferRequest {
                handle,
                shape: shape.to_vec(),
            },
            data: data.to_vec(),
        };
        match self.call(request, Kind::Output)? {
            Response::Output { shape, data } => Ok((shape, data)),
            other => Err(unexpected(Kind::Output, &other)),
        }
    }

    /// Drops a loaded model on the agent.
    pub fn unload(&mut self, handle: u32) -> Result<(), ClientError> {
        self.call(Request::Unload(UnloadRequest { handle }), Kind::Unloaded)
            .map(|_| ())
    }

    /// Asks the agent to exit; it answers Bye first.
    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.call(Request::Shutdown, Kind::Bye).map(|_| ())
    }
}

fn unexpected(expected: Kind, got: &Response) -> ClientError {
    ClientError::Unexpected {
        expected: expected.name(),
        got: got.kind().name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory;

    #[test]
    fn a_silent_agent_is_a_deadline_error_naming_it_and_the_request() {
        // The agent end reads requests and never answers, like a stopped one.
        let (host, mut agent) = memory::duplex();
        let silent = std::thread::spawn(move || while let Ok(Some(_)) = agent.recv() {});
        let deadlines = Deadlines {
            base: Duration::from_millis(200),
            bench_margin: 1.0,
        };
        let mut client = Client::new(Box::new(host)).with_deadlines(deadlines.clone(), "board-7");
        let limits = BenchLimits {
            warmup_ms: 100,
            max_time_ms: 200,
            ..BenchLimits::default()
        };
        let t0 = Instant::now();
        let err = client.bench(1, &limits).expect_err("no reply");
        let waited = t0.elapsed();
        match &err {
            ClientError::DeadlineExceeded {
                peer,
                request,
                after,
            } => {
                assert_eq!(peer, "board-7");
                assert_eq!(*request, "Bench");
                // base + 1.0 × (100 + 200) ms
                assert_eq!(*after, Duration::from_millis(500));
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.session_usable());
        let text = err.to_string();
        assert!(text.contains("board-7") && text.contains("Bench"), "{text}");
        // It gave up no sooner than its deadline, and not much later (a
        // generous bound: the machine may be busy).
        assert!(waited >= Duration::from_millis(500), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        // A reference doubles the bench time allowed.
        let paired = Request::Bench(BenchRequest {
            handle: 1,
            limits,
            reference: Some(2),
            sensor_every: None,
        });
        assert_eq!(deadlines.for_request(&paired), Duration::from_millis(800));
        drop(client);
        silent.join().expect("silent agent");
    }
}
