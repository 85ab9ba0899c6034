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

const NAMES: [&str; 3] = ["weights", "bias", "requant"];

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
        // Also what keeps `chunks_exact` below from panicking.
        return Err(Error::Shape("pointwise channels must be at least 1"));
    }
    quant.check()?;
    layer.check(&NAMES, out_c, in_c)?;
    check_len("input", input.len(), mul(pixels, in_c)?)?;
    check_len("output", output.len(), mul(pixels, out_c)?)?;

    let offset = quant.input_offset;
    for (x, out) in input.chunks_exact(in_c).zip(output.chunks_exact_mut(out_c)) {
        let channels = layer
            .weights
            .chunks_exact(in_c)
            .zip(layer.bias)
            .zip(layer.requant);
        for (o, ((w, &bias), &requant)) in out.iter_mut().zip(channels) {
            // |x + offset| <= 255 and |w| <= 128: each product fits in 16 bits.
            let acc = x.iter().zip(w).fold(bias, |acc, (&x, &w)| {
                acc.wrapping_add((i32::from(x) + offset) * i32::from(w))
            });
            *o = quant.output(acc, requant);
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
        (
            same_padding(self.h, self.kernel, self.stride).0,
            same_padding(self.w, self.kernel, self.stride).0,
        )
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
    quant.check()?;
    layer.check(&NAMES, c, mul(k, k)?)?;
    check_len("input", input.len(), mul(mul(h, w)?, c)?)?;
    let (oh, pad_top) = same_padding(h, k, s);
    let (ow, pad_left) = same_padding(w, k, s);
    check_len("output", output.len(), mul(mul(oh, ow)?, c)?)?;

    let offset = quant.input_offset;
    let mut out_pixels = output.chunks_exact_mut(c);
    for oy in 0..oh {
        // Tap ky reads input row y0 + ky - pad_top; keep those inside [0, h).
        // pad_top < k and y0 < h, so the range is never empty.
        let y0 = oy * s;
        let ky_range = pad_top.saturating_sub(y0)..k.min(h + pad_top - y0);
        for ox in 0..ow {
            let x0 = ox * s;
            let kx_range = pad_left.saturating_sub(x0)..k.min(w + pad_left - x0);
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
