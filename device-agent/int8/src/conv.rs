//! The two convolutions of an MBConv block, int8 in, int8 out, HWC layout:
//! 1×1 ([`pointwise_s8`], CMSIS-NN's `arm_convolve_1x1_s8`) and k×k
//! depthwise ([`depthwise_s8`], `arm_depthwise_conv_s8` with channel
//! multiplier 1 and no dilation).
//!
//! Both compute, for every output value,
//! `clamp(requant_c(bias_c + Σ (x + input_offset) * w) + output_offset)`,
//! accumulating in `i32` with wrapping adds (what the C code does on a
//! Cortex-M; a wrap needs over 65 000 taps, which no block has). Weights are
//! symmetric (zero point 0), so no weight offset appears.
//!
//! Loop order: the channel dimension is innermost and contiguous in both the
//! input pixel and the weights, so the inner loops are plain zips over two
//! slices — sequential loads, no index arithmetic, no bounds checks — which
//! is what a Cortex-M4/M7 without a cache or SIMD runs fastest.

#[cfg(test)]
mod tests;

use core::ops::Range;

use crate::error::{Error, check_len, mul};
use crate::quant::ConvQuant;
use crate::requant::Requant;

/// One convolution's constants (what sits in flash): weights, a bias and a
/// requantization multiplier per output channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvWeights<'a> {
    /// int8, symmetric. 1×1: `[out_c][in_c]`; depthwise: `[k][k][c]`.
    pub weights: &'a [i8],
    /// `[out_c]`, in units of `input_scale * weight_scale_c`.
    pub bias: &'a [i32],
    /// `[out_c]`: `input_scale * weight_scale_c / output_scale`.
    pub requant: &'a [Requant],
}

impl ConvWeights<'_> {
    /// No layer (the absent expansion of an expand-ratio-1 block).
    pub const EMPTY: ConvWeights<'static> = ConvWeights {
        weights: &[],
        bias: &[],
        requant: &[],
    };

    /// Lengths for `channels` output channels of `per_channel` weights each,
    /// and every requant in range. `names` label the three slices in errors.
    pub(crate) fn check(
        &self,
        names: &[&'static str; 3],
        channels: usize,
        per_channel: usize,
    ) -> Result<(), Error> {
        check_len(names[0], self.weights.len(), mul(channels, per_channel)?)?;
        check_len(names[1], self.bias.len(), channels)?;
        check_len(names[2], self.requant.len(), channels)?;
        self.requant.iter().try_for_each(|r| r.check())
    }
}

/// The slices' names in the errors of a kernel called directly (a block's
/// layers name theirs, as `expand.weights`).
const NAMES: [&str; 3] = ["weights", "bias", "requant"];

/// What every convolution checks its arguments against: a k×k window,
/// stride `stride`, TFLite SAME padding, over an `h × w` input.
/// [`depthwise_s8`] and [`crate::conv_s8`] are such windows, and a 1×1
/// convolution is one over a one-pixel-wide input (`h = pixels`, `w = 1`),
/// so the three kernels share one implementation of their argument checks
/// and of the padding arithmetic instead of three that could drift apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels: a filter, a bias and a requant each.
    pub out_c: usize,
    /// Input channels each output channel sums over: 1 for depthwise,
    /// `in_c` for a full (or 1×1) convolution.
    pub depth: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride, both directions.
    pub stride: usize,
}

impl Window {
    /// The output size and padding ([`same_padding`] on both axes).
    pub(crate) fn padded(&self) -> Padded {
        let (oh, pad_top) = same_padding(self.h, self.kernel, self.stride);
        let (ow, pad_left) = same_padding(self.w, self.kernel, self.stride);
        Padded {
            h: self.h,
            w: self.w,
            kernel: self.kernel,
            stride: self.stride,
            oh,
            ow,
            pad_top,
            pad_left,
        }
    }

