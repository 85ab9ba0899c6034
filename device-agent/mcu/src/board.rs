//! Facts about the board the firmware was built for: what the Hello reply
//! reports and what the drivers need (UART base, core clock).
//!
//! The board follows from the target (build.rs sets `cfg(board = ...)`):
//! `thumbv7em-none-eabihf` is the MPS2 AN386 (Cortex-M4F; the same image runs
//! on the AN500's Cortex-M7, whose memory map and UART are the same), and
//! `thumbv8m.main-none-eabihf` the MPS2 AN505 (Cortex-M33). The core name is
//! read from the CPUID register, memory sizes from the linker script
//! (memory/*.x), so that neither can drift from what is really there.

/// What a board is, as the host sees it.
#[derive(Debug, Clone, Copy)]
pub struct BoardInfo {
    /// Lower-case core name, as in the ready line (`cortex-m4`).
    pub core: &'static str,
    /// Core clock (SysTick's processor clock, DWT's cycle clock), in Hz.
    pub clock_hz: u32,
    /// Size of the code region (FLASH in memory.x), in bytes.
    pub flash_bytes: u32,
    /// Size of the data region (RAM in memory.x), in bytes.
    pub ram_bytes: u32,
    /// Size of the `alloc` heap carved out of RAM, in bytes.
    pub heap_bytes: usize,
    /// Base address of the UART that carries the host link.
    pub uart_base: usize,
}

/// Heap for `alloc` (JSON headers, weights, activations). 256 KiB is about
/// what a mid-range Cortex-M4 part has (nRF52840: 256 KiB of SRAM in all;
/// STM32F407: 192 KiB, 64 of them CCM). QEMU has 4 MiB of RAM, so this is
/// deliberately not "as much as fits": a model that runs here should also
/// fit on a board.
pub const HEAP_BYTES: usize = 256 * 1024;

#[cfg(board = "mps2_an386")]
mod consts {
    /// `SYSCLK_FRQ` in QEMU's hw/arm/mps2.c, the same for AN386 and AN500
    /// (and the AN386 FPGA's 25 MHz).
    pub const CLOCK_HZ: u32 = 25_000_000;
    /// UART0 of the CMSDK APB subsystem.
    pub const UART_BASE: usize = 0x4000_4000;
    /// UART0's receive interrupt: IRQ 0 (TX is 1; the overruns of UARTs
    /// 0-2 are ORed onto IRQ 12), as `uartirq[]` in QEMU's hw/arm/mps2.c
    /// wires it for the AN385, AN386 and AN500 alike.
    pub const UART_RX_IRQS: &[u16] = &[0];
    /// Interrupt lines the NVIC has: `num-irq` 32 for the AN385/AN386/AN500
    /// in QEMU's hw/arm/mps2.c (the AN386 and AN500 application notes use
    /// IRQs 0-31).
    pub const IRQ_LINES: usize = 32;
}

#[cfg(board = "mps2_an505")]
mod consts {
    /// `sysclk_frq` for the AN505 in QEMU's hw/arm/mps2-tz.c.
    pub const CLOCK_HZ: u32 = 20_000_000;
    /// UART0 through its Secure alias (the image runs Secure; the
    /// Non-secure alias 0x4020_0000 is blocked by the PPC at reset).
    pub const UART_BASE: usize = 0x5020_0000;
    /// UART0's receive interrupt. The AN505 application note and QEMU's
    /// hw/arm/mps2-tz.c since commit 5a558be9 (2024, also in the stable
    /// branches: Debian's 7.2.22 here has it) say RX 32, TX 33, combined
    /// 42; QEMU builds without that fix have RX and TX the other way
    /// round. Checked here: with only 32 enabled the M33 test passes, with
    /// only 33 the firmware never hears the host.
    /// Both are enabled, with the same handler: the UART's TX interrupt is
    /// never enabled, so whichever line is RX is the only one that fires.
    pub const UART_RX_IRQS: &[u16] = &[32, 33];
    /// Interrupt lines the NVIC has: the SSE-200/IoTKit's own 32 and the
    /// AN505's 92 expansion lines (`numirq = 92` for the AN505 in QEMU's
    /// hw/arm/mps2-tz.c, wired from IRQ 32 on).
    pub const IRQ_LINES: usize = 32 + 92;
}

unsafe extern "C" {
    // Absolute symbols defined in memory/*.x: their *address* is the value.
    static __padnas_flash_len: u8;
    static __padnas_ram_len: u8;
}

/// The board this image runs on.
pub fn info() -> BoardInfo {
    BoardInfo {
        core: core_name(),
        clock_hz: consts::CLOCK_HZ,
        flash_bytes: (&raw const __padnas_flash_len) as usize as u32,
        ram_bytes: (&raw const __padnas_ram_len) as usize as u32,
        heap_bytes: HEAP_BYTES,
        uart_base: consts::UART_BASE,
    }
}

/// The core's name from SCB CPUID (implementer Arm, PARTNO bits 15:4).
pub fn core_name() -> &'static str {
    // SAFETY: a read-only, side-effect-free register read.
    let cpuid = unsafe { (*cortex_m::peripheral::CPUID::PTR).base.read() };
    if cpuid >> 24 != 0x41 {
        return "unknown";
    }
    match (cpuid >> 4) & 0xFFF {
        0xC20 => "cortex-m0",
        0xC60 => "cortex-m0plus",
        0xC23 => "cortex-m3",
        0xC24 => "cortex-m4",
        0xC27 => "cortex-m7",
        0xD20 => "cortex-m23",
        0xD21 => "cortex-m33",
        0xD22 => "cortex-m55",
        _ => "unknown",
    }
}

/// Core clock in Hz, for code that needs only that (no linker symbols).
pub const CLOCK_HZ: u32 = consts::CLOCK_HZ;
/// UART base address, for the panic handler (which must not depend on more).
pub const UART_BASE: usize = consts::UART_BASE;
/// The NVIC lines the link UART's receive interrupt may arrive on.
pub const UART_RX_IRQS: &[u16] = consts::UART_RX_IRQS;
/// Device interrupt lines of the board's NVIC: the vector table's
/// device part has one entry each (src/vectors.rs).
pub const IRQ_LINES: usize = consts::IRQ_LINES;
