//! Panic handler: the message goes to the UART, then the core sleeps.
//!
//! Without a debugger the UART is the only way to learn why the agent died.
//! The line starts on a fresh line with a fixed prefix so the host can tell
//! it from protocol bytes (it may land in the middle of a frame, whose CRC
//! then fails anyway).
//!
//! The message only, not `info.location()`: reading the location keeps
//! every panic site's `Location` (and its source path) in flash, 3.9 KB of
//! the firmware's (README, Size); ignored, LTO drops them all. The messages
//! say what failed (`index out of bounds: the len is 3 but the index is 5`,
//! `unexpected exception 21`); a debugger or a build that prints the
//! location finds where.

use core::fmt::Write;
use core::panic::PanicInfo;

use crate::uart::Uart;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    // SAFETY: interrupts are off and the code that owned the UART never runs
    // again, so this is the only handle in use from here on.
    let mut uart = unsafe { Uart::steal() };
    let _ = write!(uart, "\npadnas-mcu-agent panic: {}\n", info.message());
    uart.flush();
    loop {
        // Masked interrupts still end WFI, hence the loop; it stops QEMU
        // from spinning a host core.
        cortex_m::asm::wfi();
    }
}
