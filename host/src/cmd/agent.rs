//! `padnas agent …`: talk to a target's agent by hand.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::json;

use crate::remote;
use crate::session::{self, agent_binary_for};
use crate::target::{Target, TransportSpec};

/// `padnas agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCmd {
    /// Say Hello and print what the agent reports, as one JSON line.
    Hello(TargetArg),
    /// Benchmark an ONNX model on the target; prints statistics as one JSON line.
    Bench(BenchArgs),
    /// Copy the right agent binary to an ssh or adb target.
    Deploy(TargetArg),
}

/// A target by name (under `targets/`) or path.
#[derive(Debug, clap::Args)]
pub struct TargetArg {
    /// Target name under the targets directory, or a path to a target YAML.
    #[arg(long, short)]
    pub target: String,
    /// Directory of target files.
    #[arg(long, default_value = "targets")]
    pub targets_dir: PathBuf,
}

/// Arguments of `padnas agent bench`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["model", "block"])))]
pub struct BenchArgs {
    #[command(flatten)]
    target: TargetArg,
    /// ONNX model to benchmark.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// A block by its key (e.g. mbconv:k3e6:in24x56x56:out24:s1), with the
    /// seeded weights `padnas profile` uses: ONNX for a Linux agent, an int8
    /// block for a microcontroller's firmware.
    #[arg(long, conflicts_with_all = ["shape", "reference"])]
    block: Option<crate::space::BlockKey>,
    /// Timed runs (overrides the target's bench.max_runs; also the minimum).
    #[arg(long)]
    runs: Option<u32>,
    /// Threads for tract's matmul (overrides the target's threads).
    #[arg(long)]
    threads: Option<u32>,
    /// Input shape, e.g. 1,24,56,56 (default: the model's declared shape).
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<usize>>,
    /// Untimed warm-up runs (overrides the target's; also drops its warm-up time).
    #[arg(long)]
    warmup: Option<u32>,
    /// Include every sample in the output.
    #[arg(long)]
    samples: bool,
    /// A second ONNX model run alternately with the benchmarked one, run
    /// for run; the output then has `ratio_median` (model / reference per
    /// pair), which cancels machine-wide speed changes.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Time the agent's contention sensor before the first run and after
    /// every N runs, each reading followed by an untimed run (protocol
    /// 1.2); the readings come back in `sensor_samples_ms`.
    #[arg(long, value_name = "N")]
    sensor_every: Option<u32>,
}

/// Runs an `agent` subcommand.
pub fn run(cmd: &AgentCmd) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::Hello(t) => hello(t),
        AgentCmd::Bench(b) => bench(b),
        AgentCmd::Deploy(t) => deploy(t),
    }
}

fn load_target(t: &TargetArg) -> anyhow::Result<Target> {
    Ok(Target::resolve(&t.target, &t.targets_dir)?)
}

fn hello(t: &TargetArg) -> anyhow::Result<()> {
    let target = load_target(t)?;
    let s = session::open(&target)?;
    let mut v = serde_json::to_value(&s.info)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("target".into(), json!(target.name));
        o.insert("emulated".into(), json!(target.emulated()));
        o.insert(
            "label".into(),
            json!(session::measurement_label(&target, &s.info)),
        );
    }
    println!("{v}");
    s.close();
    Ok(())
}

