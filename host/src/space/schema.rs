//! The space as written in YAML ([`RawSpace`]), the hand-written writer that
//! gives it back ([`Space::to_yaml`]), and the structural hash
//! ([`Space::hash`]) that names a space in latency tables and run records.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Activation, Op, Space, Stage};

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

impl Space {
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

    /// Stable structural hash: 16 hex digits of FNV-1a (64 bit) over a
    /// canonical text of the input, stem, every layer's shape and candidates,
    /// head and classes. The name is left out so renaming a file keeps its
    /// latency tables valid.
    pub fn hash(&self) -> String {
        crate::hash::hex_digest(self.canonical_text().as_bytes())
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
