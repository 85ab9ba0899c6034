//! The agent's side of a session, on a microcontroller: the same frames and
//! messages as the Linux agent (`padnas-proto`), but the models are int8
//! MBConv blocks (`padnas-int8`) described by shape and seed, and timing is
//! the core's cycle count.
//!
//! Differences from the Linux agent, each for a reason:
//! - no token: the link is a UART or a debug probe, i.e. physical access;
//! - LoadModel carries an `int8_block`, never ONNX (there is no tract here);
//! - Infer carries int8 values as f32 (exact), HWC like the kernels;
//! - Shutdown answers Bye and the firmware waits for the next host, since a
//!   board has nowhere to exit to;
//! - a block is refused at load when its weights and activations would not
//!   fit the heap, because an allocation failure aborts the firmware.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use padnas_int8::random_input;
use padnas_proto::{
    AgentInfo, BenchLimits, BenchStats, BlockMemory, CycleStats, Dims, ErrorCode, HelloRequest,
    Int8Block, McuInfo, ModelLoaded, PROTOCOL_MAJOR, PROTOCOL_MINOR, Request, Response, stats,
};

use crate::board::BoardInfo;
use crate::clock::Clock;
use crate::heap;
use crate::net::{Net, Shape};

/// Payload cap until a host has said Hello: a Hello is a few dozen bytes.
pub const PRE_HELLO_MAX_PAYLOAD: u32 = 4 << 10;
/// Payload cap after Hello: the largest Infer of a block that fits the heap
/// (its int8 input travels as f32, four bytes a value).
pub const MAX_PAYLOAD: u32 = 128 << 10;
/// Blocks one session may hold.
const MAX_BLOCKS: usize = 4;
/// Timed runs one Bench may ask for: their cycle counts live on the heap.
const MAX_RUNS: u32 = 2000;
/// Heap kept free beyond a block's own bytes: frames, JSON, allocator slack.
const HEAP_MARGIN: usize = 16 << 10;
/// Seed of the input a Bench runs on (any input times the same: the kernels
/// have no data-dependent branches but the clamps).
const BENCH_INPUT_SEED: u64 = 0x5EED;

struct Loaded {
    handle: u32,
    net: Net,
    /// The one buffer the block runs in: input at its start, output where
    /// `run_block_in_arena` says.
    arena: Vec<i8>,
}

/// What the session does next.
pub enum Next {
    /// Keep serving this host.
    Continue,
    /// This host is done; forget its blocks and wait for the next Hello.
    EndSession,
}

/// One host's session.
pub struct Agent {
    clock: Clock,
    board: BoardInfo,
    greeted: bool,
    blocks: Vec<Loaded>,
    next_handle: u32,
}

impl Agent {
    /// A session that has not heard Hello yet.
    pub fn new(clock: Clock, board: BoardInfo) -> Agent {
        Agent {
            clock,
            board,
            greeted: false,
            blocks: Vec::new(),
            next_handle: 1,
        }
    }

    /// Whether a host has said Hello.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> (Response, Next) {
        let kind = request.kind();
        if let Request::Hello(hello) = request {
            return self.hello(&hello);
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
        let response = match request {
            Request::Hello(_) => unreachable!("answered above"),
            Request::LoadModel { header, onnx } => match header.int8_block {
                Some(block) => self.load(block, onnx),
                None => Response::error(
                    ErrorCode::BadModel,
                    "this is the microcontroller agent: it runs int8 blocks (LoadModel.int8_block), not ONNX",
                ),
            },
            Request::Bench(req) => {
                if req.reference.is_some() || req.sensor_every.is_some() {
                    Response::error(
                        ErrorCode::BadMessage,
                        "reference blocks and the contention sensor are for shared machines; \
                         a microcontroller runs nothing else",
                    )
                } else {
                    self.bench(req.handle, &req.limits)
                }
            }
            Request::Infer { header, data } => self.infer(header.handle, &header.shape, &data),
            Request::Unload(req) => match self.blocks.iter().position(|b| b.handle == req.handle) {
                Some(i) => {
                    self.blocks.swap_remove(i);
                    Response::Unloaded
                }
                None => self.unknown_handle(req.handle),
            },
            Request::Shutdown => {
                self.blocks.clear();
                self.greeted = false;
                return (Response::Bye, Next::EndSession);
            }
        };
        (response, Next::Continue)
    }

