//! Property-based tests of the frame reader and message decoding: arbitrary
//! bytes, arbitrary read splits, mutated valid frames. Never a panic, never
//! an allocation past what the payload cap allows, always back in step for
//! the next valid frame.
//!
//! `PADNAS_FUZZ_CASES` sets the cases per property (default 2000, what the
//! test command runs); `scripts/fuzz-agent N` runs N and prints the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use padnas_proto::{
    BenchLimits, BenchRequest, Frame, FrameReader, HelloRequest, InferRequest, LoadModel,
    ProtoError, Request, Response, UnloadRequest,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Records the largest single allocation while armed, so a property can
/// check that no input makes the reader allocate past its cap.
struct Tracking;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Serialises the properties (see [`run`]).
static SERIAL: Mutex<()> = Mutex::new(());

/// The payload cap the properties read under (the agent's pre-Hello cap).
const CAP: u32 = 4096;

/// Largest single allocation a reader with cap [`CAP`] may make: its read
/// buffer holds at most one frame plus one 64 KiB read, and a Vec may
/// double its capacity when it grows.
const ALLOC_BOUND: usize = 2 * ((64 << 10) + CAP as usize + 64);

fn cases() -> u32 {
    std::env::var("PADNAS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Hands out the bytes in the given chunk sizes (cycled), like a socket or
/// a serial line that splits the stream anywhere.
struct Split {
    bytes: Vec<u8>,
    pos: usize,
    splits: Vec<usize>,
    n: usize,
}

impl Read for Split {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.bytes.len() {
            return Ok(0);
        }
        let want = self.splits[self.n % self.splits.len()].max(1);
        self.n += 1;
        let k = want.min(buf.len()).min(self.bytes.len() - self.pos);
        buf[..k].copy_from_slice(&self.bytes[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// Every frame the reader yields until the end of the stream, checking that
/// it terminates: each report consumes input, so there are never more
/// results than bytes (plus the end).
fn drain(bytes: Vec<u8>, splits: Vec<usize>) -> Vec<Frame> {
    let limit = bytes.len() + 2;
    let mut reader = FrameReader::with_max_payload(
        Split {
            bytes,
            pos: 0,
            splits,
            n: 0,
        },
        CAP,
    );
    let mut frames = Vec::new();
    for _ in 0..=limit {
        match reader.read_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return frames,
            Err(ProtoError::Io(e)) => panic!("a memory reader cannot fail: {e}"),
            Err(e) => assert!(e.is_recoverable(), "{e}"),
        }
    }
    panic!("the reader did not reach the end of the stream in {limit} calls");
}

/// Decodes a frame as both a request and a response; only errors, never a
/// panic.
fn decode(frame: &Frame) {
    let _ = Request::from_frame(frame.clone());
    let _ = Response::from_frame(frame.clone());
}

fn requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), proptest::option::of(".{0,40}")).prop_map(
            |(major, minor, token)| Request::Hello(HelloRequest {
                protocol_major: major,
                protocol_minor: minor,
                token,
            })
        ),
        (proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|onnx| Request::LoadModel {
            header: LoadModel::default(),
            onnx,
        }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(handle, min_runs, max_runs)| {
            Request::Bench(BenchRequest {
                handle,
                limits: BenchLimits {
                    min_runs,
                    max_runs,
                    ..BenchLimits::default()
                },
                reference: None,
                sensor_every: None,
            })
        }),
        (any::<u32>(), proptest::collection::vec(-1e3f32..1e3, 0..64)).prop_map(
            |(handle, data)| Request::Infer {
                header: InferRequest {
                    handle,
                    shape: vec![1, data.len()],
                },
                data,
            }
        ),
        any::<u32>().prop_map(|handle| Request::Unload(UnloadRequest { handle })),
        Just(Request::Shutdown),
    ]
}

fn encoded(r: &Request) -> Vec<u8> {
    r.to_frame().expect("frame").encode().expect("encode")
}

/// One change to a byte stream.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutate(bytes: &mut Vec<u8>, m: &[Mutation]) {
    for m in m {
        if bytes.is_empty() {
            return;
        }
        match *m {
            Mutation::Flip(i, x) => {
                let i = i % bytes.len();
                bytes[i] ^= x.max(1);
            }
            Mutation::Insert(i, x) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, x);
            }
            Mutation::Delete(i) => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
        }
    }
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
            any::<usize>().prop_map(Mutation::Delete),
        ],
        1..6,
    )
}

