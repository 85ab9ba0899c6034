//! Fixed-point requantization: an `i32` accumulator times a real multiplier,
//! in integer arithmetic only.
//!
//! A real multiplier `M` is stored as `multiplier * 2^(shift - 31)` with
//! `multiplier` a Q31 number in `[2^30, 2^31)` (TFLite's `QuantizeMultiplier`).
//! [`Requant::apply`] is CMSIS-NN's `arm_nn_requantize` in its default
//! (double rounding) build: `arm_nn_doubling_high_mult_no_sat` of the
//! left-shifted value, then `arm_nn_divide_by_power_of_two`.
//!
//! The result is the same as TFLite's reference `MultiplyByQuantizedMultiplier`
//! (double-rounding build), which uses gemmlowp's scalar
//! `SaturatingRoundingDoublingHighMul` instead: its nudge of `1 - 2^30` for
//! negative products followed by C's truncating division is
//! `floor((a·b + 2^30) / 2^31)` too, i.e. both round ties upwards (as the
//! `VQRDMULH` instruction does). They differ only for `i32::MIN · i32::MIN`,
//! which gemmlowp saturates and a requantization never meets (its multiplier
//! is positive). `tests.rs` checks this equivalence on random and edge inputs.

#[cfg(test)]
mod tests;

use crate::error::Error;

/// A real multiplier in fixed point: `multiplier * 2^(shift - 31)`.
///
/// Positive `shift` shifts left before the multiply (as CMSIS-NN's
/// `LEFT_SHIFT`), negative shifts right after it (`RIGHT_SHIFT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requant {
    /// Q31 significand; `[2^30, 2^31)` from [`quantize_multiplier`], or 0.
    pub multiplier: i32,
    /// Power-of-two exponent, `-31..=30` (CMSIS-NN's supported range).
    pub shift: i32,
}

impl Requant {
    /// The multiplier 0: every value requantizes to 0.
    pub const ZERO: Requant = Requant {
        multiplier: 0,
        shift: 0,
    };

    /// A multiplier from its two fields (no checks: see [`Requant::check`]).
    pub const fn new(multiplier: i32, shift: i32) -> Self {
        Requant { multiplier, shift }
    }

    /// `Ok` when CMSIS-NN's `arm_nn_requantize` supports these values:
    /// multiplier in `[i32::MIN + 1, i32::MAX]`, shift in `[-31, 30]`.
    /// The kernels check every channel's parameters with this before running.
    pub fn check(self) -> Result<(), Error> {
        if self.multiplier == i32::MIN {
            return Err(Error::Param("requant multiplier is i32::MIN"));
        }
        if !(-31..=30).contains(&self.shift) {
            return Err(Error::Param("requant shift outside -31..=30"));
        }
        Ok(())
    }

    /// `val * M`, rounded, as CMSIS-NN's `arm_nn_requantize` (default build,
    /// neither `CMSIS_NN_USE_SINGLE_ROUNDING` nor the inline-assembly path,
    /// which computes the same values).
    ///
    /// The left shift wraps, as the C `val * (1 << shift)` does on a Cortex-M.
    /// Outside [`Requant::check`]'s range the result is unspecified, but this
    /// never panics.
    #[inline]
    pub fn apply(self, val: i32) -> i32 {
        let (left, right) = self.shifts();
        divide_by_power_of_two(
            doubling_high_mult_no_sat(val.wrapping_shl(left), self.multiplier),
            right,
        )
    }

    /// CMSIS-NN's `LEFT_SHIFT(shift)` and `RIGHT_SHIFT(shift)`.
    #[inline]
    fn shifts(self) -> (u32, u32) {
        if self.shift > 0 {
            (self.shift.unsigned_abs(), 0)
        } else {
            (0, self.shift.unsigned_abs())
        }
    }
}

