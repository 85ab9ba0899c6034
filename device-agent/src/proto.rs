//! Wire protocol between the padnas host and the device agent.
//!
//! Every message travels in one frame:
//!
//! ```text
//! magic "PDNA" (4) | kind u8 | payload length u32 LE | payload | crc32 u32 LE
//! payload = header length u32 LE | JSON header | binary blob
//! ```
//!
//! The CRC (IEEE, over kind, length and payload) matters on serial lines, where
//! bytes do get lost or flipped; the magic lets a reader resynchronise after
//! garbage instead of giving up on the link. The JSON header keeps the
//! protocol readable and easy to extend (message kinds are only ever added);
//! the blob carries the bulky parts (ONNX bytes, tensors) without base64.
//! The format is documented for people in `device-agent/README.md`.
//!
//! Layers, bottom up: [`Frame`] (bytes on the wire, [`Frame::encode`] and the
//! resynchronising [`FrameReader`]), then [`Request`] / [`Response`] (typed
//! messages, [`Request::to_frame`] / [`Request::from_frame`]).

use std::io::{self, Read};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Major protocol version: a host and an agent with different majors refuse to talk.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor protocol version: grows when message kinds or optional fields are added.
pub const PROTOCOL_MINOR: u16 = 2;
/// Frame magic, chosen to be unlikely in text a shell or login banner prints.
pub const MAGIC: [u8; 4] = *b"PDNA";
/// Hard cap on a frame's payload. Large enough for any ImageNet-scale MBConv
/// network in f32 (a few tens of MB), small enough that a corrupt length field
/// cannot make an agent on a 1 GB board allocate itself to death.
pub const MAX_PAYLOAD_BYTES: u32 = 256 << 20;
/// Bytes of frame overhead: magic, kind, length, crc.
pub const FRAME_OVERHEAD: usize = 4 + 1 + 4 + 4;

/// Message kind byte. Values are stable forever; new kinds get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// host → agent: [`HelloRequest`]
    Hello = 0x01,
    /// host → agent: [`LoadModel`] (header) + ONNX bytes (blob)
    LoadModel = 0x02,
    /// host → agent: [`BenchRequest`]
    Bench = 0x03,
    /// host → agent: [`InferRequest`] (header) + f32 LE tensor data (blob)
    Infer = 0x04,
    /// host → agent: [`UnloadRequest`]
    Unload = 0x05,
    /// host → agent: no header fields
    Shutdown = 0x06,
    /// agent → host: [`AgentInfo`]
    HelloReply = 0x81,
    /// agent → host: [`ModelLoaded`]
    Loaded = 0x82,
    /// agent → host: [`BenchStats`]
    Stats = 0x83,
    /// agent → host: [`TensorHeader`] (header) + f32 LE tensor data (blob)
    Output = 0x84,
    /// agent → host: empty header; acknowledges Unload
    Unloaded = 0x85,
    /// agent → host: empty header; acknowledges Shutdown, then the agent exits
    Bye = 0x86,
    /// agent → host: [`ErrorReply`]
    Error = 0xE0,
}

impl Kind {
    /// Name for logs and error messages.
    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            Hello => "Hello",
            LoadModel => "LoadModel",
            Bench => "Bench",
            Infer => "Infer",
            Unload => "Unload",
            Shutdown => "Shutdown",
            HelloReply => "HelloReply",
            Loaded => "Loaded",
            Stats => "Stats",
            Output => "Output",
            Unloaded => "Unloaded",
            Bye => "Bye",
            Error => "Error",
        }
    }

    /// True for kinds the host sends (the agent's requests).
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }

    /// Decodes a kind byte; `None` for kinds this build does not know.
    pub fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        Some(match b {
            0x01 => Hello,
            0x02 => LoadModel,
            0x03 => Bench,
            0x04 => Infer,
            0x05 => Unload,
            0x06 => Shutdown,
            0x81 => HelloReply,
            0x82 => Loaded,
            0x83 => Stats,
            0x84 => Output,
            0x85 => Unloaded,
            0x86 => Bye,
            0xE0 => Error,
            _ => return None,
        })
    }
}

/// First message of every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Host's [`PROTOCOL_MAJOR`].
    pub protocol_major: u16,
    /// Host's [`PROTOCOL_MINOR`].
    pub protocol_minor: u16,
    /// Shared secret; required when the agent listens beyond loopback.
    #[serde(default)]
    pub token: Option<String>,
}

/// What the agent tells about itself and the board it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent's [`PROTOCOL_MAJOR`].
    pub protocol: u16,
    /// Agent's [`PROTOCOL_MINOR`].
    pub protocol_minor: u16,
    /// Version of the `padnas-agent` crate.
    pub agent_version: String,
    /// Version of `tract-onnx` the agent was built with.
    pub tract_version: String,
    /// `std::env::consts::ARCH` of the agent binary (e.g. `aarch64`).
    pub arch: String,
    /// `std::env::consts::OS`.
    pub os: String,
    /// CPU model as the OS names it.
    pub cpu: String,
    /// Logical cores available to the agent.
    pub cores: u32,
    /// cpufreq governor of CPU 0, where the OS exposes it.
    #[serde(default)]
    pub governor: Option<String>,
    /// Current frequency of CPU 0 in kHz, where exposed.
    #[serde(default)]
    pub cur_freq_khz: Option<u64>,
    /// SoC temperature in °C (thermal zone 0), where exposed.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Optional capabilities compiled into the agent: `"bench"` (it can load
    /// and run models), `"serial"`. Added in 1.0; absent means none known.
    #[serde(default)]
    pub features: Vec<String>,
}

