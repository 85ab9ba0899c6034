//! The text types of a space: a layer's candidate [`Op`] (`k3e6`, `id`), the
//! stem and head [`Activation`], and feature-map [`Shape`]s (`CxHxW`). Each
//! has one canonical spelling, so hashes and table keys are stable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SpaceError;

/// A candidate operation of a searchable layer.
///
/// Written `k{kernel}e{expansion}` (e.g. `k3e6`) or `id`. Values built by
/// parsing are always valid (odd kernel ≥ 1, expansion ≥ 1); a value built
/// by hand is checked when it enters a [`Space`](super::Space).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Op {
    /// Inverted residual block: 1×1 expand (skipped at expansion 1),
    /// depthwise k×k, 1×1 project, residual when the shape is kept.
    MbConv {
        /// Depthwise kernel size (odd).
        kernel: usize,
        /// Expansion ratio of the hidden channels.
        expansion: usize,
    },
    /// Skip the layer; only legal where the layer keeps its shape.
    Identity,
}

impl Op {
    /// Whether this is [`Op::Identity`].
    pub fn is_identity(&self) -> bool {
        matches!(self, Op::Identity)
    }

    /// Checks the invariants that parsing guarantees, for hand-built values.
    pub fn check(&self) -> Result<(), SpaceError> {
        match *self {
            Op::Identity => Ok(()),
            Op::MbConv { kernel, expansion } => {
                let text = self.to_string();
                if kernel.is_multiple_of(2) {
                    Err(SpaceError::ParseOp {
                        text,
                        reason: "kernel must be odd and ≥ 1",
                    })
                } else if expansion == 0 {
                    Err(SpaceError::ParseOp {
                        text,
                        reason: "expansion must be ≥ 1",
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::MbConv { kernel, expansion } => write!(f, "k{kernel}e{expansion}"),
            Op::Identity => f.write_str("id"),
        }
    }
}

impl FromStr for Op {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| SpaceError::ParseOp {
            text: s.to_string(),
            reason,
        };
        if s == "id" {
            return Ok(Op::Identity);
        }
        let rest = s
            .strip_prefix('k')
            .ok_or_else(|| bad("expected kNeM or id"))?;
        let (k, e) = rest
            .split_once('e')
            .ok_or_else(|| bad("expected kNeM or id"))?;
        let kernel: usize = k.parse().map_err(|_| bad("expected kNeM or id"))?;
        let expansion: usize = e.parse().map_err(|_| bad("expected kNeM or id"))?;
        let op = Op::MbConv { kernel, expansion };
        // One spelling per op keeps hashes, table keys and saved spaces canonical.
        if op.to_string() != s {
            return Err(bad("not in canonical form, e.g. k3e6"));
        }
        op.check()?;
        Ok(op)
    }
}

impl From<Op> for String {
    fn from(op: Op) -> Self {
        op.to_string()
    }
}

impl TryFrom<String> for Op {
    type Error = SpaceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Activation after the stem and head convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `max(x, 0)`.
    Relu,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Relu6 => "relu6",
            Activation::Relu => "relu",
        })
    }
}

impl FromStr for Activation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "relu6" => Ok(Activation::Relu6),
            "relu" => Ok(Activation::Relu),
            _ => Err(format!("unknown activation {s:?} (expected relu6 or relu)")),
        }
    }
}

/// A feature-map shape, batch excluded: channels × height × width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shape {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Shape {
    /// Builds a shape.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Shape {
            channels,
            height,
            width,
        }
    }

    /// Shape after a convolution with `same`-style padding (`kernel / 2` on
    /// each side, odd kernel) and the given stride: spatial sizes round up.
    pub fn after_conv(&self, out_channels: usize, stride: usize) -> Shape {
        Shape {
            channels: out_channels,
            height: self.height.div_ceil(stride),
            width: self.width.div_ceil(stride),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('x').collect();
        let dims: Option<Vec<usize>> = parts.iter().map(|p| p.parse().ok()).collect();
        match dims.as_deref() {
            Some(&[c, h, w]) => Ok(Shape::new(c, h, w)),
            _ => Err(format!("expected CxHxW, got {s:?}")),
        }
    }
}
