//! Tiny ONNX models built in code, for tests and smoke checks of an agent
//! (the host has its own full ONNX writer for real blocks).

use prost::Message;
use tract_onnx::pb;

/// ONNX `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;
/// Opset with `Clip` taking min/max as inputs.
const OPSET: i64 = 13;

/// One input dimension: a number, or a named symbol (`dim_param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size such as the batch `N`.
    Symbol(String),
}

fn value_info(name: &str, dims: Option<&[Dim]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                denotation: String::new(),
                value: Some(match d {
                    Dim::Fixed(n) => Value::DimValue(*n as i64),
                    Dim::Symbol(s) => Value::DimParam(s.clone()),
                }),
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape,
            })),
        }),
        doc_string: String::new(),
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: data,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs.first().copied().unwrap_or("out")),
        op_type: op.to_string(),
        attribute,
        ..Default::default()
    }
}

fn model(graph: pb::GraphProto) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "padnas-agent onnx_fixture".to_string(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `y = Relu(x)` with `x` declared as `dims`: the simplest model whose output
/// a test can check exactly.
pub fn relu(dims: &[Dim]) -> Vec<u8> {
    model(pb::GraphProto {
        name: "relu".to_string(),
        node: vec![node("Relu", &["x"], &["y"], vec![])],
        input: vec![value_info("x", Some(dims))],
        output: vec![value_info("y", None)],
        ..Default::default()
    })
}

/// A convolution followed by ReLU6 (`Clip(0, 6)`), NCHW, "same" padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvClip {
    /// Batch (usually 1); `None` declares it symbolic (`N`).
    pub batch: Option<usize>,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Input height and width.
    pub size: usize,
    /// Square kernel size (odd).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl Default for ConvClip {
    fn default() -> Self {
        ConvClip {
            batch: Some(1),
            in_channels: 3,
            out_channels: 8,
            size: 16,
            kernel: 3,
            stride: 1,
        }
    }
}

impl ConvClip {
    /// The input shape with batch 1 where the batch is symbolic.
    pub fn input_shape(&self) -> Vec<usize> {
        vec![
            self.batch.unwrap_or(1),
            self.in_channels,
            self.size,
            self.size,
        ]
    }

    /// Encodes the model as ONNX bytes.
    pub fn encode(&self) -> Vec<u8> {
        let k = self.kernel as i64;
        let weights_len = self.out_channels * self.in_channels * self.kernel * self.kernel;
        // Small deterministic weights, so outputs stay in ReLU6's range.
        let weights: Vec<f32> = (0..weights_len)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 64.0)
            .collect();
        let bias: Vec<f32> = (0..self.out_channels).map(|i| i as f32 / 16.0).collect();
        let pad = k / 2;
        let batch = match self.batch {
            Some(b) => Dim::Fixed(b),
            None => Dim::Symbol("N".to_string()),
        };
        let input = [
            batch,
            Dim::Fixed(self.in_channels),
            Dim::Fixed(self.size),
            Dim::Fixed(self.size),
        ];
        model(pb::GraphProto {
            name: "conv_clip".to_string(),
            node: vec![
                node(
                    "Conv",
                    &["x", "w", "b"],
                    &["c"],
                    vec![
                        ints("kernel_shape", &[k, k]),
                        ints("strides", &[self.stride as i64, self.stride as i64]),
                        ints("pads", &[pad, pad, pad, pad]),
                    ],
                ),
                node("Clip", &["c", "lo", "hi"], &["y"], vec![]),
            ],
            initializer: vec![
                tensor(
                    "w",
                    &[self.out_channels as i64, self.in_channels as i64, k, k],
                    weights,
                ),
                tensor("b", &[self.out_channels as i64], bias),
                tensor("lo", &[], vec![0.0]),
                tensor("hi", &[], vec![6.0]),
            ],
            input: vec![value_info("x", Some(&input))],
            output: vec![value_info("y", None)],
            ..Default::default()
        })
    }
}
