//! The QDQ rewrite: a float network (as `write_network` writes it) with
//! every activation tensor passed through QuantizeLinear → DequantizeLinear
//! and every Conv / Gemm weight and bias stored as integers followed by a
//! DequantizeLinear.

use std::collections::{HashMap, HashSet};

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use super::super::proto::attr_int;
use super::super::{OUTPUT_NAME, OnnxError};
use super::{
    ActQuant, Calibration, activation_quant, quantize_bias, quantize_weight, weight_scales,
};

/// Metadata key of the scheme `write_qdq` adds.
pub const META_SCHEME: &str = "padnas.int8.scheme";

/// The scheme, as written under [`META_SCHEME`].
const SCHEME: &str = "QDQ; weights int8 per output channel symmetric (axis 0, zero point 0, \
    scale max|w|/127); biases int32 (scale input scale x weight scale, zero point 0); \
    activations int8 per tensor asymmetric (range widened to include 0)";

pub(super) fn decode(bytes: &[u8]) -> Result<pb::ModelProto, OnnxError> {
    let model = pb::ModelProto::decode(bytes)
        .map_err(|e| OnnxError::Quantize(format!("not an ONNX model: {e}")))?;
    match &model.graph {
        Some(g) if g.input.len() == 1 => Ok(model),
        Some(g) => Err(OnnxError::Quantize(format!(
            "the network has {} inputs, expected 1",
            g.input.len()
        ))),
        None => Err(OnnxError::Quantize("the model has no graph".into())),
    }
}

/// The activation tensors of a float network, in graph order: its input,
/// then every node output except a `Conv` output consumed only by its
/// activation (`Relu`, `Clip`) and a `GlobalAveragePool` output consumed
/// only by a `Flatten`.
pub fn activation_tensors(graph: &pb::GraphProto) -> Result<Vec<String>, OnnxError> {
    let mut consumers: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            consumers
                .entry(i.as_str())
                .or_default()
                .push(node.op_type.as_str());
        }
    }
    let input = graph
        .input
        .first()
        .ok_or_else(|| OnnxError::Quantize("the network has no input".into()))?;
    let mut names = vec![input.name.clone()];
    for node in &graph.node {
        if node.output.len() != 1 {
            return Err(OnnxError::Quantize(format!(
                "node {} ({}) has {} outputs, expected 1",
                node.name,
                node.op_type,
                node.output.len()
            )));
        }
        let out = &node.output[0];
        let is_output = graph.output.iter().any(|o| o.name == *out);
        let only = |ops: &[&str]| match consumers.get(out.as_str()).map(Vec::as_slice) {
            Some([one]) => ops.contains(one),
            _ => false,
        };
        let fused = !is_output
            && match node.op_type.as_str() {
                "Conv" => only(&["Relu", "Clip"]),
                "GlobalAveragePool" => only(&["Flatten"]),
                _ => false,
            };
        if !fused {
            names.push(out.clone());
        }
    }
    Ok(names)
}

fn tensor(name: String, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        name,
        raw_data,
        ..Default::default()
    }
}

fn f32_tensor(name: String, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, dims, DataType::Float, raw)
}

fn i8_tensor(name: String, dims: &[usize], data: &[i8]) -> pb::TensorProto {
    let raw = data.iter().map(|&v| v as u8).collect();
    tensor(name, dims, DataType::Int8, raw)
}

fn i32_tensor(name: String, dims: &[usize], data: &[i32]) -> pb::TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor(name, dims, DataType::Int32, raw)
}

/// The values of a float initializer (raw little-endian or `float_data`).
fn f32_values(t: &pb::TensorProto) -> Result<Vec<f32>, OnnxError> {
    if t.data_type != DataType::Float as i32 {
        return Err(OnnxError::Quantize(format!(
            "initializer {} is not float",
            t.name
        )));
    }
    let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    if values.len() != n {
        return Err(OnnxError::Quantize(format!(
            "initializer {} has {} values, its dims {:?} need {n}",
            t.name,
            values.len(),
            t.dims
        )));
    }
    Ok(values)
}