    fn hello(&mut self, hello: &HelloRequest) -> (Response, Next) {
        if hello.protocol_major != PROTOCOL_MAJOR {
            // As u32: the formatting the firmware has anyway, where u16's
            // would cost 130 B of flash for this message alone.
            let v = u32::from;
            return (
                Response::error(
                    ErrorCode::ProtocolMismatch,
                    format!(
                        "host speaks protocol {}.{}, this firmware speaks {}.{}; \
                         flash the firmware built with this host",
                        v(hello.protocol_major),
                        v(hello.protocol_minor),
                        v(PROTOCOL_MAJOR),
                        v(PROTOCOL_MINOR)
                    ),
                ),
                Next::EndSession,
            );
        }
        // A new Hello starts a new session (the last host may have gone
        // without Shutdown): its blocks are freed.
        self.blocks.clear();
        self.greeted = true;
        (Response::Hello(self.info()), Next::Continue)
    }

    fn info(&self) -> AgentInfo {
        AgentInfo {
            protocol: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            tract_version: "none".to_string(),
            arch: env!("PADNAS_ARCH").to_string(),
            os: "none".to_string(),
            cpu: self.board.core.to_string(),
            cores: 1,
            governor: None,
            cur_freq_khz: Some(u64::from(self.board.clock_hz) / 1000),
            temperature_c: None,
            features: vec!["int8".to_string()],
            mcu: Some(McuInfo {
                core: self.board.core.to_string(),
                board: board_name().to_string(),
                clock_hz: u64::from(self.board.clock_hz),
                sram_bytes: u64::from(self.board.ram_bytes),
                flash_bytes: u64::from(self.board.flash_bytes),
                heap_bytes: self.board.heap_bytes as u64,
                timer: self.clock.source().name().to_string(),
                kernels: "padnas-int8".to_string(),
            }),
        }
    }

    fn unknown_handle(&self, handle: u32) -> Response {
        let loaded: Vec<usize> = self.blocks.iter().map(|b| b.handle as usize).collect();
        Response::error(
            ErrorCode::UnknownHandle,
            format!(
                "no block loaded under handle {handle} (loaded: {})",
                Dims(&loaded)
            ),
        )
    }

    /// Loads a block: its parameters from `blob` (as `padnas-int8`'s codec
    /// writes them) or, when that is empty, drawn from its seed.
    fn load(&mut self, spec: Int8Block, blob: Vec<u8>) -> Response {
        if self.blocks.len() >= MAX_BLOCKS {
            return Response::error(
                ErrorCode::Internal,
                format!(
                    "{MAX_BLOCKS} blocks are loaded, the most this firmware holds; unload some first"
                ),
            );
        }
        let shape = match Shape::of(&spec) {
            Ok(s) => s,
            Err(e) => return Response::error(ErrorCode::BadModel, e),
        };
        if !blob.is_empty() && blob.len() != shape.encoded_len() {
            return Response::error(
                ErrorCode::BadModel,
                format!(
                    "int8 {:?} block parameters: {} bytes, its shape needs {}",
                    spec.kind,
                    blob.len(),
                    shape.encoded_len()
                ),
            );
        }
        // Checked before allocating: running out of heap aborts the firmware.
        // (A sent blob is already on the heap; its decoded copy is as big.)
        let weights = shape.weight_bytes();
        let activations = shape.activation_bytes();
        let needed = weights
            .saturating_add(activations)
            .saturating_add(HEAP_MARGIN);
        if needed > heap::free() {
            return Response::error(
                ErrorCode::BadModel,
                format!(
                    "int8 {:?} block needs {weights} bytes of weights and {activations} of activations; \
                     {} of the {}-byte heap are free",
                    spec.kind,
                    heap::free(),
                    self.board.heap_bytes
                ),
            );
        }
        let started = self.clock.now();
        let drawn = if blob.is_empty() {
            shape.draw(spec.seed)
        } else {
            shape.decode(&blob)
        };
        drop(blob);
        let net = match drawn {
            Ok(n) => n,
            Err(e) => return Response::error(ErrorCode::BadModel, e.to_string()),
        };
        let arena = vec![0i8; activations];
        let load_cycles = self.clock.now() - started;
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        let (input_shape, output_shape) = (net.input_shape(), net.output_shape());
        self.blocks.push(Loaded { handle, net, arena });
        Response::Loaded(ModelLoaded {
            handle,
            input_shape,
            output_shape,
            load_ms: self.ms(load_cycles),
            memory: Some(BlockMemory {
                weight_bytes: weights as u64,
                activation_bytes: activations as u64,
            }),
        })
    }

