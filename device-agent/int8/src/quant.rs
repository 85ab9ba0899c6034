//! How an int8 activation tensor is quantized, and what a convolution needs
//! to know about its input and output tensors.
//!
//! The float scales themselves never reach the kernels: they are folded into
//! each channel's [`Requant`] on the host. What remains per tensor is its zero
//! point and, for a fused activation, its clamp range in the int8 domain.

use crate::error::Error;
use crate::requant::{Requant, round_f32};

/// An int8 activation tensor's zero point and the clamp a fused activation
/// applies to it (`min..=max`, in the quantized domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Activation {
    /// The int8 value that stands for real 0.
    pub zero_point: i8,
    /// Lowest value the producing layer may write.
    pub min: i8,
    /// Highest value the producing layer may write.
    pub max: i8,
}

impl Activation {
    /// No fused activation: the whole int8 range.
    pub const fn linear(zero_point: i8) -> Self {
        Activation {
            zero_point,
            min: i8::MIN,
            max: i8::MAX,
        }
    }

    /// ReLU6 fused into a layer whose output has this zero point and scale,
    /// as TFLite's `CalculateActivationRangeQuantized`: real 0 and 6 mapped to
    /// `zero_point + round(x / scale)` (in `f32`, as TFLite), intersected with
    /// the int8 range. In the quantized domain ReLU6 is nothing but this clamp.
    pub fn relu6(zero_point: i8, scale: f32) -> Self {
        let six = i32::from(zero_point).saturating_add(round_f32(6.0 / scale));
        Activation {
            zero_point,
            min: zero_point,
            max: six.clamp(i32::from(i8::MIN), i32::from(i8::MAX)) as i8,
        }
    }
}

/// The offsets and clamp of one convolution, as CMSIS-NN's
/// `cmsis_nn_conv_params` / `cmsis_nn_dw_conv_params` carry them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvQuant {
    /// Minus the input's zero point, `-127..=128` (CMSIS-NN's range).
    pub input_offset: i32,
    /// The output's zero point, `-128..=127`.
    pub output_offset: i32,
    /// Lowest output value (`activation.min`).
    pub act_min: i8,
    /// Highest output value (`activation.max`).
    pub act_max: i8,
}

impl ConvQuant {
    /// The parameters for a layer reading a tensor with zero point
    /// `input_zero_point` and writing `output`.
    pub fn new(input_zero_point: i8, output: Activation) -> Self {
        ConvQuant {
            input_offset: -i32::from(input_zero_point),
            output_offset: i32::from(output.zero_point),
            act_min: output.min,
            act_max: output.max,
        }
    }

    /// `Ok` when the offsets are in CMSIS-NN's ranges and the clamp range is
    /// not empty. The range of `input_offset` is also what keeps every
    /// product `(x + input_offset) * w` within 16 bits of magnitude.
    pub fn check(&self) -> Result<(), Error> {
        if !(-127..=128).contains(&self.input_offset) {
            return Err(Error::Param("input_offset outside -127..=128"));
        }
        if !(-128..=127).contains(&self.output_offset) {
            return Err(Error::Param("output_offset outside -128..=127"));
        }
        if self.act_min > self.act_max {
            return Err(Error::Param("act_min > act_max"));
        }
        Ok(())
    }

    /// `acc + Σ (x + input_offset) · w` over the zipped slices, with the
    /// `i32` wrapping adds the C code makes on a Cortex-M: the inner product
    /// of the 1×1, full and fully connected kernels, here once so that they
    /// cannot drift apart. (Depthwise runs the same sum across channels.)
    #[inline]
    pub(crate) fn dot(&self, acc: i32, x: &[i8], w: &[i8]) -> i32 {
        let offset = self.input_offset;
        // |x + offset| <= 255 and |w| <= 128: each product fits in 16 bits.
        x.iter().zip(w).fold(acc, |acc, (&x, &w)| {
            acc.wrapping_add((i32::from(x) + offset) * i32::from(w))
        })
    }

    /// One output value from its accumulator: requantize, add the output
    /// offset, clamp (the tail of every CMSIS-NN int8 convolution, and of the
    /// fully connected layer; every kernel calls this one).
    #[inline]
    pub(crate) fn output(&self, acc: i32, requant: Requant) -> i8 {
        requant
            .apply(acc)
            .wrapping_add(self.output_offset)
            .clamp(i32::from(self.act_min), i32::from(self.act_max)) as i8
    }
}
