//! Transport URIs of target files (`ssh://pi@[fe80::1]:2222`, `adb://X`, …).
//!
//! Target files are copied from elsewhere, and parts of them end up in the
//! argument vectors of `ssh` and `adb`. So every part that reaches a command
//! line is checked against a strict grammar here: nothing may start with `-`
//! (it would be read as an option), and user names, host names and serials
//! are limited to the characters such names have. Whatever does not fit is
//! refused with a message the caller puts next to the file and key.

use std::fmt;

/// How the host reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// Agent spawned on this machine, spoken to over its stdio.
    Local,
    /// Cross-built agent run under qemu-user here, over stdio. Emulated.
    Qemu,
    /// `qemu-system://mps2-an386`: the microcontroller firmware booted on
    /// an emulated board here, spoken to over its UART on a pseudo-terminal.
    /// Emulated.
    QemuSystem {
        /// QEMU machine, one of [`crate::qemu_system::MACHINES`].
        machine: String,
    },
    /// `ssh://[user@]host[:port]`: agent started over ssh, spoken to over
    /// its stdio. `host` is a name, an IPv4 address or (bracketed in the
    /// URI, bare here) an IPv6 address.
    Ssh {
        /// Login name, when given.
        user: Option<String>,
        /// Host name or address, without brackets.
        host: String,
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
    /// `probe-rs://CHIP[?probe=VID:PID[:SERIAL]]`: the firmware flashed
    /// through a debug probe (probe-rs's chip name, e.g. `STM32F746NGHx`),
    /// spoken to over RTT. Needs the `probe-rs` feature.
    ProbeRs {
        /// Chip name as probe-rs knows it.
        chip: String,
        /// `VID:PID[:SERIAL]` of the probe; the only one when `None`.
        probe: Option<String>,
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
            TransportSpec::QemuSystem { machine } => write!(f, "qemu-system://{machine}"),
            TransportSpec::ProbeRs { chip, probe } => match probe {
                Some(p) => write!(f, "probe-rs://{chip}?probe={p}"),
                None => write!(f, "probe-rs://{chip}"),
            },
            TransportSpec::Ssh { user, host, port } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{host}")?;
                }
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
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
            "ssh" => parse_ssh(rest),
            "adb" => {
                if rest.is_empty() {
                    return Ok(TransportSpec::Adb { serial: None });
                }
                check_name(rest, "adb serial", |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
                })?;
                Ok(TransportSpec::Adb {
                    serial: Some(rest.to_string()),
                })
            }
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
            "serial" => parse_serial(rest),
            "probe-rs" => parse_probe_rs(rest),
            "qemu-system" => {
                let known: Vec<&str> = crate::qemu_system::MACHINES
                    .iter()
                    .map(|(m, _)| *m)
                    .collect();
                if known.contains(&rest) {
                    Ok(TransportSpec::QemuSystem {
                        machine: rest.to_string(),
                    })
                } else {
                    Err(format!(
                        "qemu-system://{rest}: not a board the firmware is built for ({})",
                        known.join(", ")
                    ))
                }
            }
            other => Err(format!(
                "unknown transport scheme {other:?}: use local, qemu, qemu-system, probe-rs, ssh, adb, tcp or serial"
            )),
        }
    }

    /// The destination as `ssh` takes it after `--`: `user@host`, an IPv6
    /// address bare (ssh splits at the last `@`, so no brackets are needed).
    pub fn ssh_destination(&self) -> Option<String> {
        match self {
            TransportSpec::Ssh { user, host, .. } => Some(match user {
                Some(u) => format!("{u}@{host}"),
                None => host.clone(),
            }),
            _ => None,
        }
    }
}

fn parse_ssh(rest: &str) -> Result<TransportSpec, String> {
    let hint = "use ssh://[user@]host[:port], IPv6 in brackets: ssh://pi@[fe80::1]:2222";
    if rest.is_empty() {
        return Err(format!("ssh:// needs a host; {hint}"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => {
            check_name(u, "ssh user", |c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
            })?;
            (Some(u.to_string()), h)
        }
        None => (None, rest),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("ssh host {hostport:?} has no closing ']'; {hint}"))?;
        let (ip, zone) = match addr.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (addr, None),
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("ssh host [{addr}] is not an IPv6 address; {hint}"));
        }
        if let Some(zone) = zone {
            check_name(zone, "IPv6 zone", |c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
            })?;
        }
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or_else(|| {
                format!("ssh host {hostport:?}: expected ':PORT' after ']'")
            })?)?),
        };
        (addr.to_string(), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err(format!(
                        "ssh host {hostport:?}: an IPv6 address needs brackets; {hint}"
                    ));
                }
                (h, Some(parse_port(p)?))
            }
            None => (hostport, None),
        };
        check_name(host, "ssh host", |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
        })?;
        (host.to_string(), port)
    };
    Ok(TransportSpec::Ssh { user, host, port })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
}

fn parse_serial(rest: &str) -> Result<TransportSpec, String> {
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
                baud = v
                    .parse()
                    .ok()
                    .filter(|b| *b > 0)
                    .ok_or_else(|| format!("serial: baud {v:?} is not a positive number"))?;
            }
            _ => return Err(format!("serial: unknown option {kv:?} (only baud=N)")),
        }
    }
    Ok(TransportSpec::Serial {
        path: path.to_string(),
        baud,
    })
}

/// Checks a name that ends up on a command line: non-empty, not starting
/// with `-` or `.`, every character allowed by `ok`.
fn parse_probe_rs(rest: &str) -> Result<TransportSpec, String> {
    let (chip, query) = match rest.split_once('?') {
        Some((c, q)) => (c, Some(q)),
        None => (rest, None),
    };
    check_name(chip, "probe-rs chip", |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
    })?;
    let probe = match query {
        None => None,
        Some(q) => {
            let sel = q.strip_prefix("probe=").ok_or_else(|| {
                format!("probe-rs://{rest}: the only option is ?probe=VID:PID[:SERIAL]")
            })?;
            let parts: Vec<&str> = sel.split(':').collect();
            let hex4 = |s: &str| s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit());
            let ok = match parts.as_slice() {
                [v, p] => hex4(v) && hex4(p),
                [v, p, serial] => {
                    hex4(v)
                        && hex4(p)
                        && !serial.is_empty()
                        && serial.chars().all(|c| c.is_ascii_alphanumeric())
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "probe-rs://{rest}: probe {sel:?} is not VID:PID[:SERIAL] (4 hex digits each, serial letters and digits)"
                ));
            }
            Some(sel.to_string())
        }
    };
    Ok(TransportSpec::ProbeRs {
        chip: chip.to_string(),
        probe,
    })
}

fn check_name(name: &str, what: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.starts_with('-') {
        return Err(format!(
            "{what} {name:?} starts with '-', which a command would read as an option"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "{what} {name:?} contains {bad:?}, not allowed there"
        ));
    }
    Ok(())
}
