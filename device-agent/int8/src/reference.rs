//! Tests only: an independent, deliberately naive implementation of the
//! same integer semantics, written differently from the kernels so that a
//! shared mistake is unlikely: requantization as exact rational rounding in
//! `i128`, convolutions over CHW (NCHW) copies with signed tap indices and an
//! explicit bounds test, `i64` accumulators, no chunking, no slices zipped.

// Index loops on purpose: the kernels iterate slices; this spells out the
// index arithmetic of the definition instead.
#![allow(clippy::needless_range_loop)]

use std::vec;
use std::vec::Vec;

use crate::add::AddParams;
use crate::block::BlockParams;
use crate::conv::ConvWeights;
use crate::fc::FcWeights;
use crate::net_blocks::{HeadParams, StemParams};
use crate::net_shape::{HeadShape, StemShape};
use crate::quant::ConvQuant;
use crate::requant::Requant;
use crate::shape::BlockShape;

/// `floor(n / 2^bits)` on exact integers.
fn floor_div_pow2(n: i128, bits: u32) -> i128 {
    n.div_euclid(1i128 << bits)
}

/// `n / 2^bits` rounded to nearest, ties away from zero, exactly.
fn round_away_pow2(n: i128, bits: u32) -> i128 {
    if bits == 0 {
        return n;
    }
    let half = 1i128 << (bits - 1);
    if n >= 0 {
        floor_div_pow2(n + half, bits)
    } else {
        -floor_div_pow2(-n + half, bits)
    }
}

/// C's `val * (1 << left)` on a 32-bit two's complement machine.
fn shifted(val: i32, r: Requant) -> (i128, u32) {
    let left = r.shift.max(0) as u32;
    let right = (-r.shift).max(0) as u32;
    let v = (i128::from(val) << left) as i32; // keep the low 32 bits
    (i128::from(v), right)
}

/// CMSIS-NN `arm_nn_requantize`: `t = floor((v·m + 2^30) / 2^31)` (the high
/// word of the doubled product, ties up, truncated to 32 bits as the C cast
/// does), then `t / 2^right` with ties away from zero.
pub fn requantize(val: i32, r: Requant) -> i32 {
    let (v, right) = shifted(val, r);
    let t = floor_div_pow2(v * i128::from(r.multiplier) + (1 << 30), 31) as i32;
    round_away_pow2(i128::from(t), right) as i32
}

/// TFLite `MultiplyByQuantizedMultiplier` from gemmlowp's definitions,
/// literally: a nudge of `2^30` or `1 - 2^30` by the product's sign, C's
/// truncating division by `2^31`, `i32::MIN²` saturated; then
/// `RoundingDivideByPOT` (ties away from zero).
pub fn requantize_tflite(val: i32, r: Requant) -> i32 {
    let (v, right) = shifted(val, r);
    let m = i128::from(r.multiplier);
    let t = if v == i128::from(i32::MIN) && m == v {
        i32::MAX
    } else {
        let ab = v * m;
        let nudge = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        ((ab + nudge) / (1 << 31)) as i32 // i128 `/` truncates, as C's
    };
    round_away_pow2(i128::from(t), right) as i32
}

/// The tail of a convolution. Adding the output offset wraps in 32 bits,
/// as the C code does on the device (it matters only for absurd multipliers,
/// but the kernels must agree bit for bit there too).
fn finish(acc: i64, r: Requant, q: &ConvQuant) -> i8 {
    let acc = acc as i32; // the kernels' i32 accumulator (never wraps in tests)
    let v = (i64::from(requantize(acc, r)) + i64::from(q.output_offset)) as i32;
    v.max(i32::from(q.act_min)).min(i32::from(q.act_max)) as i8
}

/// HWC → CHW.
fn to_chw(hwc: &[i8], h: usize, w: usize, c: usize) -> Vec<Vec<Vec<i8>>> {
    let mut chw = vec![vec![vec![0i8; w]; h]; c];
    for (ch, plane) in chw.iter_mut().enumerate() {
        for (y, row) in plane.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = hwc[(y * w + x) * c + ch];
            }
        }
    }
    chw
}

/// CHW → HWC.
fn to_hwc(chw: &[Vec<Vec<i8>>]) -> Vec<i8> {
    let (c, h, w) = (chw.len(), chw[0].len(), chw[0][0].len());
    let mut hwc = vec![0i8; h * w * c];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                hwc[(y * w + x) * c + ch] = chw[ch][y][x];
            }
        }
    }
    hwc
}