/// Runs `test` on `cases()` inputs from `strategy`; prints the count.
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    // The allocation tracker is process-wide: one property at a time.
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = cases();
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, test);
    match result {
        Ok(()) => eprintln!("fuzz {name}: {n} cases, 0 failures"),
        Err(e) => panic!("fuzz {name}: 1 failure in at most {n} cases: {e}"),
    }
}

#[test]
fn arbitrary_bytes_in_arbitrary_splits_never_panic_or_overallocate() {
    let magic_heavy = proptest::collection::vec(
        prop_oneof![
            3 => any::<u8>(),
            1 => Just(b'P'),
            1 => Just(b'D'),
            1 => Just(b'N'),
            1 => Just(b'A'),
        ],
        0..2048,
    );
    let strategy = (
        magic_heavy,
        proptest::collection::vec(1usize..4096, 1..8),
        any::<bool>(),
    );
    run(
        "arbitrary bytes",
        strategy,
        |(mut bytes, splits, with_header)| {
            if with_header && bytes.len() >= 9 {
                // Often a real magic with an arbitrary kind and length (up to
                // 4 GiB) in front: the header must not size an allocation.
                bytes[..4].copy_from_slice(b"PDNA");
            }
            LARGEST.store(0, Ordering::Relaxed);
            ARMED.store(true, Ordering::Relaxed);
            let frames = drain(bytes, splits);
            ARMED.store(false, Ordering::Relaxed);
            let largest = LARGEST.load(Ordering::Relaxed);
            prop_assert!(
                largest <= ALLOC_BOUND,
                "allocated {largest} bytes at once under a {CAP}-byte cap"
            );
            for f in &frames {
                decode(f);
            }
            Ok(())
        },
    );
}

#[test]
fn mutated_valid_frames_never_panic_and_the_next_valid_frame_decodes() {
    let strategy = (
        proptest::collection::vec(requests(), 1..4),
        mutations(),
        proptest::collection::vec(1usize..512, 1..6),
    );
    run("mutated frames", strategy, |(reqs, muts, splits)| {
        let mut damaged: Vec<u8> = reqs.iter().flat_map(encoded).collect();
        mutate(&mut damaged, &muts);
        // The sentinel follows the damage, and enough filler after it
        // that a damaged header's length (at most the cap) runs out before
        // the end of the stream: then the reader must find the sentinel.
        // A gap of zeros keeps the damage from reaching into the sentinel:
        // without it, deleting a damaged frame's last byte when it equals
        // the sentinel's first ('P') leaves that frame intact and the
        // sentinel without its first byte, which no reader could tell from
        // damage to the sentinel itself (the one failure in 1e6 cases).
        let sentinel = Request::Unload(UnloadRequest { handle: 0x5E11 });
        let mut bytes = damaged;
        bytes.extend([0u8; 8]);
        bytes.extend(encoded(&sentinel));
        bytes.extend(std::iter::repeat_n(0u8, CAP as usize + 64));
        let frames = drain(bytes, splits);
        for f in &frames {
            decode(f);
        }
        let found = frames.iter().any(|f| {
            matches!(Request::from_frame(f.clone()), Ok(Request::Unload(u)) if u.handle == 0x5E11)
        });
        prop_assert!(found, "the valid frame after the damage was lost");
        Ok(())
    });
}

#[test]
fn arbitrary_frames_decode_to_messages_or_errors() {
    let strategy = (
        any::<u8>(),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            "\\{[ -~]{0,200}\\}".prop_map(String::into_bytes),
        ],
        proptest::collection::vec(any::<u8>(), 0..256),
    );
    run("frame decoding", strategy, |(kind, header, blob)| {
        let frame = Frame { kind, header, blob };
        decode(&frame);
        // An encoded frame reads back as itself.
        let bytes = frame.encode().expect("small frame");
        let back = drain(bytes, vec![7]);
        prop_assert_eq!(back, vec![frame]);
        Ok(())
    });
}

#[test]
fn valid_requests_round_trip_through_any_split() {
    let strategy = (
        proptest::collection::vec(requests(), 1..6),
        proptest::collection::vec(1usize..64, 1..6),
    );
    run("round trip", strategy, |(reqs, splits)| {
        let bytes: Vec<u8> = reqs.iter().flat_map(encoded).collect();
        let frames = drain(bytes, splits);
        prop_assert_eq!(frames.len(), reqs.len());
        for (f, r) in frames.iter().zip(&reqs) {
            prop_assert_eq!(f.known_kind(), Some(r.kind()));
            let back = Request::from_frame(f.clone()).expect("valid");
            prop_assert_eq!(encoded(&back), encoded(r));
        }
        Ok(())
    });
}
