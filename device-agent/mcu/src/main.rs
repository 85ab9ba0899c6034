//! The firmware: bring the board up, announce it on the UART, serve hosts
//! (the padnas protocol: `serve`, `agent`).

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;

use cortex_m_rt::entry;

use padnas_mcu_agent::agent::Agent;
use padnas_mcu_agent::board::{self, BoardInfo};
use padnas_mcu_agent::clock::Clock;
use padnas_mcu_agent::heap;
use padnas_mcu_agent::link::{Link, UartLink};
use padnas_mcu_agent::serve::serve;
use padnas_mcu_agent::uart::Uart;

#[entry]
fn main() -> ! {
    heap::init();
    let cp = cortex_m::Peripherals::take().expect("core peripherals taken twice");
    let info = board::info();
    let clock = Clock::init(cp.DCB, cp.DWT, cp.SYST, info.clock_hz);
    // The UART always says the board is up (a console for people); the
    // host is served over it, or over RTT when built with `rtt`.
    let uart = Uart::take().expect("UART taken twice");
    let mut console = UartLink::new(uart, clock);
    announce(&mut console, &info, &clock);
    #[cfg(not(feature = "rtt"))]
    let mut link = console;
    #[cfg(feature = "rtt")]
    let mut link = padnas_mcu_agent::rtt_link::RttLink::init(clock);

    let mut agent = Agent::new(clock, info);
    serve(&mut link, &clock, &mut agent)
}

/// One text line the host waits for before talking:
/// `padnas-mcu-agent ready core=cortex-m4 clock_hz=25000000 source=systick`.
/// Built with `format!` so that a broken heap shows up at boot, not later.
fn announce(link: &mut impl Link, info: &BoardInfo, clock: &Clock) {
    let line = format!(
        "padnas-mcu-agent ready core={} clock_hz={} source={}\n",
        info.core,
        info.clock_hz,
        clock.source().name(),
    );
    link.write_all(line.as_bytes());
    link.flush();
}
