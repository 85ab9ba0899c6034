//! `padnas export`: write ONNX files.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::space::BlockKey;

/// Arguments of `padnas export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write one block with seeded random weights (what `padnas profile`
    /// sends to the agent), e.g. `mbconv:k3e6:in24x56x56:out24:s1`.
    #[arg(long)]
    pub block: BlockKey,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Runs `padnas export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let bytes = crate::onnx::write_block(&args.block, args.seed)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}",
        json!({"block": args.block.to_string(), "out": args.out.display().to_string(), "bytes": bytes.len()})
    );
    Ok(())
}
