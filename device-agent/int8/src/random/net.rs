//! Seeded stems and heads (feature `alloc`), drawn like [`RandomBlock`]s:
//! PCG32's raw output only, plain IEEE-754 `f64` arithmetic, so host and
//! board derive the same integers from the same seed; each has a
//! fingerprint, pinned in `tests.rs`.
//!
//! Each kind draws from a PCG32 stream of its own (stem 2, head 3; blocks
//! use stream 0 and [`random_input`] stream 1), so the stem, the head and
//! the block of one seed are unrelated.
//!
//! [`RandomBlock`]: super::RandomBlock
//! [`random_input`]: super::random_input

#[cfg(test)]
mod tests;

use alloc::vec::Vec;

use super::{Draw, Fnv, INPUT_RMS, Layer, Pcg32, RandomConv, WEIGHT_STD, isqrt, relu6_output};
use crate::error::Error;
use crate::fc::FcWeights;
use crate::net_blocks::{HeadParams, StemParams};
use crate::net_shape::{HeadShape, StemShape};
use crate::quant::Activation;
use crate::requant::{Requant, quantize_multiplier};

/// Stream of the stem's draws.
const STEM_STREAM: u64 = 2;
/// Stream of the head's draws.
const HEAD_STREAM: u64 = 3;
/// Rough RMS, across channels, of a ReLU6 output averaged over many pixels,
/// in units of its pre-activation's standard deviation: the average keeps
/// each channel's mean (0.4 to 1 standard deviation for this module's
/// biases) and drops most of its spread. Below `RELU_RMS` (0.8), which a 1×1 map
/// keeps whole.
const POOLED_RMS: f64 = 0.6;

/// A seeded generator on `stream`.
fn draw(seed: u64, stream: u64) -> Draw {
    Draw(Pcg32::new(seed, stream))
}

/// A stem with seeded, plausible weights and quantization: the input
/// quantized as a [`super::RandomBlock`]'s (scale 0.02 to 0.06, zero point
/// −16 to 16), a ReLU6 output (6.0 over 200 to 255 steps, zero point −128 to
/// −120), weight scales per channel such that the pre-activation's real
/// standard deviation is 1.5 to 3 (± 50 % per channel) for a uniform int8
/// input, biases within about one standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomStem {
    /// The shape it was drawn for.
    pub shape: StemShape,
    /// The convolution, `[out_c][k][k][in_c]`.
    pub conv: RandomConv,
    /// See [`StemParams::input_zero_point`].
    pub input_zero_point: i8,
    /// See [`StemParams::output`].
    pub output: Activation,
    /// The input's float scale.
    pub input_scale: f32,
    /// The output's float scale.
    pub output_scale: f32,
}

impl RandomStem {
    /// The stem for `seed`; `Err` when `shape` is invalid.
    pub fn new(shape: StemShape, seed: u64) -> Result<Self, Error> {
        shape.validate()?;
        let mut rng = draw(seed, STEM_STREAM);
        let input_scale = rng.uniform(0.02, 0.06) as f32;
        let input_zero_point = rng.int(-16, 16) as i8;
        let (output_scale, output) = relu6_output(&mut rng);
        let taps = shape.kernel * shape.kernel * shape.in_c;
        let layer = Layer {
            in_scale: input_scale,
            in_rms: INPUT_RMS,
            fan_in: taps,
            out_scale: output_scale,
            target_std: rng.uniform(1.5, 3.0),
        };
        let conv = layer.draw(&mut rng, shape.out_c, taps);
        Ok(RandomStem {
            shape,
            conv,
            input_zero_point,
            output,
            input_scale,
            output_scale,
        })
    }

    /// Borrowed parameters for [`crate::run_stem`].
    pub fn params(&self) -> StemParams<'_> {
        StemParams {
            conv: self.conv.as_weights(),
            input_zero_point: self.input_zero_point,
            output: self.output,
        }
    }

    /// FNV-1a 64 over every integer parameter in a fixed order (weights,
    /// biases, requants, zero points, clamp): equal on two machines iff they
    /// drew the same stem.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        hash_conv(&mut h, &self.conv);
        h.bytes(&self.input_zero_point.to_le_bytes());
        hash_activation(&mut h, self.output);
        h.0
    }
}

/// A fully connected layer's owned constants and the made-up float weight
/// scale they were derived from (one for the layer: per-tensor).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomFc {
    /// int8 weights, `[out][in]`, uniform in `[-127, 127]`.
    pub weights: Vec<i8>,
    /// Biases in units of `input_scale * weight_scale`.
    pub bias: Vec<i32>,
    /// `input_scale * weight_scale / output_scale`, quantized.
    pub requant: Requant,
    /// The weights' scale (real weight = scale * int8).
    pub weight_scale: f32,
}

impl RandomFc {
    /// Borrowed view for [`HeadParams`].
    pub fn as_weights(&self) -> FcWeights<'_> {
        FcWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: self.requant,
        }
    }
}

