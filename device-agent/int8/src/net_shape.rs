//! The shapes of a network's two other blocks and what they cost, with the
//! conventions of [`crate::shape`]:
//!
//! - the **stem**: a k×k convolution (stride 1 or 2, "same" padding) with a
//!   fused ReLU6, from the network input to the first MBConv block;
//! - the **head**: a 1×1 convolution to `channels` with a fused ReLU6, a
//!   global average pool, a fully connected layer to `classes` int8 logits.
//!
//! | block | stage | reads | writes |
//! |---|---|---|---|
//! | stem | convolution | input `I` | output `O` |
//! | head | 1×1 convolution | input `I` | `P = h·w·channels` |
//! | head | average pool | `P` | pooled `C = channels` |
//! | head | fully connected | `C` | logits `L = classes` |
//!
//! Flash: int8 weights, plus per output channel of a convolution an `i32`
//! bias and an 8-byte requant (12 bytes, as [`crate::BlockShape`] counts).
//! The fully connected layer has one requant for the whole layer
//! (CMSIS-NN's is per tensor), so it counts 4 bytes of bias per class plus
//! 8 bytes once.

#[cfg(test)]
mod tests;

use crate::conv::PointwiseShape;
use crate::conv::same_padding;
use crate::conv_full::ConvShape;
use crate::error::{Error, mul};
use crate::fc::FcShape;
use crate::pool::{MAX_POOL_PIXELS, PoolShape};
use crate::shape::PER_CHANNEL_BYTES;

/// Flash of a fully connected layer per output (its `i32` bias) and once
/// (its single requant: `i32` multiplier + `i32` shift).
const FC_PER_OUTPUT_BYTES: usize = 4;
const FC_REQUANT_BYTES: usize = 4 + 4;

const OVERFLOW: Error = Error::Shape("size overflows usize");

fn add(parts: &[usize]) -> Result<usize, Error> {
    parts
        .iter()
        .try_fold(0usize, |a, &b| a.checked_add(b))
        .ok_or(OVERFLOW)
}

/// A network's stem: k×k convolution from the input image, batch 1, HWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StemShape {
    /// Input channels (1 for grey images, 3 for RGB).
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel side: odd (3 in practice).
    pub kernel: usize,
    /// Stride: 1 or 2.
    pub stride: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl StemShape {
    /// `Ok` when every field is in its documented range and every size fits
    /// a `usize`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.in_c == 0 || self.out_c == 0 || self.h == 0 || self.w == 0 {
            return Err(Error::Shape("channels and sizes must be at least 1"));
        }
        if self.kernel.is_multiple_of(2) {
            return Err(Error::Shape("stem kernel is not odd"));
        }
        if !matches!(self.stride, 1 | 2) {
            return Err(Error::Shape("stride is not 1 or 2"));
        }
        self.checked_weight_bytes()?;
        self.checked_peak()?;
        Ok(())
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

    /// Elements of the output tensor, `out_h * out_w * out_c`.
    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        oh.saturating_mul(ow).saturating_mul(self.out_c)
    }

    /// Flash for the convolution's constants: `(k² · in_c + 12) · out_c`.
    /// Saturates at `usize::MAX`.
    pub fn weight_bytes(&self) -> usize {
        self.checked_weight_bytes().unwrap_or(usize::MAX)
    }

    fn checked_weight_bytes(&self) -> Result<usize, Error> {
        let taps = mul(mul(self.kernel, self.kernel)?, self.in_c)?;
        mul(add(&[taps, PER_CHANNEL_BYTES])?, self.out_c)
    }

    /// The int8 activation bytes live at once: input and output, `I + O`.
    /// Exactly the arena [`crate::run_stem_in_arena`] needs (the convolution
    /// needs no scratch). Saturates at `usize::MAX`.
    pub fn peak_activation_bytes(&self) -> usize {
        self.checked_peak().unwrap_or(usize::MAX)
    }

    fn checked_peak(&self) -> Result<usize, Error> {
        let (oh, ow) = self.out_hw();
        let i = mul(mul(self.h, self.w)?, self.in_c)?;
        let o = mul(mul(oh, ow)?, self.out_c)?;
        add(&[i, o])
    }

    /// The convolution's dimensions.
    pub fn conv_shape(&self) -> ConvShape {
        ConvShape {
            h: self.h,
            w: self.w,
            in_c: self.in_c,
            out_c: self.out_c,
            kernel: self.kernel,
            stride: self.stride,
        }
    }
}