/// 1×1 convolution over `h × w` pixels.
pub fn pointwise(
    (h, w, in_c, out_c): (usize, usize, usize, usize),
    input: &[i8],
    l: &ConvWeights<'_>,
    q: &ConvQuant,
) -> Vec<i8> {
    let x = to_chw(input, h, w, in_c);
    let mut out = vec![vec![vec![0i8; w]; h]; out_c];
    for oc in 0..out_c {
        for y in 0..h {
            for xx in 0..w {
                let mut acc = i64::from(l.bias[oc]);
                for ic in 0..in_c {
                    let xv = i64::from(x[ic][y][xx]) + i64::from(q.input_offset);
                    acc += xv * i64::from(l.weights[oc * in_c + ic]);
                }
                out[oc][y][xx] = finish(acc, l.requant[oc], q);
            }
        }
    }
    to_hwc(&out)
}

/// Depthwise k×k, stride s, TFLite SAME padding computed from its
/// definition: output `ceil(in / s)`, padding before = half the total,
/// rounded down.
pub fn depthwise(
    (h, w, c, k, s): (usize, usize, usize, usize, usize),
    input: &[i8],
    l: &ConvWeights<'_>,
    q: &ConvQuant,
) -> Vec<i8> {
    let x = to_chw(input, h, w, c);
    let out_size = |n: usize| n.div_ceil(s);
    let pad = |n: usize| {
        let total = (out_size(n) as i64 - 1) * s as i64 + k as i64 - n as i64;
        total.max(0) / 2
    };
    let (oh, ow, pt, pl) = (out_size(h), out_size(w), pad(h), pad(w));
    let mut out = vec![vec![vec![0i8; ow]; oh]; c];
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = i64::from(l.bias[ch]);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as i64 - pt;
                        let ix = (ox * s + kx) as i64 - pl;
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue; // padding contributes nothing
                        }
                        let xv =
                            i64::from(x[ch][iy as usize][ix as usize]) + i64::from(q.input_offset);
                        acc += xv * i64::from(l.weights[(ky * k + kx) * c + ch]);
                    }
                }
                out[ch][oy][ox] = finish(acc, l.requant[ch], q);
            }
        }
    }
    to_hwc(&out)
}

/// `arm_elementwise_add_s8`, element by element.
pub fn add(a: &[i8], b: &[i8], p: &AddParams) -> Vec<i8> {
    let lift = |x: i8, offset: i32| {
        let v = (i64::from(x) + i64::from(offset)) * (1i64 << p.left_shift);
        v as i32
    };
    a.iter()
        .zip(b)
        .map(|(&x1, &x2)| {
            let s1 = requantize(lift(x1, p.input1_offset), p.input1);
            let s2 = requantize(lift(x2, p.input2_offset), p.input2);
            let sum = requantize((i64::from(s1) + i64::from(s2)) as i32, p.output);
            let v = (i64::from(sum) + i64::from(p.output_offset)) as i32; // wraps, as C
            v.max(i32::from(p.act_min)).min(i32::from(p.act_max)) as i8
        })
        .collect()
}

/// The whole block, stage by stage, from the reference kernels.
pub fn block(shape: &BlockShape, p: &BlockParams<'_>, input: &[i8]) -> Vec<i8> {
    let (h, w, mid) = (shape.h, shape.w, shape.in_c * shape.expand);
    let (expanded, zp) = if shape.expand > 1 {
        let q = ConvQuant::new(p.input_zero_point, p.expand_out);
        let e = pointwise((h, w, shape.in_c, mid), input, &p.expand, &q);
        (e, p.expand_out.zero_point)
    } else {
        (input.to_vec(), p.input_zero_point)
    };
    let q = ConvQuant::new(zp, p.depthwise_out);
    let dims = (h, w, mid, shape.kernel, shape.stride);
    let d = depthwise(dims, &expanded, &p.depthwise, &q);
    let (oh, ow) = (h.div_ceil(shape.stride), w.div_ceil(shape.stride));
    let q = ConvQuant::new(p.depthwise_out.zero_point, p.project_out);
    let projected = pointwise((oh, ow, mid, shape.out_c), &d, &p.project, &q);
    if shape.stride == 1 && shape.in_c == shape.out_c {
        add(input, &projected, &p.add)
    } else {
        projected
    }
}

