//! The firmware agent on a real microcontroller through a debug probe
//! (feature `probe-rs`): flash the firmware ELF with probe-rs, run it, find
//! its RTT control block and exchange frames over RTT channel 0 (up and
//! down), with `padnas_agent::transport::rtt`.
//!
//! NOT RUN on hardware: there is no probe or board here, and probe-rs has no
//! QEMU driver. What is tested is everything below the probe (the RTT
//! transport over in-memory rings, with the agent's real session on the
//! other side) and that this file builds; see device-agent/mcu/README.md.

use std::path::Path;
use std::time::Duration;

use padnas_agent::transport::TransportError;
use padnas_agent::transport::rtt::{RttChannels, RttTransport};
use probe_rs::flashing::{ElfLoader, ElfOptions, download_file};
use probe_rs::probe::DebugProbeSelector;
use probe_rs::probe::list::Lister;
use probe_rs::rtt::{Rtt, ScanRegion, try_attach_to_rtt};
use probe_rs::{Permissions, Session};

/// How long the firmware may take from reset to setting up RTT.
const RTT_WAIT: Duration = Duration::from_secs(5);

/// Errors reaching a board through a probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No probe, several without a selector, or the selector matches none.
    #[error("{0}")]
    Probe(String),
    /// Attaching to the chip, flashing or resetting failed.
    #[error("{what}: {cause}")]
    Session {
        /// The step.
        what: String,
        /// probe-rs's reason.
        cause: String,
    },
}

/// RTT channel 0 both ways on the first core of a probe-rs session.
pub struct ProbeRsChannels {
    session: Session,
    rtt: Rtt,
    chip: String,
}

impl RttChannels for ProbeRsChannels {
    fn read_up(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        let mut core = self.session.core(0).map_err(|e| io_err("core 0", e))?;
        let up = self
            .rtt
            .up_channel(0)
            .ok_or_else(|| io_err("RTT", "the firmware has no up channel 0"))?;
        up.read(&mut core, buf)
            .map_err(|e| io_err("reading RTT up channel 0", e))
    }

    fn write_down(&mut self, bytes: &[u8]) -> Result<usize, TransportError> {
        let mut core = self.session.core(0).map_err(|e| io_err("core 0", e))?;
        let down = self
            .rtt
            .down_channel(0)
            .ok_or_else(|| io_err("RTT", "the firmware has no down channel 0"))?;
        down.write(&mut core, bytes)
            .map_err(|e| io_err("writing RTT down channel 0", e))
    }

    fn describe(&self) -> String {
        format!("{} over a debug probe (RTT)", self.chip)
    }
}

fn io_err(what: &str, cause: impl std::fmt::Display) -> TransportError {
    TransportError::Io {
        context: what.to_string(),
        cause: std::io::Error::other(cause.to_string()),
    }
}

/// Flashes `elf` to `chip` through the probe `probe` selects (`VID:PID` or
/// `VID:PID:SERIAL`; the only probe when `None`), runs it and attaches RTT.
pub fn open(
    chip: &str,
    probe: Option<&str>,
    elf: &Path,
) -> Result<RttTransport<ProbeRsChannels>, ProbeError> {
    let session_err = |what: &str| {
        let what = what.to_string();
        move |e: probe_rs::Error| ProbeError::Session {
            what,
            cause: e.to_string(),
        }
    };
    let lister = Lister::new();
    let probe = match probe {
        Some(sel) => {
            let selector: DebugProbeSelector = sel
                .parse()
                .map_err(|e| ProbeError::Probe(format!("probe selector {sel:?}: {e}")))?;
            lister
                .open(selector)
                .map_err(|e| ProbeError::Probe(format!("probe {sel}: {e}")))?
        }
        None => {
            let found = lister.list_all();
            match found.as_slice() {
                [one] => one
                    .open()
                    .map_err(|e| ProbeError::Probe(format!("probe {one}: {e}")))?,
                [] => return Err(ProbeError::Probe("no debug probe found".into())),
                many => {
                    let names: Vec<String> = many.iter().map(|p| p.to_string()).collect();
                    return Err(ProbeError::Probe(format!(
                        "{} probes found, pick one with ?probe=VID:PID[:SERIAL]: {}",
                        many.len(),
                        names.join("; ")
                    )));
                }
            }
        }
    };
    let mut session = probe
        .attach(chip, Permissions::default())
        .map_err(session_err(&format!("attaching to {chip}")))?;
    download_file(&mut session, elf, ElfLoader(ElfOptions::default())).map_err(|e| {
        ProbeError::Session {
            what: format!("flashing {}", elf.display()),
            cause: e.to_string(),
        }
    })?;
    let rtt = {
        let mut core = session.core(0).map_err(session_err("core 0"))?;
        core.reset().map_err(session_err("resetting the core"))?;
        try_attach_to_rtt(&mut core, RTT_WAIT, &ScanRegion::Ram).map_err(|e| {
            ProbeError::Session {
                what: format!("finding the firmware's RTT control block within {RTT_WAIT:?}"),
                cause: e.to_string(),
            }
        })?
    };
    Ok(RttTransport::new(ProbeRsChannels {
        session,
        rtt,
        chip: chip.to_string(),
    }))
}
