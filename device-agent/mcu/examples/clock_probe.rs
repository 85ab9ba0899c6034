//! Diagnostic, not the agent: shows whether the DWT cycle counter counts on
//! this core (or emulator) and at what rate the chosen clock advances.
//!
//!   cargo build --release --example clock_probe
//!   ../../scripts/run-mcu-qemu ../../target/mcu/thumbv7em-none-eabihf/release/examples/clock_probe
//!
//! Prints the raw DEMCR / DWT_CTRL / CYCCNT values around enabling the cycle
//! counter, the source `Clock::init` picked, then one `tick` line per
//! `clock_hz` cycles (on the host, their spacing in wall time is the length
//! of one "second" of the firmware's clock), then checks that `now()` never
//! goes backwards across four SysTick wraps (2^26 cycles).

#![no_std]
#![no_main]

use core::fmt::Write;
use core::ptr::{read_volatile, write_volatile};

use cortex_m_rt::entry;

use padnas_mcu_agent::board;
use padnas_mcu_agent::clock::Clock;
use padnas_mcu_agent::uart::Uart;

const DEMCR: *mut u32 = 0xE000_EDFC as *mut u32;
const DWT_CTRL: *mut u32 = 0xE000_1000 as *mut u32;
const DWT_CYCCNT: *mut u32 = 0xE000_1004 as *mut u32;

#[entry]
fn main() -> ! {
    let mut uart = Uart::take().unwrap();
    let info = board::info();
    // SAFETY: raw reads/writes of the debug registers, before anything else
    // uses them (Clock::init repeats the enabling).
    unsafe {
        let demcr0 = read_volatile(DEMCR);
        write_volatile(DEMCR, demcr0 | (1 << 24)); // TRCENA
        let demcr1 = read_volatile(DEMCR);
        let ctrl0 = read_volatile(DWT_CTRL);
        write_volatile(DWT_CTRL, ctrl0 | 1); // CYCCNTENA
        let ctrl1 = read_volatile(DWT_CTRL);
        let c0 = read_volatile(DWT_CYCCNT);
        for _ in 0..100_000 {
            cortex_m::asm::nop();
        }
        let c1 = read_volatile(DWT_CYCCNT);
        let _ = writeln!(
            uart,
            "probe core={} DEMCR={demcr0:#010x}->{demcr1:#010x} DWT_CTRL={ctrl0:#010x}->{ctrl1:#010x} \
             CYCCNT={c0}->{c1} after 100000 nops",
            info.core
        );
    }
    let cp = cortex_m::Peripherals::take().unwrap();
    let clock = Clock::init(cp.DCB, cp.DWT, cp.SYST, info.clock_hz);
    let _ = writeln!(
        uart,
        "probe source={} clock_hz={}",
        clock.source().name(),
        clock.hz()
    );
    let t0 = clock.now();
    for i in 1..=5u64 {
        while clock.now() < t0 + i * u64::from(clock.hz()) {}
        let _ = writeln!(uart, "tick {i} now={}", clock.now());
    }
    let start = clock.now();
    let (mut last, mut reads, mut backwards, mut max_step) = (start, 0u32, 0u32, 0u64);
    while last < start + (4 << 24) {
        let n = clock.now();
        reads += 1;
        if n < last {
            backwards += 1;
        } else {
            max_step = max_step.max(n - last);
        }
        last = n;
    }
    let _ = writeln!(
        uart,
        "monotonic reads={reads} backwards={backwards} max_step_cycles={max_step}"
    );
    let _ = writeln!(uart, "probe done");
    loop {
        cortex_m::asm::wfi();
    }
}
