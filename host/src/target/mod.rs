//! Target devices: one YAML file per board under `targets/`.
//!
//! A target says how to reach the agent on the board (the transport), which
//! agent binary runs there (the Rust target triple), and how to benchmark. The
//! YAML is parsed into a raw form that rejects unknown keys, then validated
//! into [`Target`]; every error names the file and the key.

use std::path::{Path, PathBuf};

use padnas_agent::client::Deadlines;
use padnas_agent::proto::BenchLimits;
use serde::Deserialize;

mod transport;

pub use transport::{DEFAULT_BAUD, TransportSpec};

/// Errors from loading or validating a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The file could not be read.
    #[error("{file}: cannot read: {cause}")]
    Io {
        /// File.
        file: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The YAML does not parse or has unknown/missing keys.
    #[error("{file}: {message}")]
    Yaml {
        /// File.
        file: String,
        /// serde's message, which names the key and the line.
        message: String,
    },
    /// A key has an invalid value.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// File.
        file: String,
        /// Key path, e.g. `transport` or `bench.max_runs`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// No target of that name under the targets directory.
    #[error("no target named {name:?} (looked for {looked}); known targets: {known}")]
    NotFound {
        /// Name asked for.
        name: String,
        /// Path tried.
        looked: String,
        /// Names that exist.
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargetFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    triple: String,
    transport: String,
    #[serde(default)]
    agent_path: Option<String>,
    #[serde(default)]
    agent_binary: Option<PathBuf>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    threads: Option<u32>,
    #[serde(default)]
    pin_cpu: Option<usize>,
    #[serde(default)]
    bench: Option<RawBench>,
    #[serde(default)]
    deadline_s: Option<f64>,
    #[serde(default)]
    deadline_margin: Option<f64>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    memory: Option<TargetMemory>,
}

/// A microcontroller's memory (`memory:` of a target file): what the board
/// has, and what its firmware keeps for itself. What is left bounds every
/// network the search admits for the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetMemory {
    /// SRAM of the board (bytes).
    pub sram_bytes: u64,
    /// Flash of the board (bytes).
    pub flash_bytes: u64,
    /// SRAM the firmware needs besides activations: stack, statics, the
    /// frame buffers (bytes).
    #[serde(default)]
    pub reserved_sram_bytes: u64,
    /// Flash the firmware's code takes (bytes).
    #[serde(default)]
    pub reserved_flash_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBench {
    #[serde(default)]
    warmup_runs: Option<u32>,
    #[serde(default)]
    warmup_ms: Option<u64>,
    #[serde(default)]
    min_runs: Option<u32>,
    #[serde(default)]
    max_runs: Option<u32>,
    #[serde(default)]
    max_time_ms: Option<u64>,
}

/// A validated target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Short name, used in table paths and reports.
    pub name: String,
    /// For people.
    pub description: Option<String>,
    /// Rust target triple of the agent binary that runs on the board.
    pub triple: String,
    /// How to reach the agent.
    pub transport: TransportSpec,
    /// Where the agent binary lives on the board (ssh/adb).
    pub agent_path: Option<String>,
    /// Agent binary on this machine; default: the workspace build for `triple`.
    pub agent_binary: Option<PathBuf>,
    /// Environment variable that holds the TCP token.
    pub token_env: Option<String>,
    /// Threads the agent benchmarks with.
    pub threads: u32,
    /// CPU to pin the benchmarking thread to.
    pub pin_cpu: Option<usize>,
    /// Benchmark limits (threads and pinning filled in from the fields above).
    pub bench: BenchLimits,
    /// How long each request may wait for the agent's reply (`deadline_s`,
    /// `deadline_margin`): past it the host gives up on a silent device.
    pub deadlines: Deadlines,
    /// Free text.
    pub notes: Option<String>,
    /// A microcontroller's memory, when declared: a hard constraint of the
    /// search beside the latency window.
    pub memory: Option<TargetMemory>,
    /// File this target came from.
    pub source: PathBuf,
}

/// Triples we build agents for (scripts/build-agent.sh), plus the host's own.
pub const KNOWN_TRIPLES: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "aarch64-unknown-linux-musl",
    // Microcontrollers: the firmware agent (device-agent/mcu).
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabihf",
];

