//! ONNX writer for single blocks (latency profiling, random weights) and
//! whole networks (export, trained weights): one graph builder serves both.
//!
//! Weights come from a [`WeightProvider`], asked per [`ParamRef`] (stem conv,
//! layer 3's `k5e6` expand conv, …). Batch norms are folded into the
//! preceding convolution here, so the file holds plain `Conv` nodes with
//! bias, as an inference engine would fuse them anyway; ReLU6 is `Clip` with
//! its bounds as inputs (opset 13). Shapes are concrete (batch 1) by
//! default because tract runs symbolic shapes far slower, which would skew
//! latency measurements.

use std::fmt;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

use crate::space::{Activation, Arch, BlockKey, Op, Shape, Space, SpaceError};

/// ONNX operator set the writer targets.
pub const OPSET_VERSION: i64 = 13;
/// ONNX IR version of written files.
pub const IR_VERSION: i64 = 8;
/// Name of the graph input (NCHW, f32).
pub const INPUT_NAME: &str = "input";
/// Name of the graph output (feature map for stem/MBConv blocks, logits otherwise).
pub const OUTPUT_NAME: &str = "output";
/// Batch-norm epsilon of [`RandomWeights`] (PyTorch's default).
pub const BN_EPS: f32 = 1e-5;

/// Everything that can go wrong while writing ONNX.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The architecture does not fit the space.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// A weight provider returned tensors of the wrong size or bad values.
    #[error("weights for {name}: {message}")]
    Weights {
        /// The parameter, as [`ParamRef`] displays it.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A block key describes a block that cannot be built.
    #[error("block {key}: {message}")]
    Block {
        /// The key, as text.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The write options are unusable.
    #[error("write options: {0}")]
    Options(String),
}

// ---------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------

/// Where a parameterised op sits in the network; displays as `stem`,
/// `layers.3.k5e6`, `head`, `classifier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// The stem conv.
    Stem,
    /// Searchable layer `index` running `op`. A lone block written by
    /// [`write_block`] is layer 0.
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

/// Geometry of a convolution's weight, `[out, in / groups, k, k]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels (all groups together).
    pub in_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Groups (`in_channels` for depthwise).
    pub groups: usize,
}

impl ConvShape {
    /// ONNX weight dims `[out, in / groups, k, k]`.
    pub fn dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    /// Number of weight elements.
    pub fn weight_len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Inputs feeding one output (for initialisation scales).
    pub fn fan_in(&self) -> usize {
        self.in_channels / self.groups * self.kernel * self.kernel
    }
}

/// A convolution's parameters, row-major in [`ConvShape::dims`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// Weight, `[out, in / groups, k, k]`.
    pub weight: Vec<f32>,
    /// Optional bias, `[out]` (convs followed by BN usually have none).
    pub bias: Option<Vec<f32>>,
}

/// Batch-norm parameters and running statistics, one value per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BnParams {
    /// Scale γ.
    pub gamma: Vec<f32>,
    /// Shift β.
    pub beta: Vec<f32>,
    /// Running mean μ.
    pub mean: Vec<f32>,
    /// Running variance.
    pub var: Vec<f32>,
    /// ε added to the variance.
    pub eps: f32,
}

/// A fully connected layer, `y = W x + b` with `W` row-major `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// Weight, `[out, in]`.
    pub weight: Vec<f32>,
    /// Bias, `[out]`.
    pub bias: Vec<f32>,
}