    fn ms(&self, cycles: u64) -> f64 {
        cycles as f64 * 1e3 / f64::from(self.board.clock_hz)
    }

    fn bench(&mut self, handle: u32, limits: &BenchLimits) -> Response {
        if limits.max_runs == 0 || limits.min_runs > limits.max_runs || limits.max_runs > MAX_RUNS {
            return Response::error(
                ErrorCode::BadMessage,
                format!(
                    "bench limits min_runs {} / max_runs {}: need 1 ≤ max_runs ≤ {MAX_RUNS} and min_runs ≤ max_runs",
                    limits.min_runs, limits.max_runs
                ),
            );
        }
        let clock = self.clock;
        let hz = u64::from(self.board.clock_hz);
        let Some(loaded) = self.blocks.iter_mut().find(|b| b.handle == handle) else {
            return self.unknown_handle(handle);
        };
        let input = random_input(loaded.net.input_len(), BENCH_INPUT_SEED);
        let started = clock.now();
        // `last`: the previous run's count, an estimate of this one's.
        let run_once = |l: &mut Loaded, last: u64| -> Result<u64, padnas_int8::Error> {
            // The input is copied in before the clock starts: a deployed
            // network finds its input in place, written by the layer before.
            l.arena[..input.len()].copy_from_slice(&input);
            // Not across a SysTick wrap, with an eighth to spare: the
            // firmware's own exception handler is no part of the block.
            clock.wait_out_tick(last + last / 8);
            let t0 = clock.now();
            l.net.run(&mut l.arena)?;
            Ok(clock.now() - t0)
        };
        let mut last = 0;
        let ms_to_cycles = |ms: u64| ms.saturating_mul(hz) / 1000;
        let warmup_end = started + ms_to_cycles(limits.warmup_ms);
        let mut warmup_runs = 0u32;
        while warmup_runs < limits.warmup_runs || clock.now() < warmup_end {
            match run_once(loaded, last) {
                Ok(c) => last = c,
                Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
            }
            warmup_runs += 1;
        }
        let timed_start = clock.now();
        let timed_end = timed_start + ms_to_cycles(limits.max_time_ms);
        let mut cycles: Vec<u64> = Vec::with_capacity(limits.max_runs as usize);
        while (cycles.len() as u32) < limits.max_runs
            && ((cycles.len() as u32) < limits.min_runs || clock.now() < timed_end)
        {
            match run_once(loaded, last) {
                Ok(c) => {
                    last = c;
                    cycles.push(c);
                }
                Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
            }
        }
        let timed_wall = clock.now() - timed_start;
        let scale = 1e3 / hz as f64;
        let to_ms = |c: u64| c as f64 * scale;
        // In run order, before the counts are sorted.
        let samples: Vec<f64> = cycles.iter().map(|&c| to_ms(c)).collect();
        // Summarised in cycles (exact in f64 below 2^53) and scaled to ms,
        // rather than sorting cycles and milliseconds separately, and sorted
        // by `heapsort` rather than core's sort, whose one instantiation
        // costs about 2.5 KB of flash. Cycles sort as their f64 values do,
        // so the summary has the bits `stats::summarize` would give.
        heapsort(&mut cycles);
        let in_cycles: Vec<f64> = cycles.iter().map(|&c| c as f64).collect();
        let Some(c) = stats::summarize_sorted(&in_cycles) else {
            return Response::error(ErrorCode::Internal, "no timed runs");
        };
        let s = stats::Summary {
            min: c.min * scale,
            median: c.median * scale,
            mean: c.mean * scale,
            p10: c.p10 * scale,
            p90: c.p90 * scale,
            max: c.max * scale,
            stddev: c.stddev * scale,
            total: c.total * scale,
            ..c
        };
        let stats = BenchStats {
            runs: s.n as u32,
            warmup_runs,
            min_ms: s.min,
            median_ms: s.median,
            mean_ms: s.mean,
            p10_ms: s.p10,
            p90_ms: s.p90,
            max_ms: s.max,
            stddev_ms: s.stddev,
            total_ms: s.total,
            threads: 1,
            pinned_cpu: None,
            samples_ms: limits.return_samples.then_some(samples),
            wall_ms: Some(to_ms(clock.now() - started)),
            timed_wall_ms: Some(to_ms(timed_wall)),
            reference_samples_ms: None,
            reference_median_ms: None,
            ratio_median: None,
            sensor_samples_ms: None,
            cycles: Some(CycleStats {
                min: c.min as u64,
                // The median of an even count lies between two runs: the
                // nearest cycle.
                median: (c.median + 0.5) as u64,
                max: c.max as u64,
                clock_hz: hz,
            }),
        };
        Response::Stats(stats)
    }

