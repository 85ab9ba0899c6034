//! The int8 block against the float block it approximates (tests only).

use std::vec;
use std::vec::Vec;

use super::tests::shapes;
use super::*;
use crate::conv::{depthwise_s8, pointwise_s8};
use crate::random::{RandomBlock, RandomConv, random_input};
use crate::testkit::{clamp_to, float_layer, float_pointwise, max_steps, real};

/// Float depthwise convolution (zero padding of real values).
fn float_depthwise(x: &[f64], s: &BlockShape, conv: &RandomConv, in_scale: f32) -> Vec<f64> {
    let (ws, b) = float_layer(conv, in_scale);
    let (c, k) = (s.mid_c(), s.kernel);
    let (oh, ow) = s.out_hw();
    let pad = |n: usize| crate::conv::same_padding(n, k, s.stride).1 as i64;
    let mut out = vec![0.0; oh * ow * c];
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut acc = b[ch];
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s.stride + ky) as i64 - pad(s.h);
                        let ix = (ox * s.stride + kx) as i64 - pad(s.w);
                        if (0..s.h as i64).contains(&iy) && (0..s.w as i64).contains(&ix) {
                            let xv = x[(iy as usize * s.w + ix as usize) * c + ch];
                            acc += xv * f64::from(conv.weights[(ky * k + kx) * c + ch]) * ws[ch];
                        }
                    }
                }
                out[(oy * ow + ox) * c + ch] = acc;
            }
        }
    }
    out
}

/// Each stage alone, fed the int8 tensor the previous stage produced, is
/// within one step of the float result before rounding: requantization
/// rounds twice, which together errs by at most one step (see
/// `requant::tests`); the quantized multiplier's own error is 2^-31
/// relative, and the float maths is f64 (hence the 1e-6).
#[test]
fn every_stage_is_within_one_step_of_float() {
    for (i, s) in shapes().into_iter().enumerate() {
        let b = RandomBlock::new(s, 77 + i as u64).unwrap();
        let p = b.params();
        let sc = b.scales;
        let input = random_input(s.input_len(), 500 + i as u64);
        let (x, x_scale, x_zp) = if s.expand > 1 {
            let mut e = vec![0i8; s.expanded_len()];
            let q = ConvQuant::new(p.input_zero_point, p.expand_out);
            pointwise_s8(s.expand_shape(), &input, &p.expand, &q, &mut e).unwrap();
            let mut f = float_pointwise(
                &real(&input, sc.input, p.input_zero_point),
                s.in_c,
                &b.expand,
                sc.input,
            );
            clamp_to(&mut f, sc.expanded, p.expand_out);
            assert!(
                max_steps(&e, &f, sc.expanded, p.expand_out.zero_point) <= 1.0 + 1e-6,
                "{s:?}"
            );
            (e, sc.expanded, p.expand_out.zero_point)
        } else {
            (input.clone(), sc.input, p.input_zero_point)
        };
        let mut d = vec![0i8; s.depthwise_len()];
        let q = ConvQuant::new(x_zp, p.depthwise_out);
        depthwise_s8(s.depthwise_shape(), &x, &p.depthwise, &q, &mut d).unwrap();
        let mut f = float_depthwise(&real(&x, x_scale, x_zp), &s, &b.depthwise, x_scale);
        clamp_to(&mut f, sc.depthwise, p.depthwise_out);
        assert!(
            max_steps(&d, &f, sc.depthwise, p.depthwise_out.zero_point) <= 1.0 + 1e-6,
            "{s:?}"
        );

        let mut o = vec![0i8; s.output_len()];
        let q = ConvQuant::new(p.depthwise_out.zero_point, p.project_out);
        pointwise_s8(s.project_shape(), &d, &p.project, &q, &mut o).unwrap();
        let d_real = real(&d, sc.depthwise, p.depthwise_out.zero_point);
        let mut f = float_pointwise(&d_real, s.mid_c(), &b.project, sc.depthwise);
        clamp_to(&mut f, sc.projected, p.project_out);
        assert!(
            max_steps(&o, &f, sc.projected, p.project_out.zero_point) <= 1.0 + 1e-6,
            "{s:?}"
        );
    }
}

/// The float block the int8 block approximates: real weights and biases,
/// each activation clamped to the real range its int8 tensor can hold
/// (ReLU6's [0, 6] where the int8 range allows it), no rounding anywhere.
fn float_block(b: &RandomBlock, input: &[i8]) -> Vec<f64> {
    let (s, sc, p) = (b.shape, b.scales, b.params());
    let x = real(input, sc.input, p.input_zero_point);
    let (e, e_scale) = if s.expand > 1 {
        let mut e = float_pointwise(&x, s.in_c, &b.expand, sc.input);
        clamp_to(&mut e, sc.expanded, p.expand_out);
        (e, sc.expanded)
    } else {
        (x.clone(), sc.input)
    };
    let mut d = float_depthwise(&e, &s, &b.depthwise, e_scale);
    clamp_to(&mut d, sc.depthwise, p.depthwise_out);
    let mut o = float_pointwise(&d, s.mid_c(), &b.project, sc.depthwise);
    clamp_to(&mut o, sc.projected, p.project_out);
    if s.residual() {
        o.iter_mut().zip(&x).for_each(|(o, x)| *o += x);
        clamp_to(&mut o, sc.output, Activation::linear(b.output_zero_point()));
    }
    o
}

/// The whole int8 block against [`float_block`]. Unlike a single stage,
/// the intermediate tensors are rounded to their int8 grids here, and that
/// rounding (up to half a step of each tensor, roughly uniform noise)
/// propagates through the later layers; with this crate's random blocks the
/// later layers attenuate it to a fraction of an output step. Bound: 2 output
/// steps for every value (1 for the final requantization, 1 for the
/// propagated noise; measured: at most 1.55, mean 0.27 over ~44 000 values)
/// and a mean under 0.4 steps. A wrong zero point, scale or rounding mode
/// anywhere breaks one or both.
#[test]
fn whole_block_is_close_to_float() {
    let mut worst = 0.0f64;
    let (mut sum, mut n) = (0.0, 0usize);
    for (i, s) in shapes().into_iter().enumerate() {
        for seed in 0..3u64 {
            let b = RandomBlock::new(s, 300 + 10 * i as u64 + seed).unwrap();
            let input = random_input(s.input_len(), 900 + i as u64 + seed);
            let mut arena = vec![0i8; s.arena_bytes()];
            let mut out = vec![0i8; s.output_len()];
            run_block(&s, &b.params(), &input, &mut arena, &mut out).unwrap();
            let f = float_block(&b, &input);
            let zp = b.output_zero_point();
            for (&q, &x) in out.iter().zip(&f) {
                let err = (f64::from(q) - x / f64::from(b.scales.output) - f64::from(zp)).abs();
                worst = worst.max(err);
                sum += err;
                n += 1;
            }
        }
    }
    let mean = sum / n as f64;
    assert!(
        worst <= 2.0 && mean < 0.4,
        "max {worst:.3} steps, mean {mean:.3} over {n}"
    );
}