/// Load an ONNX model; the model bytes travel in the frame's blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadModel {
    /// Concrete input shape (batch first). `None`: use the model's declared
    /// shape, which must then be fully concrete. Symbolic shapes are refused
    /// rather than run, because tract is ~28x slower on them.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
}

/// Reply to [`LoadModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLoaded {
    /// Handle for later requests.
    pub handle: u32,
    /// Concrete input shape the model was optimised for.
    pub input_shape: Vec<usize>,
    /// Shape of the (first) output.
    pub output_shape: Vec<usize>,
    /// Time spent loading and optimising, in ms.
    pub load_ms: f64,
}

/// How long and how to benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchLimits {
    /// Untimed runs before measuring.
    pub warmup_runs: u32,
    /// Keep warming up until this much time has passed as well (ms).
    pub warmup_ms: u64,
    /// Timed runs: at least this many, even past `max_time_ms`.
    pub min_runs: u32,
    /// Timed runs: stop after this many.
    pub max_runs: u32,
    /// Timed runs: stop after this much time (ms), once `min_runs` are done.
    pub max_time_ms: u64,
    /// Threads for tract's multithreaded matmul; `None` or 1: single-threaded.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Pin the benchmarking thread to this CPU, where the OS allows. With
    /// `threads > 1` only the thread that drives tract is pinned, not the
    /// worker pool.
    #[serde(default)]
    pub pin_cpu: Option<usize>,
    /// Return every sample as well as the statistics.
    #[serde(default)]
    pub return_samples: bool,
}

impl Default for BenchLimits {
    fn default() -> Self {
        BenchLimits {
            warmup_runs: 5,
            warmup_ms: 100,
            min_runs: 10,
            max_runs: 50,
            max_time_ms: 5_000,
            threads: None,
            pin_cpu: None,
            return_samples: false,
        }
    }
}

/// Benchmark a loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRequest {
    /// From [`ModelLoaded`].
    pub handle: u32,
    /// Limits.
    pub limits: BenchLimits,
    /// A second loaded model run alternately with this one, run for run
    /// (model, reference, model, …), so each sample has a reference sample
    /// taken milliseconds apart. Their ratio cancels machine-wide speed
    /// changes (frequency steps, a busy SMT sibling) that no statistic over
    /// separate windows can (added in 1.1).
    #[serde(default)]
    pub reference: Option<u32>,
    /// Time a fixed contention sensor (see `sensor`) before the first timed
    /// run and after every `sensor_every` timed runs (and after the last),
    /// so each sample lies between two sensor readings; after each reading
    /// the model runs once untimed, so the sensor's use of the caches does
    /// not slow the timed run that follows. On a machine slowed from outside
    /// for seconds at a time the host keeps only the samples whose readings
    /// were quiet (added in 1.2; an older agent ignores it and returns no
    /// readings). Zero is a malformed request.
    #[serde(default)]
    pub sensor_every: Option<u32>,
}

/// Latency statistics of one benchmark, all in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchStats {
    /// Timed runs.
    pub runs: u32,
    /// Warm-up runs done.
    pub warmup_runs: u32,
    /// Fastest run.
    pub min_ms: f64,
    /// Median.
    pub median_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// 10th percentile.
    pub p10_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Sample standard deviation.
    pub stddev_ms: f64,
    /// Sum of all timed runs.
    pub total_ms: f64,
    /// Threads used.
    pub threads: u32,
    /// CPU the thread was pinned to, when pinning succeeded.
    #[serde(default)]
    pub pinned_cpu: Option<usize>,
    /// Every timed sample, when asked for.
    #[serde(default)]
    pub samples_ms: Option<Vec<f64>>,
    /// The agent's wall time for the whole request: worker start, warm-up,
    /// timed loop and statistics. With the host's round trip it splits the
    /// overhead into the agent's part and the transport's (added in 1.1;
    /// absent from older agents).
    #[serde(default)]
    pub wall_ms: Option<f64>,
    /// Wall time of the timed loop alone; minus `total_ms` it is what the
    /// loop spends between runs (added in 1.1).
    #[serde(default)]
    pub timed_wall_ms: Option<f64>,
    /// With a reference: the reference's samples, paired with `samples_ms`
    /// index by index (when samples were asked for).
    #[serde(default)]
    pub reference_samples_ms: Option<Vec<f64>>,
    /// With a reference: the median of the reference's samples.
    #[serde(default)]
    pub reference_median_ms: Option<f64>,
    /// With a reference: the median of the per-pair ratios model / reference.
    #[serde(default)]
    pub ratio_median: Option<f64>,
    /// With `sensor_every` = k: the sensor's times, ⌈runs / k⌉ + 1 of
    /// them: sample `i` ran between readings `i / k` and `i / k + 1`
    /// (added in 1.2).
    #[serde(default)]
    pub sensor_samples_ms: Option<Vec<f64>>,
}

