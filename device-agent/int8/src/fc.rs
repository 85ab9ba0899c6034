//! Fully connected layer, int8 vector in, int8 vector out: the classifier
//! of a network's head ([`fully_connected_s8`], CMSIS-NN's
//! `arm_fully_connected_s8` for batch 1, via `arm_nn_vec_mat_mult_t_s8`).
//!
//! Every output is
//! `clamp(requant(bias_o + Σ (x + input_offset) * w) + output_offset)`
//! with `i32` wrapping accumulation, like the convolutions, but with ONE
//! requantization multiplier for the whole layer: CMSIS-NN's fully
//! connected takes `cmsis_nn_per_tensor_quant_params` (TFLite's
//! `FULLY_CONNECTED` quantizes its weights per tensor). Weights are
//! symmetric (CMSIS-NN's `filter_offset` 0).

#[cfg(test)]
mod tests;

use crate::error::{Error, check_len, mul};
use crate::quant::ConvQuant;
use crate::requant::Requant;

/// A fully connected layer's constants: weights, a bias per output and one
/// requantization multiplier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FcWeights<'a> {
    /// int8, symmetric, `[out_features][in_features]`.
    pub weights: &'a [i8],
    /// `[out_features]`, in units of `input_scale * weight_scale`.
    pub bias: &'a [i32],
    /// `input_scale * weight_scale / output_scale`, for every output.
    pub requant: Requant,
}

impl FcWeights<'_> {
    /// Lengths for `outputs × inputs` weights and the requant in range.
    /// `names` label the two slices in errors.
    pub(crate) fn check(
        &self,
        names: &[&'static str; 2],
        outputs: usize,
        inputs: usize,
    ) -> Result<(), Error> {
        check_len(names[0], self.weights.len(), mul(outputs, inputs)?)?;
        check_len(names[1], self.bias.len(), outputs)?;
        self.requant.check()
    }
}

/// Dimensions of a fully connected layer (CMSIS-NN's `accum_depth` and
/// `output_depth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FcShape {
    /// Input vector length.
    pub in_features: usize,
    /// Output vector length.
    pub out_features: usize,
}

/// Fully connected layer: input `[in_features]`, weights
/// `[out_features][in_features]`, output `[out_features]`. `quant` carries
/// the same four numbers as CMSIS-NN's `cmsis_nn_fc_params` (offsets and
/// clamp), with the same ranges.
pub fn fully_connected_s8(
    shape: FcShape,
    input: &[i8],
    layer: &FcWeights<'_>,
    quant: &ConvQuant,
    output: &mut [i8],
) -> Result<(), Error> {
    let FcShape {
        in_features,
        out_features,
    } = shape;
    if in_features == 0 || out_features == 0 {
        // Also what keeps `chunks_exact` below from panicking.
        return Err(Error::Shape("fully connected sizes must be at least 1"));
    }
    quant.check()?;
    layer.check(&["weights", "bias"], out_features, in_features)?;
    check_len("input", input.len(), in_features)?;
    check_len("output", output.len(), out_features)?;

    let rows = layer.weights.chunks_exact(in_features).zip(layer.bias);
    for (o, (w, &bias)) in output.iter_mut().zip(rows) {
        *o = quant.output(quant.dot(bias, input, w), layer.requant);
    }
    Ok(())
}
