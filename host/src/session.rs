//! Opening a session with the agent of a target: start or reach the agent
//! over the target's transport, and say Hello.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use padnas_agent::client::Client;
use padnas_agent::proto::AgentInfo;
use padnas_agent::transport::{self, Transport};

use crate::remote::{self, RemoteError};
use crate::target::{Target, TransportSpec, host_triple};

/// Errors from starting, reaching or greeting an agent.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The agent binary for the target's triple is not built.
    #[error("agent binary for {triple} not found at {path}: build it with `{hint}`")]
    AgentMissing {
        /// Triple.
        triple: String,
        /// Path looked at.
        path: PathBuf,
        /// The command that builds it.
        hint: String,
    },
    /// Spawning or connecting failed.
    #[error("target {target}: cannot reach the agent over {transport}: {message}")]
    Connect {
        /// Target name.
        target: String,
        /// Transport URI.
        transport: String,
        /// Cause.
        message: String,
    },
    /// The agent answered, but not with a usable Hello.
    #[error("target {target}: hello failed: {cause}")]
    Hello {
        /// Target name.
        target: String,
        /// Cause.
        cause: padnas_agent::client::ClientError,
    },
    /// The agent's architecture is not the target's.
    #[error("target {target}: agent reports arch {got}, but the target's triple is {triple}")]
    WrongArch {
        /// Target name.
        target: String,
        /// What the agent said.
        got: String,
        /// Triple of the target.
        triple: String,
    },
    /// The target's ssh or adb command line cannot be built safely.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The token environment variable named by the target is not set.
    #[error("target {target}: token_env {var} is not set")]
    TokenMissing {
        /// Target name.
        target: String,
        /// Variable.
        var: String,
    },
}

/// A greeted agent and the target it belongs to.
pub struct Session {
    /// Client for requests.
    pub client: Client,
    /// What the agent said about itself.
    pub info: AgentInfo,
    /// The target.
    pub target: Target,
}

/// Directory that holds cargo's build outputs for this workspace.
///
/// The padnas binary lives in `<target-dir>/<profile>/padnas`, so the agent
/// builds sit beside it; `PADNAS_TARGET_DIR` overrides for installed copies.
pub fn cargo_target_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PADNAS_TARGET_DIR") {
        return Some(PathBuf::from(d));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?;
    // Test binaries live one level deeper, in <profile>/deps.
    let profile_dir = if profile_dir.ends_with("deps") {
        profile_dir.parent()?
    } else {
        profile_dir
    };
    Some(profile_dir.parent()?.to_path_buf())
}

/// Environment variable naming the cargo profile of the agent that targets
/// on this machine run (`release` when unset). The test command sets it to
/// `debug`, so CI does not spend minutes on a fat-LTO build whose timings
/// no test reads; such an agent says so in Hello and every label shows it.
pub const AGENT_PROFILE_ENV: &str = "PADNAS_AGENT_PROFILE";

/// Cargo profile whose agent build a target runs: `emulated` for qemu
/// targets (timings meaningless, so built without LTO to save CI minutes),
/// `release` for everything whose latency counts, unless
/// [`AGENT_PROFILE_ENV`] names another for targets on this machine.
pub fn agent_profile(target: &Target) -> String {
    if target.emulated() {
        "emulated".to_string()
    } else if target.triple == host_triple() {
        host_agent_profile()
    } else {
        "release".to_string()
    }
}

/// Cargo profile of the agent that targets on this machine run: what
/// [`AGENT_PROFILE_ENV`] names, `release` when it is unset or blank.
pub fn host_agent_profile() -> String {
    std::env::var(AGENT_PROFILE_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "release".to_string())
}

/// File name of the microcontroller firmware agent (an ELF).
pub const MCU_AGENT: &str = "padnas-mcu-agent";

/// Where the agent for `target` is built on this machine.
///
/// Never a debug build: the latency the agent reports must be that of
/// optimised code, so a debug agent is never picked up by accident.
pub fn agent_binary_for(target: &Target) -> Result<PathBuf, SessionError> {
    if let Some(p) = &target.agent_binary {
        return existing(p.clone(), &target.triple, &agent_profile(target));
    }
    let dir = cargo_target_dir().unwrap_or_else(|| PathBuf::from("target"));
    if target.is_mcu() {
        // The firmware is its own cargo workspace, built into target/mcu
        // (scripts/build-agent.sh), always size-optimised release.
        let path = dir
            .join("mcu")
            .join(&target.triple)
            .join("release")
            .join(MCU_AGENT);
        return existing(path, &target.triple, "release");
    }
    let profile = agent_profile(target);
    let path = if target.triple == host_triple() {
        dir.join(&profile).join("padnas-agent")
    } else {
        dir.join(&target.triple).join(&profile).join("padnas-agent")
    };
    existing(path, &target.triple, &profile)
}