    /// The argument checks of a kernel running this window, after its own
    /// test for zero dimensions. In this order, so that the first fault is
    /// the one reported: the offsets and clamp, the layer's three slices
    /// (`out_c` filters of `k·k·depth` weights), the input, the output.
    /// Nothing is written before they pass.
    pub(crate) fn check(
        &self,
        layer: &ConvWeights<'_>,
        quant: &ConvQuant,
        input: &[i8],
        output: &[i8],
    ) -> Result<Padded, Error> {
        quant.check()?;
        let per_channel = mul(mul(self.kernel, self.kernel)?, self.depth)?;
        layer.check(&NAMES, self.out_c, per_channel)?;
        check_len("input", input.len(), mul(mul(self.h, self.w)?, self.in_c)?)?;
        let padded = self.padded();
        let out_pixels = mul(padded.oh, padded.ow)?;
        check_len("output", output.len(), mul(out_pixels, self.out_c)?)?;
        Ok(padded)
    }
}

/// A [`Window`]'s output size and padding, and which taps of each output
/// pixel fall inside the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Padded {
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Padding rows above the input.
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
}

impl Padded {
    /// For output row `oy`: `y0 = oy · stride` and the kernel rows `ky`
    /// whose input row `y0 + ky - pad_top` lies inside the input. The taps
    /// outside read padding, i.e. the input zero point, which adds nothing,
    /// so the kernels skip them. `pad_top < k` and `y0 < h`, so the range is
    /// never empty.
    #[inline]
    pub(crate) fn rows(&self, oy: usize) -> (usize, Range<usize>) {
        inside(oy * self.stride, self.pad_top, self.h, self.kernel)
    }

    /// [`Padded::rows`] for output column `ox`: `x0` and the kernel columns
    /// `kx` whose input column `x0 + kx - pad_left` lies inside the input.
    #[inline]
    pub(crate) fn cols(&self, ox: usize) -> (usize, Range<usize>) {
        inside(ox * self.stride, self.pad_left, self.w, self.kernel)
    }
}

/// `(origin, taps)`: the kernel offsets `t` in `0..k` with
/// `origin + t - pad` in `0..size`.
#[inline]
fn inside(origin: usize, pad: usize, size: usize, k: usize) -> (usize, Range<usize>) {
    (
        origin,
        pad.saturating_sub(origin)..k.min(size + pad - origin),
    )
}

/// Dimensions of a 1×1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PointwiseShape {
    /// Input (and output) pixels, `h * w`.
    pub pixels: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
}

/// 1×1 convolution: input `[pixels][in_c]`, weights `[out_c][in_c]`,
/// output `[pixels][out_c]`.
pub fn pointwise_s8(
    shape: PointwiseShape,
    input: &[i8],
    layer: &ConvWeights<'_>,
    quant: &ConvQuant,
    output: &mut [i8],
) -> Result<(), Error> {
    let PointwiseShape {
        pixels,
        in_c,
        out_c,
    } = shape;
    if in_c == 0 || out_c == 0 {
        // Also what keeps `chunks_exact` below from panicking. (No pixels is
        // a valid, empty call.)
        return Err(Error::Shape("pointwise channels must be at least 1"));
    }
    Window {
        h: pixels,
        w: 1,
        in_c,
        out_c,
        depth: in_c,
        kernel: 1,
        stride: 1,
    }
    .check(layer, quant, input, output)?;

    for (x, out) in input.chunks_exact(in_c).zip(output.chunks_exact_mut(out_c)) {
        let channels = layer
            .weights
            .chunks_exact(in_c)
            .zip(layer.bias)
            .zip(layer.requant);
        for (o, ((w, &bias), &requant)) in out.iter_mut().zip(channels) {
            *o = quant.output(quant.dot(bias, x, w), requant);
        }
    }
    Ok(())
}

/// Dimensions of a depthwise convolution (channel multiplier 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseShape {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (input = output).
    pub channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride, both directions.
    pub stride: usize,
}

