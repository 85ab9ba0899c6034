//! A network's stem and head on int8 tensors, with their constants borrowed
//! like [`crate::BlockParams`], so that a microcontroller can run (and time)
//! a whole network: stem → MBConv blocks → head.
//!
//! Each block has two entry points, as [`crate::run_block`] and
//! [`crate::run_block_in_arena`]: one with the caller's input and output
//! buffers, one inside a single buffer of `peak_activation_bytes()` with the
//! input at its start, returning where the output landed. To chain blocks in
//! one arena, move each output to the arena's start (`copy_within`) before
//! the next block.

#[cfg(test)]
mod float_tests;
#[cfg(test)]
mod tests;

use core::ops::Range;

use crate::arena::{self, Ends, split};
use crate::conv::{ConvWeights, pointwise_s8};
use crate::conv_full::conv_s8;
use crate::error::{Error, check_len};
use crate::fc::{FcWeights, fully_connected_s8};
use crate::net_shape::{HeadShape, StemShape};
use crate::pool::avgpool_s8;
use crate::quant::{Activation, ConvQuant};

/// The stem's constants and quantization, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StemParams<'a> {
    /// `[out_c][k][k][in_c]` (OHWI), a bias and a requant per output channel.
    pub conv: ConvWeights<'a>,
    /// The network input's zero point.
    pub input_zero_point: i8,
    /// The stem output: zero point and fused activation clamp (ReLU6:
    /// [`Activation::relu6`]).
    pub output: Activation,
}

const STEM: [&str; 3] = ["stem.weights", "stem.bias", "stem.requant"];

impl StemParams<'_> {
    /// `Ok` when `shape` is valid, every slice has the length it asks for
    /// and every parameter is in range.
    pub fn check(&self, shape: &StemShape) -> Result<(), Error> {
        shape.validate()?;
        let taps = shape.kernel * shape.kernel * shape.in_c;
        self.conv.check(&STEM, shape.out_c, taps)?;
        self.quant().check()
    }

    fn quant(&self) -> ConvQuant {
        ConvQuant::new(self.input_zero_point, self.output)
    }
}

/// Runs the stem from `input` (`[h][w][in_c]`) to `output`
/// (`[out_h][out_w][out_c]`). No other memory is needed. Everything is
/// checked before anything is written.
pub fn run_stem(
    shape: &StemShape,
    params: &StemParams<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    params.check(shape)?;
    check_len("input", input.len(), shape.input_len())?;
    check_len("output", output.len(), shape.output_len())?;
    conv_s8(
        shape.conv_shape(),
        input,
        &params.conv,
        &params.quant(),
        output,
    )
}

/// Runs the stem inside `arena`: the input in `arena[..shape.input_len()]`,
/// the output right after it (the returned range, which ends at
/// [`StemShape::peak_activation_bytes`]). `arena` must be at least that long.
pub fn run_stem_in_arena(
    shape: &StemShape,
    params: &StemParams<'_>,
    arena: &mut [i8],
) -> Result<Range<usize>, Error> {
    params.check(shape)?;
    let needed = shape.peak_activation_bytes();
    arena::check(arena, needed)?;
    let input = 0..shape.input_len();
    let output = input.end..needed;
    let (src, dst) = split(arena, input, output.clone())?;
    conv_s8(shape.conv_shape(), src, &params.conv, &params.quant(), dst)?;
    Ok(output)
}

/// The head's constants and quantization, borrowed.
///
/// The pooled vector has the convolution output's scale and zero point (as
/// TFLite requires of an average pool), and the pool has no fused
/// activation (its clamp is the whole int8 range; an average of values
/// inside `conv_out`'s clamp stays inside it anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadParams<'a> {
    /// The 1×1 convolution: `[channels][in_c]`, per-channel bias and requant.
    pub conv: ConvWeights<'a>,
    /// The head input's zero point.
    pub input_zero_point: i8,
    /// The convolution output (and pooled vector): zero point and fused
    /// activation clamp (ReLU6).
    pub conv_out: Activation,
    /// The classifier: `[classes][channels]`, a bias per class, one requant.
    pub fc: FcWeights<'a>,
    /// The logits: zero point, and normally no clamp ([`Activation::linear`]).
    pub logits: Activation,
}

