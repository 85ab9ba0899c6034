//! Tests only: the helpers every test module shares, kept here once rather
//! than copied into each module's tests.
//!
//! - [`Rng`]: random test cases, including the extremes the kernels must
//!   survive (shifts at both ends of their range, multipliers near
//!   `i32::MAX`, offsets at the ends of CMSIS-NN's ranges, clamps);
//! - shapes by their fields in order ([`block_shape`], [`stem_shape`],
//!   [`head_shape`]) and the errors tests expect ([`length`],
//!   [`too_small`]);
//! - the float side of the float tests ([`real`], [`clamp_to`], [`steps`],
//!   [`max_steps`], [`float_layer`], [`float_pointwise`]) and the spread of
//!   an int8 tensor ([`spread`]).
//!
//! Only test modules import it, so it may import any module (it builds
//! their inputs, `random`'s weights included) without a production cycle.

use std::vec::Vec;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::error::Error;
use crate::net_shape::{HeadShape, StemShape};
use crate::quant::{Activation, ConvQuant};
use crate::random::RandomConv;
use crate::requant::{Requant, quantize_multiplier};
use crate::shape::BlockShape;

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `lo..=hi` (i64 arithmetic, any i32 bounds).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1) as u128;
        lo + ((u128::from(self.0.next_u64()) * span) >> 64) as i64
    }

    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as i64, hi as i64) as usize
    }

    pub fn chance(&mut self, percent: i64) -> bool {
        self.int(0, 99) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.size(0, items.len() - 1)]
    }

    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.int(-128, 127) as i8).collect()
    }

    /// Uniform in `[lo, hi)`.
    pub fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Any valid requant, weighted towards the awkward ones.
    pub fn requant(&mut self) -> Requant {
        match self.int(0, 9) {
            // plausible: a real multiplier between 2^-20 and 2^4
            0..=4 => quantize_multiplier(2f64.powf(self.float(-20.0, 4.0))),
            // multiplier at or near i32::MAX
            5 => Requant::new(i32::MAX - self.int(0, 3) as i32, self.int(-31, 30) as i32),
            // exactly 2^30: every odd product is a tie
            6 => Requant::new(1 << 30, self.int(-31, 30) as i32),
            // shift at an end of its range
            7 => Requant::new(
                self.int(1 << 30, i64::from(i32::MAX)) as i32,
                self.pick(&[-31, -30, 29, 30]),
            ),
            // anything CMSIS-NN accepts, negative multipliers included
            _ => Requant::new(
                self.int(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32,
                self.int(-31, 30) as i32,
            ),
        }
    }

    /// Requant giving int8-sized outputs for accumulators of this size.
    pub fn requant_for(&mut self, acc_magnitude: f64) -> Requant {
        quantize_multiplier(self.float(20.0, 200.0) / acc_magnitude)
    }

    /// Offsets anywhere in range (ends included), clamps sometimes narrow.
    pub fn conv_quant(&mut self) -> ConvQuant {
        let input_offset = if self.chance(20) {
            self.pick(&[-127, 128])
        } else {
            self.int(-127, 128) as i32
        };
        let output_offset = if self.chance(20) {
            self.pick(&[-128, 127])
        } else {
            self.int(-128, 127) as i32
        };
        let (act_min, act_max) = if self.chance(50) {
            (-128, 127)
        } else {
            let a = self.int(-128, 127) as i8;
            let b = self.int(-128, 127) as i8;
            (a.min(b), a.max(b))
        };
        ConvQuant {
            input_offset,
            output_offset,
            act_min,
            act_max,
        }
    }
}

/// One random convolution's owned constants ([`Rng::conv_layer`]).
pub struct OwnedConv {
    pub weights: Vec<i8>,
    pub bias: Vec<i32>,
    pub requant: Vec<Requant>,
}

impl OwnedConv {
    pub fn view(&self) -> crate::conv::ConvWeights<'_> {
        crate::conv::ConvWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
        }
    }
}

impl Rng {
    /// A bias for an accumulator of about this size, sometimes far larger.
    pub fn bias_for(&mut self, acc_magnitude: f64) -> i32 {
        if self.chance(10) {
            self.int(-(1 << 24), 1 << 24) as i32
        } else {
            self.int(-(acc_magnitude as i64), acc_magnitude as i64) as i32
        }
    }

    /// Random constants for `channels` outputs of `per_channel` weights,
    /// `taps` terms per accumulator: mostly requants that keep outputs
    /// inside the int8 range (else the comparisons would see saturated
    /// values only), sometimes any valid one.
    pub fn conv_layer(&mut self, channels: usize, per_channel: usize, taps: usize) -> OwnedConv {
        let acc = 128.0 * 128.0 * (taps as f64).sqrt();
        let plausible = self.chance(70);
        OwnedConv {
            weights: self.i8s(channels * per_channel),
            bias: (0..channels).map(|_| self.bias_for(acc)).collect(),
            requant: (0..channels)
                .map(|_| {
                    if plausible {
                        self.requant_for(acc)
                    } else {
                        self.requant()
                    }
                })
                .collect(),
        }
    }
}