/// Header of a tensor; the data follows in the blob as f32 little-endian.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorHeader {
    /// Shape, batch first.
    pub shape: Vec<usize>,
}

/// Run a loaded model once on the tensor in the blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// From [`ModelLoaded`].
    pub handle: u32,
    /// Input shape; the blob holds `product(shape)` f32 LE values.
    pub shape: Vec<usize>,
}

/// Drop a loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnloadRequest {
    /// From [`ModelLoaded`].
    pub handle: u32,
}

/// Machine-readable reason in an [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bytes that are not a frame: bad magic, bad CRC, truncated.
    BadFrame,
    /// Frame larger than [`MAX_PAYLOAD_BYTES`].
    Oversize,
    /// A message kind this agent does not know.
    UnknownKind,
    /// A known kind whose header or blob does not parse.
    BadMessage,
    /// Protocol major versions differ.
    ProtocolMismatch,
    /// Missing or wrong token.
    Unauthorized,
    /// A request came before Hello.
    HelloRequired,
    /// The ONNX model does not parse, or tract cannot run it.
    BadModel,
    /// No model loaded under that handle.
    UnknownHandle,
    /// Input tensor of the wrong shape or size.
    BadInput,
    /// Anything else went wrong on the agent.
    Internal,
    /// A code this build does not know, from a newer peer (codes are only
    /// ever added). Never sent.
    #[serde(other)]
    Other,
}

/// An error, as the agent reports it. The agent keeps serving after sending one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// What went wrong and where, for people.
    pub message: String,
}

impl ErrorCode {
    /// The code as it is spelled on the wire (`bad_frame`, …).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "bad_frame",
            Oversize => "oversize",
            UnknownKind => "unknown_kind",
            BadMessage => "bad_message",
            ProtocolMismatch => "protocol_mismatch",
            Unauthorized => "unauthorized",
            HelloRequired => "hello_required",
            BadModel => "bad_model",
            UnknownHandle => "unknown_handle",
            BadInput => "bad_input",
            Internal => "internal",
            Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorReply {
    /// Shorthand constructor.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Everything that can go wrong turning bytes into frames and frames into
/// messages. All variants but [`ProtoError::Io`] leave the stream usable: the
/// reader has already skipped to where the next frame may start.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The underlying reader failed (including read timeouts).
    #[error("i/o error: {0}")]
    Io(io::Error),
    /// Bytes that do not start a frame were skipped up to the next magic.
    #[error("skipped {skipped} byte(s) of garbage before a frame magic")]
    Garbage {
        /// Bytes skipped in this run of garbage.
        skipped: usize,
    },
    /// A frame header announced a payload larger than the cap.
    #[error("frame payload of {len} bytes exceeds the {max}-byte cap")]
    Oversize {
        /// Announced (or, when encoding, actual) payload length.
        len: u64,
        /// The cap in force.
        max: u32,
    },
    /// A whole frame arrived but its CRC does not match.
    #[error("frame CRC mismatch: frame says {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc {
        /// CRC carried by the frame.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// The stream ended (or stalled, on serial) in the middle of a frame.
    #[error("stream ended inside a frame ({have} of {need} byte(s))")]
    Truncated {
        /// Bytes of the frame that did arrive.
        have: usize,
        /// Bytes the frame needed, as far as known.
        need: usize,
    },
    /// The frame is intact but its payload is not `header len | header | blob`.
    #[error("bad frame payload: {0}")]
    BadPayload(String),
    /// A kind byte this build does not know.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// A known kind, but not one that is valid here (a reply sent to the agent, …).
    #[error("unexpected message kind {kind} ({code:#04x}) {context}")]
    UnexpectedKind {
        /// Name of the kind.
        kind: &'static str,
        /// Its byte.
        code: u8,
        /// Where it was not expected.
        context: &'static str,
    },
    /// The JSON header of a known kind does not parse.
    #[error("bad {kind} header: {cause}")]
    BadHeader {
        /// Name of the kind.
        kind: &'static str,
        /// serde_json's reason, with line and column.
        cause: serde_json::Error,
    },
    /// A tensor whose shape and data disagree, or whose data is not f32 LE.
    #[error("bad tensor: {0}")]
    BadTensor(String),
}

impl ProtoError {
    /// The code an agent answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::Io(_) => ErrorCode::Internal,
            ProtoError::Garbage { .. }
            | ProtoError::BadCrc { .. }
            | ProtoError::Truncated { .. }
            | ProtoError::BadPayload(_) => ErrorCode::BadFrame,
            ProtoError::Oversize { .. } => ErrorCode::Oversize,
            ProtoError::UnknownKind(_) => ErrorCode::UnknownKind,
            ProtoError::UnexpectedKind { .. } | ProtoError::BadHeader { .. } => {
                ErrorCode::BadMessage
            }
            ProtoError::BadTensor(_) => ErrorCode::BadInput,
        }
    }

    /// Whether the stream can still be read after this error.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, ProtoError::Io(_))
    }
}

