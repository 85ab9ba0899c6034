//! The graph builder: convolutions with their batch norms folded in,
//! activations, MBConv blocks, the head, and the model wrapper. Every value
//! is named after the node producing it.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;

use super::proto::{attr_int, attr_ints, value_info};
use super::{
    ConvShape, INPUT_NAME, IR_VERSION, OPSET_VERSION, OUTPUT_NAME, OnnxError, WeightProvider,
    fold_bn,
};
use crate::naming::{ParamRef, Part, Site};
use crate::space::{Activation, Shape};

/// Accumulates nodes and initializers; every value is named after the node
/// producing it, so names read like the network (`layers.3.k5e6.project`).
pub(super) struct Graph<'w> {
    weights: &'w mut dyn WeightProvider,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    /// Names of the shared `Clip` bounds, created on first use.
    relu6_bounds: Option<(String, String)>,
}

impl<'w> Graph<'w> {
    pub(super) fn new(weights: &'w mut dyn WeightProvider) -> Self {
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

    pub(super) fn stem(
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
    pub(super) fn mbconv(
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

    pub(super) fn head(
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
    pub(super) fn finish(
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
