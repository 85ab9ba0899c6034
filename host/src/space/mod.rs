//! Search spaces: the backbone (input, stem, stages, head), the candidate ops
//! of every searchable layer, architectures (one op per layer), and the
//! unique blocks that key the latency table.
//!
//! A space is read from YAML (see `configs/spaces/`) into a raw serde form
//! ([`RawSpace`]) and validated into [`Space`]; every error names the file and
//! the key path. A *layer-wise* space (a different op subset per layer, as
//! left by pruning) is the same schema with per-layer lists, so pruning can
//! write its result back with [`Space::to_yaml`].
//!
//! One job per file: `op` holds the op, activation and shape text types;
//! `schema` the raw YAML form, its hand-written writer and the structural
//! hash; `validate` turns the raw form into a [`Space`]; `arch` holds
//! architectures and sampling; `block_key` the latency-table key grammar.
//! This file holds the validated types and what the rest of padnas reads.

use std::collections::BTreeSet;
use std::path::Path;

mod arch;
mod block_key;
mod op;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

pub use arch::Arch;
pub use block_key::BlockKey;
pub use op::{Activation, Op, Shape};
pub use schema::{RawHead, RawInput, RawSpace, RawStage, RawStem};

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The space file could not be read.
    #[error("{origin}: cannot read: {cause}")]
    Read {
        /// File the space was read from.
        origin: String,
        /// Underlying I/O error.
        cause: std::io::Error,
    },
    /// The YAML does not parse or does not fit the schema (serde names the key).
    #[error("{origin}: {cause}")]
    Yaml {
        /// File (or other origin) of the text.
        origin: String,
        /// Parser error, with key path and line.
        cause: serde_yaml_ng::Error,
    },
    /// The YAML fits the schema but breaks a rule of the space.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// File (or other origin) of the space.
        origin: String,
        /// Key path, e.g. `stages[2].ops[1]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An op token such as `k3e6` or `id` is malformed.
    #[error("unknown op {text:?} ({reason})")]
    ParseOp {
        /// The offending token.
        text: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An architecture is malformed or does not belong to the space.
    #[error("architecture: {0}")]
    Arch(String),
    /// A block key string is malformed.
    #[error("block key {text:?}: {reason}")]
    ParseBlockKey {
        /// The offending key.
        text: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Origin used in errors for spaces built in memory rather than read from a file.
const IN_MEMORY: &str = "<space>";

/// The stem: conv k×k + BN + activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stem {
    /// Kernel size (odd).
    pub kernel: usize,
    /// Output channels.
    pub channels: usize,
    /// Stride, 1 or 2.
    pub stride: usize,
    /// Activation after BN.
    pub activation: Activation,
}

/// The head: 1×1 conv + BN + activation, global average pool, fully connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    /// Output channels of the 1×1 conv.
    pub channels: usize,
    /// Activation after BN.
    pub activation: Activation,
}

/// A validated stage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stage {
    /// Output channels.
    pub channels: usize,
    /// Stride of the first layer.
    pub stride: usize,
    /// Candidate ops of each layer.
    pub layers: Vec<Vec<Op>>,
}

/// One searchable layer with everything needed to build or time it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layer {
    /// Position among all searchable layers (the index into an [`Arch`]).
    pub index: usize,
    /// Stage the layer belongs to.
    pub stage: usize,
    /// Position inside its stage (0: the first, which may change shape).
    pub position: usize,
    /// Input feature-map shape.
    pub input: Shape,
    /// Output channels.
    pub out_channels: usize,
    /// Stride.
    pub stride: usize,
    /// Candidate ops, in the order the space lists them.
    pub ops: Vec<Op>,
}

impl Layer {
    /// Output feature-map shape (the same for every candidate).
    pub fn output(&self) -> Shape {
        self.input.after_conv(self.out_channels, self.stride)
    }

    /// Whether this layer keeps its shape, i.e. may hold an identity and
    /// gets a residual connection.
    pub fn keeps_shape(&self) -> bool {
        self.stride == 1 && self.input.channels == self.out_channels
    }

    /// Multiply-accumulates of `op` in this layer (1×1 expand, depthwise
    /// k×k, 1×1 project; 0 for identity): the size that orders a layer's
    /// candidates from smallest to largest (the sandwich rule's ends).
    pub fn macs(&self, op: Op) -> u64 {
        match op {
            Op::Identity => 0,
            Op::MbConv { kernel, expansion } => {
                let (cin, out) = (self.input.channels as u64, self.output());
                let hidden = cin * expansion as u64;
                let expand = if expansion > 1 {
                    cin * hidden * (self.input.height * self.input.width) as u64
                } else {
                    0
                };
                let pixels = (out.height * out.width) as u64;
                expand
                    + hidden * (kernel * kernel) as u64 * pixels
                    + hidden * out.channels as u64 * pixels
            }
        }
    }

