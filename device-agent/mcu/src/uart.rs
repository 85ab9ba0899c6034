//! Driver for the CMSDK APB UART (UART0 of the MPS2 boards), the firmware's
//! only link to the host: receive interrupt-driven into a ring buffer,
//! transmit polled.
//!
//! The protocol on top is binary (framed bytes), so nothing here translates
//! or drops bytes: 0x00, 0xFF, `\n` go through as they are.
//!
//! Register behaviour, as QEMU's hw/char/cmsdk-apb-uart.c models it (and the
//! CMSDK TRM, ARM DDI0479, describes):
//! - one byte of buffer each way. STATE.TXFULL is set by a DATA write and
//!   cleared once QEMU's character backend took the byte; a DATA write while
//!   it is set is an overrun. QEMU only offers the guest a received byte when
//!   RX is enabled and STATE.RXFULL is clear, so under QEMU input waits in the
//!   host's pty/socket buffer and is never lost. On silicon the byte *is* lost
//!   (STATE.RXOVERRUN) if it is not read within one character time (87 us at
//!   115200 baud): hence the interrupt, which empties the UART into
//!   `RX_RING` within the interrupt latency, and `rx_overruns`.
//! - INTSTATUS.RX is latched when a byte arrives while CTRL.RXINTEN is set
//!   and stays set (the IRQ line stays high) until written 1 to clear;
//!   reading DATA does not clear it, and enabling RXINTEN while RXFULL is
//!   already set does not raise it.
//! - BAUDDIV below 16 is invalid: QEMU logs "Tx enabled with invalid
//!   baudrate" (with `-d guest_errors`) and does not pass a line speed to a
//!   real host serial port. QEMU 7.2 still transmits (see README.md); we
//!   program a valid divisor first anyway, as silicon needs it.
//!
//! Receive path: the interrupt handler (`DefaultHandler` below: there is no
//! device crate, so every device interrupt lands there) moves bytes from
//! DATA into `RX_RING`, a `heapless::spsc` queue whose consumer end the
//! `Uart` holds. When the ring is full the handler leaves the byte in DATA
//! and turns the receive interrupt off ("parks"); `read` turns it back on
//! once it has made room. Under QEMU that holds the rest of the input in the
//! host's buffer, as the polled driver did, so nothing is ever lost there;
//! on silicon the line keeps coming and RXOVERRUN counts what is lost.
//! `heapless::spsc` rather than `bbqueue`: bytes go in one at a time and out
//! into the caller's buffer, so bbqueue's contiguous grants (made for DMA)
//! would buy nothing for their heavier API.

use core::cell::{RefCell, UnsafeCell};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use cortex_m::interrupt::{CriticalSection, InterruptNumber, Mutex};
use cortex_m::peripheral::NVIC;
use cortex_m_rt::exception;
use heapless::spsc::{Consumer, Producer, Queue};

use crate::clock::{Clock, Deadline};

/// Register offsets from the UART base.
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INTEN: u32 = 1 << 3;
const INTSTATUS_RX: u32 = 1 << 1;

/// Line speed programmed into BAUDDIV (8N1 is fixed by the hardware).
pub const BAUD: u32 = 115_200;

/// Slots in the receive ring; `heapless::spsc` keeps one free, so it holds
/// 2047 bytes: 178 ms of input at 115200 baud while the firmware is busy
/// elsewhere (computing, replying) before the handler has to park.
pub const RX_RING_SLOTS: usize = 2048;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The receive ring. Split once, in `take` (guarded by `TAKEN`): the
/// producer goes to the interrupt handler through `RX_PRODUCER`, the
/// consumer into the `Uart`.
static RX_RING: RingCell = RingCell(UnsafeCell::new(Queue::new()));
/// The ring's producer end. Used only with interrupts masked (the handler
/// masks them too), so the handler and `Uart::unpark` never overlap.
static RX_PRODUCER: Mutex<RefCell<Option<Producer<'static, u8>>>> = Mutex::new(RefCell::new(None));
/// Set by the handler when the ring was full and it turned the receive
/// interrupt off, leaving a byte in DATA; cleared by `Uart::unpark`.
static RX_PARKED: AtomicBool = AtomicBool::new(false);
/// Times the UART reported RXOVERRUN (a byte lost before the one read).
static RX_OVERRUNS: AtomicU32 = AtomicU32::new(0);

