//! The `padnas` command line.
//!
//! Exit codes: 0 ok, 1 failure, 2 bad usage or bad input (clap's own usage
//! errors also exit 2). Results go to stdout, logs and progress to stderr.

use std::process::ExitCode;

use clap::Parser;
use padnas::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "padnas",
    version,
    about = "PAD-NAS: embedded-aware neural architecture search"
)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Talk to a target's device agent: hello, bench, deploy.
    #[command(subcommand)]
    Agent(cmd::agent::AgentCmd),
    /// Measure every block of a space on a target into a latency table (resumable).
    Profile(cmd::profile::ProfileArgs),
    /// Use and check latency tables: predict, validate.
    #[command(subcommand)]
    Latency(cmd::latency::LatencyCmd),
    /// Write ONNX files: a retrained network (--run), or one block with seeded random weights (--block).
    #[cfg(feature = "train")]
    Export(cmd::export::ExportArgs),
    /// Train the weight-sharing supernet of a job (SPOS), resumable.
    #[cfg(feature = "train")]
    Train(cmd::train::TrainArgs),
    /// One-shot accuracy of an architecture: BN recalibration, then validation.
    #[cfg(feature = "train")]
    Eval(cmd::eval::EvalArgs),
    /// PAD-NAS pruning stages: search, prune ops per layer, fine-tune (resumable).
    #[cfg(feature = "train")]
    Prune(cmd::pipeline::PruneArgs),
    /// The final latency-constrained NSGA-II search on the last space → pareto.json.
    #[cfg(feature = "train")]
    Search(cmd::pipeline::SearchArgs),
    /// The whole job: latency table, supernet, pruning stages, final search, report.
    #[cfg(feature = "train")]
    Run(cmd::pipeline::RunArgs),
    /// Train one architecture as a stand-alone network (optionally from the supernet's weights).
    #[cfg(feature = "train")]
    Retrain(cmd::retrain::RetrainArgs),
    /// Rank-fidelity tools: sample distinct architectures, Kendall τ-b / Spearman of two rankings.
    #[cfg(feature = "train")]
    #[command(subcommand)]
    Rank(cmd::rank::RankCmd),
    /// Run an exported network on a target: outputs vs the host's, latency vs the table.
    Verify(cmd::verify::VerifyArgs),
}

impl Command {
    /// Whether the command trains or evaluates networks with libtorch.
    #[cfg(feature = "train")]
    fn trains(&self) -> bool {
        matches!(
            self,
            Command::Train(_)
                | Command::Eval(_)
                | Command::Prune(_)
                | Command::Search(_)
                | Command::Run(_)
                | Command::Retrain(_)
                | Command::Rank(_)
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
    // Process-wide allocator settings, once, for the commands that train or
    // evaluate (see `supernet::keep_freed_memory`); never for the ones that
    // time models, whose latency they would change.
    #[cfg(feature = "train")]
    if cli.command.trains() && !padnas::supernet::keep_freed_memory() {
        tracing::debug!("allocator settings not applied (not glibc)");
    }
    let result = match &cli.command {
        Command::Agent(c) => cmd::agent::run(c),
        Command::Profile(a) => cmd::profile::run(a),
        Command::Latency(c) => cmd::latency::run(c),
        #[cfg(feature = "train")]
        Command::Export(a) => cmd::export::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => cmd::train::run(a),
        #[cfg(feature = "train")]
        Command::Eval(a) => cmd::eval::run(a),
        #[cfg(feature = "train")]
        Command::Prune(a) => cmd::pipeline::run_prune(a),
        #[cfg(feature = "train")]
        Command::Search(a) => cmd::pipeline::run_search(a),
        #[cfg(feature = "train")]
        Command::Run(a) => cmd::pipeline::run(a),
        #[cfg(feature = "train")]
        Command::Retrain(a) => cmd::retrain::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        #[cfg(feature = "train")]
        Command::Rank(c) => cmd::rank::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("padnas: error: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

/// 2 for bad input a user can fix (a target, space or config file that does
/// not validate), 1 for everything else.
fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| {
        c.is::<padnas::target::TargetError>()
            || c.is::<padnas::space::SpaceError>()
            || c.is::<padnas::config::ConfigError>()
            || c.is::<padnas::data::DataError>()
            || c.downcast_ref::<padnas::latency::LatencyError>()
                .is_some_and(|l| l.is_bad_input())
    }) {
        2
    } else {
        1
    }
}