/// A head with seeded, plausible weights and quantization: the input
/// quantized as a [`RandomStem`]'s, the 1×1 convolution drawn as the stem's
/// (ReLU6 output, pre-activation spread 1.5 to 3), the pooled vector sharing
/// its quantization, and a classifier whose one weight scale makes the
/// logits' real spread 1 to 3 for the pooled vector's expected RMS
/// (`POOLED_RMS`), with a linear output spanning about ±4 of those spreads
/// (as [`super::RandomBlock`]'s projection) and biases within half a spread.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomHead {
    /// The shape it was drawn for.
    pub shape: HeadShape,
    /// The 1×1 convolution, `[channels][in_c]`.
    pub conv: RandomConv,
    /// The classifier, `[classes][channels]`.
    pub fc: RandomFc,
    /// See [`HeadParams::input_zero_point`].
    pub input_zero_point: i8,
    /// See [`HeadParams::conv_out`].
    pub conv_out: Activation,
    /// See [`HeadParams::logits`].
    pub logits: Activation,
    /// The input's float scale.
    pub input_scale: f32,
    /// The convolution output's (and pooled vector's) float scale.
    pub conv_scale: f32,
    /// The logits' float scale.
    pub logit_scale: f32,
}

impl RandomHead {
    /// The head for `seed`; `Err` when `shape` is invalid.
    pub fn new(shape: HeadShape, seed: u64) -> Result<Self, Error> {
        shape.validate()?;
        let mut rng = draw(seed, HEAD_STREAM);
        let input_scale = rng.uniform(0.02, 0.06) as f32;
        let input_zero_point = rng.int(-16, 16) as i8;
        let (conv_scale, conv_out) = relu6_output(&mut rng);
        let layer = Layer {
            in_scale: input_scale,
            in_rms: INPUT_RMS,
            fan_in: shape.in_c,
            out_scale: conv_scale,
            target_std: rng.uniform(1.5, 3.0),
        };
        let conv = layer.draw(&mut rng, shape.channels, shape.in_c);
        // RMS of the pooled vector's `x - zero_point`, in int8 steps.
        let pooled_rms = POOLED_RMS * layer.target_std / f64::from(conv_scale);

        let logit_std = rng.uniform(1.0, 3.0);
        let logit_scale = (logit_std * 8.0 / 255.0 * rng.uniform(0.8, 1.25)) as f32;
        let logits = Activation::linear(rng.int(-10, 10) as i8);
        let fan = isqrt(shape.channels).max(1) as f64;
        let base = logit_std / (f64::from(conv_scale) * pooled_rms * WEIGHT_STD * fan);
        let weight_scale = (base * rng.uniform(0.5, 1.5)) as f32;
        let bias_scale = f64::from(conv_scale) * f64::from(weight_scale);
        let bias = (0..shape.classes)
            .map(|_| (logit_std * rng.uniform(-0.5, 0.5) / bias_scale) as i32)
            .collect();
        let weights = (0..shape.classes * shape.channels)
            .map(|_| rng.int(-127, 127) as i8)
            .collect();
        let fc = RandomFc {
            weights,
            bias,
            requant: quantize_multiplier(bias_scale / f64::from(logit_scale)),
            weight_scale,
        };
        Ok(RandomHead {
            shape,
            conv,
            fc,
            input_zero_point,
            conv_out,
            logits,
            input_scale,
            conv_scale,
            logit_scale,
        })
    }

    /// Borrowed parameters for [`crate::run_head`].
    pub fn params(&self) -> HeadParams<'_> {
        HeadParams {
            conv: self.conv.as_weights(),
            input_zero_point: self.input_zero_point,
            conv_out: self.conv_out,
            fc: self.fc.as_weights(),
            logits: self.logits,
        }
    }

    /// FNV-1a 64 over every integer parameter in a fixed order (the
    /// convolution's, then the classifier's weights, biases and requant,
    /// then zero points and clamps): equal on two machines iff they drew the
    /// same head.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        hash_conv(&mut h, &self.conv);
        let fc = &self.fc;
        fc.weights.iter().for_each(|&w| h.bytes(&w.to_le_bytes()));
        fc.bias.iter().for_each(|&b| h.bytes(&b.to_le_bytes()));
        h.bytes(&fc.requant.multiplier.to_le_bytes());
        h.bytes(&fc.requant.shift.to_le_bytes());
        h.bytes(&self.input_zero_point.to_le_bytes());
        hash_activation(&mut h, self.conv_out);
        hash_activation(&mut h, self.logits);
        h.0
    }
}

/// A convolution's integers, as [`super::RandomBlock::fingerprint`] hashes them.
fn hash_conv(h: &mut Fnv, conv: &RandomConv) {
    conv.weights.iter().for_each(|&w| h.bytes(&w.to_le_bytes()));
    conv.bias.iter().for_each(|&b| h.bytes(&b.to_le_bytes()));
    for r in &conv.requant {
        h.bytes(&r.multiplier.to_le_bytes());
        h.bytes(&r.shift.to_le_bytes());
    }
}

fn hash_activation(h: &mut Fnv, a: Activation) {
    h.bytes(&[a.zero_point as u8, a.min as u8, a.max as u8]);
}
