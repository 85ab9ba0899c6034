//! The device-interrupt part of the vector table (`__INTERRUPTS`), one entry
//! per interrupt line the board's NVIC has, every one `DefaultHandler`
//! (uart.rs: the UART's lines drain the UART, any other is reported).
//!
//! Without cortex-m-rt's `device` feature, cortex-m-rt would lay out the
//! architecture's maximum: 240 entries on v7-M (960 B of flash) and 480 on
//! v8-M Mainline (1,920 B), where the AN386 has 32 lines and the AN505 124.
//! Sized to the board instead, every line that exists still has a vector,
//! so an interrupt enabled by mistake is still reported, not taken through
//! whatever code follows the table.

use crate::board::{IRQ_LINES, UART_RX_IRQS};

unsafe extern "C" {
    /// cortex-m-rt's trampoline for the `DefaultHandler` in uart.rs: it
    /// reads the active exception number and passes it on.
    fn DefaultHandler();
}

/// cortex-m-rt's `link.x` places this right after the core exceptions
/// (`.vector_table.interrupts`, at `ORIGIN(FLASH) + 0x40`).
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [unsafe extern "C" fn(); IRQ_LINES] = [DefaultHandler; IRQ_LINES];

// The UART's lines must be in the table.
const _: () = {
    let mut i = 0;
    while i < UART_RX_IRQS.len() {
        assert!((UART_RX_IRQS[i] as usize) < IRQ_LINES);
        i += 1;
    }
};
