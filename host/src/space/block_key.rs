//! [`BlockKey`]: the key of a latency-table entry, and its text grammar.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Activation, Op, Shape, SpaceError};

/// A block whose latency is measured on its own: the key of the latency
/// table. Two layers with the same key cost the same, whatever their position.
///
/// Text form (also the serde form, so it can key a JSON map):
/// `stem:k3:in3x224x224:out32:s2:relu6`, `mbconv:k3e6:in24x56x56:out40:s2`,
/// `head:in320x7x7:out1280:classes1000:relu6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum BlockKey {
    /// The stem: conv + BN + activation.
    Stem {
        /// Input shape.
        input: Shape,
        /// Kernel size.
        kernel: usize,
        /// Output channels.
        out_channels: usize,
        /// Stride.
        stride: usize,
        /// Activation.
        activation: Activation,
    },
    /// One MBConv block (expand, depthwise, project, residual if shape kept).
    MbConv {
        /// Input shape.
        input: Shape,
        /// Depthwise kernel size.
        kernel: usize,
        /// Expansion ratio.
        expansion: usize,
        /// Output channels.
        out_channels: usize,
        /// Depthwise stride.
        stride: usize,
    },
    /// The head: 1×1 conv + BN + activation, pool, fully connected.
    Head {
        /// Input shape.
        input: Shape,
        /// Channels of the 1×1 conv.
        channels: usize,
        /// Outputs of the fully connected layer.
        num_classes: usize,
        /// Activation.
        activation: Activation,
    },
}

impl BlockKey {
    /// Input shape of the block.
    pub fn input(&self) -> Shape {
        match *self {
            BlockKey::Stem { input, .. }
            | BlockKey::MbConv { input, .. }
            | BlockKey::Head { input, .. } => input,
        }
    }

    /// Output shape; the head gives `num_classes × 1 × 1` (logits).
    pub fn output(&self) -> Shape {
        match *self {
            BlockKey::Stem {
                input,
                out_channels,
                stride,
                ..
            }
            | BlockKey::MbConv {
                input,
                out_channels,
                stride,
                ..
            } => input.after_conv(out_channels, stride),
            BlockKey::Head { num_classes, .. } => Shape::new(num_classes, 1, 1),
        }
    }

    /// The op of an MBConv block; `None` for stem and head.
    pub fn op(&self) -> Option<Op> {
        match *self {
            BlockKey::MbConv {
                kernel, expansion, ..
            } => Some(Op::MbConv { kernel, expansion }),
            _ => None,
        }
    }
}

impl fmt::Display for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockKey::Stem {
                input,
                kernel,
                out_channels,
                stride,
                activation,
            } => {
                write!(
                    f,
                    "stem:k{kernel}:in{input}:out{out_channels}:s{stride}:{activation}"
                )
            }
            BlockKey::MbConv {
                input,
                kernel,
                expansion,
                out_channels,
                stride,
            } => {
                write!(
                    f,
                    "mbconv:k{kernel}e{expansion}:in{input}:out{out_channels}:s{stride}"
                )
            }
            BlockKey::Head {
                input,
                channels,
                num_classes,
                activation,
            } => {
                write!(
                    f,
                    "head:in{input}:out{channels}:classes{num_classes}:{activation}"
                )
            }
        }
    }
}

impl FromStr for BlockKey {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| SpaceError::ParseBlockKey {
            text: s.to_string(),
            reason,
        };
        let fields: Vec<&str> = s.split(':').collect();
        let num = |field: &str, prefix: &str| -> Result<usize, SpaceError> {
            field
                .strip_prefix(prefix)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("expected {prefix}<number>, got {field:?}")))
        };
        let shape = |field: &str| -> Result<Shape, SpaceError> {
            field
                .strip_prefix("in")
                .ok_or_else(|| bad(format!("expected in<CxHxW>, got {field:?}")))?
                .parse()
                .map_err(bad)
        };
        let key = match fields.as_slice() {
            ["stem", k, i, o, st, a] => BlockKey::Stem {
                input: shape(i)?,
                kernel: num(k, "k")?,
                out_channels: num(o, "out")?,
                stride: num(st, "s")?,
                activation: a.parse().map_err(bad)?,
            },
            ["mbconv", op, i, o, st] => {
                let (kernel, expansion) = match op.parse::<Op>() {
                    Ok(Op::MbConv { kernel, expansion }) => (kernel, expansion),
                    Ok(Op::Identity) => return Err(bad("identity has no block".into())),
                    Err(e) => return Err(bad(e.to_string())),
                };
                BlockKey::MbConv {
                    input: shape(i)?,
                    kernel,
                    expansion,
                    out_channels: num(o, "out")?,
                    stride: num(st, "s")?,
                }
            }
            ["head", i, o, c, a] => BlockKey::Head {
                input: shape(i)?,
                channels: num(o, "out")?,
                num_classes: num(c, "classes")?,
                activation: a.parse().map_err(bad)?,
            },
            _ => return Err(bad("expected stem:…, mbconv:… or head:…".into())),
        };
        // Reject non-canonical spellings (leading zeros, …) so one block has one key.
        if key.to_string() != s {
            return Err(bad("not in canonical form".into()));
        }
        Ok(key)
    }
}

impl From<BlockKey> for String {
    fn from(k: BlockKey) -> Self {
        k.to_string()
    }
}

impl TryFrom<String> for BlockKey {
    type Error = SpaceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
