//! Calibration: the float network run in tract on sample inputs, every
//! activation tensor an extra graph output, its min and max recorded.
//!
//! tract rather than libtorch: the tensors measured are by construction the
//! ones `write_qdq` quantises (same file, same folded weights, same names),
//! and it needs no `train` feature.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::super::OnnxError;
use super::qdq::{activation_tensors, decode};

/// Activation ranges seen on calibration inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// Every activation tensor ([`activation_tensors`] order, the graph
    /// input first) with the smallest and largest value seen.
    pub ranges: Vec<(String, f32, f32)>,
    /// Inputs run.
    pub inputs: usize,
}

impl Calibration {
    /// The range of tensor `name`.
    pub fn range(&self, name: &str) -> Option<(f32, f32)> {
        self.ranges
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, lo, hi)| (lo, hi))
    }
}

fn tract_err(what: &str) -> impl Fn(TractError) -> OnnxError + '_ {
    move |e| OnnxError::Quantize(format!("{what}: {e:#}"))
}

/// The float network `float` with every activation tensor but the input
/// as a graph output (after its own outputs), and the activation names in
/// [`activation_tensors`] order.
pub fn calibration_model(float: &[u8]) -> Result<(Vec<u8>, Vec<String>), OnnxError> {
    let mut model = decode(float)?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| OnnxError::Quantize("the model has no graph".into()))?;
    let names = activation_tensors(graph)?;
    let input = graph.input[0].name.clone();
    for name in &names {
        if *name != input && !graph.output.iter().any(|o| o.name == *name) {
            graph.output.push(float_output(name));
        }
    }
    Ok((model.encode_to_vec(), names))
}

/// Runs the float network `float` (concrete input shape, as `write_network`
/// writes it) on each of `inputs` (one input tensor's values each) and
/// records every activation's range.
pub fn calibrate<'a>(
    float: &[u8],
    inputs: impl IntoIterator<Item = &'a [f32]>,
) -> Result<Calibration, OnnxError> {
    let (bytes, names) = calibration_model(float)?;
    let model = decode(&bytes)?;
    let graph = model.graph.as_ref().expect("calibration_model checked it");
    let shape = input_shape(&graph.input[0])?;
    let numel: usize = shape.iter().product();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let input_name = graph.input[0].name.as_str();
    // Where each activation comes from: the input, or an output slot.
    let slots: Vec<Option<usize>> = names
        .iter()
        .map(|n| outputs.iter().position(|o| o == n))
        .collect();
    if let Some((n, _)) = names
        .iter()
        .zip(&slots)
        .find(|(n, s)| s.is_none() && n.as_str() != input_name)
    {
        return Err(OnnxError::Quantize(format!("{n} is not a graph output")));
    }
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(tract_err("tract cannot read the float network"))?
        .into_optimized()
        .map_err(tract_err("tract cannot optimise the float network"))?
        .into_runnable()
        .map_err(tract_err("tract cannot plan the float network"))?;
    let mut ranges: Vec<(String, f32, f32)> = names
        .iter()
        .map(|n| (n.clone(), f32::INFINITY, f32::NEG_INFINITY))
        .collect();
    let mut count = 0;
    for (i, x) in inputs.into_iter().enumerate() {
        if x.len() != numel {
            return Err(OnnxError::Quantize(format!(
                "calibration input {i} has {} values, shape {shape:?} needs {numel}",
                x.len()
            )));
        }
        let t = Tensor::from_shape(&shape, x).map_err(tract_err("input tensor"))?;
        let out = plan
            .run(tvec!(t.into_tvalue()))
            .map_err(tract_err("running the float network"))?;
        for ((_, lo, hi), slot) in ranges.iter_mut().zip(&slots) {
            let mut see = |v: f32| {
                *lo = lo.min(v);
                *hi = hi.max(v);
            };
            match slot {
                None => x.iter().copied().for_each(&mut see),
                Some(k) => out[*k]
                    .to_plain_array_view::<f32>()
                    .map_err(tract_err("reading an activation"))?
                    .iter()
                    .copied()
                    .for_each(&mut see),
            }
        }
        count += 1;
    }
    if count == 0 {
        return Err(OnnxError::Quantize("no calibration inputs".into()));
    }
    if let Some((n, lo, hi)) = ranges
        .iter()
        .find(|(_, lo, hi)| !lo.is_finite() || !hi.is_finite())
    {
        return Err(OnnxError::Quantize(format!(
            "activation {n} took non-finite values ([{lo}, {hi}]) on the calibration inputs"
        )));
    }
    Ok(Calibration {
        ranges,
        inputs: count,
    })
}

/// A float graph output of unknown shape (left to inference).
fn float_output(name: &str) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: None,
            })),
        }),
        ..Default::default()
    }
}

/// The concrete shape of a graph input.
fn input_shape(input: &pb::ValueInfoProto) -> Result<Vec<usize>, OnnxError> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
    let dims = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t.shape.as_ref().map(|s| &s.dim),
        _ => None,
    };
    let bad = || {
        OnnxError::Quantize(format!(
            "input {} has no concrete shape (write the float network with a concrete batch)",
            input.name
        ))
    };
    dims.ok_or_else(bad)?
        .iter()
        .map(|d| match d.value {
            Some(DimValue::DimValue(n)) if n > 0 => Ok(n as usize),
            _ => Err(bad()),
        })
        .collect()
}
