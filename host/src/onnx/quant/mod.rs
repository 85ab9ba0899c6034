//! Post-training int8 quantisation of a written float network, as a QDQ
//! ONNX file (QuantizeLinear / DequantizeLinear pairs) that tract and
//! onnxruntime both run, with the conventions of the int8 kernels the
//! microcontroller firmware runs (`padnas-int8`, CMSIS-NN):
//!
//! - weights per output channel, symmetric: `scale = max|w| / 127`, zero
//!   point 0, values in `-127..=127`; stored as int8 initializers, each
//!   followed by a per-axis (axis 0) `DequantizeLinear`;
//! - biases `i32` with `scale = input scale × weight scale` (per channel)
//!   and zero point 0, also through a per-axis `DequantizeLinear`, so the
//!   integer accumulator and the bias add up exactly as on the board;
//! - activations per tensor, asymmetric int8 (never uint8): the range seen
//!   on calibration images, widened to include 0 (so zero padding is exact),
//!   `scale = (max − min) / 255`, `zero_point = round(−128 − min / scale)`.
//!
//! Which tensors are activations: the graph input and every node's output,
//! except a convolution's output that only feeds its activation (ReLU /
//! ReLU6 is the int8 convolution's clamp, never a tensor of its own) and a
//! global pool's output that only feeds its `Flatten` (quantised after the
//! reshape, which changes no value). That is one int8 tensor per tensor the
//! firmware keeps in SRAM.
//!
//! The file is the float network (`write_network`) rewritten: `calibrate`
//! runs it in tract with every activation as an extra output and records
//! min/max; `write_qdq` rewrites it. Both take and give ONNX bytes, so the
//! float writer knows nothing of quantisation.

mod calibrate;
mod qdq;

pub use calibrate::{Calibration, calibrate, calibration_model};
pub use qdq::{META_SCHEME, activation_tensors, add_metadata, write_qdq};

use super::OnnxError;

/// Smallest int8 activation value.
pub const QMIN: i32 = -128;
/// Largest int8 value (activations and weights).
pub const QMAX: i32 = 127;

/// Quantisation of one activation tensor: `real = (q − zero_point) · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    /// Real value of one step (> 0).
    pub scale: f32,
    /// The int8 value that stands for real 0.
    pub zero_point: i8,
}

/// Quantisation parameters of an activation whose values were seen in
/// `[min, max]`. The range is widened to include 0 first, so real 0 (the
/// convolutions' zero padding, ReLU's floor) is exactly representable; a
/// range of width 0 (a tensor that was always 0) gets scale 1. Fails on a
/// non-finite bound.
pub fn activation_quant(min: f32, max: f32) -> Result<ActQuant, OnnxError> {
    if !min.is_finite() || !max.is_finite() || min > max {
        return Err(OnnxError::Quantize(format!(
            "activation range [{min}, {max}] is not a finite interval"
        )));
    }
    let lo = f64::from(min.min(0.0));
    let hi = f64::from(max.max(0.0));
    if hi - lo <= 0.0 {
        return Ok(ActQuant {
            scale: 1.0,
            zero_point: 0,
        });
    }
    let scale = ((hi - lo) / f64::from(QMAX - QMIN)) as f32;
    // As TFLite's nudging: the zero point from the low end, rounded (ties
    // away from zero) and kept in range.
    let zp = (f64::from(QMIN) - lo / f64::from(scale)).round();
    let zero_point = zp.clamp(f64::from(QMIN), f64::from(QMAX)) as i8;
    Ok(ActQuant { scale, zero_point })
}

/// Per-output-channel symmetric scales of a weight whose first axis has
/// `out_channels` rows: `max|w| / 127` per row; a row of zeros gets 1 (any
/// positive scale represents it exactly).
pub fn weight_scales(weight: &[f32], out_channels: usize) -> Vec<f32> {
    let per = weight.len().checked_div(out_channels).unwrap_or(0);
    (0..out_channels)
        .map(|c| {
            let m = weight[c * per..(c + 1) * per]
                .iter()
                .fold(0f32, |m, w| m.max(w.abs()));
            if m > 0.0 { m / QMAX as f32 } else { 1.0 }
        })
        .collect()
}

/// `w / scale` of its row, rounded half to even (ONNX's rounding), in
/// `-127..=127`.
pub fn quantize_weight(weight: &[f32], scales: &[f32]) -> Vec<i8> {
    let per = weight.len().checked_div(scales.len()).unwrap_or(0);
    weight
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let q = (w / scales[i / per]).round_ties_even();
            q.clamp(-(QMAX as f32), QMAX as f32) as i8
        })
        .collect()
}

/// The bias of a layer whose input has scale `input_scale` and whose weight
/// rows have `weight_scales`: per channel `scale = input_scale × weight
/// scale` (in f32, as onnxruntime's quantiser and TFLite compute it) and
/// `round(b / scale)` saturated to `i32`. Returns the integers and scales.
pub fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|&s| input_scale * s).collect();
    let q = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            let q = (f64::from(b) / f64::from(s)).round_ties_even();
            q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect();
    (q, scales)
}

#[cfg(test)]
pub(crate) mod tests;
