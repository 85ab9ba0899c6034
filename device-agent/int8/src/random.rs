//! Seeded blocks and inputs (feature `alloc`): the same `u64` seed gives the
//! same block on the host and on the board, so the host can compute the
//! reference output of a block the board only received a seed for.
//!
//! The draws use PCG32 ([`Pcg32`]: O'Neill's PCG-XSH-RR 64/32, specified
//! by its reference implementation and platform independent), and only its
//! raw `next_u32`/`next_u64`: integer ranges and floats are derived here.
//! It replaced ChaCha8 (`rand_chacha`), whose block function took 2.5 KB
//! of the firmware's flash for weights that need no cryptographic strength;
//! PCG32 is a dozen instructions and passes TestU01's BigCrush. The f64
//! arithmetic is plain IEEE-754 (`+ - * /`, software-emulated but exact on
//! a Cortex-M4F), so the derived parameters agree too.
//! [`RandomBlock::fingerprint`] lets both sides check that they did.
//!
//! Changing the order or the formulas of the draws changes every seed's
//! block; `tests.rs` pins one fingerprint so that this cannot go unnoticed.

mod net;
#[cfg(test)]
mod tests;

pub use net::{RandomFc, RandomHead, RandomStem};

use alloc::vec::Vec;

use crate::add::AddParams;
use crate::block::BlockParams;
use crate::conv::ConvWeights;
use crate::error::Error;
use crate::quant::Activation;
use crate::requant::{Requant, quantize_multiplier};
use crate::shape::BlockShape;

/// Standard deviation of an int8 value drawn uniformly from `[-127, 127]`
/// (`sqrt((255² - 1) / 12)`): the weights' spread.
const WEIGHT_STD: f64 = 73.6;
/// Root mean square of `x - zero_point` for a uniform int8 input.
const INPUT_RMS: f64 = 74.0;
/// Rough RMS of a ReLU6 output in units of its pre-activation's standard
/// deviation (the negative half collapses to 0, the positive half is kept).
const RELU_RMS: f64 = 0.8;

/// One convolution's owned constants and the made-up float weight scales
/// they were derived from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RandomConv {
    /// int8 weights, layout as [`ConvWeights::weights`].
    pub weights: Vec<i8>,
    /// Biases in units of `input_scale * weight_scales[c]`.
    pub bias: Vec<i32>,
    /// `input_scale * weight_scales[c] / output_scale`, quantized.
    pub requant: Vec<Requant>,
    /// Per output channel weight scale (real weight = scale * int8).
    pub weight_scales: Vec<f32>,
}

impl RandomConv {
    /// Borrowed view for [`BlockParams`].
    pub fn as_weights(&self) -> ConvWeights<'_> {
        ConvWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
        }
    }
}

/// The float scale of every activation tensor of a [`RandomBlock`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorScales {
    /// Block input.
    pub input: f32,
    /// Expanded tensor (unused when `expand == 1`).
    pub expanded: f32,
    /// Depthwise output.
    pub depthwise: f32,
    /// Projection output.
    pub projected: f32,
    /// Residual-add output (equals `projected` for a non-residual block).
    pub output: f32,
}

/// A block with seeded, plausible weights and quantization: weights uniform
/// in `[-127, 127]`, per-channel weight scales chosen so that each stage's
/// pre-activation has a real spread of a few units (some ReLU6 outputs at 0,
/// some at 6, most in between; the projection's output spanning a good part
/// of its int8 range), biases within about one standard deviation of the
/// accumulator.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomBlock {
    /// The shape it was drawn for.
    pub shape: BlockShape,
    /// Expand convolution (empty when `expand == 1`).
    pub expand: RandomConv,
    /// Depthwise convolution.
    pub depthwise: RandomConv,
    /// Project convolution.
    pub project: RandomConv,
    /// See [`BlockParams::input_zero_point`].
    pub input_zero_point: i8,
    /// See [`BlockParams::expand_out`].
    pub expand_out: Activation,
    /// See [`BlockParams::depthwise_out`].
    pub depthwise_out: Activation,
    /// See [`BlockParams::project_out`].
    pub project_out: Activation,
    /// See [`BlockParams::add`] (drawn, but unused, for a non-residual block).
    pub add: AddParams,
    /// The float scales behind the parameters.
    pub scales: TensorScales,
}

