//! The microcontroller firmware agent under `qemu-system-arm`: an emulated
//! MPS2 board whose UART QEMU puts on a pseudo-terminal, driven by the same
//! serial transport as a real board's UART. Emulated: its cycle counts mean
//! nothing for a real Cortex-M and every figure through it is labelled so.
//!
//! QEMU runs with `-icount`: virtual time advances a fixed
//! [`NS_PER_INSTRUCTION`] per guest instruction, so the firmware's SysTick
//! counts instructions, not the host's wall time. Emulated timings are then
//! exactly repeatable (the same block gives the same count on every run, on
//! any host, however loaded), which makes them a fair comparison of firmware
//! builds and kernels, though still not of a Cortex-M's cycles (no pipeline,
//! no wait states, every instruction the same price).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use padnas_agent::proto::Frame;
use padnas_agent::transport::serial::SerialTransport;
use padnas_agent::transport::{self, Transport, TransportError};

/// Boards QEMU emulates that the firmware is built for, with the triple
/// each one's core needs.
pub const MACHINES: &[(&str, &str)] = &[
    // Cortex-M4F, the firmware's first target.
    ("mps2-an386", "thumbv7em-none-eabihf"),
    // Cortex-M7.
    ("mps2-an500", "thumbv7em-none-eabihf"),
    // Cortex-M33.
    ("mps2-an505", "thumbv8m.main-none-eabihf"),
];

/// `-icount shift=5`: 2^5 ns of virtual time per instruction, 31.25 million
/// instructions a second; about one per cycle of the MPS2 boards' 25 MHz
/// (0.8 SysTick cycle each), a Cortex-M4's rate on simple integer code.
pub const ICOUNT_SHIFT: u32 = 5;
/// Virtual nanoseconds per guest instruction under [`ICOUNT_SHIFT`].
pub const NS_PER_INSTRUCTION: u32 = 1 << ICOUNT_SHIFT;

/// How long QEMU may take to say where it put the UART.
const PTY_WAIT: Duration = Duration::from_secs(15);

/// Errors starting the emulated board.
#[derive(Debug, thiserror::Error)]
pub enum QemuSystemError {
    /// `qemu-system-arm` could not be started.
    #[error("cannot start qemu-system-arm (apt-get install qemu-system-arm): {0}")]
    Spawn(std::io::Error),
    /// QEMU did not announce its pseudo-terminal in time, or exited.
    #[error(
        "qemu-system-arm -M {machine} did not announce the UART's pseudo-terminal within {waited:?}; it said: {said}"
    )]
    NoPty {
        /// Board.
        machine: String,
        /// How long we waited.
        waited: Duration,
        /// What QEMU printed (its last lines).
        said: String,
    },
    /// The pseudo-terminal did not open as a serial line.
    #[error(transparent)]
    Serial(TransportError),
}

/// The part of QEMU's `char device redirected to /dev/pts/N (label serial0)`
/// that names the terminal.
fn pty_of(line: &str) -> Option<&str> {
    let rest = line.split("char device redirected to ").nth(1)?;
    let path = rest.split_whitespace().next()?;
    path.starts_with("/dev/").then_some(path)
}

/// The argument vector that runs `elf` on `machine` with its UART on a
/// pseudo-terminal and nothing on stdio (no monitor, no graphics), its
/// clock counting instructions (see [`ICOUNT_SHIFT`]).
pub fn command(machine: &str, elf: &Path) -> Command {
    let mut c = Command::new("qemu-system-arm");
    c.args([
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "pty",
        "-icount",
    ])
    .arg(format!("shift={ICOUNT_SHIFT}"))
    .arg("-kernel")
    // An ELF path that starts with '-' would read as an option.
    .arg(if elf.is_relative() {
        Path::new(".").join(elf)
    } else {
        elf.to_path_buf()
    });
    c
}

/// A firmware agent on an emulated board: the serial link to its UART, and
/// the QEMU process, which is killed when this is dropped.
pub struct QemuSystemTransport {
    serial: SerialTransport,
    child: Child,
    pty: PathBuf,
}

impl QemuSystemTransport {
    /// Boots `elf` on `machine` and opens its UART.
    pub fn start(machine: &str, elf: &Path) -> Result<QemuSystemTransport, QemuSystemError> {
        let mut cmd = command(machine, elf);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(QemuSystemError::Spawn)?;
        // QEMU 7.2 announces the pty on stdout, other versions on stderr:
        // both are read to their end on threads of their own, the lines
        // handed over, later ones (warnings) logged rather than left to fill
        // a pipe and stall the emulator.
        let (tx, rx) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    tracing::debug!(target: "padnas::qemu_system", "{line}");
                    // Once nobody listens, the lines are only drained.
                    tx.send(line).ok();
                }
            });
        }
        drop(tx);
        let started = Instant::now();
        let mut said = Vec::new();
        let pty = loop {
            let left = PTY_WAIT.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(line) => match pty_of(&line) {
                    Some(p) => break PathBuf::from(p),
                    None => said.push(line),
                },
                Err(_) => {
                    child.kill().ok();
                    child.wait().ok();
                    let tail = said.len().saturating_sub(5);
                    return Err(QemuSystemError::NoPty {
                        machine: machine.to_string(),
                        waited: started.elapsed(),
                        said: if said.is_empty() {
                            "nothing".to_string()
                        } else {
                            said[tail..].join(" | ")
                        },
                    });
                }
            }
        };
        let serial = match transport::serial::open(&pty.to_string_lossy(), 115_200) {
            Ok(s) => s,
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                return Err(QemuSystemError::Serial(e));
            }
        };
        Ok(QemuSystemTransport { serial, child, pty })
    }

    /// The pseudo-terminal of the board's UART.
    pub fn pty(&self) -> &Path {
        &self.pty
    }
}

impl Drop for QemuSystemTransport {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Transport for QemuSystemTransport {
    fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        self.serial.send(frame)
    }
    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.serial.recv()
    }
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TransportError> {
        self.serial.set_read_timeout(timeout)
    }
    fn set_deadline(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        self.serial.set_deadline(deadline)
    }
    fn set_max_payload(&mut self, max: u32) {
        self.serial.set_max_payload(max)
    }
    fn peer(&self) -> String {
        format!("emulated board on {}", self.pty.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pty_is_read_from_qemus_announcement_only() {
        assert_eq!(
            pty_of("char device redirected to /dev/pts/7 (label serial0)"),
            Some("/dev/pts/7")
        );
        assert_eq!(
            pty_of("qemu-system-arm: warning: nic lan9118.0 has no peer"),
            None
        );
        assert_eq!(pty_of("char device redirected to -oops (label x)"), None);
    }

    #[test]
    fn the_command_is_an_argument_vector_with_a_safe_elf_path() {
        let c = command("mps2-an386", Path::new("-x.elf"));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-M",
                "mps2-an386",
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "pty",
                "-icount",
                "shift=5",
                "-kernel",
                "./-x.elf"
            ]
        );
    }
}