fn node(op_type: &str, name: String, input: Vec<String>, output: String) -> pb::NodeProto {
    pb::NodeProto {
        input,
        output: vec![output],
        name,
        op_type: op_type.to_string(),
        ..Default::default()
    }
}

/// Nodes and initializers of the rewritten graph.
#[derive(Default)]
struct Out {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

impl Out {
    /// `x` → QuantizeLinear → DequantizeLinear → `dq`, with `x`'s parameters.
    fn qdq(&mut self, x: &str, base: &str, dq: String, q: ActQuant) {
        let scale = format!("{base}.scale");
        let zp = format!("{base}.zero_point");
        let quantized = format!("{base}.quantized");
        self.initializers
            .push(f32_tensor(scale.clone(), &[], &[q.scale]));
        self.initializers
            .push(i8_tensor(zp.clone(), &[], &[q.zero_point]));
        self.nodes.push(node(
            "QuantizeLinear",
            format!("{base}.quantize"),
            vec![x.to_string(), scale.clone(), zp.clone()],
            quantized.clone(),
        ));
        self.nodes.push(node(
            "DequantizeLinear",
            format!("{base}.dequantize"),
            vec![quantized, scale, zp],
            dq,
        ));
    }

    /// Integers (with their scale and zero point, per axis 0) that a
    /// DequantizeLinear turns back into the float value `name`.
    fn dequantized(
        &mut self,
        name: &str,
        ints: pb::TensorProto,
        scales: &[f32],
        zp: pb::TensorProto,
    ) {
        let (q, s, z) = (ints.name.clone(), format!("{name}.scale"), zp.name.clone());
        self.initializers.push(ints);
        self.initializers
            .push(f32_tensor(s.clone(), &[scales.len()], scales));
        self.initializers.push(zp);
        let mut n = node(
            "DequantizeLinear",
            format!("{name}.dequantize"),
            vec![q, s, z],
            name.to_string(),
        );
        n.attribute.push(attr_int("axis", 0));
        self.nodes.push(n);
    }
}

/// The QDQ form of the float network `float`, activation ranges from `cal`
/// (which must cover every [`activation_tensors`] entry). Keeps the float
/// file's metadata and adds [`META_SCHEME`] and `metadata`. Input and
/// output stay f32 with the same names and shapes.
pub fn write_qdq(
    float: &[u8],
    cal: &Calibration,
    metadata: Vec<(String, String)>,
) -> Result<Vec<u8>, OnnxError> {
    let mut model = decode(float)?;
    let graph = model.graph.take().expect("decode checked it");
    let acts = activation_tensors(&graph)?;
    let mut quant: HashMap<String, ActQuant> = HashMap::new();
    for name in &acts {
        let (lo, hi) = cal.range(name).ok_or_else(|| {
            OnnxError::Quantize(format!("no calibrated range for activation {name}"))
        })?;
        let q = activation_quant(lo, hi).map_err(|e| match e {
            OnnxError::Quantize(m) => OnnxError::Quantize(format!("activation {name}: {m}")),
            e => e,
        })?;
        quant.insert(name.clone(), q);
    }
    let inits: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut done: HashSet<String> = HashSet::new();
    let mut out = Out::default();
    // Value names after the rewrite: an activation is read through its DQ.
    let mut rename: HashMap<String, String> = HashMap::new();

    let input = graph.input[0].name.clone();
    let dq = format!("{input}.dequantized");
    out.qdq(&input, &input, dq.clone(), quant[&input]);
    rename.insert(input, dq);

    for n in &graph.node {
        let mut new = n.clone();
        for i in &mut new.input {
            if let Some(r) = rename.get(i) {
                *i = r.clone();
            }
        }
        if n.op_type == "Conv" || n.op_type == "Gemm" {
            quantize_layer(n, &quant, &inits, &mut done, &mut out)?;
        }
        let y = n.output[0].clone();
        match quant.get(&y) {
            Some(&q) => {
                let (base, dq) = if y == OUTPUT_NAME {
                    let base = if n.name.is_empty() || n.name == OUTPUT_NAME {
                        format!("{OUTPUT_NAME}.float")
                    } else {
                        n.name.clone()
                    };
                    new.output[0] = base.clone();
                    (base, OUTPUT_NAME.to_string())
                } else {
                    (y.clone(), format!("{y}.dequantized"))
                };
                out.nodes.push(new);
                out.qdq(&base, &base, dq.clone(), q);
                rename.insert(y, dq);
            }
            None => out.nodes.push(new),
        }
    }

    // Float initializers nobody quantised (ReLU6's bounds) stay first.
    let mut initializer: Vec<pb::TensorProto> = graph
        .initializer
        .iter()
        .filter(|t| !done.contains(&t.name))
        .cloned()
        .collect();
    initializer.extend(out.initializers);
    model.graph = Some(pb::GraphProto {
        node: out.nodes,
        initializer,
        value_info: Vec::new(),
        ..graph
    });
    model.metadata_props.push(pb::StringStringEntryProto {
        key: META_SCHEME.to_string(),
        value: SCHEME.to_string(),
    });
    model.metadata_props.extend(
        metadata
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value }),
    );
    Ok(model.encode_to_vec())
}

