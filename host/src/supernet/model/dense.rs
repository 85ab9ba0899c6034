//! Depthwise convolutions as dense matrices, for maps with fewer pixels
//! than kernel taps.

use tch::{Device, Tensor};

use crate::supernet::SupernetError;

/// A depthwise convolution on a map with fewer pixels than its kernel has
/// taps, written as one dense (out pixels × in pixels) matrix per channel
/// and one batched matmul. libtorch's depthwise kernels, its backward
/// above all, are slow on such maps: forward + backward measured 3.1–5.8×
/// faster for k7 and 1.4× for k5 on 4×4 maps, and slower wherever the map
/// has more pixels than taps (`scripts/bench-depthwise.py`, host/README.md).
#[derive(Debug)]
pub(super) struct Dense {
    /// `[out pixels · in pixels]`: the kernel tap feeding each pair, or
    /// `k²` (a zero appended to the taps) where the window misses the pixel.
    pub(super) index: Tensor,
    pub(super) input: (i64, i64),
    pub(super) output: (i64, i64),
}

impl Dense {
    pub(super) fn new(
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        device: Device,
    ) -> Result<Dense, SupernetError> {
        let pad = k / 2;
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let mut index = vec![(k * k) as i64; ho * wo * h * w];
        for oy in 0..ho {
            for ox in 0..wo {
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (oy * stride + ky, ox * stride + kx);
                        if (pad..h + pad).contains(&iy) && (pad..w + pad).contains(&ix) {
                            let pixel = (iy - pad) * w + (ix - pad);
                            index[(oy * wo + ox) * h * w + pixel] = (ky * k + kx) as i64;
                        }
                    }
                }
            }
        }
        Ok(Dense {
            index: Tensor::f_from_slice(&index)?.f_to_device(device)?,
            input: (h as i64, w as i64),
            output: (ho as i64, wo as i64),
        })
    }

    /// Whether the dense form pays for a `k`×`k` kernel on an `h`×`w` map.
    pub(super) fn pays(h: usize, w: usize, k: usize) -> bool {
        h * w < k * k
    }

    /// `x` `[n, c, h, w]` convolved depthwise with `weight` `[c, 1, k, k]`;
    /// the result is channels-last like libtorch's.
    pub(super) fn forward(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor, tch::TchError> {
        let (c, n) = (weight.size()[0], x.size()[0]);
        let taps = weight.size()[2] * weight.size()[3];
        let (h, w) = self.input;
        let (ho, wo) = self.output;
        let zero = Tensor::f_zeros([c, 1], (weight.kind(), weight.device()))?;
        let m = Tensor::f_cat(&[&weight.f_reshape([c, taps])?, &zero], 1)?
            .f_index_select(1, &self.index)?
            .f_view([c, ho * wo, h * w])?;
        let xs = x.f_permute([1, 0, 2, 3])?.f_reshape([c, n, h * w])?;
        let y = xs.f_bmm(&m.f_transpose(1, 2)?)?;
        // [c, n, ho·wo] → [n, c, ho, wo] with NHWC memory.
        y.f_permute([1, 2, 0])?
            .f_contiguous()?
            .f_view([n, ho, wo, c])?
            .f_permute([0, 3, 1, 2])
    }
}
