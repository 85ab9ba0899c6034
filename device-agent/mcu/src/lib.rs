//! padnas device agent for Cortex-M microcontrollers (no_std).
//!
//! The library holds everything but the entry point, so that the firmware
//! (`src/main.rs`) and diagnostics (`examples/`) share drivers, heap and
//! panic handler. See README.md for the boards, the memory map and how to run
//! it under QEMU.

#![no_std]

extern crate alloc;

pub mod agent;
pub mod board;
pub mod clock;
pub mod heap;
pub mod link;
pub mod net;
mod panic;
#[cfg(feature = "rtt")]
pub mod rtt_link;
pub mod serve;
pub mod uart;
mod vectors;