impl RandomBlock {
    /// The block for `seed`; `Err` when `shape` is invalid.
    pub fn new(shape: BlockShape, seed: u64) -> Result<Self, Error> {
        shape.validate()?;
        let mut rng = Draw(Pcg32::new(seed, BLOCK_STREAM));
        let mid = shape.mid_c();

        let input_scale = rng.uniform(0.02, 0.06) as f32;
        let input_zero_point = rng.int(-16, 16) as i8;
        let mut x_rms = INPUT_RMS;
        let mut x_scale = input_scale;

        let (expand, expand_out, expanded_scale) = if shape.expand > 1 {
            let (scale, act) = relu6_output(&mut rng);
            let layer = Layer {
                in_scale: x_scale,
                in_rms: x_rms,
                fan_in: shape.in_c,
                out_scale: scale,
                target_std: rng.uniform(1.5, 3.0),
            };
            let conv = layer.draw(&mut rng, mid, shape.in_c);
            x_rms = RELU_RMS * layer.target_std / f64::from(scale);
            x_scale = scale;
            (conv, act, scale)
        } else {
            (RandomConv::default(), Activation::linear(0), 0.0)
        };

        let (depthwise_scale, depthwise_out) = relu6_output(&mut rng);
        let layer = Layer {
            in_scale: x_scale,
            in_rms: x_rms,
            fan_in: shape.kernel * shape.kernel,
            out_scale: depthwise_scale,
            target_std: rng.uniform(1.5, 3.0),
        };
        let depthwise = layer.draw(&mut rng, mid, shape.kernel * shape.kernel);
        x_rms = RELU_RMS * layer.target_std / f64::from(depthwise_scale);

        // Linear projection: about ±4 standard deviations over the int8 range.
        let projected_std = rng.uniform(0.5, 1.5);
        let projected_scale = (projected_std * 8.0 / 255.0 * rng.uniform(0.8, 1.25)) as f32;
        let project_out = Activation::linear(rng.int(-10, 10) as i8);
        let layer = Layer {
            in_scale: depthwise_scale,
            in_rms: x_rms,
            fan_in: mid,
            out_scale: projected_scale,
            target_std: projected_std,
        };
        let project = layer.draw(&mut rng, shape.out_c, mid);

        // The sum's spread is at most the sum of the spreads; ±3 of that.
        let input_std = f64::from(input_scale) * INPUT_RMS;
        let output_scale = ((input_std + projected_std) * 6.0 / 255.0) as f32;
        let output_zero_point = rng.int(-10, 10) as i8;
        let add = AddParams::from_scales(
            input_scale,
            input_zero_point,
            projected_scale,
            project_out.zero_point,
            output_scale,
            output_zero_point,
        );

        Ok(RandomBlock {
            shape,
            expand,
            depthwise,
            project,
            input_zero_point,
            expand_out,
            depthwise_out,
            project_out,
            add,
            scales: TensorScales {
                input: input_scale,
                expanded: expanded_scale,
                depthwise: depthwise_scale,
                projected: projected_scale,
                output: if shape.residual() {
                    output_scale
                } else {
                    projected_scale
                },
            },
        })
    }

    /// Borrowed parameters for [`crate::run_block`].
    pub fn params(&self) -> BlockParams<'_> {
        BlockParams {
            expand: self.expand.as_weights(),
            depthwise: self.depthwise.as_weights(),
            project: self.project.as_weights(),
            input_zero_point: self.input_zero_point,
            expand_out: self.expand_out,
            depthwise_out: self.depthwise_out,
            project_out: self.project_out,
            add: self.add,
        }
    }

    /// The block output's zero point (the add's output when residual).
    pub fn output_zero_point(&self) -> i8 {
        if self.shape.residual() {
            self.add.output_offset as i8
        } else {
            self.project_out.zero_point
        }
    }

    /// FNV-1a 64 over every integer parameter (weights, biases, requants,
    /// zero points, clamps, add parameters), in a fixed order: equal on two
    /// machines iff they drew the same block.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        for conv in [&self.expand, &self.depthwise, &self.project] {
            conv.weights.iter().for_each(|&w| h.bytes(&w.to_le_bytes()));
            conv.bias.iter().for_each(|&b| h.bytes(&b.to_le_bytes()));
            for r in &conv.requant {
                h.bytes(&r.multiplier.to_le_bytes());
                h.bytes(&r.shift.to_le_bytes());
            }
        }
        h.bytes(&self.input_zero_point.to_le_bytes());
        for a in [self.expand_out, self.depthwise_out, self.project_out] {
            h.bytes(&[a.zero_point as u8, a.min as u8, a.max as u8]);
        }
        let add = &self.add;
        for v in [
            add.input1_offset,
            add.input2_offset,
            add.left_shift,
            add.output_offset,
        ] {
            h.bytes(&v.to_le_bytes());
        }
        for r in [add.input1, add.input2, add.output] {
            h.bytes(&r.multiplier.to_le_bytes());
            h.bytes(&r.shift.to_le_bytes());
        }
        h.bytes(&[add.act_min as u8, add.act_max as u8]);
        h.0
    }
}