/// Source of the parameters of a network or block.
///
/// The writer asks, in graph order, for each conv then its BN, and for the
/// classifier; it checks every size. Random weights for profiling come from
/// [`RandomWeights`]; export plugs in an implementation reading a trained
/// checkpoint, mapping each [`ParamRef`] to its own tensor names.
pub trait WeightProvider {
    /// Weight (and optional bias) of the conv at `at`.
    fn conv(&mut self, at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError>;
    /// The batch norm following the conv at `at`.
    fn batch_norm(&mut self, at: ParamRef, channels: usize) -> Result<BnParams, OnnxError>;
    /// The fully connected layer at `at`.
    fn linear(
        &mut self,
        at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError>;
}

/// Seeded random weights: He-normal convs, BN near identity but perturbed so
/// that folding changes the weights, uniform fully connected layer.
#[derive(Clone, Debug)]
pub struct RandomWeights {
    rng: ChaCha8Rng,
}

impl RandomWeights {
    /// A provider whose draws depend only on `seed` and the request order.
    pub fn new(seed: u64) -> Self {
        RandomWeights {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn normal(&mut self) -> f32 {
        // Box–Muller; `1 - u` keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2 = self.rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }
}

impl WeightProvider for RandomWeights {
    fn conv(&mut self, _at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError> {
        let std = (2.0 / shape.fan_in().max(1) as f32).sqrt();
        let weight = (0..shape.weight_len())
            .map(|_| self.normal() * std)
            .collect();
        Ok(ConvParams { weight, bias: None })
    }

    fn batch_norm(&mut self, _at: ParamRef, channels: usize) -> Result<BnParams, OnnxError> {
        Ok(BnParams {
            gamma: self.uniform(channels, 0.75, 1.25),
            beta: self.uniform(channels, -0.1, 0.1),
            mean: self.uniform(channels, -0.1, 0.1),
            var: self.uniform(channels, 0.5, 1.5),
            eps: BN_EPS,
        })
    }

    fn linear(
        &mut self,
        _at: ParamRef,
        in_features: usize,
        out_features: usize,
    ) -> Result<LinearParams, OnnxError> {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        Ok(LinearParams {
            weight: self.uniform(in_features * out_features, -bound, bound),
            bias: self.uniform(out_features, -bound, bound),
        })
    }
}

/// Folds a batch norm into the conv before it:
/// `w' = w·γ/√(var+ε)`, `b' = (b−μ)·γ/√(var+ε) + β` per output channel.
/// Returns the new weight and bias; sizes must already be consistent.
pub fn fold_bn(conv: &ConvParams, bn: &BnParams) -> (Vec<f32>, Vec<f32>) {
    let out = bn.gamma.len();
    let per_out = conv.weight.len().checked_div(out).unwrap_or(0);
    let scale: Vec<f64> = (0..out)
        .map(|o| f64::from(bn.gamma[o]) / (f64::from(bn.var[o]) + f64::from(bn.eps)).sqrt())
        .collect();
    let weight = conv
        .weight
        .iter()
        .enumerate()
        .map(|(i, &w)| (f64::from(w) * scale[i / per_out]) as f32)
        .collect();
    let bias = (0..out)
        .map(|o| {
            let b = conv.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
            ((b - f64::from(bn.mean[o])) * scale[o] + f64::from(bn.beta[o])) as f32
        })
        .collect();
    (weight, bias)
}

// ---------------------------------------------------------------------------
// Options and entry points
// ---------------------------------------------------------------------------

/// How to write a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Concrete batch size; `None` writes a symbolic batch dimension `N`.
    pub batch: Option<usize>,
    /// Extra `metadata_props` entries, after the writer's own.
    pub metadata: Vec<(String, String)>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            batch: Some(1),
            metadata: Vec::new(),
        }
    }
}

/// One block (stem, MBConv or head) with random weights from `seed`, batch 1,
/// for latency profiling. Metadata `padnas.block` holds the key.
pub fn write_block(key: &BlockKey, seed: u64) -> Result<Vec<u8>, OnnxError> {
    write_block_with(key, &mut RandomWeights::new(seed), &WriteOptions::default())
}

/// One block with the given weights and options.
pub fn write_block_with(
    key: &BlockKey,
    weights: &mut dyn WeightProvider,
    opts: &WriteOptions,
) -> Result<Vec<u8>, OnnxError> {
    check_block(key)?;
    let mut g = Graph::new(weights);
    let x = INPUT_NAME.to_string();
    let (last, out_dims) = match *key {
        BlockKey::Stem {
            input,
            kernel,
            out_channels,
            stride,
            activation,
        } => {
            let y = g.stem(x, input, kernel, out_channels, stride, activation)?;
            (y, key.output())
        }
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        } => {
            let site = Site::Layer {
                index: 0,
                op: Op::MbConv { kernel, expansion },
            };
            let y = g.mbconv(x, site, input, kernel, expansion, out_channels, stride)?;
            (y, key.output())
        }
        BlockKey::Head {
            input,
            channels,
            num_classes,
            activation,
        } => {
            let y = g.head(x, input, channels, num_classes, activation)?;
            (y, key.output())
        }
    };
    let out_shape: Vec<usize> = match key {
        BlockKey::Head { num_classes, .. } => vec![*num_classes],
        _ => vec![out_dims.channels, out_dims.height, out_dims.width],
    };
    let mut meta = vec![("padnas.block".to_string(), key.to_string())];
    meta.extend(opts.metadata.iter().cloned());
    g.finish(
        last,
        key.input(),
        &out_shape,
        opts.batch,
        meta,
        "padnas_block",
    )
}

/// A whole network: `arch` in `space`, weights from `weights`, batch 1.
/// Metadata: `padnas.arch`, `padnas.space_hash` and (if named) `padnas.space`.
pub fn write_network(
    space: &Space,
    arch: &Arch,
    weights: &mut dyn WeightProvider,
) -> Result<Vec<u8>, OnnxError> {
    write_network_with(space, arch, weights, &WriteOptions::default())
}

/// A whole network with options (batch, extra metadata).
pub fn write_network_with(
    space: &Space,
    arch: &Arch,
    weights: &mut dyn WeightProvider,
    opts: &WriteOptions,
) -> Result<Vec<u8>, OnnxError> {
    space.check_arch(arch)?;
    let mut g = Graph::new(weights);
    let stem = space.stem();
    let mut x = g.stem(
        INPUT_NAME.to_string(),
        space.input(),
        stem.kernel,
        stem.channels,
        stem.stride,
        stem.activation,
    )?;
    for (layer, &op) in space.layers().iter().zip(&arch.ops) {
        if let Op::MbConv { kernel, expansion } = op {
            let site = Site::Layer {
                index: layer.index,
                op,
            };
            x = g.mbconv(
                x,
                site,
                layer.input,
                kernel,
                expansion,
                layer.out_channels,
                layer.stride,
            )?;
        }
    }
    let head = space.head();
    let y = g.head(
        x,
        space.head_input(),
        head.channels,
        space.num_classes(),
        head.activation,
    )?;
    let mut meta = vec![
        ("padnas.arch".to_string(), arch.to_string()),
        ("padnas.space_hash".to_string(), space.hash()),
    ];
    if let Some(name) = space.name() {
        meta.push(("padnas.space".to_string(), name.to_string()));
    }
    meta.extend(opts.metadata.iter().cloned());
    g.finish(
        y,
        space.input(),
        &[space.num_classes()],
        opts.batch,
        meta,
        "padnas_network",
    )
}

fn check_block(key: &BlockKey) -> Result<(), OnnxError> {
    let bad = |message: &str| {
        Err(OnnxError::Block {
            key: key.to_string(),
            message: message.into(),
        })
    };
    let input = key.input();
    if input.channels == 0 || input.height == 0 || input.width == 0 {
        return bad("empty input shape");
    }
    match *key {
        BlockKey::Stem {
            kernel,
            out_channels,
            stride,
            ..
        } => {
            if kernel.is_multiple_of(2) || out_channels == 0 || stride == 0 {
                return bad("kernel must be odd, channels and stride ≥ 1");
            }
        }
        BlockKey::MbConv {
            kernel,
            expansion,
            out_channels,
            stride,
            ..
        } => {
            if kernel.is_multiple_of(2) || expansion == 0 || out_channels == 0 || stride == 0 {
                return bad("kernel must be odd, expansion, channels and stride ≥ 1");
            }
        }
        BlockKey::Head {
            channels,
            num_classes,
            ..
        } => {
            if channels == 0 || num_classes == 0 {
                return bad("channels and classes must be ≥ 1");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Graph builder
// ---------------------------------------------------------------------------

/// Accumulates nodes and initializers; every value is named after the node
/// producing it, so names read like the network (`layers.3.k5e6.project`).
struct Graph<'w> {
    weights: &'w mut dyn WeightProvider,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    /// Names of the shared `Clip` bounds, created on first use.
    relu6_bounds: Option<(String, String)>,
}

impl<'w> Graph<'w> {
    fn new(weights: &'w mut dyn WeightProvider) -> Self {
        Graph {
            weights,
            nodes: Vec::new(),
            initializers: Vec::new(),
            relu6_bounds: None,
        }
    }

    fn initializer(&mut self, name: String, dims: &[usize], data: &[f32]) -> String {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }

    fn node(
        &mut self,
        op_type: &str,
        name: String,
        inputs: Vec<String>,
        attribute: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            input: inputs,
            output: vec![name.clone()],
            name: name.clone(),
            op_type: op_type.to_string(),
            attribute,
            ..Default::default()
        });
        name
    }

    /// Conv with its BN folded in: asks the provider for both, checks sizes.
    fn conv_bn(
        &mut self,
        x: String,
        at: ParamRef,
        shape: ConvShape,
        stride: usize,
    ) -> Result<String, OnnxError> {
        let bad = |message: String| OnnxError::Weights {
            name: at.to_string(),
            message,
        };
        let conv = self.weights.conv(at, shape)?;
        if conv.weight.len() != shape.weight_len() {
            return Err(bad(format!(
                "conv weight has {} values, {:?} needs {}",
                conv.weight.len(),
                shape.dims(),
                shape.weight_len()
            )));
        }
        if let Some(b) = &conv.bias
            && b.len() != shape.out_channels
        {
            return Err(bad(format!(
                "conv bias has {} values, expected {}",
                b.len(),
                shape.out_channels
            )));
        }
        let bn = self.weights.batch_norm(at, shape.out_channels)?;
        for (what, v) in [
            ("gamma", &bn.gamma),
            ("beta", &bn.beta),
            ("mean", &bn.mean),
            ("var", &bn.var),
        ] {
            if v.len() != shape.out_channels {
                return Err(bad(format!(
                    "batch-norm {what} has {} values, expected {}",
                    v.len(),
                    shape.out_channels
                )));
            }
        }
        // Written as `all(> 0)` so NaN fails too.
        if !bn.var.iter().all(|&v| v + bn.eps > 0.0) {
            return Err(bad("batch-norm variance + eps must be > 0".into()));
        }
        let (weight, bias) = fold_bn(&conv, &bn);
        let name = at.to_string();
        let w = self.initializer(format!("{name}.weight"), &shape.dims(), &weight);
        let b = self.initializer(format!("{name}.bias"), &[shape.out_channels], &bias);
        let k = shape.kernel as i64;
        let s = stride as i64;
        let p = k / 2;
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", shape.groups as i64),
        ];
        Ok(self.node("Conv", name, vec![x, w, b], attrs))
    }

    fn activation(&mut self, x: String, act: Activation) -> String {
        match act {
            Activation::Relu => self.node("Relu", format!("{x}.relu"), vec![x], vec![]),
            Activation::Relu6 => {
                let (lo, hi) = match &self.relu6_bounds {
                    Some(b) => b.clone(),
                    None => {
                        let lo = self.initializer("relu6.min".into(), &[], &[0.0]);
                        let hi = self.initializer("relu6.max".into(), &[], &[6.0]);
                        self.relu6_bounds = Some((lo.clone(), hi.clone()));
                        (lo, hi)
                    }
                };
                self.node("Clip", format!("{x}.relu6"), vec![x, lo, hi], vec![])
            }
        }
    }

    fn stem(
        &mut self,
        x: String,
        input: Shape,
        kernel: usize,
        out_channels: usize,
        stride: usize,
        act: Activation,
    ) -> Result<String, OnnxError> {
        let at = ParamRef {
            site: Site::Stem,
            part: Part::Conv,
        };
        let shape = ConvShape {
            out_channels,
            in_channels: input.channels,
            kernel,
            groups: 1,
        };
        let y = self.conv_bn(x, at, shape, stride)?;
        Ok(self.activation(y, act))
    }

    #[allow(clippy::too_many_arguments)]
    fn mbconv(
        &mut self,
        x: String,
        site: Site,
        input: Shape,
        kernel: usize,
        expansion: usize,
        out_channels: usize,
        stride: usize,
    ) -> Result<String, OnnxError> {
        let at = |part| ParamRef { site, part };
        let hidden = input.channels * expansion;
        let mut y = x.clone();
        // At expansion 1 the expand conv would be a square 1×1 map that the
        // depthwise conv can absorb, so the block starts at the depthwise.
        if expansion != 1 {
            let shape = ConvShape {
                out_channels: hidden,
                in_channels: input.channels,
                kernel: 1,
                groups: 1,
            };
            y = self.conv_bn(y, at(Part::Expand), shape, 1)?;
            y = self.activation(y, Activation::Relu6);
        }
        let shape = ConvShape {
            out_channels: hidden,
            in_channels: hidden,
            kernel,
            groups: hidden,
        };
        y = self.conv_bn(y, at(Part::Depthwise), shape, stride)?;
        y = self.activation(y, Activation::Relu6);
        let shape = ConvShape {
            out_channels,
            in_channels: hidden,
            kernel: 1,
            groups: 1,
        };
        y = self.conv_bn(y, at(Part::Project), shape, 1)?;
        if stride == 1 && input.channels == out_channels {
            y = self.node("Add", format!("{site}.add"), vec![x, y], vec![]);
        }
        Ok(y)
    }

    fn head(
        &mut self,
        x: String,
        input: Shape,
        channels: usize,
        num_classes: usize,
        act: Activation,
    ) -> Result<String, OnnxError> {
        let at = ParamRef {
            site: Site::Head,
            part: Part::Conv,
        };
        let shape = ConvShape {
            out_channels: channels,
            in_channels: input.channels,
            kernel: 1,
            groups: 1,
        };
        let y = self.conv_bn(x, at, shape, 1)?;
        let y = self.activation(y, act);
        let y = self.node("GlobalAveragePool", "head.pool".into(), vec![y], vec![]);
        let y = self.node(
            "Flatten",
            "head.flatten".into(),
            vec![y],
            vec![attr_int("axis", 1)],
        );
        let at = ParamRef {
            site: Site::Classifier,
            part: Part::Fc,
        };
        let fc = self.weights.linear(at, channels, num_classes)?;
        let bad = |message: String| OnnxError::Weights {
            name: at.to_string(),
            message,
        };
        if fc.weight.len() != channels * num_classes {
            return Err(bad(format!(
                "weight has {} values, [{num_classes}, {channels}] needs {}",
                fc.weight.len(),
                channels * num_classes
            )));
        }
        if fc.bias.len() != num_classes {
            return Err(bad(format!(
                "bias has {} values, expected {num_classes}",
                fc.bias.len()
            )));
        }
        let name = at.to_string();
        let w = self.initializer(
            format!("{name}.weight"),
            &[num_classes, channels],
            &fc.weight,
        );
        let b = self.initializer(format!("{name}.bias"), &[num_classes], &fc.bias);
        Ok(self.node("Gemm", name, vec![y, w, b], vec![attr_int("transB", 1)]))
    }

    /// Renames the last value to [`OUTPUT_NAME`] and wraps everything in a model.
    fn finish(
        mut self,
        last: String,
        input: Shape,
        out_shape: &[usize],
        batch: Option<usize>,
        metadata: Vec<(String, String)>,
        graph_name: &str,
    ) -> Result<Vec<u8>, OnnxError> {
        if batch == Some(0) {
            return Err(OnnxError::Options("batch must be ≥ 1".into()));
        }
        // `last` is produced by exactly one node and consumed by none.
        for node in &mut self.nodes {
            for out in &mut node.output {
                if *out == last {
                    *out = OUTPUT_NAME.to_string();
                }
            }
        }
        let batch_dim = match batch {
            Some(n) => DimValue::DimValue(n as i64),
            None => DimValue::DimParam("N".into()),
        };
        let dims = |rest: &[usize]| {
            std::iter::once(batch_dim.clone())
                .chain(rest.iter().map(|&d| DimValue::DimValue(d as i64)))
                .collect::<Vec<_>>()
        };
        let graph = pb::GraphProto {
            node: self.nodes,
            name: graph_name.to_string(),
            initializer: self.initializers,
            input: vec![value_info(
                INPUT_NAME,
                dims(&[input.channels, input.height, input.width]),
            )],
            output: vec![value_info(OUTPUT_NAME, dims(out_shape))],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET_VERSION,
            }],
            producer_name: "padnas".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        };
        Ok(model.encode_to_vec())
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<DimValue>) -> pb::ValueInfoProto {
    let shape = pb::TensorShapeProto {
        dim: dims
            .into_iter()
            .map(|v| pb::tensor_shape_proto::Dimension {
                denotation: String::new(),
                value: Some(v),
            })
            .collect(),
    };
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(shape),
            })),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tract_onnx::prelude::*;

    use super::*;
    // Explicit, because tract's prelude also exports an `Op`.
    use crate::space::{Activation, Arch, BlockKey, Op, Shape, Space};

    /// Hands out random parameters, remembering them by name so the reference
    /// sees exactly what the writer folded. Convs get a bias so the `(b − μ)`
    /// term of the folding is exercised too.
    struct Recorded {
        inner: RandomWeights,
        conv: HashMap<String, ConvParams>,
        bn: HashMap<String, BnParams>,
        fc: HashMap<String, LinearParams>,
    }

    impl Recorded {
        fn new(seed: u64) -> Self {
            Recorded {
                inner: RandomWeights::new(seed),
                conv: HashMap::new(),
                bn: HashMap::new(),
                fc: HashMap::new(),
            }
        }
    }

    impl WeightProvider for Recorded {
        fn conv(&mut self, at: ParamRef, shape: ConvShape) -> Result<ConvParams, OnnxError> {
            if let Some(p) = self.conv.get(&at.to_string()) {
                return Ok(p.clone());
            }
            let mut p = self.inner.conv(at, shape)?;
            p.bias = Some(self.inner.uniform(shape.out_channels, -0.2, 0.2));
            self.conv.insert(at.to_string(), p.clone());
            Ok(p)
        }

        fn batch_norm(&mut self, at: ParamRef, channels: usize) -> Result<BnParams, OnnxError> {
            let p = self.inner.batch_norm(at, channels)?;
            Ok(self.bn.entry(at.to_string()).or_insert(p).clone())
        }

        fn linear(
            &mut self,
            at: ParamRef,
            in_features: usize,
            out_features: usize,
        ) -> Result<LinearParams, OnnxError> {
            let p = self.inner.linear(at, in_features, out_features)?;
            Ok(self.fc.entry(at.to_string()).or_insert(p).clone())
        }
    }

    /// A feature map, batch 1, CHW.
    #[derive(Clone, Debug)]
    struct Fm {
        c: usize,
        h: usize,
        w: usize,
        d: Vec<f32>,
    }

    impl Fm {
        fn random(s: Shape, seed: u64) -> Fm {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = (0..s.numel())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            Fm {
                c: s.channels,
                h: s.height,
                w: s.width,
                d,
            }
        }
    }

    // ---- independent reference: direct loops, BN applied unfolded --------

    fn conv_ref(
        x: &Fm,
        p: &ConvParams,
        out_c: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> Fm {
        let pad = k / 2;
        let oh = (x.h + 2 * pad - k) / stride + 1;
        let ow = (x.w + 2 * pad - k) / stride + 1;
        let in_per = x.c / groups;
        let out_per = out_c / groups;
        let mut d = vec![0f32; out_c * oh * ow];
        for o in 0..out_c {
            let g = o / out_per;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = p.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
                    for i in 0..in_per {
                        let ic = g * in_per + i;
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                                // Padded coordinates: inside when pad ≤ i < pad + size.
                                if iy < pad || ix < pad || iy - pad >= x.h || ix - pad >= x.w {
                                    continue;
                                }
                                let xv = x.d[(ic * x.h + iy - pad) * x.w + ix - pad];
                                let wv = p.weight[((o * in_per + i) * k + ky) * k + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    d[(o * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
        Fm {
            c: out_c,
            h: oh,
            w: ow,
            d,
        }
    }

    fn bn_ref(mut x: Fm, p: &BnParams) -> Fm {
        let hw = x.h * x.w;
        for (i, v) in x.d.iter_mut().enumerate() {
            let c = i / hw;
            let norm = (f64::from(*v) - f64::from(p.mean[c]))
                / (f64::from(p.var[c]) + f64::from(p.eps)).sqrt();
            *v = (norm * f64::from(p.gamma[c]) + f64::from(p.beta[c])) as f32;
        }
        x
    }

    fn act_ref(mut x: Fm, act: Activation) -> Fm {
        for v in &mut x.d {
            *v = match act {
                Activation::Relu6 => v.clamp(0.0, 6.0),
                Activation::Relu => v.max(0.0),
            };
        }
        x
    }

    fn conv_bn_ref(
        x: &Fm,
        rec: &Recorded,
        at: ParamRef,
        out_c: usize,
        k: usize,
        s: usize,
        g: usize,
    ) -> Fm {
        let name = at.to_string();
        bn_ref(
            conv_ref(x, &rec.conv[&name], out_c, k, s, g),
            &rec.bn[&name],
        )
    }

    fn stem_ref(x: &Fm, rec: &Recorded, k: usize, out_c: usize, s: usize, act: Activation) -> Fm {
        let at = ParamRef {
            site: Site::Stem,
            part: Part::Conv,
        };
        act_ref(conv_bn_ref(x, rec, at, out_c, k, s, 1), act)
    }

    fn mbconv_ref(
        x: &Fm,
        rec: &Recorded,
        site: Site,
        k: usize,
        e: usize,
        out_c: usize,
        s: usize,
    ) -> Fm {
        let at = |part| ParamRef { site, part };
        let hidden = x.c * e;
        let mut y = x.clone();
        if e != 1 {
            y = act_ref(
                conv_bn_ref(&y, rec, at(Part::Expand), hidden, 1, 1, 1),
                Activation::Relu6,
            );
        }
        y = act_ref(
            conv_bn_ref(&y, rec, at(Part::Depthwise), hidden, k, s, hidden),
            Activation::Relu6,
        );
        y = conv_bn_ref(&y, rec, at(Part::Project), out_c, 1, 1, 1);
        if s == 1 && x.c == out_c {
            for (a, b) in y.d.iter_mut().zip(&x.d) {
                *a += b;
            }
        }
        y
    }

    fn head_ref(
        x: &Fm,
        rec: &Recorded,
        channels: usize,
        classes: usize,
        act: Activation,
    ) -> Vec<f32> {
        let at = ParamRef {
            site: Site::Head,
            part: Part::Conv,
        };
        let y = act_ref(conv_bn_ref(x, rec, at, channels, 1, 1, 1), act);
        let hw = y.h * y.w;
        let pooled: Vec<f64> = (0..channels)
            .map(|c| {
                y.d[c * hw..(c + 1) * hw]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>()
                    / hw as f64
            })
            .collect();
        let fc = &rec.fc["classifier.fc"];
        (0..classes)
            .map(|o| {
                let dot: f64 = (0..channels)
                    .map(|i| f64::from(fc.weight[o * channels + i]) * pooled[i])
                    .sum();
                (dot + f64::from(fc.bias[o])) as f32
            })
            .collect()
    }

    fn block_ref(key: &BlockKey, rec: &Recorded, x: &Fm) -> Vec<f32> {
        match *key {
            BlockKey::Stem {
                kernel,
                out_channels,
                stride,
                activation,
                ..
            } => stem_ref(x, rec, kernel, out_channels, stride, activation).d,
            BlockKey::MbConv {
                kernel,
                expansion,
                out_channels,
                stride,
                ..
            } => {
                let site = Site::Layer {
                    index: 0,
                    op: Op::MbConv { kernel, expansion },
                };
                mbconv_ref(x, rec, site, kernel, expansion, out_channels, stride).d
            }
            BlockKey::Head {
                channels,
                num_classes,
                activation,
                ..
            } => head_ref(x, rec, channels, num_classes, activation),
        }
    }

    fn network_ref(space: &Space, arch: &Arch, rec: &Recorded, x: &Fm) -> Vec<f32> {
        let st = space.stem();
        let mut y = stem_ref(x, rec, st.kernel, st.channels, st.stride, st.activation);
        for (l, &op) in space.layers().iter().zip(&arch.ops) {
            if let Op::MbConv { kernel, expansion } = op {
                let site = Site::Layer { index: l.index, op };
                y = mbconv_ref(&y, rec, site, kernel, expansion, l.out_channels, l.stride);
            }
        }
        head_ref(
            &y,
            rec,
            space.head().channels,
            space.num_classes(),
            space.head().activation,
        )
    }

    // ---- helpers ---------------------------------------------------------

    fn load(bytes: &[u8]) -> TractResult<TypedModel> {
        tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])?
            .into_optimized()
    }

    fn run(model: TypedModel, x: &Fm) -> TractResult<(Vec<usize>, Vec<f32>)> {
        let plan = model.into_runnable()?;
        let input = Tensor::from_shape(&[1, x.c, x.h, x.w], &x.d)?;
        let out = plan.run(tvec!(input.into_tvalue()))?;
        Ok((
            out[0].shape().to_vec(),
            out[0]
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect(),
        ))
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{what}: max abs diff {diff} (scale {scale})"
        );
        assert!(
            want.iter().any(|v| v.abs() > 1e-3),
            "{what}: reference is all zero"
        );
    }

    fn decode(bytes: &[u8]) -> pb::ModelProto {
        pb::ModelProto::decode(bytes).expect("decodes")
    }

    fn fmnist() -> Space {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/spaces/fmnist-small.yaml");
        Space::load(path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mb(
        input: Shape,
        kernel: usize,
        expansion: usize,
        out_channels: usize,
        stride: usize,
    ) -> BlockKey {
        BlockKey::MbConv {
            input,
            kernel,
            expansion,
            out_channels,
            stride,
        }
    }

    // ---- tests -----------------------------------------------------------

    #[test]
    fn fold_bn_matches_the_formula() {
        let conv = ConvParams {
            weight: vec![1.0, 2.0, 3.0, 4.0],
            bias: Some(vec![0.5, -1.0]),
        };
        let bn = BnParams {
            gamma: vec![2.0, 0.5],
            beta: vec![0.1, 0.2],
            mean: vec![1.0, -1.0],
            var: vec![3.0, 0.0],
            eps: 1.0,
        };
        let (w, b) = fold_bn(&conv, &bn);
        // Channel 0: scale 2/√4 = 1; channel 1: scale 0.5/√1 = 0.5.
        assert_eq!(w, vec![1.0, 2.0, 1.5, 2.0]);
        assert_eq!(b, vec![(0.5 - 1.0) * 1.0 + 0.1, 0.2]);
    }

    #[test]
    fn blocks_match_the_reference_in_tract() {
        let keys = [
            mb(Shape::new(8, 9, 9), 3, 6, 8, 1),  // residual
            mb(Shape::new(8, 9, 9), 5, 3, 12, 2), // stride 2 on an odd size
            mb(Shape::new(6, 7, 7), 7, 1, 6, 1),  // expansion 1, residual
            mb(Shape::new(6, 7, 7), 3, 1, 10, 2), // expansion 1, shape change
            BlockKey::Stem {
                input: Shape::new(3, 11, 11),
                kernel: 3,
                out_channels: 8,
                stride: 2,
                activation: Activation::Relu6,
            },
            BlockKey::Stem {
                input: Shape::new(1, 8, 8),
                kernel: 5,
                out_channels: 4,
                stride: 1,
                activation: Activation::Relu,
            },
            BlockKey::Head {
                input: Shape::new(16, 5, 5),
                channels: 32,
                num_classes: 7,
                activation: Activation::Relu6,
            },
        ];
        for (i, key) in keys.iter().enumerate() {
            let mut rec = Recorded::new(100 + i as u64);
            let bytes = write_block_with(key, &mut rec, &WriteOptions::default()).unwrap();
            let x = Fm::random(key.input(), i as u64);
            let (shape, got) = run(load(&bytes).unwrap(), &x).unwrap();
            let out = key.output();
            let want_shape = match key {
                BlockKey::Head { num_classes, .. } => vec![1, *num_classes],
                _ => vec![1, out.channels, out.height, out.width],
            };
            assert_eq!(shape, want_shape, "{key}");
            assert_close(&got, &block_ref(key, &rec, &x), &key.to_string());
        }
    }

    #[test]
    fn network_matches_the_reference_in_tract() {
        let space = fmnist();
        let layers = space.layers();
        // An arch with a skipped layer, a stride-2 layer and a residual block.
        let arch = (0..1000)
            .map(|seed| space.sample_seeded(seed))
            .find(|a| {
                let has_residual = layers
                    .iter()
                    .zip(&a.ops)
                    .any(|(l, op)| l.keeps_shape() && !op.is_identity());
                a.num_identities() > 0 && has_residual
            })
            .expect("a suitable arch");
        assert!(
            layers
                .iter()
                .zip(&arch.ops)
                .any(|(l, op)| l.stride == 2 && !op.is_identity())
        );
        let mut rec = Recorded::new(9);
        let bytes = write_network(&space, &arch, &mut rec).unwrap();
        let x = Fm::random(space.input(), 3);
        let (shape, got) = run(load(&bytes).unwrap(), &x).unwrap();
        assert_eq!(shape, vec![1, 10]);
        assert_close(
            &got,
            &network_ref(&space, &arch, &rec, &x),
            &arch.to_string(),
        );

        // Metadata and file-level fields.
        let m = decode(&bytes);
        assert_eq!(
            (m.ir_version, m.opset_import[0].version),
            (IR_VERSION, OPSET_VERSION)
        );
        let meta: HashMap<_, _> = m
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(meta["padnas.arch"], arch.to_string());
        assert_eq!(meta["padnas.space_hash"], space.hash());
        assert_eq!(meta["padnas.space"], "fmnist-small");
        let g = m.graph.expect("graph");
        assert_eq!(
            (g.input[0].name.as_str(), g.output[0].name.as_str()),
            (INPUT_NAME, OUTPUT_NAME)
        );
        // Identity layers vanish: no node mentions a skipped layer.
        for (l, op) in layers.iter().zip(&arch.ops) {
            let prefix = format!("layers.{}.", l.index);
            let present = g.node.iter().any(|n| n.name.starts_with(&prefix));
            assert_eq!(present, !op.is_identity(), "layer {}", l.index);
        }
    }

    #[test]
    fn symbolic_batch_concretizes_and_agrees() {
        let space = fmnist();
        let arch = space.sample_seeded(4);
        let opts = WriteOptions {
            batch: None,
            metadata: vec![("k".into(), "v".into())],
        };
        let sym = write_network_with(&space, &arch, &mut RandomWeights::new(1), &opts).unwrap();
        let fixed = write_network(&space, &arch, &mut RandomWeights::new(1)).unwrap();
        let m = decode(&sym);
        assert_eq!(
            m.metadata_props
                .last()
                .map(|p| (p.key.as_str(), p.value.as_str())),
            Some(("k", "v"))
        );

        let x = Fm::random(space.input(), 5);
        let model = tract_onnx::onnx()
            .model_for_read(&mut &sym[..])
            .unwrap()
            .with_input_fact(0, f32::fact([1, x.c, x.h, x.w]).into())
            .unwrap()
            .into_optimized()
            .unwrap();
        let (_, a) = run(model, &x).unwrap();
        let (_, b) = run(load(&fixed).unwrap(), &x).unwrap();
        assert_close(&a, &b, "symbolic vs fixed batch");
    }

    #[test]
    fn paper_space_network_loads_and_runs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/spaces/proxyless-basic.yaml");
        let space = Space::load(path).unwrap();
        let arch = space.sample_seeded(11);
        let bytes = write_network(&space, &arch, &mut RandomWeights::new(2)).unwrap();
        let (shape, out) = run(load(&bytes).unwrap(), &Fm::random(space.input(), 1)).unwrap();
        assert_eq!(shape, vec![1, 1000]);
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn write_block_is_seeded() {
        let key = mb(Shape::new(16, 14, 14), 5, 6, 24, 2);
        let a = write_block(&key, 5).unwrap();
        assert_eq!(a, write_block(&key, 5).unwrap());
        assert_ne!(a, write_block(&key, 6).unwrap());
        let m = decode(&a);
        assert_eq!(m.metadata_props[0].key, "padnas.block");
        assert_eq!(m.metadata_props[0].value, key.to_string());
        // Concrete shapes, batch 1, in and out.
        let dims = |v: &pb::ValueInfoProto| match &v.r#type.as_ref().unwrap().value {
            Some(pb::type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .unwrap()
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(DimValue::DimValue(n)) => n,
                    _ => -1,
                })
                .collect::<Vec<_>>(),
            None => vec![],
        };
        let g = m.graph.unwrap();
        assert_eq!(dims(&g.input[0]), vec![1, 16, 14, 14]);
        assert_eq!(dims(&g.output[0]), vec![1, 24, 7, 7]);
        // No expand conv at expansion 1, no Add when the shape changes.
        assert!(g.node.iter().any(|n| n.name.ends_with(".expand")));
        assert!(!g.node.iter().any(|n| n.op_type == "Add"));
        let e1 = decode(&write_block(&mb(Shape::new(16, 14, 14), 3, 1, 16, 1), 1).unwrap())
            .graph
            .unwrap();
        assert!(!e1.node.iter().any(|n| n.name.ends_with(".expand")));
        assert_eq!(e1.node.iter().filter(|n| n.op_type == "Add").count(), 1);
    }

    #[test]
    fn corrupt_bytes_are_rejected_without_panic() {
        let bytes = write_block(&mb(Shape::new(8, 8, 8), 3, 3, 8, 1), 1).unwrap();
        let cases: [&[u8]; 4] = [
            &bytes[..bytes.len() / 2],
            &bytes[..bytes.len() - 3],
            b"this is not an onnx model",
            &[],
        ];
        for (i, bad) in cases.into_iter().enumerate() {
            assert!(load(bad).is_err(), "case {i} accepted");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        struct Short;
        impl WeightProvider for Short {
            fn conv(&mut self, _: ParamRef, s: ConvShape) -> Result<ConvParams, OnnxError> {
                Ok(ConvParams {
                    weight: vec![0.0; s.weight_len() - 1],
                    bias: None,
                })
            }
            fn batch_norm(&mut self, _: ParamRef, _: usize) -> Result<BnParams, OnnxError> {
                unreachable!()
            }
            fn linear(
                &mut self,
                _: ParamRef,
                _: usize,
                _: usize,
            ) -> Result<LinearParams, OnnxError> {
                unreachable!()
            }
        }
        let space = fmnist();
        let arch = space.sample_seeded(0);
        let e = write_network(&space, &arch, &mut Short)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("weights for stem.conv: conv weight has"),
            "{e}"
        );

        let mut wrong = arch.clone();
        wrong.ops.pop();
        assert!(matches!(
            write_network(&space, &wrong, &mut RandomWeights::new(0)),
            Err(OnnxError::Space(_))
        ));

        let even = mb(Shape::new(8, 8, 8), 4, 3, 8, 1);
        assert!(matches!(
            write_block(&even, 0),
            Err(OnnxError::Block { .. })
        ));
        let opts = WriteOptions {
            batch: Some(0),
            metadata: vec![],
        };
        let key = mb(Shape::new(8, 8, 8), 3, 3, 8, 1);
        assert!(matches!(
            write_block_with(&key, &mut RandomWeights::new(0), &opts),
            Err(OnnxError::Options(_))
        ));
    }
}
