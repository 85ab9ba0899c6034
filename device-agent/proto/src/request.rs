//! Typed messages: [`Request`] (host → agent) and [`Response`] (agent →
//! host), and their mapping to and from frames.

use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;

use super::messages::*;
use super::{ErrorCode, ErrorReply, Frame, Kind, ProtoError, f32s_from_le, f32s_to_le};

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ProtoError> {
    // Our message structs always serialise; a failure would be a bug here,
    // reported as a malformed header rather than a panic.
    serde_json::to_vec(value).map_err(|source| ProtoError::BadHeader {
        kind: "outgoing",
        cause: source,
    })
}

/// A message from the host to the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// First message of a session.
    Hello(HelloRequest),
    /// Load an ONNX model.
    LoadModel {
        /// Header fields.
        header: LoadModel,
        /// ONNX protobuf bytes.
        onnx: Vec<u8>,
    },
    /// Benchmark a loaded model.
    Bench(BenchRequest),
    /// Run a loaded model once.
    Infer {
        /// Handle and shape.
        header: InferRequest,
        /// Input tensor, `product(header.shape)` values.
        data: Vec<f32>,
    },
    /// Drop a loaded model.
    Unload(UnloadRequest),
    /// End the session; the agent answers [`Response::Bye`] and exits.
    Shutdown,
}

impl Request {
    /// The kind byte this request travels under.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Hello(_) => Kind::Hello,
            Request::LoadModel { .. } => Kind::LoadModel,
            Request::Bench(_) => Kind::Bench,
            Request::Infer { .. } => Kind::Infer,
            Request::Unload(_) => Kind::Unload,
            Request::Shutdown => Kind::Shutdown,
        }
    }

    /// Encodes into a frame (copies the blob; see [`Request::into_frame`]).
    pub fn to_frame(&self) -> Result<Frame, ProtoError> {
        self.clone().into_frame()
    }

    /// Encodes into a frame, moving the blob.
    pub fn into_frame(self) -> Result<Frame, ProtoError> {
        let kind = self.kind();
        let (header, blob) = match self {
            Request::Hello(h) => (json(&h)?, Vec::new()),
            Request::LoadModel { header, onnx } => (json(&header)?, onnx),
            Request::Bench(b) => (json(&b)?, Vec::new()),
            Request::Infer { header, data } => {
                let blob = f32s_to_le(&data);
                (json(&header)?, blob)
            }
            Request::Unload(u) => (json(&u)?, Vec::new()),
            Request::Shutdown => (b"{}".to_vec(), Vec::new()),
        };
        Ok(Frame::new(kind, header, blob))
    }

    /// Decodes a frame the agent received.
    pub fn from_frame(frame: Frame) -> Result<Request, ProtoError> {
        let kind = frame
            .known_kind()
            .ok_or(ProtoError::UnknownKind(frame.kind))?;
        Ok(match kind {
            Kind::Hello => Request::Hello(frame.decode_header(kind)?),
            Kind::LoadModel => {
                let header = frame.decode_header(kind)?;
                Request::LoadModel {
                    header,
                    onnx: frame.blob,
                }
            }
            Kind::Bench => Request::Bench(frame.decode_header(kind)?),
            Kind::Infer => {
                let header: InferRequest = frame.decode_header(kind)?;
                let data = f32s_from_le(&header.shape, &frame.blob)?;
                Request::Infer { header, data }
            }
            Kind::Unload => Request::Unload(frame.decode_header(kind)?),
            Kind::Shutdown => Request::Shutdown,
            other => {
                return Err(ProtoError::UnexpectedKind {
                    kind: other.name(),
                    code: other as u8,
                    context: "is a reply, not a request",
                });
            }
        })
    }
}

/// A message from the agent to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Reply to Hello.
    Hello(AgentInfo),
    /// Reply to LoadModel.
    Loaded(ModelLoaded),
    /// Reply to Bench.
    Stats(BenchStats),
    /// Reply to Infer: the first output.
    Output {
        /// Output shape.
        shape: Vec<usize>,
        /// Output values.
        data: Vec<f32>,
    },
    /// Reply to Unload.
    Unloaded,
    /// Reply to Shutdown.
    Bye,
    /// Any request failed; the agent keeps serving.
    Error(ErrorReply),
}

impl Response {
    /// The kind byte this response travels under.
    pub fn kind(&self) -> Kind {
        match self {
            Response::Hello(_) => Kind::HelloReply,
            Response::Loaded(_) => Kind::Loaded,
            Response::Stats(_) => Kind::Stats,
            Response::Output { .. } => Kind::Output,
            Response::Unloaded => Kind::Unloaded,
            Response::Bye => Kind::Bye,
            Response::Error(_) => Kind::Error,
        }
    }

    /// Shorthand for an error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorReply::new(code, message))
    }

    /// Encodes into a frame (copies the tensor; see [`Response::into_frame`]).
    pub fn to_frame(&self) -> Result<Frame, ProtoError> {
        self.clone().into_frame()
    }

    /// Encodes into a frame.
    pub fn into_frame(self) -> Result<Frame, ProtoError> {
        let kind = self.kind();
        let (header, blob) = match self {
            Response::Hello(i) => (json(&i)?, Vec::new()),
            Response::Loaded(l) => (json(&l)?, Vec::new()),
            Response::Stats(s) => (json(&s)?, Vec::new()),
            Response::Output { shape, data } => (json(&TensorHeader { shape })?, f32s_to_le(&data)),
            Response::Unloaded | Response::Bye => (b"{}".to_vec(), Vec::new()),
            Response::Error(e) => (json(&e)?, Vec::new()),
        };
        Ok(Frame::new(kind, header, blob))
    }

    /// Decodes a frame the host received.
    pub fn from_frame(frame: Frame) -> Result<Response, ProtoError> {
        let kind = frame
            .known_kind()
            .ok_or(ProtoError::UnknownKind(frame.kind))?;
        Ok(match kind {
            Kind::HelloReply => Response::Hello(frame.decode_header(kind)?),
            Kind::Loaded => Response::Loaded(frame.decode_header(kind)?),
            Kind::Stats => Response::Stats(frame.decode_header(kind)?),
            Kind::Output => {
                let header: TensorHeader = frame.decode_header(kind)?;
                let data = f32s_from_le(&header.shape, &frame.blob)?;
                Response::Output {
                    shape: header.shape,
                    data,
                }
            }
            Kind::Unloaded => Response::Unloaded,
            Kind::Bye => Response::Bye,
            Kind::Error => Response::Error(frame.decode_header(kind)?),
            other => {
                return Err(ProtoError::UnexpectedKind {
                    kind: other.name(),
                    code: other as u8,
                    context: "is a request, not a reply",
                });
            }
        })
    }
}