impl Target {
    /// Whether measurements through this target run under emulation and so
    /// must never be presented as device latency.
    pub fn emulated(&self) -> bool {
        matches!(
            self.transport,
            TransportSpec::Qemu | TransportSpec::QemuSystem { .. }
        )
    }

    /// Whether the agent is the microcontroller firmware (int8 blocks, no
    /// ONNX): the triple is a bare-metal Cortex-M one.
    pub fn is_mcu(&self) -> bool {
        self.triple.starts_with("thumb")
    }

    /// Parses and validates target YAML; `origin` names the file in errors.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Target, TargetError> {
        let file = origin.display().to_string();
        let raw: RawTargetFile = serde_yaml_ng::from_str(text).map_err(|e| TargetError::Yaml {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| TargetError::Invalid {
            file: file.clone(),
            key: key.to_string(),
            message,
        };
        if raw.name.is_empty()
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "name",
                format!(
                    "{:?} must be non-empty letters, digits, '-' or '_' (it names table directories)",
                    raw.name
                ),
            ));
        }
        if !KNOWN_TRIPLES.contains(&raw.triple.as_str()) {
            return Err(invalid(
                "triple",
                format!(
                    "{:?} is not a triple padnas builds agents for ({})",
                    raw.triple,
                    KNOWN_TRIPLES.join(", ")
                ),
            ));
        }
        let transport =
            TransportSpec::parse(&raw.transport).map_err(|m| invalid("transport", m))?;
        match &transport {
            TransportSpec::Local if raw.triple != host_triple() => {
                return Err(invalid(
                    "triple",
                    format!(
                        "a local target runs on this machine ({}), not {}",
                        host_triple(),
                        raw.triple
                    ),
                ));
            }
            TransportSpec::Qemu if raw.triple == host_triple() => {
                return Err(invalid(
                    "triple",
                    "qemu emulates a foreign architecture; use transport: local".into(),
                ));
            }
            TransportSpec::ProbeRs { .. } if !raw.triple.starts_with("thumb") => {
                return Err(invalid(
                    "triple",
                    format!(
                        "a probe-rs target runs the microcontroller firmware (a thumb* triple), not {}",
                        raw.triple
                    ),
                ));
            }
            TransportSpec::QemuSystem { machine } => {
                let needs = crate::qemu_system::MACHINES
                    .iter()
                    .find(|(m, _)| m == machine)
                    .map(|(_, t)| *t);
                if needs != Some(raw.triple.as_str()) {
                    return Err(invalid(
                        "triple",
                        format!(
                            "{} runs {} firmware, not {}",
                            machine,
                            needs.unwrap_or("no"),
                            raw.triple
                        ),
                    ));
                }
            }
            TransportSpec::Ssh { .. } | TransportSpec::Adb { .. } if raw.agent_path.is_none() => {
                return Err(invalid(
                    "agent_path",
                    "required for ssh and adb targets: where `padnas agent deploy` puts the agent on the board".into(),
                ));
            }
            _ => {}
        }
        if let Some(p) = &raw.agent_path {
            check_agent_path(p).map_err(|m| invalid("agent_path", m))?;
        }
        let threads = raw.threads.unwrap_or(1);
        if threads == 0 {
            return Err(invalid("threads", "must be at least 1".into()));
        }
        let mut bench = BenchLimits::default();
        if let Some(b) = raw.bench {
            if let Some(v) = b.warmup_runs {
                bench.warmup_runs = v;
            }
            if let Some(v) = b.warmup_ms {
                bench.warmup_ms = v;
            }
            if let Some(v) = b.min_runs {
                bench.min_runs = v;
            }
            if let Some(v) = b.max_runs {
                bench.max_runs = v;
            }
            if let Some(v) = b.max_time_ms {
                bench.max_time_ms = v;
            }
        }
        if bench.max_runs == 0 {
            return Err(invalid("bench.max_runs", "must be at least 1".into()));
        }
        if bench.min_runs > bench.max_runs {
            return Err(invalid(
                "bench.min_runs",
                format!(
                    "{} is more than bench.max_runs ({})",
                    bench.min_runs, bench.max_runs
                ),
            ));
        }
        let mut deadlines = Deadlines::default();
        if let Some(s) = raw.deadline_s {
            if !(s > 0.0 && s < 1e7) {
                return Err(invalid(
                    "deadline_s",
                    format!("{s} is not a positive number of seconds"),
                ));
            }
            deadlines.base = std::time::Duration::from_secs_f64(s);
        }
        if let Some(m) = raw.deadline_margin {
            if !(1.0..1e6).contains(&m) {
                return Err(invalid(
                    "deadline_margin",
                    format!(
                        "{m} must be at least 1 (a bench may take all the time its limits allow)"
                    ),
                ));
            }
            deadlines.bench_margin = m;
        }
        if let Some(m) = &raw.memory {
            if m.reserved_sram_bytes >= m.sram_bytes {
                return Err(invalid(
                    "memory.reserved_sram_bytes",
                    format!(
                        "{} leaves nothing of the board's {} bytes of SRAM",
                        m.reserved_sram_bytes, m.sram_bytes
                    ),
                ));
            }
            if m.reserved_flash_bytes >= m.flash_bytes {
                return Err(invalid(
                    "memory.reserved_flash_bytes",
                    format!(
                        "{} leaves nothing of the board's {} bytes of flash",
                        m.reserved_flash_bytes, m.flash_bytes
                    ),
                ));
            }
        }
        bench.threads = Some(threads);
        bench.pin_cpu = raw.pin_cpu;
        let source = origin.to_path_buf();
        // A relative agent_binary is relative to the target file, so a target
        // directory can be moved around together with its binaries.
        let agent_binary = raw.agent_binary.map(|p| {
            if p.is_relative() {
                origin.parent().map(|d| d.join(&p)).unwrap_or(p)
            } else {
                p
            }
        });
        Ok(Target {
            name: raw.name,
            description: raw.description,
            triple: raw.triple,
            transport,
            agent_path: raw.agent_path,
            agent_binary,
            token_env: raw.token_env,
            threads,
            pin_cpu: raw.pin_cpu,
            bench,
            deadlines,
            notes: raw.notes,
            memory: raw.memory,
            source,
        })
    }

    /// Loads a target file.
    pub fn load(path: &Path) -> Result<Target, TargetError> {
        let text = std::fs::read_to_string(path).map_err(|source| TargetError::Io {
            file: path.display().to_string(),
            cause: source,
        })?;
        Target::from_yaml_str(&text, path)
    }

    /// Resolves `T` as given on the command line: a path to a YAML file, or a
    /// name under `targets_dir`.
    pub fn resolve(spec: &str, targets_dir: &Path) -> Result<Target, TargetError> {
        let as_path = Path::new(spec);
        if spec.ends_with(".yaml") || spec.ends_with(".yml") || spec.contains('/') {
            return Target::load(as_path);
        }
        let path = targets_dir.join(format!("{spec}.yaml"));
        if path.is_file() {
            return Target::load(&path);
        }
        let mut known: Vec<String> = std::fs::read_dir(targets_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().is_some_and(|x| x == "yaml"))
                    .then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        known.sort();
        Err(TargetError::NotFound {
            name: spec.to_string(),
            looked: path.display().to_string(),
            known: if known.is_empty() {
                "(none)".into()
            } else {
                known.join(", ")
            },
        })
    }
}

/// Checks a board path that goes to a remote shell (quoted, see
/// [`crate::remote`]): absolute, so it never reads as an option, and free of
/// control characters, which no quoting carries through every shell.
fn check_agent_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must be an absolute path on the board"));
    }
    if let Some(c) = p.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{p:?} contains the control character {c:?}, not allowed in a board path"
        ));
    }
    if p.ends_with('/') {
        return Err(format!(
            "{p:?} names a directory; give the agent's file name"
        ));
    }
    Ok(())
}

/// The triple of the machine padnas runs on.
pub fn host_triple() -> &'static str {
    // Only Linux hosts are supported; the arch decides the rest.
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        "arm" => "armv7-unknown-linux-gnueabihf",
        other => other,
    }
}

#[cfg(test)]
mod tests;
