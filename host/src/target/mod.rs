//! Target devices: one YAML file per board under `targets/`.
//!
//! A target says how to reach the agent on the board (the transport), which
//! agent binary runs there (the Rust target triple), and how to benchmark. The
//! YAML is parsed into a raw form that rejects unknown keys, then validated
//! into [`Target`]; every error names the file and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use padnas_agent::proto::BenchLimits;
use serde::Deserialize;

/// Errors from loading or validating a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File.
        file: String,
        /// Cause.
        source: std::io::Error,
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
struct RawTarget {
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
    notes: Option<String>,
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

/// How the host reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// Agent spawned on this machine, spoken to over its stdio.
    Local,
    /// Cross-built agent run under qemu-user here, over stdio. Emulated.
    Qemu,
    /// `ssh://user@host[:port]`: agent started over ssh, spoken to over its stdio.
    Ssh {
        /// `user@host` as ssh takes it.
        destination: String,
        /// Port, when not 22.
        port: Option<u16>,
    },
    /// `adb://SERIAL` (or `adb://` for the only device): agent started with
    /// `adb shell -T`, spoken to over its stdio.
    Adb {
        /// Device serial; `None`: adb's default device.
        serial: Option<String>,
    },
    /// `tcp://host:port`: agent already running with `--listen`.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// `serial:///dev/ttyUSB0?baud=921600`: agent running with `--serial`.
    Serial {
        /// Device path.
        path: String,
        /// Baud rate.
        baud: u32,
    },
}

impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::Local => write!(f, "local"),
            TransportSpec::Qemu => write!(f, "qemu"),
            TransportSpec::Ssh { destination, port } => match port {
                Some(p) => write!(f, "ssh://{destination}:{p}"),
                None => write!(f, "ssh://{destination}"),
            },
            TransportSpec::Adb { serial } => write!(f, "adb://{}", serial.as_deref().unwrap_or("")),
            TransportSpec::Tcp { address } => write!(f, "tcp://{address}"),
            TransportSpec::Serial { path, baud } => write!(f, "serial://{path}?baud={baud}"),
        }
    }
}

/// Default serial speed: what the agent's `--baud` defaults to as well.
pub const DEFAULT_BAUD: u32 = 115_200;

impl TransportSpec {
    /// Parses a transport URI as written in a target file.
    pub fn parse(s: &str) -> Result<TransportSpec, String> {
        let s = s.trim();
        match s {
            "local" => return Ok(TransportSpec::Local),
            "qemu" => return Ok(TransportSpec::Qemu),
            _ => {}
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!("{s:?} is not a transport: use local, qemu, ssh://user@host, adb://SERIAL, tcp://host:port or serial:///dev/PATH?baud=N")
        })?;
        match scheme {
            "ssh" => {
                if rest.is_empty() {
                    return Err("ssh:// needs a host, e.g. ssh://pi@raspberrypi.local".into());
                }
                // `user@host:port`; the port is only split off when it parses,
                // so IPv6 literals in brackets stay intact.
                if let Some((dest, port)) = rest.rsplit_once(':')
                    && !dest.ends_with(']')
                    && let Ok(p) = port.parse::<u16>()
                {
                    return Ok(TransportSpec::Ssh {
                        destination: dest.to_string(),
                        port: Some(p),
                    });
                }
                Ok(TransportSpec::Ssh {
                    destination: rest.to_string(),
                    port: None,
                })
            }
            "adb" => Ok(TransportSpec::Adb {
                serial: (!rest.is_empty()).then(|| rest.to_string()),
            }),
            "tcp" => {
                let (_, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| format!("tcp://{rest}: needs host:port"))?;
                port.parse::<u16>()
                    .map_err(|_| format!("tcp://{rest}: port {port:?} is not a number"))?;
                Ok(TransportSpec::Tcp {
                    address: rest.to_string(),
                })
            }
            "serial" => {
                let (path, query) = match rest.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (rest, None),
                };
                if !path.starts_with('/') {
                    return Err(format!(
                        "serial://{rest}: needs an absolute device path, e.g. serial:///dev/ttyUSB0?baud=921600"
                    ));
                }
                let mut baud = DEFAULT_BAUD;
                for kv in query.into_iter().flat_map(|q| q.split('&')) {
                    match kv.split_once('=') {
                        Some(("baud", v)) => {
                            baud = v.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                                format!("serial: baud {v:?} is not a positive number")
                            })?;
                        }
                        _ => return Err(format!("serial: unknown option {kv:?} (only baud=N)")),
                    }
                }
                Ok(TransportSpec::Serial {
                    path: path.to_string(),
                    baud,
                })
            }
            other => Err(format!(
                "unknown transport scheme {other:?}: use local, qemu, ssh, adb, tcp or serial"
            )),
        }
    }
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
    /// Free text.
    pub notes: Option<String>,
    /// File this target came from.
    pub source: PathBuf,
}

/// Triples we build agents for (scripts/build-agent.sh), plus the host's own.
pub const KNOWN_TRIPLES: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "aarch64-unknown-linux-musl",
];

