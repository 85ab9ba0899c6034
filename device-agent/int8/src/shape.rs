//! The shape of an MBConv block and what it costs: flash for its constants,
//! RAM for its activations.
//!
//! The block runs expand (1×1) → depthwise (k×k, stride) → project (1×1)
//! → residual add, each stage reading the previous stage's int8 tensor:
//!
//! | stage | reads | writes | also live |
//! |---|---|---|---|
//! | expand (ratio > 1 only) | input `I` | expanded `E` | |
//! | depthwise | `E` (or `I` when ratio 1) | `D` | `I` if residual |
//! | project | `D` | output `O` | `I` if residual |
//! | add (residual only) | `I`, `O` | `O`, in place | |
//!
//! [`BlockShape::peak_activation_bytes`] is the largest sum over a row of
//! that table; [`BlockShape::arena_bytes`] the part of it that is neither
//! input nor output (`E + D`, or `D` when the ratio is 1).

#[cfg(test)]
mod tests;

use crate::conv::{DepthwiseShape, PointwiseShape, same_padding};
use crate::error::{Error, mul};

/// Bytes of flash per output channel besides the weights: an `i32` bias
/// and a requant (`i32` multiplier + `i32` shift, as CMSIS-NN stores them).
pub(crate) const PER_CHANNEL_BYTES: usize = 4 + 4 + 4;