const HEAD: [&str; 3] = ["head.weights", "head.bias", "head.requant"];
const FC: [&str; 2] = ["fc.weights", "fc.bias"];

impl HeadParams<'_> {
    /// `Ok` when `shape` is valid, every slice has the length it asks for
    /// and every parameter is in range, so that running the head cannot fail
    /// halfway.
    pub fn check(&self, shape: &HeadShape) -> Result<(), Error> {
        shape.validate()?;
        self.conv.check(&HEAD, shape.channels, shape.in_c)?;
        self.fc.check(&FC, shape.classes, shape.channels)?;
        self.conv_quant().check()?;
        self.fc_quant().check()
    }

    fn conv_quant(&self) -> ConvQuant {
        ConvQuant::new(self.input_zero_point, self.conv_out)
    }

    fn fc_quant(&self) -> ConvQuant {
        ConvQuant::new(self.conv_out.zero_point, self.logits)
    }
}

/// Runs the head from `input` (`[h][w][in_c]`) to `output` (`[classes]`
/// logits), with the convolution's output and the pooled vector in `arena`
/// (at least [`HeadShape::arena_bytes`] long; afterwards it holds the
/// convolution output at its start and the pooled vector right after).
/// Everything is checked before anything is written.
pub fn run_head(
    shape: &HeadShape,
    params: &HeadParams<'_>,
    input: &[i8],
    arena: &mut [i8],
    output: &mut [i8],
) -> Result<(), Error> {
    params.check(shape)?;
    check_len("input", input.len(), shape.input_len())?;
    check_len("output", output.len(), shape.output_len())?;
    // P + C bytes, which is `arena_bytes`: a short arena's error names the
    // size the caller was told to provide.
    let (features, pooled) = arena::consecutive(arena, shape.conv_len(), shape.channels)?;
    conv(shape, params, input, features)?;
    pool(shape, features, pooled)?;
    fc(shape, params, pooled, output)
}

/// Runs the head inside `arena` alone: the input in
/// `arena[..shape.input_len()]`, the logits' place returned. `arena` must be
/// at least [`HeadShape::peak_activation_bytes`] long (`Q`); only
/// `arena[..Q]` is used.
///
/// Layout, each tensor at the opposite end from the one it is computed from:
/// convolution output at the end (`[Q - P, Q)`), pooled vector at the start,
/// logits at the end (`[Q - classes, Q)`). Each stage then needs exactly one
/// of the sums in `peak_activation_bytes`.
pub fn run_head_in_arena(
    shape: &HeadShape,
    params: &HeadParams<'_>,
    arena: &mut [i8],
) -> Result<Range<usize>, Error> {
    params.check(shape)?;
    let needed = shape.peak_activation_bytes();
    arena::check(arena, needed)?;
    let ends = Ends {
        start: 0,
        end: needed,
    };
    let input = 0..shape.input_len();
    let features = ends.at_end(shape.conv_len());
    let (src, dst) = split(arena, input, features.clone())?;
    conv(shape, params, src, dst)?;
    let pooled = ends.at_start(shape.channels);
    let (src, dst) = split(arena, features, pooled.clone())?;
    pool(shape, src, dst)?;
    let logits = ends.at_end(shape.output_len());
    let (src, dst) = split(arena, pooled, logits.clone())?;
    fc(shape, params, src, dst)?;
    Ok(logits)
}

fn conv(s: &HeadShape, p: &HeadParams<'_>, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    pointwise_s8(s.conv_shape(), src, &p.conv, &p.conv_quant(), dst)
}

fn pool(s: &HeadShape, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    avgpool_s8(s.pool_shape(), src, i8::MIN, i8::MAX, dst)
}

fn fc(s: &HeadShape, p: &HeadParams<'_>, src: &[i8], dst: &mut [i8]) -> Result<(), Error> {
    fully_connected_s8(s.fc_shape(), src, &p.fc, &p.fc_quant(), dst)
}
