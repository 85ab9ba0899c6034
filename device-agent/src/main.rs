//! `padnas-agent`: serves the padnas wire protocol on the target board.
//!
//! Exit codes: 0 ok (clean end of input, or Shutdown), 1 failure (cannot
//! bind, open the port, or the link broke), 2 bad usage.
//! Logs go to stderr only: in `--stdio` mode stdout is the wire.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use padnas_agent::server::{self, ServerConfig};
use padnas_agent::transport::{stdio, tcp};

/// Measures ONNX model latency on this board for the padnas host.
#[derive(Debug, Parser)]
#[command(name = "padnas-agent", version, about, long_about = None)]
#[command(group(ArgGroup::new("mode").args(["stdio", "listen", "serial"])))]
struct Cli {
    /// Speak the protocol on stdin/stdout (for a host that spawns the agent
    /// locally, under qemu-user, or over ssh/adb); exits at end of input.
    #[arg(long)]
    stdio: bool,

    /// Listen for hosts on ADDR, one at a time, forever [default mode,
    /// default address 127.0.0.1:7878]. A non-loopback ADDR needs a token.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = tcp::DEFAULT_LISTEN)]
    listen: Option<String>,

    /// Serve on a serial device (e.g. /dev/ttyGS0, /dev/ttyUSB0).
    #[arg(long, value_name = "PATH")]
    serial: Option<String>,

    /// Serial baud rate.
    #[arg(long, value_name = "N", default_value_t = 115_200, requires = "serial")]
    baud: u32,

    /// File whose first line is the shared secret every host must send in
    /// Hello (at least 16 characters). Or set PADNAS_AGENT_TOKEN.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,

    /// The secret itself. Discouraged: every user of the board sees command
    /// lines in `ps`; use --token-file or PADNAS_AGENT_TOKEN.
    #[arg(long, value_name = "T")]
    token: Option<String>,

    /// Seconds a TCP host may take, from connecting to an accepted Hello.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    hello_timeout: u64,

    /// Seconds a TCP host may stay silent between requests.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    idle_timeout: u64,

    /// Log every request (RUST_LOG overrides).
    #[arg(long, short)]
    verbose: bool,
}

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage
            // errors print to stderr and exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose);
    let token = match token(&cli) {
        Ok(token) => token,
        Err(message) => {
            eprintln!("padnas-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let base = ServerConfig {
        token,
        ..ServerConfig::default()
    };

    if cli.stdio {
        let mut transport = stdio::agent_side();
        return match server::serve_session(&mut transport, &base) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("stdio session failed: {e}");
                ExitCode::from(1)
            }
        };
    }

    if let Some(path) = &cli.serial {
        return serve_serial(path, cli.baud, &base);
    }

    let addr = cli
        .listen
        .clone()
        .unwrap_or_else(|| tcp::DEFAULT_LISTEN.to_string());
    match tcp::is_loopback(&addr) {
        Ok(true) => {}
        Ok(false) if base.token.is_some() => {}
        Ok(false) => {
            eprintln!(
                "padnas-agent: refusing to listen on {addr} without a token: any machine that \
                 can reach it could run models on this board. Pass --token-file PATH (or set \
                 PADNAS_AGENT_TOKEN), or listen on 127.0.0.1 and tunnel (ssh -L)."
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("padnas-agent: bad --listen address {addr}: {e}");
            return ExitCode::from(2);
        }
    }
    let config = ServerConfig {
        hello_timeout: Some(Duration::from_secs(cli.hello_timeout.max(1))),
        idle_timeout: Some(Duration::from_secs(cli.idle_timeout.max(1))),
        ..base
    };
    let listener = match tcp::TcpServer::bind(&addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("padnas-agent: {e}");
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        // A fixed, unadorned line that scripts and tests can wait for (the
        // real port when ADDR ends in :0).
        Ok(bound) => eprintln!("padnas-agent: listening on {bound}"),
        Err(e) => tracing::warn!("{e}"),
    }
    match server::serve_tcp(&listener, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Environment variable that carries the token (read when neither
/// --token-file nor --token is given).
const TOKEN_ENV: &str = "PADNAS_AGENT_TOKEN";

/// The token from --token-file, --token or [`TOKEN_ENV`], checked for length.
fn token(cli: &Cli) -> Result<Option<String>, String> {
    let (token, from) = if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
        let first = text.lines().next().unwrap_or("").trim().to_string();
        (Some(first), format!("--token-file {}", path.display()))
    } else if let Some(t) = &cli.token {
        tracing::warn!(
            "--token is visible to every user of this machine in `ps`; prefer --token-file or {TOKEN_ENV}"
        );
        (Some(t.clone()), "--token".to_string())
    } else {
        match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.is_empty() => (Some(t), TOKEN_ENV.to_string()),
            _ => (None, String::new()),
        }
    };
    match token {
        Some(t) if t.chars().count() < server::MIN_TOKEN_LEN => Err(format!(
            "the token from {from} has {} character(s); use at least {} (e.g. `head -c 12 /dev/urandom | base64`)",
            t.chars().count(),
            server::MIN_TOKEN_LEN
        )),
        other => Ok(other),
    }
}

#[cfg(feature = "serial")]
fn serve_serial(path: &str, baud: u32, config: &ServerConfig) -> ExitCode {
    use padnas_agent::transport::serial;
    loop {
        let mut transport = match serial::open(path, baud) {
            Ok(transport) => transport,
            Err(e) => {
                eprintln!("padnas-agent: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!("serving on {path} at {baud} baud");
        // A serial line has no connections: after a refused or timed-out
        // session the next Hello starts a new one on the same line.
        loop {
            match server::serve_session(&mut transport, config) {
                Ok(server::SessionEnd::Shutdown) => return ExitCode::SUCCESS,
                // The other end hung up (pty closed): reopen and wait.
                Ok(server::SessionEnd::Closed) => break,
                Ok(end) => tracing::info!("session ended ({end:?}); waiting for the next Hello"),
                Err(e) => {
                    tracing::error!("serial link failed: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(not(feature = "serial"))]
fn serve_serial(_path: &str, _baud: u32, _config: &ServerConfig) -> ExitCode {
    eprintln!("padnas-agent: built without the `serial` feature");
    ExitCode::from(2)
}
