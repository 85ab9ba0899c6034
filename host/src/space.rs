//! Search spaces: the backbone (input, stem, stages, head), the candidate ops
//! of every searchable layer, architectures (one op per layer), and the
//! unique blocks that key the latency table.
//!
//! A space is read from YAML (see `configs/spaces/`) into a raw serde form
//! ([`RawSpace`]) and validated into [`Space`]; every error names the file and
//! the key path. A *layer-wise* space (a different op subset per layer, as
//! left by pruning) is the same schema with per-layer lists, so pruning can
//! write its result back with [`Space::to_yaml`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

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

// ---------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------

/// A candidate operation of a searchable layer.
///
/// Written `k{kernel}e{expansion}` (e.g. `k3e6`) or `id`. Values built by
/// parsing are always valid (odd kernel ≥ 1, expansion ≥ 1); a value built
/// by hand is checked when it enters a [`Space`].
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

// ---------------------------------------------------------------------------
// Raw (serde) form
// ---------------------------------------------------------------------------

/// The space as written in YAML, before validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpace {
    /// Free-form name; not part of the hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Input image shape.
    pub input: RawInput,
    /// Outputs of the final fully connected layer.
    pub num_classes: usize,
    /// First (fixed) convolution.
    pub stem: RawStem,
    /// Searchable stages, in order.
    pub stages: Vec<RawStage>,
    /// Fixed head: 1×1 conv, global average pool, fully connected.
    pub head: RawHead,
}

/// Input image shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// Image channels (3 for RGB, 1 for grey).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

/// Stem convolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStem {
    /// Kernel size (odd).
    pub kernel: usize,
    /// Output channels.
    pub channels: usize,
    /// Stride, 1 or 2.
    pub stride: usize,
    /// Activation; `relu6` when absent.
    #[serde(default)]
    pub activation: Option<Activation>,
}

/// One stage: layers sharing an output width.
///
/// Ops stay text (`k3e6`, `id`) here and are parsed during validation, so an
/// error can name the exact list element (serde only names the list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    /// Output channels of every layer in the stage.
    pub channels: usize,
    /// Number of searchable layers; may be left out when `layers` is given.
    #[serde(default)]
    pub num_layers: Option<usize>,
    /// Stride of the first layer (1 or 2); the others have stride 1.
    pub stride: usize,
    /// Candidates of the first layer; `ops` when absent.
    #[serde(default)]
    pub first_ops: Option<Vec<String>>,
    /// Candidates of the other layers (and of the first when `first_ops` is absent).
    #[serde(default)]
    pub ops: Option<Vec<String>>,
    /// Candidates per layer (a layer-wise space); excludes `first_ops`/`ops`.
    #[serde(default)]
    pub layers: Option<Vec<Vec<String>>>,
}

/// Head: 1×1 conv, global average pool, fully connected to `num_classes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHead {
    /// Output channels of the 1×1 conv.
    pub channels: usize,
    /// Activation; `relu6` when absent.
    #[serde(default)]
    pub activation: Option<Activation>,
}

