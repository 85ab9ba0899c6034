//! `Link` over RTT (feature `rtt`): the host's debug probe reads the up
//! channel and writes the down channel in this RAM while the core runs, so
//! a board needs no UART wired to the host, only its probe (padnas's
//! `probe-rs://CHIP` transport).
//!
//! Built by the test command, NOT RUN: QEMU has no debug probe that RTT
//! could go through, and there is no board here. The frames above it are
//! the same as over the UART, and the host side is tested against in-memory
//! RTT rings.

use rtt_target::{ChannelMode, DownChannel, UpChannel, rtt_init};

use crate::clock::{Clock, Deadline};
use crate::link::Link;

/// RTT channel 0 both ways.
pub struct RttLink {
    up: UpChannel,
    down: DownChannel,
    clock: Clock,
}

impl RttLink {
    /// Sets up the RTT control block and its two 1 KiB buffers. Call once:
    /// a second control block would be a duplicate symbol.
    pub fn init(clock: Clock) -> RttLink {
        let channels = rtt_init! {
            up: {
                0: {
                    size: 1024,
                    name: "padnas"
                }
            }
            down: {
                0: {
                    size: 1024,
                    name: "padnas"
                }
            }
        };
        let mut up = channels.up.0;
        // A reply is never dropped: wait for the probe to read instead. A
        // host that has gone stops the firmware until the next one attaches,
        // which is what a session without a host means anyway.
        up.set_mode(ChannelMode::BlockIfFull);
        RttLink {
            up,
            down: channels.down.0,
            clock,
        }
    }
}

impl Link for RttLink {
    fn read(&mut self, buf: &mut [u8], deadline: Deadline) -> usize {
        loop {
            let n = self.down.read(buf);
            if n > 0 || buf.is_empty() || self.clock.expired(deadline) {
                return n;
            }
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self.up.write(bytes);
            bytes = &bytes[n..];
        }
    }

    fn flush(&mut self) {}
}