/// A network's head: 1×1 convolution, global average pool, fully
/// connected, batch 1, HWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadShape {
    /// Input channels (the last block's output channels).
    pub in_c: usize,
    /// Output channels of the 1×1 convolution (also the pooled vector's
    /// length and the classifier's input).
    pub channels: usize,
    /// Classes: the logits' length.
    pub classes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
}

impl HeadShape {
    /// `Ok` when every field is at least 1, the map has at most
    /// [`MAX_POOL_PIXELS`] pixels, and every size fits a `usize`.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [self.in_c, self.channels, self.classes, self.h, self.w];
        if fields.contains(&0) {
            return Err(Error::Shape(
                "channels, classes and sizes must be at least 1",
            ));
        }
        if mul(self.h, self.w)? > MAX_POOL_PIXELS {
            return Err(Error::Shape("pooling over more than 2^23 pixels"));
        }
        self.checked_weight_bytes()?;
        self.checked_peak()?;
        Ok(())
    }

    /// Elements of the input tensor, `h * w * in_c`.
    pub fn input_len(&self) -> usize {
        self.h.saturating_mul(self.w).saturating_mul(self.in_c)
    }

    /// Elements of the 1×1 convolution's output, `h * w * channels`.
    pub fn conv_len(&self) -> usize {
        self.h.saturating_mul(self.w).saturating_mul(self.channels)
    }

    /// Elements of the output (the logits), `classes`.
    pub fn output_len(&self) -> usize {
        self.classes
    }

    /// Flash for the constants (see the module documentation):
    ///
    /// `(in_c + 12) · channels + (channels + 4) · classes + 8`
    ///
    /// Saturates at `usize::MAX`.
    pub fn weight_bytes(&self) -> usize {
        self.checked_weight_bytes().unwrap_or(usize::MAX)
    }

    fn checked_weight_bytes(&self) -> Result<usize, Error> {
        let conv = mul(add(&[self.in_c, PER_CHANNEL_BYTES])?, self.channels)?;
        let fc = mul(add(&[self.channels, FC_PER_OUTPUT_BYTES])?, self.classes)?;
        add(&[conv, fc, FC_REQUANT_BYTES])
    }

    /// The most int8 activation bytes live at once, stage by stage (the
    /// module table): `max(I + P, P + C, C + L)`. Exactly the arena
    /// [`crate::run_head_in_arena`] needs (no kernel needs scratch).
    /// Saturates at `usize::MAX`.
    pub fn peak_activation_bytes(&self) -> usize {
        self.checked_peak().unwrap_or(usize::MAX)
    }

    fn checked_peak(&self) -> Result<usize, Error> {
        let hw = mul(self.h, self.w)?;
        let i = mul(hw, self.in_c)?;
        let p = mul(hw, self.channels)?;
        let (c, l) = (self.channels, self.classes);
        Ok(add(&[i, p])?.max(add(&[p, c])?).max(add(&[c, l])?))
    }

    /// The arena [`crate::run_head`] needs when the caller holds input and
    /// logits itself: the convolution's output and the pooled vector,
    /// `P + C`. Saturates at `usize::MAX`.
    pub fn arena_bytes(&self) -> usize {
        self.conv_len().saturating_add(self.channels)
    }

    /// The 1×1 convolution's dimensions.
    pub fn conv_shape(&self) -> PointwiseShape {
        PointwiseShape {
            pixels: self.h.saturating_mul(self.w),
            in_c: self.in_c,
            out_c: self.channels,
        }
    }

    /// The pooling's dimensions.
    pub fn pool_shape(&self) -> PoolShape {
        PoolShape {
            pixels: self.h.saturating_mul(self.w),
            channels: self.channels,
        }
    }

    /// The classifier's dimensions.
    pub fn fc_shape(&self) -> FcShape {
        FcShape {
            in_features: self.channels,
            out_features: self.classes,
        }
    }
}
