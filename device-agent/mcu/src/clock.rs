//! A 64-bit count of core clock cycles since boot, and deadlines on it.
//!
//! Real Cortex-M4/M7/M33 parts count cycles in the DWT's 32-bit CYCCNT.
//! QEMU (7.2) does not model the DWT: with DEMCR.TRCENA and DWT_CTRL.CYCCNTENA
//! set, CYCCNT reads 0 and never advances (see README.md for the evidence).
//! So `Clock::init` *tests* CYCCNT and falls back to SysTick:
//!
//! - `ClockSource::Dwt`: CYCCNT, widened to 64 bits in software.
//! - `ClockSource::SysTick`: SysTick counting the core clock down from a
//!   24-bit reload (2^24 cycles = 0.67 s at 25 MHz); its exception counts
//!   the wraps, and `now()` combines wraps and the current value.
//!
//! SysTick runs in both cases: with DWT its exception keeps the 64-bit
//! widening fresh (CYCCNT wraps every 2^32 cycles, 7 s at 600 MHz, and
//! nothing else guarantees a read that often). Either way interrupts must not
//! stay masked for a whole SysTick period, or a wrap is lost.
//!
//! QEMU's SysTick reloads only when its timer callback runs on QEMU's main
//! loop; until then CVR reads 0. `start_systick` and `systick_now` handle
//! that (see there); the time a reload waits is simply not counted.
//!
//! Under QEMU these counts mean nothing for latency: without `-icount`, QEMU
//! runs SysTick off the host's clock (25 MHz of wall time, whatever the guest
//! executed), and even with `-icount` a cycle is a fixed slice of guest
//! instructions, not a Cortex-M4's pipeline, flash wait states or memory
//! timing. Latency tables must come from real boards.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DCB, DWT, SCB, SYST};
use cortex_m_rt::exception;

/// Where the cycle count comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// The DWT cycle counter (real silicon).
    Dwt,
    /// SysTick on the core clock (QEMU, or parts without a DWT cycle counter).
    SysTick,
}

impl ClockSource {
    /// Lower-case name, as in the ready line and the Hello reply.
    pub fn name(self) -> &'static str {
        match self {
            ClockSource::Dwt => "dwt",
            ClockSource::SysTick => "systick",
        }
    }
}

/// SysTick reload: the full 24 bits, so one exception per 2^24 cycles.
const SYST_RELOAD: u32 = 0x00FF_FFFF;
const SYST_PERIOD: u64 = SYST_RELOAD as u64 + 1;

/// SysTick wraps since boot (counted by the SysTick exception).
static SYST_WRAPS: AtomicU32 = AtomicU32::new(0);
/// Set once when DWT was chosen; tells the exception to widen CYCCNT.
static USE_DWT: AtomicBool = AtomicBool::new(false);
/// CYCCNT widening state: (high word, last CYCCNT seen).
static DWT_WIDE: Mutex<Cell<(u32, u32)>> = Mutex::new(Cell::new((0, 0)));

/// An absolute point on the cycle count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub u64);

impl Deadline {
    /// A deadline that never passes.
    pub const NEVER: Deadline = Deadline(u64::MAX);
}

/// The cycle counter. Cheap to copy: the state lives in the hardware and
/// in statics, and `init` can only run once (it consumes the peripherals).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    source: ClockSource,
    hz: u32,
}

impl Clock {
    /// Starts SysTick, probes CYCCNT and picks the source. `hz` is the core
    /// clock (board.rs); neither counter can tell it.
    pub fn init(mut dcb: DCB, mut dwt: DWT, mut syst: SYST, hz: u32) -> Clock {
        start_systick(&mut syst);

        let source = if dwt_cycle_counter_runs(&mut dcb, &mut dwt) {
            cortex_m::interrupt::free(|cs| DWT_WIDE.borrow(cs).set((0, DWT::cycle_count())));
            USE_DWT.store(true, Ordering::Release);
            ClockSource::Dwt
        } else {
            ClockSource::SysTick
        };
        Clock { source, hz }
    }

    /// Which counter `now` reads.
    pub fn source(&self) -> ClockSource {
        self.source
    }

    /// Core clock in Hz.
    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// Core clock cycles since the clock started.
    pub fn now(&self) -> u64 {
        match self.source {
            ClockSource::Dwt => dwt_now(),
            ClockSource::SysTick => systick_now(),
        }
    }

    /// The deadline `cycles` from now.
    pub fn deadline_in_cycles(&self, cycles: u64) -> Deadline {
        Deadline(self.now().saturating_add(cycles))
    }

    /// The deadline `us` microseconds from now.
    pub fn deadline_in_us(&self, us: u64) -> Deadline {
        self.deadline_in_cycles(us.saturating_mul(u64::from(self.hz)) / 1_000_000)
    }

    /// Whether `deadline` has passed.
    pub fn expired(&self, deadline: Deadline) -> bool {
        deadline != Deadline::NEVER && self.now() >= deadline.0
    }

