//! Typed messages: [`Request`] (host → agent) and [`Response`] (agent →
//! host), and their mapping to and from frames.

use alloc::string::String;
use alloc::vec::Vec;

use super::header::{self, HeaderEncoding};
use super::messages::*;
use super::{ErrorCode, ErrorReply, Frame, Kind, ProtoError, f32s_from_le, f32s_to_le};

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

    /// Encodes into a frame with its header in
    /// [`HeaderEncoding::PREFERRED`] (copies the blob; see
    /// [`Request::into_frame_as`]).
    pub fn to_frame(&self) -> Result<Frame, ProtoError> {
        self.clone().into_frame_as(HeaderEncoding::PREFERRED)
    }

    /// Encodes into a frame with its header in
    /// [`HeaderEncoding::PREFERRED`], moving the blob.
    pub fn into_frame(self) -> Result<Frame, ProtoError> {
        self.into_frame_as(HeaderEncoding::PREFERRED)
    }

    /// Encodes into a frame with its header in `encoding`, moving the blob.
    pub fn into_frame_as(self, encoding: HeaderEncoding) -> Result<Frame, ProtoError> {
        let kind = self.kind();
        let name = kind.name();
        let (header, blob) = match self {
            Request::Hello(h) => (header::encode(&h, encoding, name)?, Vec::new()),
            Request::LoadModel { header, onnx } => (header::encode(&header, encoding, name)?, onnx),
            Request::Bench(b) => (header::encode(&b, encoding, name)?, Vec::new()),
            Request::Infer { header, data } => {
                let blob = f32s_to_le(&data);
                (header::encode(&header, encoding, name)?, blob)
            }
            Request::Unload(u) => (header::encode(&u, encoding, name)?, Vec::new()),
            Request::Shutdown => (encoding.empty(), Vec::new()),
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

    /// Encodes into a frame with its header in
    /// [`HeaderEncoding::PREFERRED`] (copies the tensor; see
    /// [`Response::into_frame_as`]).
    pub fn to_frame(&self) -> Result<Frame, ProtoError> {
        self.clone().into_frame_as(HeaderEncoding::PREFERRED)
    }

    /// Encodes into a frame with its header in
    /// [`HeaderEncoding::PREFERRED`].
    pub fn into_frame(self) -> Result<Frame, ProtoError> {
        self.into_frame_as(HeaderEncoding::PREFERRED)
    }

    /// Encodes into a frame with its header in `encoding`.
    pub fn into_frame_as(self, encoding: HeaderEncoding) -> Result<Frame, ProtoError> {
        let kind = self.kind();
        let name = kind.name();
        let (header, blob) = match self {
            Response::Hello(i) => (header::encode(&i, encoding, name)?, Vec::new()),
            Response::Loaded(l) => (header::encode(&l, encoding, name)?, Vec::new()),
            Response::Stats(s) => (header::encode(&s, encoding, name)?, Vec::new()),
            Response::Output { shape, data } => (
                header::encode(&TensorHeader { shape }, encoding, name)?,
                f32s_to_le(&data),
            ),
            Response::Unloaded | Response::Bye => (encoding.empty(), Vec::new()),
            Response::Error(e) => (header::encode(&e, encoding, name)?, Vec::new()),
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
