//! Full k×k convolution, int8 in, int8 out, HWC layout: the stem of a
//! network ([`conv_s8`], CMSIS-NN's `arm_convolve_s8` with one group, no
//! dilation and no upscaling).
//!
//! Every output value is
//! `clamp(requant_c(bias_c + Σ (x + input_offset) * w) + output_offset)`,
//! the sum over the `k × k × in_c` taps inside the input (TFLite SAME
//! padding, [`same_padding`]; CMSIS-NN fills the padded taps of its im2col
//! buffer with the input zero point, so they add nothing, and this kernel
//! skips them). The accumulator is an `i32` with wrapping adds, as the C code
//! on a Cortex-M.
//!
//! Weights are `[out_c][k][k][in_c]` (CMSIS-NN's and TFLite's OHWI). For an
//! output pixel the taps of one kernel row that fall inside the input are
//! contiguous both in the input (adjacent pixels of one row, channels
//! innermost) and in the weights, so the inner loop is one zip over
//! `taps × in_c` bytes per kernel row, with no padding tests: good for the
//! stem's 1 or 3 input channels. Unlike `arm_convolve_s8` (whose im2col
//! buffer takes `4 · k² · in_c` bytes of scratch, rounded up) it needs no
//! scratch memory.

#[cfg(test)]
mod tests;

use crate::conv::{ConvWeights, same_padding};
use crate::error::{Error, check_len, mul};
use crate::quant::ConvQuant;

const NAMES: [&str; 3] = ["weights", "bias", "requant"];

/// Dimensions of a full convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride, both directions.
    pub stride: usize,
}

impl ConvShape {
    /// Output height and width with "same" padding: `ceil(h / stride)`,
    /// `ceil(w / stride)`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            same_padding(self.h, self.kernel, self.stride).0,
            same_padding(self.w, self.kernel, self.stride).0,
        )
    }
}

/// k×k convolution, "same" padding, stride `s`: input `[h][w][in_c]`,
/// weights `[out_c][k][k][in_c]`, a bias and a requant per output channel,
/// output `[ceil(h/s)][ceil(w/s)][out_c]`.
pub fn conv_s8(
    shape: ConvShape,
    input: &[i8],
    layer: &ConvWeights<'_>,
    quant: &ConvQuant,
    output: &mut [i8],
) -> Result<(), Error> {
    let ConvShape {
        h,
        w,
        in_c,
        out_c,
        kernel: k,
        stride: s,
    } = shape;
    if h == 0 || w == 0 || in_c == 0 || out_c == 0 || k == 0 || s == 0 {
        return Err(Error::Shape("convolution dimensions must be at least 1"));
    }
    quant.check()?;
    let per_channel = mul(mul(k, k)?, in_c)?;
    layer.check(&NAMES, out_c, per_channel)?;
    check_len("input", input.len(), mul(mul(h, w)?, in_c)?)?;
    let (oh, pad_top) = same_padding(h, k, s);
    let (ow, pad_left) = same_padding(w, k, s);
    check_len("output", output.len(), mul(mul(oh, ow)?, out_c)?)?;

    let offset = quant.input_offset;
    let row_len = k * in_c; // one kernel row of one output channel
    let mut out_pixels = output.chunks_exact_mut(out_c);
    for oy in 0..oh {
        // Tap ky reads input row y0 + ky - pad_top; keep those inside [0, h).
        // pad_top < k and y0 < h, so the range is never empty.
        let y0 = oy * s;
        let ky_range = pad_top.saturating_sub(y0)..k.min(h + pad_top - y0);
        for ox in 0..ow {
            let x0 = ox * s;
            let kx_range = pad_left.saturating_sub(x0)..k.min(w + pad_left - x0);
            // The taps of one kernel row inside the input: input pixels
            // [first_x, first_x + taps) of the row, weights from kx_range.start.
            let first_x = x0 + kx_range.start - pad_left;
            let span = kx_range.len() * in_c;
            let Some(out) = out_pixels.next() else {
                break; // unreachable: output has oh * ow pixels
            };
            let channels = layer
                .weights
                .chunks_exact(k * row_len)
                .zip(layer.bias)
                .zip(layer.requant);
            for (o, ((filter, &bias), &requant)) in out.iter_mut().zip(channels) {
                let mut acc = bias;
                for ky in ky_range.clone() {
                    let iy = y0 + ky - pad_top;
                    let pixels = &input[(iy * w + first_x) * in_c..][..span];
                    let taps = &filter[ky * row_len + kx_range.start * in_c..][..span];
                    // |x + offset| <= 255 and |w| <= 128: each product fits
                    // in 16 bits.
                    acc = pixels.iter().zip(taps).fold(acc, |acc, (&x, &wt)| {
                        acc.wrapping_add((i32::from(x) + offset) * i32::from(wt))
                    });
                }
                *o = quant.output(acc, requant);
            }
        }
    }
    Ok(())
}