    /// Before a stretch of about `cycles` cycles that is being timed: if
    /// SysTick's next wrap would fall inside it, spins until the wrap has
    /// passed, so the stretch does not count the wrap's exception handler
    /// (a dozen instructions, no part of what is timed; under `-icount` it
    /// made one run of a block count about 9 more than the others). For
    /// stretches of half a period or more it does not wait: the wait could
    /// then be as long as the stretch.
    pub fn wait_out_tick(&self, cycles: u64) {
        if cycles >= SYST_PERIOD / 2 {
            return;
        }
        // CVR counts down to the wrap and reloads to RELOAD there (under
        // QEMU it may read 0 until its callback reloads: still waiting).
        while u64::from(SYST::get_current()) <= cycles {}
    }

    /// Cycles as whole microseconds.
    pub fn cycles_to_us(&self, cycles: u64) -> u64 {
        cycles.saturating_mul(1_000_000) / u64::from(self.hz)
    }
}

/// Enables CYCCNT and checks that it moves. "Has a cycle counter"
/// (DWT_CTRL.NOCYCCNT clear) is not enough: under QEMU the whole DWT reads as
/// zero, which claims a counter that never counts.
fn dwt_cycle_counter_runs(dcb: &mut DCB, dwt: &mut DWT) -> bool {
    dcb.enable_trace(); // DEMCR.TRCENA: the DWT is off without it
    DWT::unlock(); // Cortex-M7 parts lock the DWT after reset; a no-op elsewhere
    if !DWT::has_cycle_counter() {
        return false;
    }
    dwt.set_cycle_count(0);
    dwt.enable_cycle_counter();
    let before = DWT::cycle_count();
    for _ in 0..256 {
        cortex_m::asm::nop();
    }
    let after = DWT::cycle_count();
    if after == before {
        dwt.disable_cycle_counter();
        return false;
    }
    true
}

/// CYCCNT widened to 64 bits: a smaller value than last time means a wrap.
fn dwt_now() -> u64 {
    cortex_m::interrupt::free(|cs| {
        let cell = DWT_WIDE.borrow(cs);
        let (mut high, last) = cell.get();
        let low = DWT::cycle_count();
        if low < last {
            high = high.wrapping_add(1);
        }
        cell.set((high, low));
        (u64::from(high) << 32) | u64::from(low)
    })
}

/// Starts SysTick from a clean state: counting, no wrap counted, none pending.
///
/// Writing CVR zeroes the counter; silicon reloads it on the next cycle,
/// but QEMU only when its timer callback gets to run on QEMU's main loop
/// (observed: up to ~10,000 reads of CVR == 0 after enabling). QEMU may also
/// pend the exception for that first reload. So wait until the counter
/// moves, then drop any wrap seen so far, with interrupts masked throughout.
fn start_systick(syst: &mut SYST) {
    cortex_m::interrupt::free(|_| {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYST_RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // Bounded: ~5 s of MMIO reads under QEMU, one cycle on silicon.
        let mut spins: u32 = 0;
        while SYST::get_current() == 0 {
            spins += 1;
            assert!(spins < 50_000_000, "SysTick does not count");
        }
        SCB::clear_pendst();
        SYST_WRAPS.store(0, Ordering::Relaxed);
    });
}

/// Wraps × period + cycles into the current period, read with interrupts
/// masked so the exception cannot run in between.
///
/// A wrap whose exception is still pending is seen through ICSR.PENDSTSET,
/// or, if it happens between our reads, by the value jumping up (SysTick
/// counts down). CVR == 0 counts as the *end* of the period it closes: on
/// silicon the wrap is pended at that moment, under QEMU only once its
/// timer callback reloads the counter, and this reading is right for both.
fn systick_now() -> u64 {
    cortex_m::interrupt::free(|_| {
        let wraps = u64::from(SYST_WRAPS.load(Ordering::Relaxed));
        let v1 = SYST::get_current();
        let pending = SCB::is_pendst_pending();
        let v2 = SYST::get_current();
        if pending {
            // The wrap happened before the PENDSTSET read, so v2 is after it.
            // (P - v) % P: RELOAD→1 … 1→P-1, and 0 (just wrapped) → 0.
            (wraps + 1) * SYST_PERIOD + (SYST_PERIOD - u64::from(v2)) % SYST_PERIOD
        } else {
            // Wrapped after the PENDSTSET read: v1 is still in the old period.
            let value = if v2 > v1 { v1 } else { v2 };
            // RELOAD→1 … 1→P-1, 0→P (the end of this period).
            wraps * SYST_PERIOD + (SYST_PERIOD - u64::from(value))
        }
    })
}

#[exception]
fn SysTick() {
    SYST_WRAPS.fetch_add(1, Ordering::Relaxed);
    if USE_DWT.load(Ordering::Relaxed) {
        let _ = dwt_now(); // keep the widening from missing a CYCCNT wrap
    }
}
