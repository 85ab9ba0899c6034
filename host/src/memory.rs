//! What a network costs in a microcontroller's memory when it runs in int8,
//! block after block (the way CMSIS-NN deployments and the padnas firmware
//! run it): flash for the weights, SRAM for the activations alive at once.
//!
//! Every block (stem, MBConv, head) is costed by `padnas-int8`, the kernels
//! the firmware runs, so the host's figure is the firmware's (a test checks
//! them against the firmware's own report under emulation): int8 weights,
//! and per output channel an i32 bias and a requantisation multiplier and
//! shift (12 bytes; the classifier's requantisation is per tensor).

use padnas_agent::proto::{Int8Block, Int8Kind};
use padnas_int8::{BlockShape, HeadShape, StemShape};
use serde::{Deserialize, Serialize};

use crate::space::{BlockKey, Op, Space};
use crate::target::TargetMemory;

/// Errors of the memory model.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A block the int8 kernels cannot run (an even kernel, stride 3, …).
    #[error("block {block}: {message}")]
    Block {
        /// The block key.
        block: String,
        /// The kernels' reason.
        message: String,
    },
}

/// A block's or a network's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// Largest SRAM the activations take at any moment (bytes).
    pub sram_bytes: u64,
    /// Weights, biases and requantisation parameters (bytes of flash).
    pub flash_bytes: u64,
}

/// What a network may use: the board's memory less what the firmware itself
/// takes (stack, statics, heap bookkeeping; its code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLimit {
    /// SRAM for activations (bytes).
    pub sram_bytes: u64,
    /// Flash for weights (bytes).
    pub flash_bytes: u64,
}

impl MemoryLimit {
    /// What a target's memory leaves for networks.
    pub fn of_target(memory: &TargetMemory) -> MemoryLimit {
        MemoryLimit {
            sram_bytes: memory.sram_bytes.saturating_sub(memory.reserved_sram_bytes),
            flash_bytes: memory
                .flash_bytes
                .saturating_sub(memory.reserved_flash_bytes),
        }
    }
}

impl Footprint {
    /// Whether this fits in `limit`.
    pub fn fits(&self, limit: &MemoryLimit) -> bool {
        self.sram_bytes <= limit.sram_bytes && self.flash_bytes <= limit.flash_bytes
    }
}

/// The int8 cost of one block, as `padnas-int8` (the firmware's kernels)
/// counts it.
pub fn block_footprint(key: &BlockKey) -> Result<Footprint, MemoryError> {
    let bad = |e: padnas_int8::Error| MemoryError::Block {
        block: key.to_string(),
        message: e.to_string(),
    };
    let (sram, flash) = match *key {
        BlockKey::Stem {
            input,
            kernel,
            out_channels,
            stride,
            ..
        } => {
            let shape = StemShape {
                in_c: input.channels,
                out_c: out_channels,
                kernel,
                stride,
                h: input.height,
                w: input.width,
            };
            shape.validate().map_err(bad)?;
            (shape.peak_activation_bytes(), shape.weight_bytes())
        }
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        } => {
            let shape = BlockShape {
                in_c: input.channels,
                out_c: out_channels,
                expand: expansion,
                kernel,
                stride,
                h: input.height,
                w: input.width,
            };
            shape.validate().map_err(bad)?;
            (shape.peak_activation_bytes(), shape.weight_bytes())
        }
        BlockKey::Head {
            input,
            channels,
            num_classes,
            ..
        } => {
            let shape = HeadShape {
                in_c: input.channels,
                channels,
                classes: num_classes,
                h: input.height,
                w: input.width,
            };
            shape.validate().map_err(bad)?;
            (shape.peak_activation_bytes(), shape.weight_bytes())
        }
    };
    Ok(Footprint {
        sram_bytes: sram as u64,
        flash_bytes: flash as u64,
    })
}

/// The int8 block a microcontroller agent runs for `key`, its weights drawn
/// from `seed` (the firmware and the host draw the same).
pub fn int8_block(key: &BlockKey, seed: u64) -> Int8Block {
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let base = |kind, input: crate::space::Shape| Int8Block {
        kind,
        in_c: u(input.channels),
        out_c: 0,
        expand: 1,
        kernel: 1,
        stride: 1,
        h: u(input.height),
        w: u(input.width),
        classes: 0,
        seed,
    };
    match *key {
        BlockKey::Stem {
            input,
            kernel,
            out_channels,
            stride,
            ..
        } => Int8Block {
            out_c: u(out_channels),
            kernel: u(kernel),
            stride: u(stride),
            ..base(Int8Kind::Stem, input)
        },
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        } => Int8Block {
            out_c: u(out_channels),
            expand: u(expansion),
            kernel: u(kernel),
            stride: u(stride),
            ..base(Int8Kind::Mbconv, input)
        },
        BlockKey::Head {
            input,
            channels,
            num_classes,
            ..
        } => Int8Block {
            out_c: u(channels),
            classes: u(num_classes),
            ..base(Int8Kind::Head, input)
        },
    }
}

/// The memory of every architecture of a space, precomputed per layer and
/// op like the latency model (a search asks millions of times): flash adds
/// up over the blocks, SRAM is the largest block's peak, since one block's
/// activations are freed before the next block's expansion is allocated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryModel {
    /// Stem and head together.
    pub base: Footprint,
    /// Each candidate op of each layer (identity: zero).
    pub per_layer: Vec<Vec<Footprint>>,
}

impl MemoryModel {
    /// The model of `space`.
    pub fn new(space: &Space) -> Result<MemoryModel, MemoryError> {
        let stem = block_footprint(&space.stem_block())?;
        let head = block_footprint(&space.head_block())?;
        let base = Footprint {
            sram_bytes: stem.sram_bytes.max(head.sram_bytes),
            flash_bytes: stem.flash_bytes + head.flash_bytes,
        };
        let per_layer = space
            .layers()
            .iter()
            .map(|layer| {
                layer
                    .ops
                    .iter()
                    .map(|&op| match (op, layer.block(op)) {
                        (Op::Identity, _) | (_, None) => Ok(Footprint::default()),
                        (_, Some(key)) => block_footprint(&key),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemoryModel { base, per_layer })
    }

    /// The footprint of the op indices `genome`.
    pub fn footprint(&self, genome: &[usize]) -> Footprint {
        self.per_layer
            .iter()
            .zip(genome)
            .fold(self.base, |acc, (ops, &i)| Footprint {
                sram_bytes: acc.sram_bytes.max(ops[i].sram_bytes),
                flash_bytes: acc.flash_bytes + ops[i].flash_bytes,
            })
    }
}

#[cfg(test)]
mod tests;