fn existing(path: PathBuf, triple: &str, profile: &str) -> Result<PathBuf, SessionError> {
    if path.is_file() {
        Ok(path)
    } else {
        let hint = match profile {
            "emulated" => format!("scripts/build-agent.sh --emulated {triple}"),
            "release" => format!("scripts/build-agent.sh {triple}"),
            "debug" => "cargo build -p padnas-agent".to_string(),
            other => format!("cargo build -p padnas-agent --profile {other}"),
        };
        Err(SessionError::AgentMissing {
            triple: triple.to_string(),
            path,
            hint,
        })
    }
}

/// qemu-user binary and sysroot for a cross triple.
pub fn qemu_for(triple: &str) -> (&'static str, Option<&'static str>) {
    match triple {
        "aarch64-unknown-linux-gnu" => ("qemu-aarch64", Some("/usr/aarch64-linux-gnu")),
        "aarch64-unknown-linux-musl" => ("qemu-aarch64", None),
        "armv7-unknown-linux-gnueabihf" => ("qemu-arm", Some("/usr/arm-linux-gnueabihf")),
        _ => ("qemu-aarch64", None),
    }
}

/// The command that starts the agent in stdio mode, for transports that
/// start it (local, qemu, ssh, adb); `None` for tcp and serial.
pub fn agent_command(target: &Target) -> Result<Option<Command>, SessionError> {
    let cmd = match &target.transport {
        TransportSpec::Local => {
            let mut c = Command::new(agent_binary_for(target)?);
            c.arg("--stdio");
            c
        }
        TransportSpec::Qemu => {
            let bin = agent_binary_for(target)?;
            let (qemu, sysroot) = qemu_for(&target.triple);
            let mut c = Command::new(qemu);
            if let Some(root) = sysroot {
                c.arg("-L").arg(root);
            }
            // A relative path could start with '-' and read as a qemu option.
            let bin = if bin.is_relative() {
                Path::new(".").join(bin)
            } else {
                bin
            };
            c.arg(bin).arg("--stdio");
            c
        }
        spec @ TransportSpec::Ssh { .. } => remote::ssh(spec, &remote_agent_line(target)?)?,
        spec @ TransportSpec::Adb { .. } => remote::adb_shell(spec, &remote_agent_line(target)?)?,
        TransportSpec::Tcp { .. }
        | TransportSpec::Serial { .. }
        | TransportSpec::QemuSystem { .. }
        | TransportSpec::ProbeRs { .. } => return Ok(None),
    };
    Ok(Some(cmd))
}

/// The firmware flashed and reached over RTT through a debug probe.
#[cfg(feature = "probe-rs")]
fn probe_transport(
    target: &Target,
    chip: &str,
    probe: Option<&str>,
) -> Result<Box<dyn Transport>, String> {
    let elf = agent_binary_for(target).map_err(|e| e.to_string())?;
    crate::probe::open(chip, probe, &elf)
        .map(|t| Box::new(t) as Box<dyn Transport>)
        .map_err(|e| e.to_string())
}

/// Without the `probe-rs` feature: says how to get it.
#[cfg(not(feature = "probe-rs"))]
fn probe_transport(
    _target: &Target,
    _chip: &str,
    _probe: Option<&str>,
) -> Result<Box<dyn Transport>, String> {
    Err("this padnas was built without debug-probe support: \
         cargo build -p padnas --features probe-rs"
        .to_string())
}

/// The quoted command line that starts the agent on the board in stdio mode.
fn remote_agent_line(target: &Target) -> Result<String, SessionError> {
    let path = target.agent_path.as_deref().unwrap_or("padnas-agent");
    Ok(remote::command_line(&[path, "--stdio"])?)
}

