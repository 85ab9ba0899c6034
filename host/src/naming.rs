//! The names of a network's parameters: where an op sits ([`Site`]), which
//! of its parameterised parts ([`Part`]), and the dotted path both give
//! ([`ParamRef`], `layers.3.k5e6.expand`). The ONNX writer names tensors
//! with it and the supernet keys its checkpoints by it, so an exported file
//! and a checkpoint agree on every name.

use std::fmt;

use crate::space::Op;

/// Where a parameterised op sits in the network; displays as `stem`,
/// `layers.3.k5e6`, `head`, `classifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// The stem conv.
    Stem,
    /// Searchable layer `index` running `op`. A lone block written by
    /// [`write_block`](crate::onnx::write_block) is layer 0.
    Layer {
        /// Index of the layer among the searchable layers.
        index: usize,
        /// The op chosen there (each candidate has its own weights in a supernet).
        op: Op,
    },
    /// The head's 1×1 conv.
    Head,
    /// The final fully connected layer.
    Classifier,
}

/// Which parameterised op of a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The single conv of the stem or head.
    Conv,
    /// MBConv 1×1 expansion.
    Expand,
    /// MBConv depthwise k×k.
    Depthwise,
    /// MBConv 1×1 projection.
    Project,
    /// Fully connected.
    Fc,
}

/// Names one conv (with its BN) or the fully connected layer. Displays as a
/// dotted path: `stem.conv`, `layers.3.k5e6.expand`, `head.conv`,
/// `classifier.fc`; the same path prefixes the tensor names in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamRef {
    /// Where.
    pub site: Site,
    /// Which op there.
    pub part: Part,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Stem => f.write_str("stem"),
            Site::Layer { index, op } => write!(f, "layers.{index}.{op}"),
            Site::Head => f.write_str("head"),
            Site::Classifier => f.write_str("classifier"),
        }
    }
}

impl fmt::Display for ParamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.site)?;
        f.write_str(match self.part {
            Part::Conv => ".conv",
            Part::Expand => ".expand",
            Part::Depthwise => ".depthwise",
            Part::Project => ".project",
            Part::Fc => ".fc",
        })
    }
}