    fn infer(&mut self, handle: u32, shape: &[usize], data: &[f32]) -> Response {
        let Some(loaded) = self.blocks.iter_mut().find(|b| b.handle == handle) else {
            return self.unknown_handle(handle);
        };
        let want = loaded.net.input_shape();
        if shape != want.as_slice() {
            return Response::error(
                ErrorCode::BadInput,
                format!(
                    "input shape {}, block takes {} (NHWC)",
                    Dims(shape),
                    Dims(&want)
                ),
            );
        }
        for (i, &v) in data.iter().enumerate() {
            if !((-128.0..=127.0).contains(&v) && v == (v as i32) as f32) {
                return Response::error(
                    ErrorCode::BadInput,
                    // No float in the message: formatting one would cost
                    // the firmware kilobytes of flash for an error text.
                    format!("value at index {i} is not an int8 (a whole number in -128..=127)"),
                );
            }
            loaded.arena[i] = v as i8;
        }
        let out = match loaded.net.run(&mut loaded.arena) {
            Ok(range) => range,
            Err(e) => return Response::error(ErrorCode::Internal, e.to_string()),
        };
        Response::Output {
            shape: loaded.net.output_shape(),
            data: loaded.arena[out].iter().map(|&v| f32::from(v)).collect(),
        }
    }
}

/// Sorts ascending in place, in O(n log n) with no allocation, in a few
/// dozen instructions: Bench's statistics need sorted counts, and core's
/// `sort_unstable` (pattern-defeating quicksort, small-sort networks) takes
/// about 2.5 KB of flash for that one use.
fn heapsort(v: &mut [u64]) {
    // Moves v[root] down until it is no smaller than its children, within
    // the first `end` values.
    fn sift_down(v: &mut [u64], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child + 1] > v[child] {
                child += 1;
            }
            if v[root] >= v[child] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    for root in (0..v.len() / 2).rev() {
        sift_down(v, root, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// The QEMU machine (or board) this image is built for.
fn board_name() -> &'static str {
    #[cfg(board = "mps2_an386")]
    {
        "mps2-an386"
    }
    #[cfg(board = "mps2_an505")]
    {
        "mps2-an505"
    }
}
