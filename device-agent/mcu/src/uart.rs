//! Polled driver for the CMSDK APB UART (UART0 of the MPS2 boards), the
//! firmware's only link to the host.
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
//!   115200 baud), hence `rx_overruns`.
//! - BAUDDIV below 16 is invalid: QEMU logs "Tx enabled with invalid
//!   baudrate" (with `-d guest_errors`) and does not pass a line speed to a
//!   real host serial port. QEMU 7.2 still transmits (see README.md); we
//!   program a valid divisor first anyway, as silicon needs it.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

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

/// Line speed programmed into BAUDDIV (8N1 is fixed by the hardware).
pub const BAUD: u32 = 115_200;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The UART that carries the host link. Only one handle exists (see `take`),
/// so the byte stream has one owner.
pub struct Uart {
    base: usize,
    rx_overruns: u32,
}

impl Uart {
    /// Initialises the board's link UART and returns the only handle to it;
    /// `None` if it was already taken.
    pub fn take() -> Option<Uart> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag above makes this the only handle (the panic
        // handler's `steal` aside, which runs once everything else stopped).
        Some(unsafe { Self::steal() })
    }

    /// Initialises the UART and returns a handle without checking for
    /// others. Only for the panic handler.
    ///
    /// # Safety
    /// No other handle may be used at the same time.
    pub unsafe fn steal() -> Uart {
        let mut uart = Uart {
            base: crate::board::UART_BASE,
            rx_overruns: 0,
        };
        // Divisor first: enabling TX with BAUDDIV < 16 is invalid.
        let div = crate::board::CLOCK_HZ / BAUD;
        uart.write_reg(BAUDDIV, div.max(16));
        uart.write_reg(INTSTATUS, 0xF); // clear stale interrupt/overrun bits
        uart.write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN); // polled: no IRQs
        uart
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base` is the UART's MMIO block; offsets are its registers.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&mut self, offset: usize, value: u32) {
        // SAFETY: as in read_reg.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Sends one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&mut self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
    }

    /// Sends all of `bytes`, waiting for room as needed (the host drains;
    /// under QEMU a host that stops reading stalls us here, as would a real
    /// line with flow control).
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }

    /// Waits until the last byte has left the transmit buffer.
    pub fn flush(&mut self) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
    }

    /// The received byte, if one is waiting; never blocks.
    pub fn read_byte(&mut self) -> Option<u8> {
        let state = self.read_reg(STATE);
        if state & STATE_RX_OVERRUN != 0 {
            // W1C. A byte was lost before this one; the framing layer's CRC
            // will reject the frame, we only count it for diagnostics.
            self.write_reg(STATE, STATE_RX_OVERRUN);
            self.rx_overruns = self.rx_overruns.wrapping_add(1);
        }
        if state & STATE_RX_FULL != 0 {
            // Reading DATA clears RXFULL.
            Some(self.read_reg(DATA) as u8)
        } else {
            None
        }
    }

    /// A received byte, waiting for one until `deadline` on `clock`.
    pub fn read_byte_until(&mut self, clock: &Clock, deadline: Deadline) -> Option<u8> {
        loop {
            if let Some(b) = self.read_byte() {
                return Some(b);
            }
            if clock.expired(deadline) {
                return None;
            }
        }
    }

    /// How many received bytes the hardware dropped because we were slow.
    pub fn rx_overruns(&self) -> u32 {
        self.rx_overruns
    }
}

impl core::fmt::Write for Uart {
    /// For the boot line and panic messages only; the protocol uses bytes.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}