/// An MBConv block's shape, its fields in order; `hw` is `(h, w)`.
pub fn block_shape(
    in_c: usize,
    out_c: usize,
    expand: usize,
    kernel: usize,
    stride: usize,
    hw: (usize, usize),
) -> BlockShape {
    BlockShape {
        in_c,
        out_c,
        expand,
        kernel,
        stride,
        h: hw.0,
        w: hw.1,
    }
}

/// A stem's shape, its fields in order; `hw` is `(h, w)`.
pub fn stem_shape(
    in_c: usize,
    out_c: usize,
    kernel: usize,
    stride: usize,
    hw: (usize, usize),
) -> StemShape {
    StemShape {
        in_c,
        out_c,
        kernel,
        stride,
        h: hw.0,
        w: hw.1,
    }
}

/// A head's shape, its fields in order; `hw` is `(h, w)`.
pub fn head_shape(in_c: usize, channels: usize, classes: usize, hw: (usize, usize)) -> HeadShape {
    HeadShape {
        in_c,
        channels,
        classes,
        h: hw.0,
        w: hw.1,
    }
}

/// The error of a slice `what` with `got` elements instead of `expected`,
/// as a result of any type (a kernel's, a run's, a decoder's).
pub fn length<T>(what: &'static str, expected: usize, got: usize) -> Result<T, Error> {
    Err(Error::Length {
        what,
        expected,
        got,
    })
}

/// The error of an arena one byte short of `needed`.
pub fn too_small<T>(needed: usize) -> Result<T, Error> {
    Err(Error::ArenaTooSmall {
        needed,
        got: needed - 1,
    })
}

/// Share of `q` at the ends of `lo..=hi`, and the number of distinct values:
/// how much of its range a random tensor uses.
pub fn spread(q: &[i8], lo: i8, hi: i8) -> (f64, usize) {
    let at_ends = q.iter().filter(|&&v| v == lo || v == hi).count();
    let mut seen = [false; 256];
    q.iter()
        .for_each(|&v| seen[(i32::from(v) + 128) as usize] = true);
    (
        at_ends as f64 / q.len() as f64,
        seen.iter().filter(|&&s| s).count(),
    )
}

/// Dequantized int8 tensor.
pub fn real(q: &[i8], scale: f32, zero_point: i8) -> Vec<f64> {
    let (s, z) = (f64::from(scale), i32::from(zero_point));
    q.iter().map(|&v| s * f64::from(i32::from(v) - z)).collect()
}

/// Clamp real values to what an int8 tensor with this quantization and
/// clamp can represent (for ReLU6 tensors: [0, 6] within the int8 range).
pub fn clamp_to(x: &mut [f64], scale: f32, act: Activation) {
    let lo = f64::from(scale) * f64::from(i32::from(act.min) - i32::from(act.zero_point));
    let hi = f64::from(scale) * f64::from(i32::from(act.max) - i32::from(act.zero_point));
    x.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
}

/// Each |int8 - real / scale - zero point|, in steps of the int8 tensor.
pub fn steps(q: &[i8], x: &[f64], scale: f32, zero_point: i8) -> Vec<f64> {
    q.iter()
        .zip(x)
        .map(|(&q, &x)| (f64::from(q) - x / f64::from(scale) - f64::from(zero_point)).abs())
        .collect()
}

/// The largest of [`steps`].
pub fn max_steps(q: &[i8], x: &[f64], scale: f32, zero_point: i8) -> f64 {
    steps(q, x, scale, zero_point)
        .into_iter()
        .fold(0.0, f64::max)
}

/// Real per-channel weight scales and biases of `conv` behind an input of
/// scale `in_scale` (bias scale = input scale × weight scale, as TFLite).
pub fn float_layer(conv: &RandomConv, in_scale: f32) -> (Vec<f64>, Vec<f64>) {
    let scales: Vec<f64> = conv.weight_scales.iter().map(|&w| f64::from(w)).collect();
    let bias = conv
        .bias
        .iter()
        .zip(&scales)
        .map(|(&b, &w)| f64::from(b) * f64::from(in_scale) * w)
        .collect();
    (scales, bias)
}

/// Float 1×1 convolution of real HWC values (`[out_c][in_c]` weights, as
/// an MBConv block's expand and project and a head's convolution).
pub fn float_pointwise(x: &[f64], in_c: usize, conv: &RandomConv, in_scale: f32) -> Vec<f64> {
    let (ws, b) = float_layer(conv, in_scale);
    let out_c = b.len();
    let mut out = Vec::new();
    for px in x.chunks(in_c) {
        for oc in 0..out_c {
            let dot: f64 = (0..in_c)
                .map(|ic| px[ic] * f64::from(conv.weights[oc * in_c + ic]) * ws[oc])
                .sum();
            out.push(dot + b[oc]);
        }
    }
    out
}
