//! The global allocator: `alloc` for JSON headers, weights and activations.
//!
//! A linked-list first-fit heap (embedded-alloc's `LlffHeap`) over a static
//! arena of `board::HEAP_BYTES`. The arena is in `.uninit` so cortex-m-rt does
//! not spend boot time zeroing 256 KiB that the allocator never reads.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use embedded_alloc::LlffHeap;

use crate::board::HEAP_BYTES;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

#[unsafe(link_section = ".uninit.padnas_heap")]
static mut ARENA: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Hands the arena to the allocator. Call first thing in `main`; later calls
/// do nothing.
pub fn init() {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the flag makes this run once; ARENA is used by nothing else.
    unsafe { HEAP.init(&raw mut ARENA as usize, HEAP_BYTES) }
}

/// Bytes currently allocated.
pub fn used() -> usize {
    HEAP.used()
}

/// Bytes still free (not necessarily in one piece).
pub fn free() -> usize {
    HEAP.free()
}