/// The weight (input 1) and bias (input 2) of Conv / Gemm `n` as integers
/// behind DequantizeLinear nodes named after them.
fn quantize_layer(
    n: &pb::NodeProto,
    quant: &HashMap<String, ActQuant>,
    inits: &HashMap<&str, &pb::TensorProto>,
    done: &mut HashSet<String>,
    out: &mut Out,
) -> Result<(), OnnxError> {
    let bad = |m: String| OnnxError::Quantize(format!("{} ({}): {m}", n.name, n.op_type));
    if n.op_type == "Gemm" {
        let attr = |name: &str| n.attribute.iter().find(|a| a.name == name).map(|a| a.i);
        // The weight's rows must be the outputs for per-axis 0 scales.
        if attr("transB") != Some(1) || attr("transA").unwrap_or(0) != 0 {
            return Err(bad(
                "only Gemm with transB = 1 and transA = 0 is supported".into()
            ));
        }
    }
    if n.input.len() < 2 {
        return Err(bad("no weight".into()));
    }
    let x = &n.input[0];
    let q_in = quant
        .get(x)
        .ok_or_else(|| bad(format!("input {x} is not an int8 activation")))?;
    let w_name = &n.input[1];
    let w = inits
        .get(w_name.as_str())
        .ok_or_else(|| bad(format!("weight {w_name} is not an initializer")))?;
    if !done.insert(w_name.clone()) {
        return Err(bad(format!("weight {w_name} is shared")));
    }
    let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
    let rows = *dims.first().ok_or_else(|| bad("scalar weight".into()))?;
    let values = f32_values(w)?;
    let scales = weight_scales(&values, rows);
    let q = quantize_weight(&values, &scales);
    out.dequantized(
        w_name,
        i8_tensor(format!("{w_name}.quantized"), &dims, &q),
        &scales,
        i8_tensor(format!("{w_name}.zero_point"), &[rows], &vec![0; rows]),
    );
    if let Some(b_name) = n.input.get(2).filter(|b| !b.is_empty()) {
        let b = inits
            .get(b_name.as_str())
            .ok_or_else(|| bad(format!("bias {b_name} is not an initializer")))?;
        if !done.insert(b_name.clone()) {
            return Err(bad(format!("bias {b_name} is shared")));
        }
        let values = f32_values(b)?;
        if values.len() != rows {
            return Err(bad(format!(
                "bias has {} values, the weight {rows} rows",
                values.len()
            )));
        }
        let (q, bias_scales) = quantize_bias(&values, q_in.scale, &scales);
        out.dequantized(
            b_name,
            i32_tensor(format!("{b_name}.quantized"), &[rows], &q),
            &bias_scales,
            i32_tensor(format!("{b_name}.zero_point"), &[rows], &vec![0; rows]),
        );
    }
    Ok(())
}

/// `bytes` (an ONNX model) with `extra` appended to its metadata.
pub fn add_metadata(bytes: &[u8], extra: Vec<(String, String)>) -> Result<Vec<u8>, OnnxError> {
    let mut model = decode(bytes)?;
    model.metadata_props.extend(
        extra
            .into_iter()
            .map(|(key, value)| pb::StringStringEntryProto { key, value }),
    );
    Ok(model.encode_to_vec())
}