/// CMSIS-NN's `arm_nn_doubling_high_mult_no_sat`: `(m1 * m2 + 2^30) >> 31`,
/// the high word of the doubled product, ties rounded up.
///
/// No saturation: only `m1 == m2 == i32::MIN` would need it, and a
/// requantization multiplier is never `i32::MIN`. That case wraps.
#[inline]
pub fn doubling_high_mult_no_sat(m1: i32, m2: i32) -> i32 {
    // Cannot overflow i64: |m1 * m2| <= 2^62.
    ((i64::from(m1) * i64::from(m2) + (1 << 30)) >> 31) as i32
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul` (scalar version): the
/// high word of `2 * a * b`, rounded to nearest with ties upwards (the same
/// values as [`doubling_high_mult_no_sat`]), saturating the one overflowing
/// case `a == b == i32::MIN` to `i32::MAX`.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Rust's `/` truncates toward zero, as C's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `dividend / 2^exponent` rounded to nearest, ties away from zero:
/// CMSIS-NN's `arm_nn_divide_by_power_of_two` and gemmlowp's
/// `RoundingDivideByPOT` (the same function). `exponent` is `0..=31`;
/// larger values give an unspecified result without panicking.
#[inline]
pub fn divide_by_power_of_two(dividend: i32, exponent: u32) -> i32 {
    // Wrapping: for exponent 31 the C code relies on (1 << 31) - 1 == i32::MAX.
    let mask = 1i32.wrapping_shl(exponent).wrapping_sub(1);
    let remainder = mask & dividend;
    let mut result = dividend.wrapping_shr(exponent);
    // The arithmetic shift rounded toward -inf; a negative result's ties
    // must go down too (away from zero), hence the larger threshold.
    let mut threshold = mask >> 1;
    if result < 0 {
        threshold += 1;
    }
    if remainder > threshold {
        result += 1;
    }
    result
}

/// TFLite's `QuantizeMultiplier`: the [`Requant`] closest to `real`.
///
/// `real = q * 2^shift` with `q` in `[0.5, 1)` (C's `frexp`, done here on
/// the f64 bits because `core` has no `frexp`), `multiplier = round(q * 2^31)`
/// with ties away from zero (`std::round`). A rounded `q` of exactly 1 becomes
/// `2^30` with `shift + 1`; `shift < -31` flushes to [`Requant::ZERO`] (the
/// value would shift out entirely; subnormals land here too); `shift > 30`
/// saturates to `(i32::MAX, 30)`. Negative values give the negated multiplier
/// of their magnitude; NaN gives zero and infinities saturate (TFLite leaves
/// all three undefined).
///
/// To reproduce TFLite's parameters exactly, compute `real` as TFLite does:
/// from `f32` scales converted to `f64` before multiplying and dividing.
pub fn quantize_multiplier(real: f64) -> Requant {
    if real.is_nan() || real == 0.0 {
        return Requant::ZERO;
    }
    let bits = real.abs().to_bits();
    let biased_exponent = ((bits >> 52) & 0x7ff) as i32;
    let (mut q_fixed, mut shift) = match biased_exponent {
        0 => return Requant::ZERO, // subnormal: below 2^-1022
        0x7ff => ((1i64 << 31) - 1, 30),
        _ => {
            // real = mantissa * 2^(e - 1075) with a 53-bit mantissa, so
            // q = mantissa * 2^-53 and shift = e - 1022.
            let mantissa = ((bits & ((1 << 52) - 1)) | (1 << 52)) as i64;
            // round(q * 2^31) = round(mantissa / 2^22), exact in integers.
            ((mantissa + (1 << 21)) >> 22, biased_exponent - 1022)
        }
    };
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Requant::ZERO;
    }
    if shift > 30 {
        q_fixed = (1 << 31) - 1;
        shift = 30;
    }
    // q_fixed is in [2^30, 2^31 - 1] here.
    let multiplier = q_fixed as i32;
    Requant {
        multiplier: if real < 0.0 { -multiplier } else { multiplier },
        shift,
    }
}

/// `x` rounded to the nearest integer, ties away from zero (C's `roundf`,
/// which `core` lacks), saturated to `i32`. NaN gives 0.
pub(crate) fn round_f32(x: f32) -> i32 {
    // Beyond 2^23 every f32 is an integer already; `as` saturates (and
    // maps NaN to 0).
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x as i32;
    }
    let truncated = x as i32;
    let fraction = x - truncated as f32; // exact below 2^23
    if fraction >= 0.5 {
        truncated + 1
    } else if fraction <= -0.5 {
        truncated - 1
    } else {
        truncated
    }
}
