//! Full k×k convolution, int8 in, int8 out, HWC layout: the stem of a
//! network ([`conv_s8`], CMSIS-NN's `arm_convolve_s8` with one group, no
//! dilation and no upscaling).
//!
//! Every output value is
//! `clamp(requant_c(bias_c + Σ (x + input_offset) * w) + output_offset)`,
//! the sum over the `k × k × in_c` taps inside the input (TFLite SAME
//! padding, [`crate::same_padding`]; CMSIS-NN fills the padded taps of its
//! im2col buffer with the input zero point, so they add nothing, and this
//! kernel skips them). The accumulator is an `i32` with wrapping adds, as the
//! C code on a Cortex-M.
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

use crate::conv::{ConvWeights, Padded, Window};
use crate::error::Error;
use crate::quant::ConvQuant;

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
        let padded = self.window().padded();
        (padded.oh, padded.ow)
    }

    /// Every output channel reads every input channel.
    fn window(&self) -> Window {
        Window {
            h: self.h,
            w: self.w,
            in_c: self.in_c,
            out_c: self.out_c,
            depth: self.in_c,
            kernel: self.kernel,
            stride: self.stride,
        }
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
    let padded = shape.window().check(layer, quant, input, output)?;
    let Padded {
        pad_top, pad_left, ..
    } = padded;

    let row_len = k * in_c; // one kernel row of one output channel
    let mut out_pixels = output.chunks_exact_mut(out_c);
    for oy in 0..padded.oh {
        let (y0, ky_range) = padded.rows(oy);
        for ox in 0..padded.ow {
            let (x0, kx_range) = padded.cols(ox);
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
                    acc = quant.dot(acc, pixels, taps);
                }
                *o = quant.output(acc, requant);
            }
        }
    }
    Ok(())
}