// ---------------------------------------------------------------------------
// Typed form
// ---------------------------------------------------------------------------

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
        validate(raw, origin)
    }

    /// The raw form, with each stage written as compactly as it allows:
    /// `first_ops` + `ops` when the other layers share their candidates, a
    /// per-layer `layers` list otherwise.
    pub fn to_raw(&self) -> RawSpace {
        RawSpace {
            name: self.name.clone(),
            input: RawInput {
                channels: self.input.channels,
                height: self.input.height,
                width: self.input.width,
            },
            num_classes: self.num_classes,
            stem: RawStem {
                kernel: self.stem.kernel,
                channels: self.stem.channels,
                stride: self.stem.stride,
                activation: Some(self.stem.activation),
            },
            stages: self.stages.iter().map(compact_stage).collect(),
            head: RawHead {
                channels: self.head.channels,
                activation: Some(self.head.activation),
            },
        }
    }

    /// YAML that [`Space::from_yaml_str`] reads back into an equal space.
    ///
    /// Written by hand rather than through serde so op lists stay on one
    /// line (`[k3e3, k5e6, id]`), which keeps saved layer-wise spaces readable.
    pub fn to_yaml(&self) -> String {
        use fmt::Write as _;
        let raw = self.to_raw();
        let list = |ops: &[String]| format!("[{}]", ops.join(", "));
        let act = |a: Option<Activation>| a.unwrap_or(Activation::Relu6);
        let mut s = String::new();
        // `write!` into a String cannot fail.
        if let Some(name) = &raw.name {
            // A JSON string is a valid YAML double-quoted scalar.
            let quoted = serde_json::to_string(name).unwrap_or_default();
            let _ = writeln!(s, "name: {quoted}");
        }
        let _ = writeln!(
            s,
            "input: {{ channels: {}, height: {}, width: {} }}",
            raw.input.channels, raw.input.height, raw.input.width
        );
        let _ = writeln!(s, "num_classes: {}", raw.num_classes);
        let _ = writeln!(
            s,
            "stem: {{ kernel: {}, channels: {}, stride: {}, activation: {} }}",
            raw.stem.kernel,
            raw.stem.channels,
            raw.stem.stride,
            act(raw.stem.activation)
        );
        let _ = writeln!(s, "stages:");
        for st in &raw.stages {
            let _ = writeln!(s, "  - channels: {}", st.channels);
            if let Some(n) = st.num_layers {
                let _ = writeln!(s, "    num_layers: {n}");
            }
            let _ = writeln!(s, "    stride: {}", st.stride);
            if let Some(ops) = &st.first_ops {
                let _ = writeln!(s, "    first_ops: {}", list(ops));
            }
            if let Some(ops) = &st.ops {
                let _ = writeln!(s, "    ops: {}", list(ops));
            }
            if let Some(layers) = &st.layers {
                let _ = writeln!(s, "    layers:");
                for ops in layers {
                    let _ = writeln!(s, "      - {}", list(ops));
                }
            }
        }
        let _ = writeln!(
            s,
            "head: {{ channels: {}, activation: {} }}",
            raw.head.channels,
            act(raw.head.activation)
        );
        s
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

    /// Stable structural hash: 16 hex digits of FNV-1a (64 bit) over a
    /// canonical text of the input, stem, every layer's shape and candidates,
    /// head and classes. The name is left out so renaming a file keeps its
    /// latency tables valid.
    pub fn hash(&self) -> String {
        format!("{:016x}", fnv1a64(self.canonical_text().as_bytes()))
    }

    fn canonical_text(&self) -> String {
        use fmt::Write as _;
        let mut s = String::from("padnas-space v1\n");
        let _ = writeln!(s, "input {} classes {}", self.input, self.num_classes);
        let st = &self.stem;
        let _ = writeln!(
            s,
            "stem k{} c{} s{} {}",
            st.kernel, st.channels, st.stride, st.activation
        );
        for l in &self.layers {
            let ops: Vec<String> = l.ops.iter().map(Op::to_string).collect();
            let _ = writeln!(
                s,
                "layer {} stage {}.{} in {} out {} s{} ops {}",
                l.index,
                l.stage,
                l.position,
                l.input,
                l.out_channels,
                l.stride,
                ops.join(",")
            );
        }
        let _ = writeln!(s, "head c{} {}", self.head.channels, self.head.activation);
        s
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

    /// Blocks an architecture runs, in order (stem, layers without
    /// identities, head): its latency is the sum of their table entries.
    pub fn arch_blocks(&self, arch: &Arch) -> Result<Vec<BlockKey>, SpaceError> {
        self.check_arch(arch)?;
        let mut blocks = vec![self.stem_block()];
        blocks.extend(
            self.layers
                .iter()
                .zip(&arch.ops)
                .filter_map(|(l, &op)| l.block(op)),
        );
        blocks.push(self.head_block());
        Ok(blocks)
    }

    /// Checks that `arch` has one op per layer, each among that layer's candidates.
    pub fn check_arch(&self, arch: &Arch) -> Result<(), SpaceError> {
        self.arch_indices(arch).map(|_| ())
    }

    /// Parses an architecture and checks it against the space.
    pub fn parse_arch(&self, text: &str) -> Result<Arch, SpaceError> {
        let arch: Arch = text.parse()?;
        self.check_arch(&arch)?;
        Ok(arch)
    }

    /// Position of each chosen op in its layer's candidate list.
    pub fn arch_indices(&self, arch: &Arch) -> Result<Vec<usize>, SpaceError> {
        if arch.ops.len() != self.layers.len() {
            return Err(SpaceError::Arch(format!(
                "{} ops given, the space has {} searchable layers",
                arch.ops.len(),
                self.layers.len()
            )));
        }
        self.layers
            .iter()
            .zip(&arch.ops)
            .map(|(l, op)| {
                l.ops.iter().position(|c| c == op).ok_or_else(|| {
                    let cands: Vec<String> = l.ops.iter().map(Op::to_string).collect();
                    SpaceError::Arch(format!(
                        "layer {}: {op} is not a candidate (candidates: {})",
                        l.index,
                        cands.join(",")
                    ))
                })
            })
            .collect()
    }

    /// The architecture choosing candidate `indices[i]` in layer `i`.
    pub fn arch_from_indices(&self, indices: &[usize]) -> Result<Arch, SpaceError> {
        if indices.len() != self.layers.len() {
            return Err(SpaceError::Arch(format!(
                "{} indices given, the space has {} searchable layers",
                indices.len(),
                self.layers.len()
            )));
        }
        let ops = self
            .layers
            .iter()
            .zip(indices)
            .map(|(l, &i)| {
                l.ops.get(i).copied().ok_or_else(|| {
                    SpaceError::Arch(format!(
                        "layer {}: index {i} out of range ({} candidates)",
                        l.index,
                        l.ops.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arch { ops })
    }

    /// Candidate indices drawn uniformly per layer.
    pub fn sample_indices<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<usize> {
        // Drawn as u32 so a seed gives the same path on 32- and 64-bit hosts.
        self.layers
            .iter()
            .map(|l| rng.random_range(0..l.ops.len() as u32) as usize)
            .collect()
    }

    /// An architecture drawn uniformly per layer.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Arch {
        let idx = self.sample_indices(rng);
        Arch {
            ops: self.layers.iter().zip(idx).map(|(l, i)| l.ops[i]).collect(),
        }
    }

    /// An architecture drawn from a fresh `ChaCha8Rng` seeded with `seed`.
    pub fn sample_seeded(&self, seed: u64) -> Arch {
        self.sample(&mut ChaCha8Rng::seed_from_u64(seed))
    }
}

impl TryFrom<RawSpace> for Space {
    type Error = SpaceError;

    fn try_from(raw: RawSpace) -> Result<Self, Self::Error> {
        validate(raw, IN_MEMORY)
    }
}

/// Formats a count of architectures the way the paper prints it, e.g. `6.6e17`.
pub fn format_count(n: f64) -> String {
    format!("{n:.1e}")
}

fn compact_stage(stage: &Stage) -> RawStage {
    let n = stage.layers.len();
    let mut raw = RawStage {
        channels: stage.channels,
        num_layers: Some(n),
        stride: stage.stride,
        first_ops: None,
        ops: None,
        layers: None,
    };
    let text = |ops: &[Op]| ops.iter().map(Op::to_string).collect::<Vec<_>>();
    match stage.layers.split_first() {
        Some((first, [])) => raw.first_ops = Some(text(first)),
        Some((first, rest)) if rest.iter().all(|ops| ops == &rest[0]) => {
            raw.first_ops = Some(text(first));
            raw.ops = Some(text(&rest[0]));
        }
        _ => raw.layers = Some(stage.layers.iter().map(|ops| text(ops)).collect()),
    }
    raw
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

fn validate(raw: RawSpace, origin: &str) -> Result<Space, SpaceError> {
    let invalid = |key: String, message: String| SpaceError::Invalid {
        origin: origin.to_string(),
        key,
        message,
    };
    let positive = |key: &str, v: usize| {
        if v == 0 {
            Err(invalid(key.to_string(), "must be ≥ 1".to_string()))
        } else {
            Ok(())
        }
    };
    let stride_ok = |key: String, v: usize| {
        if v == 1 || v == 2 {
            Ok(())
        } else {
            Err(invalid(key, format!("must be 1 or 2, got {v}")))
        }
    };

    positive("input.channels", raw.input.channels)?;
    positive("input.height", raw.input.height)?;
    positive("input.width", raw.input.width)?;
    positive("num_classes", raw.num_classes)?;
    if raw.stem.kernel.is_multiple_of(2) {
        return Err(invalid(
            "stem.kernel".into(),
            format!("must be odd, got {}", raw.stem.kernel),
        ));
    }
    positive("stem.channels", raw.stem.channels)?;
    stride_ok("stem.stride".into(), raw.stem.stride)?;
    positive("head.channels", raw.head.channels)?;
    if raw.stages.is_empty() {
        return Err(invalid(
            "stages".into(),
            "at least one stage is needed".into(),
        ));
    }

    let input = Shape::new(raw.input.channels, raw.input.height, raw.input.width);
    let stem = Stem {
        kernel: raw.stem.kernel,
        channels: raw.stem.channels,
        stride: raw.stem.stride,
        activation: raw.stem.activation.unwrap_or(Activation::Relu6),
    };
    let mut shape = input.after_conv(stem.channels, stem.stride);
    let mut stages = Vec::with_capacity(raw.stages.len());
    let mut layers = Vec::new();

    for (si, st) in raw.stages.into_iter().enumerate() {
        let at = |k: &str| format!("stages[{si}].{k}");
        positive(&at("channels"), st.channels)?;
        stride_ok(at("stride"), st.stride)?;

        // Each layer's candidates, with the key they came from for errors.
        let lists: Vec<(String, Vec<String>)> = if let Some(per_layer) = st.layers {
            if st.first_ops.is_some() || st.ops.is_some() {
                return Err(invalid(
                    at("layers"),
                    "cannot be combined with first_ops/ops".into(),
                ));
            }
            if let Some(n) = st.num_layers
                && n != per_layer.len()
            {
                return Err(invalid(
                    at("layers"),
                    format!("has {} entries but num_layers is {n}", per_layer.len()),
                ));
            }
            if per_layer.is_empty() {
                return Err(invalid(
                    at("layers"),
                    "a stage needs at least one layer".into(),
                ));
            }
            per_layer
                .into_iter()
                .enumerate()
                .map(|(i, ops)| (at(&format!("layers[{i}]")), ops))
                .collect()
        } else {
            let n = st.num_layers.ok_or_else(|| {
                invalid(
                    format!("stages[{si}]"),
                    "missing num_layers (or layers)".into(),
                )
            })?;
            positive(&at("num_layers"), n)?;
            let first = match (st.first_ops, &st.ops) {
                (Some(f), _) => (at("first_ops"), f),
                (None, Some(o)) => (at("ops"), o.clone()),
                (None, None) => {
                    return Err(invalid(
                        format!("stages[{si}]"),
                        "missing first_ops (or ops)".into(),
                    ));
                }
            };
            let mut lists = vec![first];
            match (n, st.ops) {
                (1, Some(_)) if lists[0].0 == at("first_ops") => {
                    return Err(invalid(
                        at("ops"),
                        "unused: the stage has a single layer".into(),
                    ));
                }
                (1, _) => {}
                (_, Some(o)) => lists.extend((1..n).map(|_| (at("ops"), o.clone()))),
                (_, None) => {
                    return Err(invalid(
                        format!("stages[{si}]"),
                        format!("missing ops for layers 1..{n}"),
                    ));
                }
            }
            lists
        };

        let mut stage_layers = Vec::with_capacity(lists.len());
        for (position, (key, tokens)) in lists.into_iter().enumerate() {
            let ops = tokens
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    t.parse::<Op>()
                        .map_err(|e| invalid(format!("{key}[{j}]"), e.to_string()))
                })
                .collect::<Result<Vec<Op>, _>>()?;
            let stride = if position == 0 { st.stride } else { 1 };
            let layer = Layer {
                index: layers.len(),
                stage: si,
                position,
                input: shape,
                out_channels: st.channels,
                stride,
                ops,
            };
            check_layer_ops(&layer, &key).map_err(|(k, m)| invalid(k, m))?;
            shape = layer.output();
            stage_layers.push(layer.ops.clone());
            layers.push(layer);
        }
        stages.push(Stage {
            channels: st.channels,
            stride: st.stride,
            layers: stage_layers,
        });
    }

    Ok(Space {
        name: raw.name,
        input,
        num_classes: raw.num_classes,
        stem,
        stages,
        head: Head {
            channels: raw.head.channels,
            activation: raw.head.activation.unwrap_or(Activation::Relu6),
        },
        layers,
    })
}

/// Checks one layer's candidates; the error carries the key of the culprit.
fn check_layer_ops(layer: &Layer, key: &str) -> Result<(), (String, String)> {
    if layer.ops.is_empty() {
        return Err((key.to_string(), "a layer needs at least one op".into()));
    }
    for (j, op) in layer.ops.iter().enumerate() {
        let item = format!("{key}[{j}]");
        op.check().map_err(|e| (item.clone(), e.to_string()))?;
        if layer.ops[..j].contains(op) {
            return Err((item, format!("duplicate op {op}")));
        }
        if op.is_identity() {
            let why = if layer.position == 0 {
                Some("the first layer of a stage".to_string())
            } else if !layer.keeps_shape() {
                Some(format!(
                    "a layer that changes shape ({} → {} channels, stride {})",
                    layer.input.channels, layer.out_channels, layer.stride
                ))
            } else {
                None
            };
            if let Some(why) = why {
                // The first layer falls back to `ops` when `first_ops` is absent.
                let hint = if layer.position == 0 && key.ends_with(".ops") {
                    " (without first_ops, the first layer takes ops: give first_ops)"
                } else {
                    ""
                };
                return Err((item, format!("identity is not allowed in {why}{hint}")));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Architectures
// ---------------------------------------------------------------------------

/// One chosen op per searchable layer; text form `k3e6,k5e3,id,…`.
///
/// Parsing checks only the syntax; [`Space::check_arch`] (or
/// [`Space::parse_arch`]) checks it against a space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Arch {
    /// The op of each layer.
    pub ops: Vec<Op>,
}

impl Arch {
    /// Wraps a list of ops.
    pub fn new(ops: Vec<Op>) -> Self {
        Arch { ops }
    }

    /// Number of identity layers (skipped blocks).
    pub fn num_identities(&self) -> usize {
        self.ops.iter().filter(|op| op.is_identity()).count()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}")?;
        }
        Ok(())
    }
}

impl FromStr for Arch {
    type Err = SpaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(SpaceError::Arch("empty architecture".into()));
        }
        let ops = s
            .split(',')
            .enumerate()
            .map(|(i, t)| {
                t.trim()
                    .parse()
                    .map_err(|e| SpaceError::Arch(format!("layer {i}: {e}")))
            })
            .collect::<Result<Vec<Op>, _>>()?;
        Ok(Arch { ops })
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for Arch {
    type Error = SpaceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

// ---------------------------------------------------------------------------
// Latency-table keys
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    fn spaces_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/spaces")
    }

    fn load(name: &str) -> Space {
        match Space::load(spaces_dir().join(name)) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    const TINY: &str = "
input: { channels: 3, height: 32, width: 32 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 1 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - channels: 16
    num_layers: 3
    stride: 2
    first_ops: [k3e3, k5e6]
    ops: [k3e3, k5e6, id]
head: { channels: 32 }
";

    fn tiny() -> Space {
        Space::from_yaml_str(TINY, "tiny.yaml").expect("tiny space")
    }

    fn err(text: &str) -> String {
        match Space::from_yaml_str(text, "x.yaml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn op_text_round_trips_and_rejects_junk() {
        for t in ["k3e6", "k5e3", "k7e1", "k1e1", "id", "k11e12"] {
            let op: Op = t.parse().unwrap();
            assert_eq!(op.to_string(), t);
        }
        for t in [
            "k4e3", "k3e0", "k0e1", "k03e6", "K3E6", "k3", "e6", "identity", "", "k3e6 ",
        ] {
            assert!(t.parse::<Op>().is_err(), "{t:?} accepted");
        }
        let e = "k4e3".parse::<Op>().unwrap_err().to_string();
        assert!(e.contains("unknown op \"k4e3\""), "{e}");
    }

    #[test]
    fn shipped_spaces_have_the_paper_counts() {
        let basic = load("proxyless-basic.yaml");
        assert_eq!(basic.layers().len(), 22);
        let expect = 3u128 * 6u128.pow(6) * 7u128.pow(15);
        assert_eq!(basic.num_architectures_exact(), Some(expect));
        assert_eq!(format_count(basic.num_architectures()), "6.6e17");
        assert_eq!(basic.head_input(), Shape::new(320, 7, 7));

        let large = load("proxyless-large.yaml");
        assert_eq!(large.layers().len(), 22);
        let expect = 3u128 * 18u128.pow(6) * 19u128.pow(15);
        assert_eq!(large.num_architectures_exact(), Some(expect));
        assert_eq!(format_count(large.num_architectures()), "1.5e27");

        let small = load("fmnist-small.yaml");
        assert!((8..=10).contains(&small.layers().len()));
        assert_eq!(small.input(), Shape::new(1, 28, 28));
        assert_eq!(small.num_classes(), 10);
        assert!(small.layers().iter().any(|l| l.ops.contains(&Op::Identity)));
    }

    #[test]
    fn paper_first_block_has_expansion_one() {
        let basic = load("proxyless-basic.yaml");
        let first = &basic.layers()[0];
        assert_eq!(first.input, Shape::new(32, 112, 112));
        assert!(
            first
                .ops
                .iter()
                .all(|op| matches!(op, Op::MbConv { expansion: 1, .. }))
        );
    }

    #[test]
    fn layers_track_shapes() {
        let s = tiny();
        let l = s.layers();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].input, Shape::new(8, 32, 32));
        assert_eq!(
            (l[1].input, l[1].stride, l[1].out_channels),
            (Shape::new(8, 32, 32), 2, 16)
        );
        assert_eq!(l[2].input, Shape::new(16, 16, 16));
        assert_eq!((l[3].stride, l[3].position, l[3].stage), (1, 2, 1));
        assert_eq!(s.head_input(), Shape::new(16, 16, 16));
        assert_eq!(s.num_architectures_exact(), Some(2 * 3 * 3));
    }

    #[test]
    fn odd_sizes_round_up_under_stride_two() {
        assert_eq!(Shape::new(4, 7, 7).after_conv(8, 2), Shape::new(8, 4, 4));
        assert_eq!(
            Shape::new(4, 224, 224).after_conv(8, 2),
            Shape::new(8, 112, 112)
        );
    }

    #[test]
    fn yaml_round_trips_including_layer_wise() {
        for name in [
            "proxyless-basic.yaml",
            "proxyless-large.yaml",
            "fmnist-small.yaml",
        ] {
            let s = load(name);
            let back = Space::from_yaml_str(&s.to_yaml(), "round-trip").unwrap();
            assert_eq!(back, s, "{name}");
            assert_eq!(back.hash(), s.hash());
        }
        // A pruned, layer-wise space.
        let s = tiny();
        let mut ops = s.layer_ops();
        ops[2] = vec![Op::Identity];
        ops[3] = vec![
            Op::MbConv {
                kernel: 5,
                expansion: 6,
            },
            Op::Identity,
        ];
        let pruned = s.with_layer_ops(&ops).unwrap();
        assert_eq!(pruned.layer_ops(), ops);
        let yaml = pruned.to_yaml();
        assert!(yaml.contains("layers:"), "{yaml}");
        let back = Space::from_yaml_str(&yaml, "pruned").unwrap();
        assert_eq!(back, pruned);
        assert_ne!(pruned.hash(), s.hash());
    }

    #[test]
    fn hash_is_stable_and_ignores_the_name() {
        let s = tiny();
        assert_eq!(s.hash().len(), 16);
        // Pinned: latency tables on disk record it, so it must not drift.
        assert_eq!(s.hash(), "983bfc39b1758449");
        assert_eq!(load("proxyless-basic.yaml").hash(), "804561a6a653f0d1");
        let renamed = Space::from_yaml_str(&format!("name: other\n{TINY}"), "r").unwrap();
        assert_eq!(renamed.hash(), s.hash());
        let wider =
            Space::from_yaml_str(&TINY.replace("channels: 32", "channels: 64"), "w").unwrap();
        assert_ne!(wider.hash(), s.hash());
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = err(&TINY.replace("ops: [k3e3, k5e6, id]", "ops: [k3e3, k4e3]"));
        assert!(
            e.starts_with("x.yaml: stages[1].ops[1]: unknown op \"k4e3\""),
            "{e}"
        );

        let e = err(&TINY.replace("first_ops: [k3e3, k5e6]", "first_ops: [k3e3, id]"));
        assert!(
            e.starts_with("x.yaml: stages[1].first_ops[1]: identity"),
            "{e}"
        );

        let e = err(&TINY.replace("    first_ops: [k3e3, k5e6]\n", ""));
        assert!(
            e.starts_with("x.yaml: stages[1].ops[2]: identity") && e.contains("give first_ops"),
            "{e}"
        );

        let e = err(&TINY.replace("first_ops: [k3e3, k5e6]", "first_ops: []"));
        assert!(
            e.starts_with("x.yaml: stages[1].first_ops: a layer needs"),
            "{e}"
        );

        let e = err(&TINY.replace("ops: [k3e3, k5e6, id]", "ops: [k3e3, id, k3e3]"));
        assert!(
            e.starts_with("x.yaml: stages[1].ops[2]: duplicate op k3e3"),
            "{e}"
        );

        let e = err(&TINY.replace("stride: 2", "stride: 3"));
        assert!(
            e.starts_with("x.yaml: stages[1].stride: must be 1 or 2"),
            "{e}"
        );

        let e = err(&TINY.replace("kernel: 3", "kernel: 4"));
        assert!(e.starts_with("x.yaml: stem.kernel: must be odd"), "{e}");

        let e = err(&TINY.replace("k3e3, k5e6]", "k3e0, k5e6]"));
        assert!(
            e.contains("stages[1].first_ops[0]") && e.contains("k3e0"),
            "{e}"
        );

        let e = err(&TINY.replace("num_layers: 3", "num_layer: 3"));
        assert!(
            e.starts_with("x.yaml: stages[1]: unknown field `num_layer`"),
            "{e}"
        );

        let e = err(&format!("{TINY}extra: 1\n"));
        assert!(e.contains("unknown field `extra`"), "{e}");

        let e = err(&TINY.replace("    ops: [k3e3, k5e6, id]\n", ""));
        assert!(e.starts_with("x.yaml: stages[1]: missing ops"), "{e}");

        let e = err(&TINY.replace("first_ops: [k3e1] }", "first_ops: [k3e1], ops: [k3e1] }"));
        assert!(e.starts_with("x.yaml: stages[0].ops: unused"), "{e}");

        let e = err(&TINY.replace("num_layers: 1, ", ""));
        assert!(
            e.starts_with("x.yaml: stages[0]: missing num_layers"),
            "{e}"
        );
    }

    #[test]
    fn identity_only_where_shape_is_kept() {
        // Stride 1 and same width, but the first layer of the stage.
        let text = TINY.replace("first_ops: [k3e1] }", "first_ops: [k3e1, id] }");
        let e = err(&text);
        assert!(
            e.contains("stages[0].first_ops[1]: identity is not allowed in the first layer"),
            "{e}"
        );
    }

    #[test]
    fn layer_wise_form_reads_and_checks() {
        let text = TINY.replace(
            "    num_layers: 3\n    stride: 2\n    first_ops: [k3e3, k5e6]\n    ops: [k3e3, k5e6, id]\n",
            "    stride: 2\n    layers:\n      - [k5e6]\n      - [k3e3, id]\n      - [id]\n",
        );
        let s = Space::from_yaml_str(&text, "lw.yaml").unwrap();
        assert_eq!(s.num_architectures_exact(), Some(2));
        assert_eq!(s.layers()[3].ops, vec![Op::Identity]);

        let e = err(&text.replace("      - [id]\n", "      - [id]\n    num_layers: 2\n"));
        assert!(
            e.contains("stages[1].layers: has 3 entries but num_layers is 2"),
            "{e}"
        );
        let e = err(&text.replace("      - [k5e6]", "      - [k5e6, id]"));
        assert!(e.contains("stages[1].layers[0][1]: identity"), "{e}");
        let e = err(&text.replace("    stride: 2\n", "    stride: 2\n    ops: [k3e3]\n"));
        assert!(e.contains("stages[1].layers: cannot be combined"), "{e}");
    }

    #[test]
    fn arch_text_validation_and_indices() {
        let s = tiny();
        let a = s.parse_arch("k3e1,k5e6,id,k3e3").unwrap();
        assert_eq!(a.to_string(), "k3e1,k5e6,id,k3e3");
        assert_eq!(a.num_identities(), 1);
        assert_eq!(s.arch_indices(&a).unwrap(), vec![0, 1, 2, 0]);
        assert_eq!(s.arch_from_indices(&[0, 1, 2, 0]).unwrap(), a);
        assert!(s.arch_from_indices(&[0, 2, 0, 0]).is_err());
        assert!(s.parse_arch("k3e1,k5e6,id").is_err(), "too short");
        assert!(
            s.parse_arch("k3e1,id,id,k3e3").is_err(),
            "identity in first layer"
        );
        assert!(
            s.parse_arch("k3e1,k7e6,id,k3e3").is_err(),
            "not a candidate"
        );
        assert!(s.parse_arch("k3e1,k5e6,,k3e3").is_err());
        assert!(s.parse_arch("").is_err());
        let e = s.parse_arch("k3e1,k7e6,id,k3e3").unwrap_err().to_string();
        assert!(e.contains("layer 1: k7e6 is not a candidate"), "{e}");
        // Serde goes through the text form.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"k3e1,k5e6,id,k3e3\"");
        assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), a);
    }

    #[test]
    fn sampling_is_seeded_valid_and_uniform_enough() {
        let s = load("proxyless-basic.yaml");
        assert_eq!(s.sample_seeded(7), s.sample_seeded(7));
        assert_ne!(s.sample_seeded(7), s.sample_seeded(8));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0usize; 7];
        for _ in 0..7000 {
            let a = s.sample(&mut rng);
            s.check_arch(&a).unwrap();
            // Layer 2: a non-first layer, seven candidates.
            counts[s.arch_indices(&a).unwrap()[2]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn unique_blocks_cover_every_layer_once() {
        let s = load("proxyless-basic.yaml");
        let blocks = s.unique_blocks();
        assert!(blocks.contains(&s.stem_block()));
        assert!(blocks.contains(&s.head_block()));
        // Layers 2..4 of a stage share (input, out, stride): one key per op.
        // basic: 3 + per stage 6 (first) + 6 (rest, same shape) except the
        // one-layer 320 stage with 6; 5 multi-layer stages.
        assert_eq!(blocks.len(), 2 + 3 + 5 * 12 + 6);
        assert!(blocks.iter().all(|b| b.op() != Some(Op::Identity)));
        for b in &blocks {
            let back: BlockKey = b.to_string().parse().unwrap();
            assert_eq!(&back, b);
        }
        let a = s.sample_seeded(3);
        let used = s.arch_blocks(&a).unwrap();
        assert_eq!(used.len(), 2 + 22 - a.num_identities());
        assert!(used.iter().all(|b| blocks.contains(b)));
    }

    #[test]
    fn block_key_text() {
        let s = load("proxyless-basic.yaml");
        assert_eq!(
            s.stem_block().to_string(),
            "stem:k3:in3x224x224:out32:s2:relu6"
        );
        assert_eq!(
            s.head_block().to_string(),
            "head:in320x7x7:out1280:classes1000:relu6"
        );
        let k = s.layers()[1]
            .block(Op::MbConv {
                kernel: 5,
                expansion: 6,
            })
            .unwrap();
        assert_eq!(k.to_string(), "mbconv:k5e6:in16x112x112:out24:s2");
        assert_eq!(k.output(), Shape::new(24, 56, 56));
        for bad in [
            "mbconv:k5e6:in16x112x112:out24",
            "mbconv:id:in1x1x1:out1:s1",
            "x",
            "mbconv:k5e6:in16x112:out24:s2",
            "mbconv:k5e6:in16x112x112:out024:s2",
        ] {
            assert!(bad.parse::<BlockKey>().is_err(), "{bad}");
        }
    }
}