impl Target {
    /// Whether measurements through this target run under emulation and so
    /// must never be presented as device latency.
    pub fn emulated(&self) -> bool {
        self.transport == TransportSpec::Qemu
    }

    /// Parses and validates target YAML; `origin` names the file in errors.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Target, TargetError> {
        let file = origin.display().to_string();
        let raw: RawTarget = serde_yaml_ng::from_str(text).map_err(|e| TargetError::Yaml {
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
            TransportSpec::Ssh { .. } | TransportSpec::Adb { .. } if raw.agent_path.is_none() => {
                return Err(invalid(
                    "agent_path",
                    "required for ssh and adb targets: where `padnas agent deploy` puts the agent on the board".into(),
                ));
            }
            _ => {}
        }
        if let Some(p) = &raw.agent_path
            && !p.starts_with('/')
        {
            return Err(invalid(
                "agent_path",
                format!("{p:?} must be an absolute path on the board"),
            ));
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
            notes: raw.notes,
            source,
        })
    }

    /// Loads a target file.
    pub fn load(path: &Path) -> Result<Target, TargetError> {
        let text = std::fs::read_to_string(path).map_err(|source| TargetError::Io {
            file: path.display().to_string(),
            source,
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
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Target, TargetError> {
        Target::from_yaml_str(yaml, Path::new("targets/t.yaml"))
    }

    #[test]
    fn transports_parse() {
        assert_eq!(TransportSpec::parse("local"), Ok(TransportSpec::Local));
        assert_eq!(
            TransportSpec::parse("ssh://pi@rpi.local:2222"),
            Ok(TransportSpec::Ssh {
                destination: "pi@rpi.local".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            TransportSpec::parse("adb://"),
            Ok(TransportSpec::Adb { serial: None })
        );
        assert_eq!(
            TransportSpec::parse("serial:///dev/ttyUSB0?baud=921600"),
            Ok(TransportSpec::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 921_600
            })
        );
        assert!(TransportSpec::parse("tcp://host").is_err());
        assert!(TransportSpec::parse("serial://dev/tty?baud=x").is_err());
        assert!(TransportSpec::parse("serial:///dev/tty?parity=odd").is_err());
        assert!(TransportSpec::parse("ftp://x").is_err());
        for s in [
            "local",
            "qemu",
            "ssh://a@b",
            "ssh://a@b:2",
            "adb://X1",
            "tcp://h:1",
            "serial:///dev/x?baud=9600",
        ] {
            let t = TransportSpec::parse(s).expect(s);
            assert_eq!(TransportSpec::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nthreadz: 2\n")
            .expect_err("unknown key");
        let m = e.to_string();
        assert!(m.contains("targets/t.yaml") && m.contains("threadz"), "{m}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            (
                "name: x\ntriple: sparc-sun-solaris\ntransport: local\n",
                "triple",
            ),
            (
                "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: local\n",
                "triple",
            ),
            (
                "name: x\ntriple: aarch64-unknown-linux-gnu\ntransport: ssh://pi@h\n",
                "agent_path",
            ),
            (
                "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nthreads: 0\n",
                "threads",
            ),
            (
                "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: local\nbench: {min_runs: 9, max_runs: 3}\n",
                "bench.min_runs",
            ),
            (
                "name: 'a b'\ntriple: x86_64-unknown-linux-gnu\ntransport: local\n",
                "name",
            ),
            (
                "name: x\ntriple: x86_64-unknown-linux-gnu\ntransport: carrier-pigeon\n",
                "transport",
            ),
        ];
        for (yaml, key) in cases {
            match parse(yaml) {
                Err(TargetError::Invalid { key: k, file, .. }) => {
                    assert_eq!(k, key, "{yaml}");
                    assert_eq!(file, "targets/t.yaml");
                }
                other => panic!("{yaml}: expected invalid {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn qemu_is_emulated_and_limits_fill_in() {
        let t = parse("name: q\ntriple: aarch64-unknown-linux-gnu\ntransport: qemu\nthreads: 2\npin_cpu: 1\nbench: {max_runs: 7, min_runs: 3}\n")
            .expect("valid");
        assert!(t.emulated());
        assert_eq!(t.bench.max_runs, 7);
        assert_eq!(t.bench.threads, Some(2));
        assert_eq!(t.bench.pin_cpu, Some(1));
    }

    #[test]
    fn every_shipped_target_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("targets/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let t = Target::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(t.name.as_str()),
                    path.file_stem().and_then(|s| s.to_str()),
                    "name matches file"
                );
                names.push(t.name);
            }
        }
        names.sort();
        for want in [
            "android-arm64",
            "local",
            "qemu-aarch64",
            "qemu-armv7",
            "rpi3",
            "rpi4",
            "serial-example",
            "tcp-example",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing target {want}: {names:?}"
            );
        }
        let found = Target::resolve("qemu-armv7", &dir).expect("by name");
        assert!(found.emulated());
        let missing = Target::resolve("nope", &dir).expect_err("unknown");
        assert!(
            missing.to_string().contains("rpi4"),
            "lists known targets: {missing}"
        );
    }
}