/// The ring's storage; only `Uart::take` borrows it, once.
struct RingCell(UnsafeCell<Queue<u8, RX_RING_SLOTS>>);

// SAFETY: the one `&mut` to the queue is made in `take`, guarded by
// `TAKEN`; after that it is shared only through its SPSC ends.
unsafe impl Sync for RingCell {}

/// An NVIC line by number: the firmware has no device crate to name them.
#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: a fixed number per value, as the trait requires.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// The board's link UART's registers.
struct Regs {
    base: usize,
}

impl Regs {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `base` is the UART's MMIO block; offsets are its registers.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in read.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Programs the line and enables the UART with the interrupts in `ints`.
    fn init(&self, ints: u32) {
        // Divisor first: enabling TX with BAUDDIV < 16 is invalid.
        let div = crate::board::CLOCK_HZ / BAUD;
        self.write(BAUDDIV, div.max(16));
        self.write(INTSTATUS, 0xF); // clear stale interrupt/overrun bits
        self.write(CTRL, CTRL_TX_EN | CTRL_RX_EN | ints);
    }

    fn write_byte(&self, byte: u8) {
        while self.read(STATE) & STATE_TX_FULL != 0 {}
        self.write(DATA, u32::from(byte));
    }

    fn flush(&self) {
        while self.read(STATE) & STATE_TX_FULL != 0 {}
    }
}

/// The link UART: bytes in from the receive ring, out polled. Only one
/// exists (see `take`), so the byte stream has one owner.
pub struct Uart {
    regs: Regs,
    rx: Consumer<'static, u8>,
}

impl Uart {
    /// Initialises the board's link UART with its receive interrupt and
    /// returns the only handle to it; `None` if it was already taken.
    pub fn take() -> Option<Uart> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag above makes this the only borrow of the ring,
        // ever; it lives for the rest of the program.
        let ring: &'static mut Queue<u8, RX_RING_SLOTS> = unsafe { &mut *RX_RING.0.get() };
        let (producer, consumer) = ring.split();
        cortex_m::interrupt::free(|cs| RX_PRODUCER.borrow(cs).replace(Some(producer)));
        let regs = Regs {
            base: crate::board::UART_BASE,
        };
        regs.init(CTRL_RX_INTEN);
        for &irq in crate::board::UART_RX_IRQS {
            // SAFETY: the handler only takes the producer inside a critical
            // section, so unmasking cannot break one.
            unsafe { NVIC::unmask(Irq(irq)) };
        }
        Some(Uart { regs, rx: consumer })
    }

    /// Initialises the UART for polled transmit, its interrupts off, and
    /// returns a handle that can only send, without checking for others.
    /// Only for the panic handler.
    ///
    /// # Safety
    /// No other handle may be used at the same time.
    pub unsafe fn steal() -> UartTx {
        let regs = Regs {
            base: crate::board::UART_BASE,
        };
        regs.init(0);
        UartTx { regs }
    }

    /// Sends all of `bytes`, waiting for room as needed (the host drains;
    /// under QEMU a host that stops reading stalls us here, as would a real
    /// line with flow control).
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.regs.write_byte(b);
        }
    }

    /// Waits until the last byte has left the transmit buffer.
    pub fn flush(&mut self) {
        self.regs.flush();
    }

    /// Moves what has been received, up to `buf.len()` bytes, into `buf`;
    /// never blocks. Returns how many bytes it moved.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.rx.dequeue() {
                Some(b) => *slot = b,
                None => break,
            }
            n += 1;
        }
        if n > 0 && RX_PARKED.load(Ordering::Acquire) {
            self.unpark();
        }
        n
    }

    /// Sleeps until input has arrived (true) or `deadline` has passed
    /// (false). May also return true early: callers read, then call again.
    ///
    /// The check and the `wfi` run with interrupts masked (PRIMASK). Checked
    /// unmasked, a byte arriving between the check and `wfi` would leave us
    /// asleep with input waiting until the next interrupt (SysTick's, up to
    /// 0.67 s later). Masked, the interrupt stays pending instead, and a
    /// pending interrupt that only PRIMASK holds back still ends `wfi` (or
    /// keeps it from sleeping at all): ARMv7-M and ARMv8-M ARM, "WFI"; QEMU
    /// raises the core's interrupt line regardless of PRIMASK, which it
    /// checks only when taking the exception. The handler then runs when
    /// `free` restores PRIMASK. Every wake-up goes this way, so any test
    /// that gets a reply exercises it.
    ///
    /// Nothing but the UART and SysTick can wake us, so a deadline is seen
    /// at the next SysTick wrap after it: up to 2^24 cycles late (0.67 s at
    /// 25 MHz), which the 2 s stall timeout in `serve` tolerates.
    pub fn wait_for_input(&self, clock: &Clock, deadline: Deadline) -> bool {
        cortex_m::interrupt::free(|_| {
            if self.rx.ready() {
                return true;
            }
            if clock.expired(deadline) {
                return false;
            }
            cortex_m::asm::wfi();
            true
        })
    }

    /// How many times the UART dropped a received byte because it was not
    /// read in time (RXOVERRUN: on silicon only; QEMU never overruns).
    pub fn rx_overruns(&self) -> u32 {
        RX_OVERRUNS.load(Ordering::Relaxed)
    }

    /// Re-enables the receive interrupt after the handler parked it on a
    /// full ring, and takes the byte it left in DATA: that byte raises no
    /// interrupt of its own (INTSTATUS.RX was cleared for it, and RXINTEN
    /// only latches new arrivals).
    fn unpark(&mut self) {
        cortex_m::interrupt::free(|cs| {
            RX_PARKED.store(false, Ordering::Release);
            self.regs.write(CTRL, self.regs.read(CTRL) | CTRL_RX_INTEN);
            drain_rx(cs);
        });
    }
}