/// `len` int8 values uniform over the whole range, from `seed` (a stream of
/// its own: the input for seed `s` is unrelated to the block for seed `s`).
pub fn random_input(len: usize, seed: u64) -> Vec<i8> {
    let mut rng = Pcg32::new(seed, INPUT_STREAM);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let word = rng.next_u32().to_le_bytes();
        let take = (len - out.len()).min(4);
        out.extend(word[..take].iter().map(|&b| b as i8));
    }
    out
}

/// A ReLU6 output quantization: 6.0 spread over 200 to 255 steps, zero point
/// at or a little above -128 (so the upper clamp at 6 sometimes falls inside
/// the int8 range and sometimes at its end).
fn relu6_output(rng: &mut Draw) -> (f32, Activation) {
    let scale = (6.0 / rng.uniform(200.0, 255.0)) as f32;
    let zero_point = rng.int(-128, -120) as i8;
    (scale, Activation::relu6(zero_point, scale))
}

/// What a convolution's scales are chosen from.
struct Layer {
    in_scale: f32,
    /// RMS of `x - zero_point` of the input, in int8 steps.
    in_rms: f64,
    fan_in: usize,
    out_scale: f32,
    /// Wanted real standard deviation of the pre-activation.
    target_std: f64,
}

impl Layer {
    /// `channels` output channels of `per_channel` weights each.
    fn draw(&self, rng: &mut Draw, channels: usize, per_channel: usize) -> RandomConv {
        let mut conv = RandomConv::default();
        let fan = isqrt(self.fan_in).max(1) as f64;
        // Accumulator std in int units is in_rms * WEIGHT_STD * sqrt(fan);
        // the weight scale makes its real value target_std (± the jitter).
        let base = self.target_std / (f64::from(self.in_scale) * self.in_rms * WEIGHT_STD * fan);
        for _ in 0..channels {
            let weight_scale = (base * rng.uniform(0.5, 1.5)) as f32;
            let bias_scale = f64::from(self.in_scale) * f64::from(weight_scale);
            let bias_real = self.target_std * rng.uniform(-0.5, 1.0);
            conv.bias.push((bias_real / bias_scale) as i32);
            conv.requant
                .push(quantize_multiplier(bias_scale / f64::from(self.out_scale)));
            conv.weight_scales.push(weight_scale);
        }
        conv.weights = (0..channels * per_channel)
            .map(|_| rng.int(-127, 127) as i8)
            .collect();
        conv
    }
}

/// PCG32 (PCG-XSH-RR 64/32) as O'Neill's reference `pcg32_random_r`
/// computes it (pcg-random.org, `pcg_basic.c`): a 64-bit LCG whose old state
/// is permuted into 32 output bits. One of 2^63 streams, picked by the odd
/// increment; `next_u64` is two outputs, the first the low word (as
/// `rand_core`'s `next_u64_via_u32`).
struct Pcg32 {
    state: u64,
    increment: u64,
}

impl Pcg32 {
    /// The reference `pcg32_srandom_r(seed, stream)`.
    fn new(seed: u64, stream: u64) -> Pcg32 {
        let mut rng = Pcg32 {
            state: 0,
            increment: (stream << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(self.increment);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    fn next_u64(&mut self) -> u64 {
        let low = u64::from(self.next_u32());
        (u64::from(self.next_u32()) << 32) | low
    }
}

/// PCG32 stream of [`RandomBlock`]'s draws (`random::net` has the stem's
/// and the head's): one seed's block, input, stem and head are unrelated.
const BLOCK_STREAM: u64 = 0;
/// PCG32 stream of [`random_input`]'s draws.
const INPUT_STREAM: u64 = 1;

/// Integer and float draws from PCG32's raw output.
struct Draw(Pcg32);

impl Draw {
    /// Uniform in `lo..=hi` (Lemire's multiply-shift; the bias of at most
    /// 2^-24 for these small ranges does not matter here).
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi - lo + 1) as u64;
        lo + ((u64::from(self.0.next_u32()) * span) >> 32) as i32
    }

    /// Uniform in `[lo, hi)`, 53 random bits.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }
}

/// `⌊√n⌋`, as `usize::isqrt` gives it, digit by digit in base 4: core's
/// `isqrt` carries a 512-byte table of small roots (with its code, 744 B
/// of the firmware's flash) for one root per layer.
fn isqrt(n: usize) -> usize {
    let mut rest = n;
    let mut root = 0;
    // The largest power of 4 not above `n` (1 for 0 and 1).
    let mut bit = 1usize << ((usize::BITS - 1 - (n | 1).leading_zeros()) & !1);
    while bit != 0 {
        if rest >= root + bit {
            rest -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// FNV-1a 64.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
