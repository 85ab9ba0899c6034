//! Loading a model: parse the ONNX, give it a concrete input shape (tract
//! is far slower on symbolic shapes), optimise it and build its plan.

use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, ShapeFactoid};
use tract_onnx::tract_hir::internal::DimLike;

use super::BenchError;
use super::worker::isolated;
use crate::proto::{MAX_PAYLOAD_BYTES, shape_elements};

/// A model ready to run. Cloning is cheap (the plan and input are shared),
/// which is how jobs take it to the worker thread.
#[derive(Clone)]
pub struct LoadedModel {
    pub(super) plan: Arc<TypedSimplePlan>,
    pub(super) input_shape: Vec<usize>,
    pub(super) output_shape: Vec<usize>,
    /// The benchmark input, built once and shared by every run: cloning a
    /// TValue is a reference count, where cloning a Tensor copied the whole
    /// input (300 kB for 24×56×56) between every two runs.
    pub(super) input: TValue,
    pub(super) load_ms: f64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("load_ms", &self.load_ms)
            .finish_non_exhaustive()
    }
}

fn shape_text(shape: &ShapeFactoid) -> String {
    let mut dims: Vec<String> = shape
        .dims()
        .map(|d| {
            d.concretize()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".to_string())
        })
        .collect();
    if shape.is_open() {
        dims.push("..".to_string());
    }
    format!("[{}]", dims.join(", "))
}

/// Checks a requested input shape on its own: no zero dimension, and small
/// enough that its tensor could travel in one frame.
fn check_shape(shape: &[usize]) -> Result<(), BenchError> {
    if shape.contains(&0) {
        return Err(BenchError::BadInput(format!(
            "input shape {shape:?} has a zero dimension"
        )));
    }
    let bytes = shape_elements(shape).and_then(|n| n.checked_mul(4));
    if bytes.is_none_or(|b| b > MAX_PAYLOAD_BYTES as usize) {
        return Err(BenchError::BadInput(format!(
            "input shape {shape:?} is larger than the {MAX_PAYLOAD_BYTES}-byte frame cap"
        )));
    }
    Ok(())
}

/// Deterministic values in [-1, 1): not all zeros, so no data-dependent fast
/// path flatters the timing, and the same on every run and board.
fn bench_input(shape: &[usize]) -> Result<Tensor, BenchError> {
    let n = shape_elements(shape).unwrap_or(0);
    let mut x: u32 = 0x9E37_79B9;
    let data: Vec<f32> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_shape(shape, &data)
        .map_err(|e| BenchError::Internal(format!("building the input tensor: {e:#}")))
}

/// Parses, concretises and optimises an ONNX model. `input_shape` overrides
/// the declared input shape; without it the declared one must be concrete.
pub fn load(onnx: &[u8], input_shape: Option<&[usize]>) -> Result<LoadedModel, BenchError> {
    if let Some(shape) = input_shape {
        check_shape(shape)?;
    }
    let onnx = onnx.to_vec();
    let input_shape = input_shape.map(<[usize]>::to_vec);
    isolated("loading the model", move || {
        load_inner(&onnx, input_shape.as_deref())
    })
}

fn load_inner(onnx: &[u8], input_shape: Option<&[usize]>) -> Result<LoadedModel, BenchError> {
    let bad = |what: &str, e: TractError| BenchError::BadModel(format!("{what}: {e:#}"));
    let started = Instant::now();
    let mut reader = onnx;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut reader)
        .map_err(|e| {
            bad(
                &format!("cannot parse the ONNX model ({} bytes)", onnx.len()),
                e,
            )
        })?;

    let inputs = model
        .input_outlets()
        .map_err(|e| bad("reading model inputs", e))?
        .len();
    if inputs != 1 {
        return Err(BenchError::BadModel(format!(
            "the model has {inputs} inputs; the agent runs single-input models"
        )));
    }
    let name = model
        .input_outlets()
        .ok()
        .and_then(|o| o.first().map(|o| model.node(o.node).name.clone()))
        .unwrap_or_default();
    let fact = model
        .input_fact(0)
        .map_err(|e| bad("reading the input", e))?
        .clone();
    if let Some(dt) = fact.datum_type.concretize()
        && dt != f32::datum_type()
    {
        return Err(BenchError::BadModel(format!(
            "input '{name}' is {dt:?}; the agent feeds f32 tensors"
        )));
    }
    let declared = shape_text(&fact.shape);
    let shape: Vec<usize> = match input_shape {
        Some(shape) => {
            if let Some(rank) = fact.shape.rank().concretize()
                && rank as usize != shape.len()
            {
                return Err(BenchError::BadInput(format!(
                    "input shape {shape:?} has rank {}, but input '{name}' is declared \
                     {declared} (rank {rank})",
                    shape.len()
                )));
            }
            for (axis, (dim, &want)) in fact.shape.dims().zip(shape).enumerate() {
                if let Some(have) = dim.concretize().and_then(|d| d.to_usize().ok())
                    && have != want
                {
                    return Err(BenchError::BadInput(format!(
                        "input shape {shape:?} disagrees with input '{name}' declared \
                         {declared} on axis {axis}"
                    )));
                }
            }
            shape.to_vec()
        }
        None => match fact.shape.as_concrete_finite() {
            Ok(Some(shape)) => {
                let shape = shape.to_vec();
                check_shape(&shape)?;
                shape
            }
            _ => {
                return Err(BenchError::BadModel(format!(
                    "input '{name}' has shape {declared}, which is not fully concrete; send \
                     input_shape with LoadModel (tract runs symbolic shapes far slower, so the \
                     agent does not benchmark them)"
                )));
            }
        },
    };
    model
        .set_input_fact(0, f32::fact(&shape).into())
        .map_err(|e| bad("setting the input shape", e))?;
    let typed = model
        .into_optimized()
        .map_err(|e| bad("tract cannot optimise the model", e))?;
    if typed.output_outlets().map(|o| o.is_empty()).unwrap_or(true) {
        return Err(BenchError::BadModel("the model has no outputs".to_string()));
    }
    let plan = typed
        .into_runnable()
        .map_err(|e| bad("tract cannot plan the model", e))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    // One trial run now, so a model that fails at run time is refused at
    // load time, and the output shape is the real one.
    let input = bench_input(&shape)?;
    let outputs = plan
        .run(tvec![input.clone().into_tvalue()])
        .map_err(|e| bad("trial run failed", e))?;
    let output_shape = outputs
        .first()
        .map(|o| o.shape().to_vec())
        .unwrap_or_default();
    Ok(LoadedModel {
        plan,
        input_shape: shape,
        output_shape,
        input: input.into_tvalue(),
        load_ms,
    })
}

impl LoadedModel {
    /// The concrete input shape the model was optimised for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Shape of the first output.
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Time spent parsing, optimising and planning, in ms.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }
}