impl DepthwiseShape {
    /// Output height and width with "same" padding: `ceil(h / stride)`,
    /// `ceil(w / stride)`.
    pub fn out_hw(&self) -> (usize, usize) {
        let padded = self.window().padded();
        (padded.oh, padded.ow)
    }

    /// Each channel its own one-channel filter.
    fn window(&self) -> Window {
        Window {
            h: self.h,
            w: self.w,
            in_c: self.channels,
            out_c: self.channels,
            depth: 1,
            kernel: self.kernel,
            stride: self.stride,
        }
    }
}

/// TFLite's `Padding::SAME` along one axis: `(output size, padding before)`.
///
/// Output `ceil(size / stride)`; total padding
/// `max((out - 1) * stride + kernel - size, 0)`, of which the smaller half
/// goes before (TFLite's `ComputePaddingWithOffset`; the odd one after).
/// That is `kernel / 2` for stride 1 and odd kernels, but one less for
/// stride 2 on an even size. A `stride` of 0 is taken as 1.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let stride = stride.max(1);
    let out = size.div_ceil(stride);
    let reach = out
        .saturating_sub(1)
        .saturating_mul(stride)
        .saturating_add(kernel);
    let total = reach.saturating_sub(size);
    (out, total / 2)
}

/// Channels accumulated at once by [`depthwise_s8`]: 16 `i32` accumulators
/// (64 bytes of stack) keep the inner loop a zip over contiguous channels
/// without any scratch buffer from the caller.
const CHUNK: usize = 16;

/// k×k depthwise convolution, "same" padding ([`same_padding`]; padded taps
/// are skipped, i.e. they read the input zero point), stride `s`. Input
/// `[h][w][c]`, weights `[k][k][c]` (CMSIS-NN's `[1][k][k][c]`), output
/// `[ceil(h/s)][ceil(w/s)][c]`.
pub fn depthwise_s8(
    shape: DepthwiseShape,
    input: &[i8],
    layer: &ConvWeights<'_>,
    quant: &ConvQuant,
    output: &mut [i8],
) -> Result<(), Error> {
    let DepthwiseShape {
        h,
        w,
        channels: c,
        kernel: k,
        stride: s,
    } = shape;
    if h == 0 || w == 0 || c == 0 || k == 0 || s == 0 {
        return Err(Error::Shape("depthwise dimensions must be at least 1"));
    }
    let padded = shape.window().check(layer, quant, input, output)?;
    let Padded {
        pad_top, pad_left, ..
    } = padded;

    let offset = quant.input_offset;
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..padded.oh {
        let (y0, ky_range) = padded.rows(oy);
        for ox in 0..padded.ow {
            let (x0, kx_range) = padded.cols(ox);
            let Some(out) = out_pixels.next() else {
                break; // unreachable: output has oh * ow pixels
            };
            for c0 in (0..c).step_by(CHUNK) {
                let n = CHUNK.min(c - c0);
                let mut acc = [0i32; CHUNK];
                let acc = &mut acc[..n];
                acc.copy_from_slice(&layer.bias[c0..c0 + n]);
                for ky in ky_range.clone() {
                    let row = (y0 + ky - pad_top) * w;
                    for kx in kx_range.clone() {
                        let pixel = &input[(row + x0 + kx - pad_left) * c + c0..][..n];
                        let taps = &layer.weights[(ky * k + kx) * c + c0..][..n];
                        for ((a, &x), &wt) in acc.iter_mut().zip(pixel).zip(taps) {
                            *a = a.wrapping_add((i32::from(x) + offset) * i32::from(wt));
                        }
                    }
                }
                let requant = &layer.requant[c0..c0 + n];
                for ((o, &a), &r) in out[c0..c0 + n].iter_mut().zip(acc.iter()).zip(requant) {
                    *o = quant.output(a, r);
                }
            }
        }
    }
    Ok(())
}
