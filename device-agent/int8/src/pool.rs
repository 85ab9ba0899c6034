//! Global average pooling, int8 in, int8 out: `[pixels][c]` → `[c]`, the
//! pooling of a network's head ([`avgpool_s8`], CMSIS-NN's `arm_avgpool_s8`
//! with the window as large as the input, stride 1 and no padding: one
//! output pixel).
//!
//! Input and output share scale and zero point (TFLite requires it), so no
//! requantization: per channel the `i32` sum of the int8 values is divided
//! by the pixel count `n` as CMSIS-NN does,
//!
//! ```text
//! avg = sum > 0 ? (sum + n / 2) / n : (sum - n / 2) / n    (C's truncating /)
//! out = clamp(avg, act_min, act_max)
//! ```
//!
//! which is the exact average rounded to nearest, ties away from zero (ties
//! only happen for even `n`; `tests.rs` checks the identity). The zero point
//! needs no correction: the average of `q` is the average of `q - zp`,
//! plus `zp`, exactly.
//!
//! The sums run 16 channels at a time in a stack array (64 bytes), walking
//! the input once per chunk: no scratch buffer from the caller (CMSIS-NN's
//! DSP path asks for `4 · c` bytes).

#[cfg(test)]
mod tests;

use crate::error::{Error, check_len, mul};

/// Most pixels [`avgpool_s8`] averages: `128 · n + n / 2` must fit an `i32`
/// (the C code's sum and its rounding), which holds for `n <= 2^23`
/// (a 2896 × 2896 map).
pub const MAX_POOL_PIXELS: usize = 1 << 23;

/// Dimensions of a global average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolShape {
    /// Input pixels, `h * w`: `1..=MAX_POOL_PIXELS`.
    pub pixels: usize,
    /// Channels (input = output).
    pub channels: usize,
}

/// Channels summed at once.
const CHUNK: usize = 16;

/// Global average pooling: input `[pixels][c]`, output `[c]`, each output
/// clamped to `act_min..=act_max` (the whole int8 range when the pooling
/// has no fused activation, as in TFLite).
pub fn avgpool_s8(
    shape: PoolShape,
    input: &[i8],
    act_min: i8,
    act_max: i8,
    output: &mut [i8],
) -> Result<(), Error> {
    let PoolShape { pixels, channels } = shape;
    if pixels == 0 || channels == 0 {
        return Err(Error::Shape("pooling dimensions must be at least 1"));
    }
    if pixels > MAX_POOL_PIXELS {
        return Err(Error::Shape("pooling over more than 2^23 pixels"));
    }
    if act_min > act_max {
        return Err(Error::Param("act_min > act_max"));
    }
    check_len("input", input.len(), mul(pixels, channels)?)?;
    check_len("output", output.len(), channels)?;

    let count = pixels as i32; // <= 2^23
    let half = count / 2;
    for c0 in (0..channels).step_by(CHUNK) {
        let n = CHUNK.min(channels - c0);
        let mut sums = [0i32; CHUNK];
        let sums = &mut sums[..n];
        for pixel in input.chunks_exact(channels) {
            for (sum, &x) in sums.iter_mut().zip(&pixel[c0..c0 + n]) {
                *sum += i32::from(x); // |sum| <= 2^30: no overflow
            }
        }
        for (o, &sum) in output[c0..c0 + n].iter_mut().zip(sums.iter()) {
            let avg = if sum > 0 {
                (sum + half) / count
            } else {
                (sum - half) / count
            };
            *o = avg.clamp(i32::from(act_min), i32::from(act_max)) as i8;
        }
    }
    Ok(())
}
