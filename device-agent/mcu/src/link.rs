//! The byte pipe to the host, with deadlines, independent of framing.
//!
//! The wire protocol (frames with magic "PDNA" and a CRC32, from the shared
//! no_std protocol crate) will sit on `Link`; the bring-up echo uses it too.
//! Keeping the trait this small lets the protocol layer be tested on the host
//! over an in-memory `Link`, and it let the interrupt-driven UART (ring
//! buffer, WFI while idle) replace the polled one without touching it.

use crate::clock::{Clock, Deadline};
use crate::uart::Uart;

/// A bidirectional, binary-safe byte stream.
pub trait Link {
    /// Waits until at least one byte is available or `deadline` passes, then
    /// reads what is available without waiting further, up to `buf.len()`.
    /// Returns how many bytes were read: 0 only when the deadline passed (or
    /// `buf` is empty). Like POSIX `read`: callers loop to fill a frame.
    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> usize;

    /// Sends all of `bytes` (blocking until the line took them).
    fn write_all(&mut self, bytes: &[u8]);

    /// Waits until everything written has left the device.
    fn flush(&mut self);
}

/// `Link` over the board's UART, with deadlines on the board's clock.
pub struct UartLink {
    uart: Uart,
    clock: Clock,
}

impl UartLink {
    pub fn new(uart: Uart, clock: Clock) -> UartLink {
        UartLink { uart, clock }
    }

    /// The clock deadlines are measured on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The UART underneath (diagnostics such as `rx_overruns`).
    pub fn uart(&self) -> &Uart {
        &self.uart
    }
}

impl Link for UartLink {
    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> usize {
        if buf.is_empty() {
            return 0;
        }
        loop {
            let n = self.uart.read(buf);
            // Asleep until the UART's or SysTick's interrupt (uart.rs), not
            // polling: an idle firmware no longer keeps a host core busy
            // under QEMU, nor the core awake on a board.
            if n > 0 || !self.uart.wait_for_input(&self.clock, deadline) {
                return n;
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) {
        self.uart.write_all(bytes);
    }

    fn flush(&mut self) {
        self.uart.flush();
    }
}
