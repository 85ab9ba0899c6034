//! The JSON headers of each message kind. Fields are only ever added, with
//! serde defaults, so that older peers keep understanding newer ones.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// First message of every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Host's [`PROTOCOL_MAJOR`](super::PROTOCOL_MAJOR).
    pub protocol_major: u16,
    /// Host's [`PROTOCOL_MINOR`](super::PROTOCOL_MINOR).
    pub protocol_minor: u16,
    /// Shared secret; required when the agent listens beyond loopback.
    #[serde(default)]
    pub token: Option<String>,
}

/// What the agent tells about itself and the board it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent's [`PROTOCOL_MAJOR`](super::PROTOCOL_MAJOR).
    pub protocol: u16,
    /// Agent's [`PROTOCOL_MINOR`](super::PROTOCOL_MINOR).
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
    /// A microcontroller agent's board: core, clock, memory, timer (added
    /// in 1.3; absent from Linux agents, whose `tract_version` it replaces
    /// in meaning: firmware sends `"none"` there).
    #[serde(default)]
    pub mcu: Option<McuInfo>,
}

/// What a microcontroller agent tells about its board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McuInfo {
    /// Core (`cortex-m4`, `cortex-m7`, `cortex-m33`).
    pub core: String,
    /// Board or machine name as the firmware was built for it (`mps2-an386`).
    pub board: String,
    /// Core clock in Hz: cycles ÷ this = seconds.
    pub clock_hz: u64,
    /// SRAM the firmware was linked for, in bytes.
    pub sram_bytes: u64,
    /// Flash (code and constant data) the firmware was linked for, in bytes.
    pub flash_bytes: u64,
    /// Heap the firmware gives to loaded blocks, in bytes: a block whose
    /// weights and activations do not fit is refused at load.
    pub heap_bytes: u64,
    /// Where cycle counts come from: `dwt` (the DWT cycle counter) or
    /// `systick` (SysTick at the core clock, where there is no DWT).
    pub timer: String,
    /// Kernels the firmware runs blocks with (`padnas-int8 0.1.0`).
    pub kernels: String,
}

/// Load an ONNX model; the model bytes travel in the frame's blob.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadModel {
    /// Concrete input shape (batch first). `None`: use the model's declared
    /// shape, which must then be fully concrete. Symbolic shapes are refused
    /// rather than run, because tract is ~28x slower on them.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Instead of ONNX: one int8 block for a microcontroller agent (added in
    /// 1.3), its parameters in the blob as `padnas-int8`'s codec writes
    /// them, or drawn from its seed when the blob is empty. Linux agents
    /// refuse it.
    #[serde(default)]
    pub int8_block: Option<Int8Block>,
}

/// Which part of a network an [`Int8Block`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Int8Kind {
    /// Inverted residual: 1×1 expand, k×k depthwise, 1×1 project, residual.
    #[default]
    Mbconv,
    /// k×k convolution + ReLU6 (`in_c` → `out_c`, `kernel`, `stride`).
    Stem,
    /// 1×1 convolution to `out_c` channels + ReLU6, global average pool,
    /// fully connected to `classes` logits.
    Head,
}

/// One int8 block of a network, described compactly enough for a board with
/// a few hundred KiB of RAM: its kind and shape, and a seed from which the
/// agent and the host derive the same weights and quantisation parameters
/// (`padnas-int8`'s `RandomBlock`, `RandomStem`, `RandomHead`), which is all
/// latency needs. Tensors are HWC (batch 1); Infer carries their int8 values
/// as f32, which is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Int8Block {
    /// Kind of block; MBConv when absent.
    #[serde(default)]
    pub kind: Int8Kind,
    /// Input channels.
    pub in_c: u32,
    /// Output channels.
    pub out_c: u32,
    /// Expansion ratio (1 = no expansion convolution; 1 for stem and head).
    pub expand: u32,
    /// Kernel size: the depthwise one (3, 5, 7), the stem's; 1 for a head.
    pub kernel: u32,
    /// Stride of the depthwise convolution or of the stem; 1 for a head.
    pub stride: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Logits of a head (0 for other kinds).
    #[serde(default)]
    pub classes: u32,
    /// Seed of the weights and quantisation parameters.
    pub seed: u64,
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
    /// An int8 block's memory on the agent, as the firmware allocated it
    /// (added in 1.3).
    #[serde(default)]
    pub memory: Option<BlockMemory>,
}

/// Bytes an int8 block takes on a microcontroller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMemory {
    /// Weights, biases and requantisation parameters (flash, on a real
    /// deployment).
    pub weight_bytes: u64,
    /// Peak live activations while the block runs, input and output included
    /// (SRAM).
    pub activation_bytes: u64,
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
    /// A microcontroller agent's timings in core cycles, which the `_ms`
    /// fields are derived from at [`McuInfo::clock_hz`] (added in 1.3).
    #[serde(default)]
    pub cycles: Option<CycleStats>,
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

/// Timed runs in core cycles (a microcontroller's DWT or SysTick count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleStats {
    /// Fastest run.
    pub min: u64,
    /// Median run.
    pub median: u64,
    /// Slowest run.
    pub max: u64,
    /// Core clock the milliseconds were derived at.
    pub clock_hz: u64,
}