/// One MobileNetV2 inverted-residual block (MBConv), batch 1, HWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockShape {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Expansion ratio `1..=6`; 1 means no expand convolution (MobileNetV2's
    /// first block), the depthwise reads the input directly.
    pub expand: usize,
    /// Depthwise kernel side: 3, 5 or 7.
    pub kernel: usize,
    /// Depthwise stride: 1 or 2.
    pub stride: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl BlockShape {
    /// `Ok` when every field is in its documented range and every size
    /// ([`BlockShape::weight_bytes`], [`BlockShape::peak_activation_bytes`]
    /// and the lengths of every tensor) fits a `usize`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.in_c == 0 || self.out_c == 0 || self.h == 0 || self.w == 0 {
            return Err(Error::Shape("channels and sizes must be at least 1"));
        }
        if !(1..=6).contains(&self.expand) {
            return Err(Error::Shape("expand ratio outside 1..=6"));
        }
        if !matches!(self.kernel, 3 | 5 | 7) {
            return Err(Error::Shape("kernel is not 3, 5 or 7"));
        }
        if !matches!(self.stride, 1 | 2) {
            return Err(Error::Shape("stride is not 1 or 2"));
        }
        self.checked_weight_bytes()?;
        self.checked_peak()?;
        Ok(())
    }

    /// Stride 1 and as many output channels as input channels: the block
    /// adds its input to its output.
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.in_c == self.out_c
    }

    /// Channels of the expanded tensor, `in_c * expand`.
    pub fn mid_c(&self) -> usize {
        self.in_c.saturating_mul(self.expand)
    }

    /// Output height and width: `ceil(h / stride)`, `ceil(w / stride)`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            same_padding(self.h, self.kernel, self.stride).0,
            same_padding(self.w, self.kernel, self.stride).0,
        )
    }

    /// Elements of the input tensor, `h * w * in_c`.
    pub fn input_len(&self) -> usize {
        self.h.saturating_mul(self.w).saturating_mul(self.in_c)
    }

    /// Elements of the expanded tensor: `h * w * mid_c` when `expand > 1`,
    /// else 0 (no such tensor).
    pub fn expanded_len(&self) -> usize {
        if self.expand > 1 {
            self.h.saturating_mul(self.w).saturating_mul(self.mid_c())
        } else {
            0
        }
    }

    /// Elements of the depthwise output, `out_h * out_w * mid_c`.
    pub fn depthwise_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        oh.saturating_mul(ow).saturating_mul(self.mid_c())
    }

    /// Elements of the output tensor, `out_h * out_w * out_c`.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        oh.saturating_mul(ow).saturating_mul(self.out_c)
    }

    /// Flash for the block's constants: int8 weights, plus per output
    /// channel an `i32` bias and an 8-byte requant, for each convolution:
    ///
    /// `[expand > 1] (in_c + 12) mid_c + (k² + 12) mid_c + (mid_c + 12) out_c`
    ///
    /// (The residual add's three scalar multipliers are configuration, not
    /// counted.) Saturates at `usize::MAX`; [`BlockShape::validate`] rejects
    /// shapes where that happens.
    pub fn weight_bytes(&self) -> usize {
        self.checked_weight_bytes().unwrap_or(usize::MAX)
    }

    fn checked_weight_bytes(&self) -> Result<usize, Error> {
        let mid = self.mid_c();
        let layer = |per_channel: usize, channels: usize| {
            let each = per_channel
                .checked_add(PER_CHANNEL_BYTES)
                .ok_or(Error::Shape("size overflows usize"))?;
            mul(each, channels)
        };
        let expand = if self.expand > 1 {
            layer(self.in_c, mid)?
        } else {
            0
        };
        let depthwise = layer(mul(self.kernel, self.kernel)?, mid)?;
        let project = layer(mid, self.out_c)?;
        expand
            .checked_add(depthwise)
            .and_then(|b| b.checked_add(project))
            .ok_or(Error::Shape("size overflows usize"))
    }

    /// The most int8 activation bytes live at once while the block runs
    /// (the module table): with `I` input, `E` expanded, `D` depthwise
    /// output, `O` output, and `R = I` for a residual block, else 0,
    ///
    /// `max(I + E, R + E + D, R + D + O)` when `expand > 1`,
    /// `max(I + D, R + D + O)` otherwise.
    ///
    /// This is exactly the arena [`crate::run_block_in_arena`] needs. The
    /// kernels need no scratch memory beyond it. Saturates at `usize::MAX`.
    pub fn peak_activation_bytes(&self) -> usize {
        self.checked_peak().unwrap_or(usize::MAX)
    }

    fn checked_peak(&self) -> Result<usize, Error> {
        let (oh, ow) = self.out_hw();
        let hw = mul(self.h, self.w)?;
        let i = mul(hw, self.in_c)?;
        let mid = mul(self.in_c, self.expand)?;
        let d = mul(mul(oh, ow)?, mid)?;
        let o = mul(mul(oh, ow)?, self.out_c)?;
        let e = if self.expand > 1 { mul(hw, mid)? } else { 0 };
        let r = if self.residual() { i } else { 0 };
        let sum = |parts: &[usize]| {
            parts
                .iter()
                .try_fold(0usize, |a, &b| a.checked_add(b))
                .ok_or(Error::Shape("size overflows usize"))
        };
        let first = if self.expand > 1 {
            sum(&[i, e])?.max(sum(&[r, e, d])?)
        } else {
            sum(&[i, d])?
        };
        Ok(first.max(sum(&[r, d, o])?))
    }

    /// The arena [`crate::run_block`] needs when the caller holds the input
    /// and output itself: the expanded and depthwise tensors, `E + D`
    /// (`D` alone when `expand == 1`). Saturates at `usize::MAX`.
    pub fn arena_bytes(&self) -> usize {
        self.expanded_len().saturating_add(self.depthwise_len())
    }

    /// The expand convolution's dimensions.
    pub(crate) fn expand_shape(&self) -> PointwiseShape {
        PointwiseShape {
            pixels: self.h * self.w,
            in_c: self.in_c,
            out_c: self.mid_c(),
        }
    }

    /// The depthwise convolution's dimensions.
    pub(crate) fn depthwise_shape(&self) -> DepthwiseShape {
        DepthwiseShape {
            h: self.h,
            w: self.w,
            channels: self.mid_c(),
            kernel: self.kernel,
            stride: self.stride,
        }
    }

    /// The project convolution's dimensions.
    pub(crate) fn project_shape(&self) -> PointwiseShape {
        let (oh, ow) = self.out_hw();
        PointwiseShape {
            pixels: oh * ow,
            in_c: self.mid_c(),
            out_c: self.out_c,
        }
    }
}