/// One frame: a kind byte, a JSON header and a binary blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Kind byte; see [`Kind`]. Kept raw so unknown kinds can be reported.
    pub kind: u8,
    /// JSON header (UTF-8). Empty is read as `{}`.
    pub header: Vec<u8>,
    /// Binary blob (ONNX bytes, f32 LE tensor data), often empty.
    pub blob: Vec<u8>,
}

impl Frame {
    /// A frame of a known kind.
    pub fn new(kind: Kind, header: Vec<u8>, blob: Vec<u8>) -> Frame {
        Frame {
            kind: kind as u8,
            header,
            blob,
        }
    }

    /// The kind, if this build knows it.
    pub fn known_kind(&self) -> Option<Kind> {
        Kind::from_u8(self.kind)
    }

    /// Payload length on the wire.
    pub fn payload_len(&self) -> usize {
        4 + self.header.len() + self.blob.len()
    }

    /// The frame's bytes, ready to write. Fails with [`ProtoError::Oversize`]
    /// when the payload exceeds [`MAX_PAYLOAD_BYTES`], so a host finds out
    /// before it sends a model the agent would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let payload_len = self.payload_len();
        if payload_len > MAX_PAYLOAD_BYTES as usize {
            return Err(ProtoError::Oversize {
                len: payload_len as u64,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let mut out = Vec::with_capacity(payload_len + FRAME_OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.push(self.kind);
        // Both fit in u32: the cap is below u32::MAX.
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&(self.header.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.blob);
        let crc = crc32fast::hash(&out[4..]);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    fn decode_header<T: DeserializeOwned>(&self, kind: Kind) -> Result<T, ProtoError> {
        let bytes: &[u8] = if self.header.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.header
        };
        serde_json::from_slice(bytes).map_err(|source| ProtoError::BadHeader {
            kind: kind.name(),
            cause: source,
        })
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ProtoError> {
    // Our message structs always serialise; a failure would be a bug here,
    // reported as a malformed header rather than a panic.
    serde_json::to_vec(value).map_err(|source| ProtoError::BadHeader {
        kind: "outgoing",
        cause: source,
    })
}

/// Bytes of a frame header: magic, kind, payload length.
const HEAD_LEN: usize = 4 + 1 + 4;

/// Reads frames from a byte stream, resynchronising after damage.
///
/// Damage is reported as a recoverable [`ProtoError`] and the reader moves on:
/// garbage is skipped up to the next magic and reported once per run when
/// that magic (or the end of the stream) is reached; an oversize length or a
/// bad CRC is reported and the reader rescans from the byte after the bad
/// frame's magic, because a corrupt length says nothing about where the next
/// frame starts. Bytes skipped during such a rescan are not reported again.
pub struct FrameReader<R> {
    inner: R,
    /// Read buffer; only `buf[pos..end]` holds data. The tail past `end` is
    /// kept allocated (and zeroed once) so reads never re-zero it.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    eof: bool,
    /// Garbage bytes skipped and not yet reported.
    garbage: usize,
    /// Rescanning after a reported error: skipped bytes are part of it.
    quiet: bool,
    max_payload: u32,
    /// No read starts after this instant (see [`FrameReader::set_deadline`]).
    deadline: Option<Instant>,
}

/// Where a magic is in a buffer.
enum MagicScan {
    At(usize),
    /// Not found; the last `keep` bytes may be the start of one.
    Absent {
        keep: usize,
    },
}

fn scan_magic(bytes: &[u8]) -> MagicScan {
    if let Some(i) = bytes.windows(MAGIC.len()).position(|w| w == MAGIC) {
        return MagicScan::At(i);
    }
    let max_keep = (MAGIC.len() - 1).min(bytes.len());
    let keep = (1..=max_keep)
        .rev()
        .find(|&k| bytes[bytes.len() - k..] == MAGIC[..k])
        .unwrap_or(0);
    MagicScan::Absent { keep }
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
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
            garbage: 0,
            quiet: false,
            max_payload: max_payload.min(MAX_PAYLOAD_BYTES),
            deadline: None,
        }
    }

    /// Changes the payload cap from the next frame header on (the agent
    /// lowers it until a host has said Hello). Never above
    /// [`MAX_PAYLOAD_BYTES`].
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.max_payload = max_payload.min(MAX_PAYLOAD_BYTES);
    }

    /// The payload cap in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
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
        self.end - self.pos
    }

    /// True when part of a frame (at least its magic) is buffered: a read
    /// timeout now means the sender stalled mid-frame.
    pub fn in_frame(&self) -> bool {
        self.buffered() >= MAGIC.len() && self.buf[self.pos..self.end].starts_with(&MAGIC)
    }

    /// Gives up on a partly received frame (a serial line that lost bytes and
    /// went quiet) and returns what that error is; the reader rescans from
    /// the byte after its magic.
    pub fn abandon_partial(&mut self) -> Option<ProtoError> {
        if !self.in_frame() {
            return None;
        }
        let have = self.buffered();
        let need = self.needed_len().unwrap_or(HEAD_LEN);
        self.pos += 1;
        self.quiet = true;
        Some(ProtoError::Truncated { have, need })
    }

    /// Total length of the buffered frame, once its header is in.
    fn needed_len(&self) -> Option<usize> {
        if self.buffered() < HEAD_LEN {
            return None;
        }
        let head = &self.buf[self.pos..self.pos + HEAD_LEN];
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        Some(HEAD_LEN + len + 4)
    }

    /// Marks `n` buffered bytes as skipped garbage.
    fn skip(&mut self, n: usize) {
        self.pos += n;
        self.garbage += n;
    }

    /// One read from the underlying stream into the buffer, sized for `want`
    /// more bytes. Sets `eof` on a zero-byte read.
    fn fill(&mut self, want: usize) -> Result<(), ProtoError> {
        if self.pos > 0 {
            // Only the unconsumed tail moves, and after the first fill of a
            // frame `pos` stays 0, so a large frame is not copied repeatedly.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ProtoError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "deadline passed",
            )));
        }
        let chunk = want.clamp(64 << 10, 4 << 20);
        if self.buf.len() < self.end + chunk {
            self.buf.resize(self.end + chunk, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..self.end + chunk]) {
                Ok(n) => {
                    self.end += n;
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

    /// Marks everything consumed; gives a large buffer back so one big model
    /// does not pin its size in memory for the rest of the session.
    fn reset_if_empty(&mut self) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > 1 << 20 {
                self.buf = Vec::new();
            }
        }
    }

    /// Reports the end of the stream: pending garbage first, then a partial
    /// frame, then `None` forever.
    fn finish_eof(&mut self) -> Result<Option<Frame>, ProtoError> {
        let rest = self.buffered();
        if rest > 0 && rest < MAGIC.len() {
            // A partial magic at the very end is just more garbage.
            self.skip(rest);
        }
        if self.garbage > 0 {
            let skipped = std::mem::take(&mut self.garbage);
            if !std::mem::take(&mut self.quiet) {
                return Err(ProtoError::Garbage { skipped });
            }
        }
        let have = self.buffered();
        if have > 0 {
            let need = self.needed_len().unwrap_or(HEAD_LEN);
            self.pos = self.end;
            self.reset_if_empty();
            return Err(ProtoError::Truncated { have, need });
        }
        Ok(None)
    }

    /// The next frame; `Ok(None)` once the stream has ended cleanly.
    ///
    /// Errors other than [`ProtoError::Io`] are reports about damaged input;
    /// call again to go on reading. An `Io` error of kind `TimedOut` or
    /// `WouldBlock` keeps the buffered bytes, so reading can resume as well.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            // 1. Synchronise on a magic.
            match scan_magic(&self.buf[self.pos..self.end]) {
                MagicScan::At(0) => {}
                MagicScan::At(i) => {
                    self.skip(i);
                    continue;
                }
                MagicScan::Absent { keep } => {
                    let drop = self.buffered() - keep;
                    self.skip(drop);
                    if self.eof {
                        return self.finish_eof();
                    }
                    self.fill(HEAD_LEN)?;
                    continue;
                }
            }
            if self.garbage > 0 {
                let skipped = std::mem::take(&mut self.garbage);
                if !std::mem::take(&mut self.quiet) {
                    return Err(ProtoError::Garbage { skipped });
                }
            }
            self.quiet = false;

            // 2. Header: kind and length.
            let have = self.buffered();
            if have < HEAD_LEN {
                if self.eof {
                    return self.finish_eof();
                }
                self.fill(HEAD_LEN - have)?;
                continue;
            }
            let head = &self.buf[self.pos..self.pos + HEAD_LEN];
            let kind = head[4];
            let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
            if len > self.max_payload {
                self.pos += 1;
                self.quiet = true;
                return Err(ProtoError::Oversize {
                    len: u64::from(len),
                    max: self.max_payload,
                });
            }

            // 3. The whole frame.
            let total = HEAD_LEN + len as usize + 4;
            if have < total {
                if self.eof {
                    return self.finish_eof();
                }
                self.fill(total - have)?;
                continue;
            }
            let frame = &self.buf[self.pos..self.pos + total];
            let crc_at = total - 4;
            let expected = u32::from_le_bytes([
                frame[crc_at],
                frame[crc_at + 1],
                frame[crc_at + 2],
                frame[crc_at + 3],
            ]);
            let actual = crc32fast::hash(&frame[4..crc_at]);
            if expected != actual {
                self.pos += 1;
                self.quiet = true;
                return Err(ProtoError::BadCrc { expected, actual });
            }

            // 4. Split the payload. The frame is intact, so it is consumed
            //    whole even when its inner layout is wrong.
            let payload = &frame[HEAD_LEN..crc_at];
            self.pos += total;
            if payload.len() < 4 {
                return Err(ProtoError::BadPayload(format!(
                    "payload of {} byte(s) has no header length",
                    payload.len()
                )));
            }
            let header_len =
                u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
            if header_len > payload.len() - 4 {
                return Err(ProtoError::BadPayload(format!(
                    "header length {header_len} exceeds the {}-byte payload",
                    payload.len() - 4
                )));
            }
            let header = payload[4..4 + header_len].to_vec();
            let blob = payload[4 + header_len..].to_vec();
            self.reset_if_empty();
            return Ok(Some(Frame { kind, header, blob }));
        }
    }

    /// The underlying reader, dropping anything buffered.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Encodes f32 values as little-endian bytes (tensor blobs).