/// Full k×k convolution, stride s, SAME padding from its definition (as
/// [`depthwise`]), weights `[out_c][ky][kx][in_c]`.
pub fn conv(
    (h, w, in_c, out_c, k, s): (usize, usize, usize, usize, usize, usize),
    input: &[i8],
    l: &ConvWeights<'_>,
    q: &ConvQuant,
) -> Vec<i8> {
    let x = to_chw(input, h, w, in_c);
    let out_size = |n: usize| n.div_ceil(s);
    let pad = |n: usize| {
        let total = (out_size(n) as i64 - 1) * s as i64 + k as i64 - n as i64;
        total.max(0) / 2
    };
    let (oh, ow, pt, pl) = (out_size(h), out_size(w), pad(h), pad(w));
    let mut out = vec![vec![vec![0i8; ow]; oh]; out_c];
    for oc in 0..out_c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = i64::from(l.bias[oc]);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as i64 - pt;
                        let ix = (ox * s + kx) as i64 - pl;
                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                            continue; // padding contributes nothing
                        }
                        for ic in 0..in_c {
                            let xv = i64::from(x[ic][iy as usize][ix as usize])
                                + i64::from(q.input_offset);
                            let wi = ((oc * k + ky) * k + kx) * in_c + ic;
                            acc += xv * i64::from(l.weights[wi]);
                        }
                    }
                }
                out[oc][oy][ox] = finish(acc, l.requant[oc], q);
            }
        }
    }
    to_hwc(&out)
}

/// `n / d` rounded to nearest, ties away from zero, as exact rationals:
/// `sign(n) · floor((2|n| + d) / 2d)`.
pub fn round_div_away(n: i64, d: i64) -> i64 {
    let q = (2 * i128::from(n).abs() + i128::from(d)).div_euclid(2 * i128::from(d));
    (i128::from(n.signum()) * q) as i64
}

/// Global average pooling of `[pixels][c]`, channel by channel.
pub fn avgpool(pixels: usize, c: usize, input: &[i8], act_min: i8, act_max: i8) -> Vec<i8> {
    (0..c)
        .map(|ch| {
            let sum: i64 = (0..pixels).map(|p| i64::from(input[p * c + ch])).sum();
            let avg = round_div_away(sum, pixels as i64);
            avg.max(i64::from(act_min)).min(i64::from(act_max)) as i8
        })
        .collect()
}

/// Fully connected `[outputs][inputs]`, one requant for every output.
pub fn fully_connected(
    (inputs, outputs): (usize, usize),
    input: &[i8],
    l: &FcWeights<'_>,
    q: &ConvQuant,
) -> Vec<i8> {
    let mut out = vec![0i8; outputs];
    for o in 0..outputs {
        let mut acc = i64::from(l.bias[o]);
        for i in 0..inputs {
            let xv = i64::from(input[i]) + i64::from(q.input_offset);
            acc += xv * i64::from(l.weights[o * inputs + i]);
        }
        out[o] = finish(acc, l.requant, q);
    }
    out
}

/// The stem, from the reference convolution.
pub fn stem(shape: &StemShape, p: &StemParams<'_>, input: &[i8]) -> Vec<i8> {
    let q = ConvQuant::new(p.input_zero_point, p.output);
    let dims = (
        shape.h,
        shape.w,
        shape.in_c,
        shape.out_c,
        shape.kernel,
        shape.stride,
    );
    conv(dims, input, &p.conv, &q)
}

/// The head, stage by stage, from the reference kernels: the pool has the
/// whole int8 range as its clamp and the convolution output's zero point.
pub fn head(shape: &HeadShape, p: &HeadParams<'_>, input: &[i8]) -> Vec<i8> {
    let q = ConvQuant::new(p.input_zero_point, p.conv_out);
    let dims = (shape.h, shape.w, shape.in_c, shape.channels);
    let features = pointwise(dims, input, &p.conv, &q);
    let pooled = avgpool(shape.h * shape.w, shape.channels, &features, -128, 127);
    let q = ConvQuant::new(p.conv_out.zero_point, p.logits);
    fully_connected((shape.channels, shape.classes), &pooled, &p.fc, &q)
}