    /// Latency-table key of `op` in this layer; `None` for identity.
    pub fn block(&self, op: Op) -> Option<BlockKey> {
        match op {
            Op::Identity => None,
            Op::MbConv { kernel, expansion } => Some(BlockKey::MbConv {
                input: self.input,
                kernel,
                expansion,
                out_channels: self.out_channels,
                stride: self.stride,
            }),
        }
    }
}

/// A validated search space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Space {
    name: Option<String>,
    input: Shape,
    num_classes: usize,
    stem: Stem,
    stages: Vec<Stage>,
    head: Head,
    layers: Vec<Layer>,
}

impl Space {
    /// Reads and validates a space file.
    pub fn load(path: impl AsRef<Path>) -> Result<Space, SpaceError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Read {
            origin: origin.clone(),
            cause: source,
        })?;
        Space::from_yaml_str(&text, &origin)
    }

    /// Parses and validates YAML; `origin` names the text in errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Space, SpaceError> {
        let raw: RawSpace = serde_yaml_ng::from_str(text).map_err(|source| SpaceError::Yaml {
            origin: origin.to_string(),
            cause: source,
        })?;
        Space::from_raw(raw, origin)
    }

    /// Validates a raw space; `origin` names it in errors.
    pub fn from_raw(raw: RawSpace, origin: &str) -> Result<Space, SpaceError> {
        validate::validate(raw, origin)
    }

    /// The same backbone with new candidate lists, one per searchable layer
    /// (e.g. after pruning). The result is validated like a file.
    pub fn with_layer_ops(&self, layer_ops: &[Vec<Op>]) -> Result<Space, SpaceError> {
        if layer_ops.len() != self.layers.len() {
            return Err(SpaceError::Invalid {
                origin: IN_MEMORY.to_string(),
                key: "layers".to_string(),
                message: format!(
                    "{} op lists given for {} searchable layers",
                    layer_ops.len(),
                    self.layers.len()
                ),
            });
        }
        let mut raw = self.to_raw();
        let mut next = layer_ops.iter();
        for (raw_stage, stage) in raw.stages.iter_mut().zip(&self.stages) {
            let lists: Vec<Vec<String>> = next
                .by_ref()
                .take(stage.layers.len())
                .map(|ops| ops.iter().map(Op::to_string).collect())
                .collect();
            raw_stage.first_ops = None;
            raw_stage.ops = None;
            raw_stage.num_layers = Some(lists.len());
            raw_stage.layers = Some(lists);
        }
        Space::from_raw(raw, IN_MEMORY)
    }

    /// Free-form name from the file, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Input image shape.
    pub fn input(&self) -> Shape {
        self.input
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The stem.
    pub fn stem(&self) -> &Stem {
        &self.stem
    }

    /// Shape after the stem (input of the first searchable layer).
    pub fn stem_output(&self) -> Shape {
        self.input.after_conv(self.stem.channels, self.stem.stride)
    }

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Shape entering the head (output of the last searchable layer).
    pub fn head_input(&self) -> Shape {
        self.layers
            .last()
            .map_or_else(|| self.stem_output(), Layer::output)
    }

    /// Every searchable layer, in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Candidate ops of every layer, in order (what pruning edits).
    pub fn layer_ops(&self) -> Vec<Vec<Op>> {
        self.layers.iter().map(|l| l.ops.clone()).collect()
    }

    /// Number of distinct architectures, as a float (never overflows).
    pub fn num_architectures(&self) -> f64 {
        self.layers.iter().map(|l| l.ops.len() as f64).product()
    }

    /// Number of distinct architectures exactly; `None` past `u128::MAX`.
    pub fn num_architectures_exact(&self) -> Option<u128> {
        self.layers
            .iter()
            .try_fold(1u128, |acc, l| acc.checked_mul(l.ops.len() as u128))
    }

    /// Latency-table key of the stem.
    pub fn stem_block(&self) -> BlockKey {
        BlockKey::Stem {
            input: self.input,
            kernel: self.stem.kernel,
            out_channels: self.stem.channels,
            stride: self.stem.stride,
            activation: self.stem.activation,
        }
    }

    /// Latency-table key of the head.
    pub fn head_block(&self) -> BlockKey {
        BlockKey::Head {
            input: self.head_input(),
            channels: self.head.channels,
            num_classes: self.num_classes,
            activation: self.head.activation,
        }
    }

    /// Every distinct block any architecture of the space can contain: the
    /// stem, the head, and each (op, input shape, out channels, stride) of
    /// the layers. Identity has no entry.
    pub fn unique_blocks(&self) -> BTreeSet<BlockKey> {
        let mut set = BTreeSet::new();
        set.insert(self.stem_block());
        set.insert(self.head_block());
        for l in &self.layers {
            set.extend(l.ops.iter().filter_map(|&op| l.block(op)));
        }
        set
    }
}

impl TryFrom<RawSpace> for Space {
    type Error = SpaceError;

    fn try_from(raw: RawSpace) -> Result<Self, Self::Error> {
        validate::validate(raw, IN_MEMORY)
    }
}

/// Formats a count of architectures the way the paper prints it, e.g. `6.6e17`.
pub fn format_count(n: f64) -> String {
    format!("{n:.1e}")
}
