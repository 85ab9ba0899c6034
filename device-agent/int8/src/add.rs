//! Element-wise int8 addition with rescaling: the residual connection of an
//! MBConv block, CMSIS-NN's `arm_elementwise_add_s8`.
//!
//! Per element, as the C scalar loop (the DSP and MVE paths compute the
//! same values):
//!
//! ```text
//! a   = requant1((x1 + input1_offset) << left_shift)
//! b   = requant2((x2 + input2_offset) << left_shift)
//! out = clamp(requant_out(a + b) + output_offset, act_min, act_max)
//! ```
//!
//! The left shift (20 for int8 in TFLite) lifts the two inputs into a
//! common fixed-point scale with 20 fractional bits, so that rescaling each
//! one by a multiplier below 1 loses (almost) nothing before the sum is
//! rounded once to the output scale.

#[cfg(test)]
mod tests;

use crate::error::{Error, check_len};
use crate::requant::{Requant, quantize_multiplier};

/// The parameters of [`add_s8`], named after `arm_elementwise_add_s8`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddParams {
    /// Minus input 1's zero point, `-127..=128`.
    pub input1_offset: i32,
    /// Input 1's scale over twice the larger input scale.
    pub input1: Requant,
    /// Minus input 2's zero point, `-127..=128`.
    pub input2_offset: i32,
    /// Input 2's scale over twice the larger input scale.
    pub input2: Requant,
    /// `0..=23` (so that `255 << left_shift` fits an `i32`); TFLite uses 20.
    pub left_shift: i32,
    /// The output's zero point, `-128..=127`.
    pub output_offset: i32,
    /// Twice the larger input scale over `2^left_shift * output_scale`.
    pub output: Requant,
    /// Lowest output value.
    pub act_min: i8,
    /// Highest output value.
    pub act_max: i8,
}

impl AddParams {
    /// TFLite's left shift for int8 inputs.
    pub const LEFT_SHIFT: i32 = 20;

    /// The parameters TFLite's `Add` prepares for int8 tensors with these
    /// scales and zero points (`left_shift` 20, multipliers from
    /// [`quantize_multiplier`] of the same `f64` expressions), with no fused
    /// activation (the whole int8 range).
    pub fn from_scales(
        input1_scale: f32,
        input1_zero_point: i8,
        input2_scale: f32,
        input2_zero_point: i8,
        output_scale: f32,
        output_zero_point: i8,
    ) -> Self {
        let twice_max = 2.0 * f64::from(input1_scale.max(input2_scale));
        let lifted_output = f64::from(1u32 << Self::LEFT_SHIFT) * f64::from(output_scale);
        AddParams {
            input1_offset: -i32::from(input1_zero_point),
            input1: quantize_multiplier(f64::from(input1_scale) / twice_max),
            input2_offset: -i32::from(input2_zero_point),
            input2: quantize_multiplier(f64::from(input2_scale) / twice_max),
            left_shift: Self::LEFT_SHIFT,
            output_offset: i32::from(output_zero_point),
            output: quantize_multiplier(twice_max / lifted_output),
            act_min: i8::MIN,
            act_max: i8::MAX,
        }
    }

    /// `Ok` when every field is in the range documented on it, the three
    /// multipliers pass [`Requant::check`] and `act_min <= act_max`.
    pub fn check(&self) -> Result<(), Error> {
        if !(-127..=128).contains(&self.input1_offset)
            || !(-127..=128).contains(&self.input2_offset)
        {
            return Err(Error::Param("add input offset outside -127..=128"));
        }
        if !(-128..=127).contains(&self.output_offset) {
            return Err(Error::Param("add output_offset outside -128..=127"));
        }
        if !(0..=23).contains(&self.left_shift) {
            return Err(Error::Param("add left_shift outside 0..=23"));
        }
        if self.act_min > self.act_max {
            return Err(Error::Param("add act_min > act_max"));
        }
        self.input1.check()?;
        self.input2.check()?;
        self.output.check()
    }

    /// One element (parameters already checked).
    #[inline]
    fn element(&self, x1: i8, x2: i8) -> i8 {
        let shift = self.left_shift.unsigned_abs();
        let a = self
            .input1
            .apply((i32::from(x1) + self.input1_offset).wrapping_shl(shift));
        let b = self
            .input2
            .apply((i32::from(x2) + self.input2_offset).wrapping_shl(shift));
        self.output
            .apply(a.wrapping_add(b))
            .wrapping_add(self.output_offset)
            .clamp(i32::from(self.act_min), i32::from(self.act_max)) as i8
    }
}

/// `output[i] = input1[i] ⊕ input2[i]`, all three of one length.
pub fn add_s8(
    input1: &[i8],
    input2: &[i8],
    params: &AddParams,
    output: &mut [i8],
) -> Result<(), Error> {
    params.check()?;
    check_len("input2", input2.len(), input1.len())?;
    check_len("output", output.len(), input1.len())?;
    for ((o, &a), &b) in output.iter_mut().zip(input1).zip(input2) {
        *o = params.element(a, b);
    }
    Ok(())
}

/// [`add_s8`] writing over its second input: `input2_output[i] =
/// input1[i] ⊕ input2_output[i]`. The residual add of a block uses it so that
/// the projection's output needs no buffer of its own.
pub fn add_s8_in_place(
    input1: &[i8],
    input2_output: &mut [i8],
    params: &AddParams,
) -> Result<(), Error> {
    params.check()?;
    check_len("input2", input2_output.len(), input1.len())?;
    for (o, &a) in input2_output.iter_mut().zip(input1) {
        *o = params.element(a, *o);
    }
    Ok(())
}