pub fn f32s_to_le(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Number of elements of a shape, or `None` when it overflows `usize`.
pub fn shape_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Decodes a tensor blob of `shape` from f32 LE bytes, checking its size.
pub fn f32s_from_le(shape: &[usize], bytes: &[u8]) -> Result<Vec<f32>, ProtoError> {
    let n = shape_elements(shape)
        .ok_or_else(|| ProtoError::BadTensor(format!("shape {shape:?} overflows")))?;
    if n.checked_mul(4) != Some(bytes.len()) {
        return Err(ProtoError::BadTensor(format!(
            "shape {shape:?} needs {n} f32 values ({} bytes), blob has {} bytes",
            n.saturating_mul(4),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Hands out its bytes one at a time, the worst case of a split frame.
    struct ByteAtATime(Vec<u8>, usize);

    impl Read for ByteAtATime {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 == self.0.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    fn hello_frame() -> Frame {
        Request::Hello(HelloRequest {
            protocol_major: 1,
            protocol_minor: 0,
            token: None,
        })
        .into_frame()
        .unwrap()
    }

    fn infer_frame() -> Frame {
        Request::Infer {
            header: InferRequest {
                handle: 3,
                shape: vec![1, 2],
            },
            data: vec![1.5, -2.0],
        }
        .into_frame()
        .unwrap()
    }

    fn read_all<R: Read>(reader: &mut FrameReader<R>) -> Vec<Result<Frame, String>> {
        let mut out = Vec::new();
        loop {
            match reader.read_frame() {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => return out,
                Err(ProtoError::Io(e)) => panic!("io error {e}"),
                Err(e) => out.push(Err(format!("{e:?}"))),
            }
        }
    }

    #[test]
    fn frame_layout_matches_the_documentation() {
        let frame = Frame {
            kind: 0x05,
            header: b"{}".to_vec(),
            blob: vec![0xAA],
        };
        let bytes = frame.encode().unwrap();
        assert_eq!(&bytes[..4], b"PDNA");
        assert_eq!(bytes[4], 0x05);
        assert_eq!(
            u32::from_le_bytes(bytes[5..9].try_into().unwrap()),
            4 + 2 + 1
        );
        assert_eq!(u32::from_le_bytes(bytes[9..13].try_into().unwrap()), 2);
        assert_eq!(&bytes[13..15], b"{}");
        assert_eq!(bytes[15], 0xAA);
        let crc = crc32fast::hash(&bytes[4..16]);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), crc);
        assert_eq!(bytes.len(), FRAME_OVERHEAD + frame.payload_len());
    }

    #[test]
    fn split_across_byte_sized_reads() {
        let frame = infer_frame();
        let mut bytes = frame.encode().unwrap();
        bytes.extend(hello_frame().encode().unwrap());
        let mut reader = FrameReader::new(ByteAtATime(bytes, 0));
        let got = read_all(&mut reader);
        assert_eq!(got, vec![Ok(frame), Ok(hello_frame())]);
    }

    #[test]
    fn several_frames_in_one_read() {
        let frames = vec![hello_frame(), infer_frame(), hello_frame()];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode().unwrap()).collect();
        let mut reader = FrameReader::new(Cursor::new(bytes));
        let got = read_all(&mut reader);
        assert_eq!(got, frames.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn oversize_is_reported_and_the_next_frame_still_decodes() {
        let mut bytes = MAGIC.to_vec();
        bytes.push(Kind::LoadModel as u8);
        bytes.extend((MAX_PAYLOAD_BYTES + 1).to_le_bytes());
        bytes.extend([0u8; 32]); // some of the "payload"
        bytes.extend(hello_frame().encode().unwrap());
        let mut reader = FrameReader::new(Cursor::new(bytes));
        match reader.read_frame() {
            Err(ProtoError::Oversize { len, max }) => {
                assert_eq!(len, u64::from(MAX_PAYLOAD_BYTES) + 1);
                assert_eq!(max, MAX_PAYLOAD_BYTES);
            }
            other => panic!("expected Oversize, got {other:?}"),
        }
        // The skipped payload is part of the same error: no Garbage report.
        assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn encoding_refuses_oversize_payloads() {
        let frame = Frame {
            kind: 2,
            header: Vec::new(),
            blob: vec![0; MAX_PAYLOAD_BYTES as usize],
        };
        assert!(matches!(frame.encode(), Err(ProtoError::Oversize { .. })));
    }

    #[test]
    fn lower_cap_applies() {
        let bytes = infer_frame().encode().unwrap();
        let mut reader = FrameReader::with_max_payload(Cursor::new(bytes), 8);
        assert!(matches!(
            reader.read_frame(),
            Err(ProtoError::Oversize { max: 8, .. })
        ));
    }

    #[test]
    fn a_lowered_cap_refuses_from_the_header_and_the_next_frame_decodes() {
        // What the agent does before Hello: a frame declaring 200 MiB is
        // refused from its 9-byte header, without reading (or holding) the
        // payload, and a small frame after it still decodes.
        let mut bytes = MAGIC.to_vec();
        bytes.push(Kind::LoadModel as u8);
        bytes.extend((200u32 << 20).to_le_bytes());
        bytes.extend(hello_frame().encode().unwrap());
        let mut reader = FrameReader::new(&bytes[..]);
        reader.set_max_payload(4096);
        assert_eq!(reader.max_payload(), 4096);
        match reader.read_frame() {
            Err(ProtoError::Oversize { len, max }) => {
                assert_eq!(len, 200 << 20);
                assert_eq!(max, 4096);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
        reader.set_max_payload(u32::MAX);
        assert_eq!(reader.max_payload(), MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn a_passed_deadline_stops_reading_and_keeps_what_was_buffered() {
        let bytes = hello_frame().encode().unwrap();
        let mut reader = FrameReader::new(ByteAtATime(bytes, 0));
        // Five bytes in, then the deadline passes: the next read is refused
        // even though the stream would go on giving bytes.
        for _ in 0..5 {
            reader.fill(1).unwrap();
        }
        reader.set_deadline(Some(Instant::now()));
        match reader.read_frame() {
            Err(ProtoError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
        assert_eq!(reader.buffered(), 5);
        reader.set_deadline(None);
        assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
    }

    #[test]
    fn truncated_frame_at_end_of_stream() {
        let bytes = infer_frame().encode().unwrap();
        let cut = bytes.len() - 3;
        let mut reader = FrameReader::new(ByteAtATime(bytes[..cut].to_vec(), 0));
        match reader.read_frame() {
            Err(ProtoError::Truncated { have, need }) => {
                assert_eq!(have, cut);
                assert_eq!(need, cut + 3);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert_eq!(reader.read_frame().unwrap(), None);
        // A header cut short is truncated too.
        let mut reader = FrameReader::new(Cursor::new(b"PDNA\x01\x02".to_vec()));
        assert!(matches!(
            reader.read_frame(),
            Err(ProtoError::Truncated { have: 6, .. })
        ));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn clean_end_of_stream_is_none() {
        let mut reader = FrameReader::new(Cursor::new(Vec::new()));
        assert_eq!(reader.read_frame().unwrap(), None);
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn garbage_before_a_frame_is_reported_once_then_the_frame_decodes() {
        // A login banner with a partial magic in it, as ssh might print.
        let mut bytes = b"Welcome to Raspbian! PDN PD P\n".to_vec();
        let garbage = bytes.len();
        bytes.extend(hello_frame().encode().unwrap());
        for split in [false, true] {
            let got = if split {
                read_all(&mut FrameReader::new(ByteAtATime(bytes.clone(), 0)))
            } else {
                read_all(&mut FrameReader::new(Cursor::new(bytes.clone())))
            };
            assert_eq!(
                got,
                vec![
                    Err(format!("Garbage {{ skipped: {garbage} }}")),
                    Ok(hello_frame())
                ],
                "split reads: {split}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_reported_at_end_of_stream() {
        let mut bytes = hello_frame().encode().unwrap();
        bytes.extend(b"xyzPD");
        let got = read_all(&mut FrameReader::new(Cursor::new(bytes)));
        assert_eq!(
            got,
            vec![Ok(hello_frame()), Err("Garbage { skipped: 5 }".to_string())]
        );
    }

    #[test]
    fn bad_crc_is_reported_and_reading_resyncs() {
        let mut bad = infer_frame().encode().unwrap();
        let n = bad.len();
        bad[n - 6] ^= 0x40; // flip a bit in the blob
        let mut bytes = bad;
        bytes.extend(hello_frame().encode().unwrap());
        let mut reader = FrameReader::new(Cursor::new(bytes));
        assert!(matches!(
            reader.read_frame(),
            Err(ProtoError::BadCrc { .. })
        ));
        assert_eq!(reader.read_frame().unwrap(), Some(hello_frame()));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn lost_byte_then_stall_is_abandoned_and_resynced() {
        // A frame that lost a byte, followed by a good one: the reader takes
        // the good frame's first bytes as the bad frame's tail, fails the
        // CRC, and rescans to find the good frame intact.
        let mut bad = infer_frame().encode().unwrap();
        bad.remove(15);
        let mut bytes = bad;
        let good = hello_frame().encode().unwrap();
        bytes.extend(&good);
        bytes.extend(&good);
        let got = read_all(&mut FrameReader::new(Cursor::new(bytes)));
        assert!(
            got[0].as_ref().is_err_and(|e| e.starts_with("BadCrc")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .filter(|r| r.as_ref() == Ok(&hello_frame()))
                .count()
                >= 1,
            "{got:?}"
        );
    }

    #[test]
    fn abandon_partial_reports_truncation() {
        let bytes = infer_frame().encode().unwrap();
        let mut reader = FrameReader::new(Cursor::new(bytes[..10].to_vec()));
        // Read what there is without hitting the end: one fill.
        reader.fill(HEAD_LEN).unwrap();
        assert!(reader.in_frame());
        assert!(matches!(
            reader.abandon_partial(),
            Some(ProtoError::Truncated { have: 10, .. })
        ));
        assert!(!reader.in_frame());
    }

    #[test]
    fn unknown_kind_frames_decode_but_do_not_parse_as_messages() {
        let frame = Frame {
            kind: 0x7F,
            header: b"{}".to_vec(),
            blob: Vec::new(),
        };
        let bytes = frame.encode().unwrap();
        let got = FrameReader::new(Cursor::new(bytes))
            .read_frame()
            .unwrap()
            .unwrap();
        assert_eq!(got.kind, 0x7F);
        let err = Request::from_frame(got.clone()).unwrap_err();
        assert!(matches!(err, ProtoError::UnknownKind(0x7F)));
        assert_eq!(err.code(), ErrorCode::UnknownKind);
        assert!(matches!(
            Response::from_frame(got),
            Err(ProtoError::UnknownKind(0x7F))
        ));
    }

    #[test]
    fn bad_payload_layout_is_reported() {
        let mut frame = Frame {
            kind: Kind::Hello as u8,
            header: Vec::new(),
            blob: Vec::new(),
        }
        .encode()
        .unwrap();
        // Claim a 100-byte header in a 4-byte payload; fix the CRC.
        frame[9..13].copy_from_slice(&100u32.to_le_bytes());
        let n = frame.len();
        let crc = crc32fast::hash(&frame[4..n - 4]);
        frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let mut reader = FrameReader::new(Cursor::new(frame));
        assert!(matches!(
            reader.read_frame(),
            Err(ProtoError::BadPayload(_))
        ));
        assert_eq!(reader.read_frame().unwrap(), None);
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let requests = vec![
            Request::Hello(HelloRequest {
                protocol_major: 1,
                protocol_minor: 0,
                token: Some("t".into()),
            }),
            Request::LoadModel {
                header: LoadModel {
                    input_shape: Some(vec![1, 3, 8, 8]),
                },
                onnx: vec![1, 2, 3],
            },
            Request::Bench(BenchRequest {
                handle: 1,
                limits: BenchLimits::default(),
                reference: None,
                sensor_every: None,
            }),
            Request::Bench(BenchRequest {
                handle: 1,
                limits: BenchLimits::default(),
                reference: Some(2),
                sensor_every: Some(4),
            }),
            Request::Infer {
                header: InferRequest {
                    handle: 2,
                    shape: vec![2],
                },
                data: vec![0.5, -1.0],
            },
            Request::Unload(UnloadRequest { handle: 2 }),
            Request::Shutdown,
        ];
        for r in requests {
            assert_eq!(Request::from_frame(r.to_frame().unwrap()).unwrap(), r);
        }
        let responses = vec![
            Response::Loaded(ModelLoaded {
                handle: 1,
                input_shape: vec![1],
                output_shape: vec![2],
                load_ms: 1.5,
            }),
            Response::Output {
                shape: vec![1, 1],
                data: vec![3.0],
            },
            Response::Unloaded,
            Response::Bye,
            Response::error(ErrorCode::BadModel, "nope"),
        ];
        for r in responses {
            assert_eq!(Response::from_frame(r.to_frame().unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn message_errors_carry_codes() {
        let bad_json = Frame {
            kind: Kind::Bench as u8,
            header: b"{\"handle\": \"x\"}".to_vec(),
            blob: Vec::new(),
        };
        let err = Request::from_frame(bad_json).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadMessage);
        assert!(err.to_string().contains("Bench"), "{err}");

        let short = Frame {
            kind: Kind::Infer as u8,
            header: br#"{"handle":1,"shape":[2,2]}"#.to_vec(),
            blob: vec![0; 8],
        };
        let err = Request::from_frame(short).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadInput);

        let reply_as_request = Response::Bye.into_frame().unwrap();
        assert_eq!(
            Request::from_frame(reply_as_request).unwrap_err().code(),
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn unknown_fields_and_codes_are_tolerated() {
        // Minor versions add optional fields and codes; older peers must not choke.
        let hello = br#"{"protocol_major":1,"protocol_minor":7,"token":null,"future":true}"#;
        let frame = Frame {
            kind: Kind::Hello as u8,
            header: hello.to_vec(),
            blob: Vec::new(),
        };
        assert!(Request::from_frame(frame).is_ok());
        let err = br#"{"code":"some_new_code","message":"m"}"#;
        let frame = Frame {
            kind: Kind::Error as u8,
            header: err.to_vec(),
            blob: Vec::new(),
        };
        assert_eq!(
            Response::from_frame(frame).unwrap(),
            Response::error(ErrorCode::Other, "m")
        );
    }
}