/// Starts or reaches the agent of `target` and says Hello.
pub fn open(target: &Target) -> Result<Session, SessionError> {
    let connect_err = |message: String| SessionError::Connect {
        target: target.name.clone(),
        transport: target.transport.to_string(),
        message,
    };
    let transport: Box<dyn Transport> = match &target.transport {
        TransportSpec::Tcp { address } => {
            let mut t = transport::tcp::connect(address, Duration::from_secs(10))
                .map_err(|e| connect_err(e.to_string()))?;
            // A stopped agent stops reading: a large LoadModel must not
            // block the send forever either.
            t.set_write_timeout(Some(target.deadlines.base))
                .map_err(|e| connect_err(e.to_string()))?;
            Box::new(t)
        }
        TransportSpec::Serial { path, baud } => {
            Box::new(transport::serial::open(path, *baud).map_err(|e| connect_err(e.to_string()))?)
        }
        TransportSpec::ProbeRs { chip, probe } => probe_transport(target, chip, probe.as_deref())
            .map_err(|e| connect_err(e.to_string()))?,
        TransportSpec::QemuSystem { machine } => Box::new(
            crate::qemu_system::QemuSystemTransport::start(machine, &agent_binary_for(target)?)
                .map_err(|e| connect_err(e.to_string()))?,
        ),
        _ => {
            let cmd = agent_command(target)?.ok_or_else(|| connect_err("no command".into()))?;
            Box::new(
                transport::stdio::ChildTransport::spawn(cmd)
                    .map_err(|e| connect_err(e.to_string()))?,
            )
        }
    };
    let token = match &target.token_env {
        Some(var) => Some(std::env::var(var).map_err(|_| SessionError::TokenMissing {
            target: target.name.clone(),
            var: var.clone(),
        })?),
        None => None,
    };
    let mut client = Client::new(transport)
        .with_deadlines(target.deadlines.clone(), format!("target {}", target.name));
    let info = client
        .hello(token.as_deref())
        .map_err(|source| SessionError::Hello {
            target: target.name.clone(),
            cause: source,
        })?;
    let want = target.triple.split('-').next().unwrap_or("");
    let want = if want.starts_with("armv7") {
        "arm"
    } else {
        want
    };
    if info.arch != want {
        return Err(SessionError::WrongArch {
            target: target.name.clone(),
            got: info.arch.clone(),
            triple: target.triple.clone(),
        });
    }
    Ok(Session {
        client,
        info,
        target: target.clone(),
    })
}

impl Session {
    /// Ends the session. An agent this session started (local, qemu, ssh,
    /// adb) is told to shut down so its process exits cleanly; a listening
    /// (tcp) or serial agent is left running for the next host.
    pub fn close(mut self) {
        if spawns_agent(&self.target) {
            self.client.shutdown().ok();
        }
    }
}

/// Whether a session to `target` starts its own agent process (local, qemu,
/// ssh, adb), which must then be told to shut down; a listening (tcp) or
/// serial agent belongs to someone else and is left running.
pub fn spawns_agent(target: &Target) -> bool {
    matches!(
        target.transport,
        TransportSpec::Local
            | TransportSpec::Qemu
            | TransportSpec::QemuSystem { .. }
            | TransportSpec::Ssh { .. }
            | TransportSpec::Adb { .. }
    )
}

/// A label for figures measured through this session: the CPU, and for qemu
/// the word *emulated*, so an emulated figure never reads as device latency.
pub fn measurement_label(target: &Target, info: &AgentInfo) -> String {
    if let TransportSpec::QemuSystem { machine } = &target.transport {
        format!(
            "emulated ({} firmware under qemu-system-arm {machine} -icount shift={} on {}; instruction counts of an emulator at {} ns each, not a Cortex-M's cycles)",
            info.arch,
            crate::qemu_system::ICOUNT_SHIFT,
            host_cpu_model(),
            crate::qemu_system::NS_PER_INSTRUCTION
        )
    } else if target.emulated() {
        format!(
            "emulated ({} under qemu-user on {})",
            info.arch,
            host_cpu_model()
        )
    } else {
        let label = format!("{} ({} cores, {})", info.cpu, info.cores, info.arch);
        if info
            .features
            .iter()
            .any(|f| f == padnas_agent::info::UNOPTIMISED)
        {
            format!("{label}, unoptimised agent (for tests; not its latency)")
        } else {
            label
        }
    }
}

/// CPU model of this machine, from /proc/cpuinfo.
pub fn host_cpu_model() -> String {
    std::fs::read_to_string(Path::new("/proc/cpuinfo"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unoptimised_agent_is_labelled_so() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets");
        let target = Target::resolve("local", &dir).expect("local target");
        let mut info = crate::latency::fake::info();
        let plain = measurement_label(&target, &info);
        assert_eq!(plain, "Test CPU (2 cores, x86_64)");
        info.features
            .push(padnas_agent::info::UNOPTIMISED.to_string());
        let label = measurement_label(&target, &info);
        assert!(
            label.starts_with(&plain) && label.contains("unoptimised agent"),
            "{label}"
        );
    }
}
