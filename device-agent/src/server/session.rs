//! One host's session: the state between its requests (greeted or not,
//! the models it loaded) and the answer to each request.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::{ServerConfig, SessionEnd};
use crate::info;
use crate::proto::{ErrorCode, HelloRequest, PROTOCOL_MAJOR, PROTOCOL_MINOR, Request, Response};

#[cfg(feature = "bench")]
type Model = crate::bench::LoadedModel;

/// Stands in for a model in builds without the runner: none can exist.
#[cfg(not(feature = "bench"))]
#[derive(Debug)]
enum Model {}

/// What to do after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Continue,
    Close(SessionEnd),
}

/// Whether `given` is the token, in time that depends on the length of
/// `given` only (which the sender knows anyway): every byte of it is
/// compared, against the expected token repeated, and the lengths are
/// compared the same way, so neither the position of the first wrong byte
/// nor the expected length shows in the reply time.
pub(super) fn same_token(given: &[u8], expected: &[u8]) -> bool {
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
    pub(super) fn handle(&mut self, request: Request) -> (Response, Next) {
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
            Request::LoadModel { header, .. } if header.int8_block.is_some() => (
                // Refused from the header, before anything is loaded: the
                // int8 kernels live in the microcontroller firmware only.
                Response::error(
                    ErrorCode::BadModel,
                    "int8 blocks run on the microcontroller agent (device-agent/mcu); \
                     this agent runs ONNX models",
                ),
                Next::Continue,
            ),
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
                    memory: None,
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