fn bench(b: &BenchArgs) -> anyhow::Result<()> {
    let target = load_target(&b.target)?;
    let what = match (&b.model, &b.block) {
        (Some(m), _) => m.display().to_string(),
        (None, Some(k)) => k.to_string(),
        // clap's group rules this out.
        (None, None) => bail!("give --model or --block"),
    };
    let mut limits = target.bench.clone();
    if let Some(r) = b.runs {
        if r == 0 {
            bail!("--runs must be at least 1");
        }
        limits.max_runs = r;
        limits.min_runs = r;
        // An explicit run count is a promise: don't cut it short on time.
        limits.max_time_ms = u64::MAX / 2;
    }
    if let Some(t) = b.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        limits.threads = Some(t);
    }
    if let Some(w) = b.warmup {
        limits.warmup_runs = w;
        limits.warmup_ms = 0;
    }
    limits.return_samples = b.samples;
    let mut s = session::open(&target)?;
    let loaded = match (&b.model, &b.block) {
        (Some(path), _) => {
            let onnx =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            s.client.load_model(&onnx, b.shape.as_deref())
        }
        (None, Some(key)) if target.is_mcu() => s
            .client
            .load_int8_block(crate::memory::int8_block(key, crate::onnx::BLOCK_SEED)),
        (None, Some(key)) => {
            let onnx = crate::onnx::write_block(key, crate::onnx::BLOCK_SEED)?;
            s.client.load_model(&onnx, None)
        }
        (None, None) => bail!("give --model or --block"),
    }
    .with_context(|| format!("loading {what} on target {}", target.name))?;
    let reference = match &b.reference {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let r = s.client.load_model(&bytes, None).with_context(|| {
                format!(
                    "loading the reference {} on target {}",
                    path.display(),
                    target.name
                )
            })?;
            Some(r.handle)
        }
        None => None,
    };
    // The host's view of the whole Bench exchange, so the agent's overhead
    // (framing, transport, its timing loop) can be compared with the sum of
    // the samples it reports.
    let t0 = std::time::Instant::now();
    let stats = s
        .client
        .bench_request(padnas_agent::proto::BenchRequest {
            handle: loaded.handle,
            limits,
            reference,
            sensor_every: b.sensor_every,
        })
        .with_context(|| format!("benchmarking {what} on target {}", target.name))?;
    let roundtrip_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut v = serde_json::to_value(&stats)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("model".into(), json!(what));
        if let Some(r) = &b.reference {
            o.insert("reference".into(), json!(r.display().to_string()));
        }
        o.insert("host_roundtrip_ms".into(), json!(roundtrip_ms));
        o.insert("input_shape".into(), json!(loaded.input_shape));
        o.insert("output_shape".into(), json!(loaded.output_shape));
        o.insert("target".into(), json!(target.name));
        o.insert("emulated".into(), json!(target.emulated()));
        o.insert(
            "label".into(),
            json!(session::measurement_label(&target, &s.info)),
        );
        o.insert("agent_version".into(), json!(s.info.agent_version));
        o.insert("tract_version".into(), json!(s.info.tract_version));
    }
    println!("{v}");
    s.client.unload(loaded.handle).ok();
    s.close();
    Ok(())
}

/// Runs a command, its stdin from `stdin` when given, and fails with its
/// name and exit status.
fn run_cmd(mut c: Command, stdin: Option<&std::path::Path>) -> anyhow::Result<()> {
    let shown = format!("{c:?}");
    if let Some(path) = stdin {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        c.stdin(file);
    }
    let status = c.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// One step of a deploy: a command, and the file it reads on stdin.
pub struct DeployStep {
    /// The command.
    pub command: Command,
    /// File to feed it on stdin.
    pub stdin: Option<PathBuf>,
}

/// The commands that copy the agent to the board and make it executable.
///
/// Over ssh the binary goes through `cat` on the board rather than `scp`,
/// whose remote path older servers pass to a shell unquoted: one quoting
/// rule ([`remote::command_line`]) covers every word that reaches the board.
pub fn deploy_commands(
    target: &Target,
    binary: &std::path::Path,
) -> anyhow::Result<Vec<DeployStep>> {
    let remote_path = target
        .agent_path
        .as_deref()
        .context("target has no agent_path")?;
    let mut steps = Vec::new();
    match &target.transport {
        spec @ TransportSpec::Ssh { .. } => steps.push(DeployStep {
            command: remote::ssh(spec, &remote::install_from_stdin(remote_path)?)?,
            stdin: Some(binary.to_path_buf()),
        }),
        spec @ TransportSpec::Adb { .. } => {
            // adb push takes the path literally (no shell); chmod goes
            // through the shell, quoted.
            let mut push = remote::adb(spec)?;
            push.arg("push").arg(binary).arg(remote_path);
            steps.push(DeployStep {
                command: push,
                stdin: None,
            });
            let chmod = remote::command_line(&["chmod", "755", "--", remote_path])?;
            let mut c = remote::adb(spec)?;
            c.arg("shell").arg(chmod);
            steps.push(DeployStep {
                command: c,
                stdin: None,
            });
        }
        other => bail!(
            "target {} uses transport {other}: deploy copies agents to ssh and adb targets only (start a tcp or serial agent on the board yourself)",
            target.name
        ),
    }
    Ok(steps)
}

fn deploy(t: &TargetArg) -> anyhow::Result<()> {
    let target = load_target(t)?;
    if !matches!(
        target.transport,
        TransportSpec::Ssh { .. } | TransportSpec::Adb { .. }
    ) {
        bail!(
            "target {} uses transport {}: deploy copies agents to ssh and adb targets only (start a tcp or serial agent on the board yourself)",
            target.name,
            target.transport
        );
    }
    let binary = agent_binary_for(&target)?;
    for step in deploy_commands(&target, &binary)? {
        run_cmd(step.command, step.stdin.as_deref())?;
    }
    // Prove the deployed binary runs there before saying so.
    let s = session::open(&target)?;
    println!(
        "{}",
        json!({"deployed": binary.display().to_string(), "target": target.name,
               "agent_path": target.agent_path, "agent_version": s.info.agent_version, "arch": s.info.arch})
    );
    s.close();
    Ok(())
}