impl core::fmt::Write for Uart {
    /// For the boot line and diagnostics only; the protocol uses bytes.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}

/// A send-only handle on the link UART, for the panic handler.
pub struct UartTx {
    regs: Regs,
}

impl UartTx {
    /// Waits until the last byte has left the transmit buffer.
    pub fn flush(&mut self) {
        self.regs.flush();
    }
}

impl core::fmt::Write for UartTx {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            self.regs.write_byte(b);
        }
        Ok(())
    }
}

/// Moves received bytes from the UART into the ring until the UART is empty
/// or the ring full (then parks: see the module comment). Called from the
/// interrupt handler and from `Uart::unpark`, both with interrupts masked.
fn drain_rx(cs: &CriticalSection) {
    let regs = Regs {
        base: crate::board::UART_BASE,
    };
    // Clear before draining: a byte that lands after the last RXFULL check
    // below latches INTSTATUS.RX again and re-raises the interrupt. Cleared
    // after, it could wipe out that byte's interrupt and leave it unread,
    // and under QEMU, which offers no more input while RXFULL is set, stop
    // the link for good.
    regs.write(INTSTATUS, INTSTATUS_RX);
    let mut producer = RX_PRODUCER.borrow(cs).borrow_mut();
    let Some(producer) = producer.as_mut() else {
        return; // not taken yet: nothing has enabled the interrupt
    };
    loop {
        let state = regs.read(STATE);
        if state & STATE_RX_OVERRUN != 0 {
            // W1C. The framing layer's CRC rejects the damaged frame; the
            // count is for diagnostics.
            regs.write(STATE, STATE_RX_OVERRUN);
            RX_OVERRUNS.fetch_add(1, Ordering::Relaxed);
        }
        if state & STATE_RX_FULL == 0 {
            return;
        }
        if !producer.ready() {
            regs.write(CTRL, regs.read(CTRL) & !CTRL_RX_INTEN);
            RX_PARKED.store(true, Ordering::Release);
            return;
        }
        // Reading DATA clears RXFULL. The ring had room: this cannot fail.
        let _ = producer.enqueue(regs.read(DATA) as u8);
    }
}

/// Every device interrupt and any exception without a handler of its own
/// (cortex-m-rt's fallback): the UART's receive interrupt is the only one
/// the firmware enables, anything else is a bug reported as a panic (the
/// default handler would spin silently).
///
/// # Safety
/// cortex-m-rt requires it to be `unsafe` because NMI lands here too and may
/// preempt a critical section: the UART path, which takes one, runs only for
/// the UART's own IRQ numbers, never for NMI.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match u16::try_from(irqn) {
        Ok(irq) if crate::board::UART_RX_IRQS.contains(&irq) => {
            cortex_m::interrupt::free(drain_rx);
        }
        // The exception number (VECTACTIVE; an IRQ's is 16 + IRQ), as a u32:
        // the formatting the firmware has anyway, where i16's would cost
        // 182 B of flash for this message alone.
        _ => panic!("unexpected exception {}", (i32::from(irqn) + 16) as u32),
    }
}
