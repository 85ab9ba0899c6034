//! The int8 stem and head against the float layers they approximate (tests
//! only), as `block::float_tests` does for MBConv blocks.

use std::vec;
use std::vec::Vec;

use super::tests::{heads, stems};
use super::*;
use crate::conv::same_padding;
use crate::random::{RandomConv, RandomHead, RandomStem, random_input};
use crate::testkit::{clamp_to, float_layer, float_pointwise, max_steps, real, steps};

/// Float k×k convolution (OHWI weights, zero padding of real values).
fn float_conv(x: &[f64], s: &StemShape, conv: &RandomConv, in_scale: f32) -> Vec<f64> {
    let (k, in_c) = (s.kernel, s.in_c);
    let (oh, ow) = s.out_hw();
    let (pt, pl) = (
        same_padding(s.h, k, s.stride).1 as i64,
        same_padding(s.w, k, s.stride).1 as i64,
    );
    let (scales, bias) = float_layer(conv, in_scale);
    let mut out = Vec::new();
    for oy in 0..oh {
        for ox in 0..ow {
            for oc in 0..s.out_c {
                let ws = scales[oc];
                let mut acc = bias[oc];
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s.stride + ky) as i64 - pt;
                        let ix = (ox * s.stride + kx) as i64 - pl;
                        if !(0..s.h as i64).contains(&iy) || !(0..s.w as i64).contains(&ix) {
                            continue;
                        }
                        for ic in 0..in_c {
                            let xv = x[(iy as usize * s.w + ix as usize) * in_c + ic];
                            let w = conv.weights[((oc * k + ky) * k + kx) * in_c + ic];
                            acc += xv * f64::from(w) * ws;
                        }
                    }
                }
                out.push(acc);
            }
        }
    }
    out
}

/// The stem fed int8 input is within one step of the float convolution
/// before rounding (two roundings of at most half a step, plus the
/// multiplier's 2^-31 relative error; 1e-6 for the f64 maths).
#[test]
fn stem_is_within_one_step_of_float() {
    let mut n = 0;
    for (i, s) in stems().into_iter().enumerate() {
        let b = RandomStem::new(s, 50 + i as u64).unwrap();
        let input = random_input(s.input_len(), 60 + i as u64);
        let mut out = vec![0i8; s.output_len()];
        run_stem(&s, &b.params(), &input, &mut out).unwrap();
        let x = real(&input, b.input_scale, b.input_zero_point);
        let mut f = float_conv(&x, &s, &b.conv, b.input_scale);
        clamp_to(&mut f, b.output_scale, b.output);
        let err = max_steps(&out, &f, b.output_scale, b.output.zero_point);
        assert!(err <= 1.0 + 1e-6, "{s:?}: {err}");
        n += out.len();
    }
    assert!(n > 40_000, "{n} values");
}

/// The head's float layers: 1×1 convolution with ReLU6 (clamped to its int8
/// tensor's real range), global mean, fully connected (clamped likewise).
struct FloatHead<'a>(&'a RandomHead);

impl FloatHead<'_> {
    fn conv(&self, x: &[f64]) -> Vec<f64> {
        let b = self.0;
        let mut out = float_pointwise(x, b.shape.in_c, &b.conv, b.input_scale);
        clamp_to(&mut out, b.conv_scale, b.conv_out);
        out
    }

    fn pool(&self, x: &[f64]) -> Vec<f64> {
        let c = self.0.shape.channels;
        let pixels = (x.len() / c) as f64;
        (0..c)
            .map(|ch| x.iter().skip(ch).step_by(c).sum::<f64>() / pixels)
            .collect()
    }

    fn fc(&self, x: &[f64]) -> Vec<f64> {
        let (b, s) = (self.0, self.0.shape);
        let ws = f64::from(b.fc.weight_scale);
        let mut out: Vec<f64> = (0..s.classes)
            .map(|o| {
                let bias = f64::from(b.fc.bias[o]) * f64::from(b.conv_scale) * ws;
                let row = &b.fc.weights[o * s.channels..][..s.channels];
                bias + x
                    .iter()
                    .zip(row)
                    .map(|(&x, &w)| x * f64::from(w) * ws)
                    .sum::<f64>()
            })
            .collect();
        clamp_to(&mut out, b.logit_scale, b.logits);
        out
    }
}

/// Each stage of the head, fed the int8 tensor the previous stage produced:
/// the convolution and the classifier within one step of float (as the
/// stem), the pooling within half a step of the exact mean (it rounds
/// once, to nearest).
#[test]
fn every_head_stage_is_within_one_step_of_float() {
    for (i, s) in heads().into_iter().enumerate() {
        let b = RandomHead::new(s, 80 + i as u64).unwrap();
        let p = b.params();
        let f = FloatHead(&b);
        let input = random_input(s.input_len(), 90 + i as u64);
        let mut arena = vec![0i8; s.arena_bytes()];
        let mut logits = vec![0i8; s.classes];
        run_head(&s, &p, &input, &mut arena, &mut logits).unwrap();
        let (features, pooled) = arena.split_at(s.conv_len());
        let zp = b.conv_out.zero_point;

        let want = f.conv(&real(&input, b.input_scale, b.input_zero_point));
        let err = max_steps(features, &want, b.conv_scale, zp);
        assert!(err <= 1.0 + 1e-6, "conv {s:?}: {err}");
        let want = f.pool(&real(features, b.conv_scale, zp));
        let err = max_steps(pooled, &want, b.conv_scale, zp);
        assert!(err <= 0.5 + 1e-9, "pool {s:?}: {err}");
        let want = f.fc(&real(pooled, b.conv_scale, zp));
        let err = max_steps(&logits, &want, b.logit_scale, b.logits.zero_point);
        assert!(err <= 1.0 + 1e-6, "fc {s:?}: {err}");
    }
}

/// The whole int8 head against the float head with no rounding anywhere.
/// The convolution's and the pooling's roundings (up to 1 and 0.5 steps of
/// the pooled vector's scale, much less on average over the pixels)
/// propagate through the classifier, which with this crate's random heads
/// shrinks them to a fraction of a logit step. Bound: 2 logit steps for
/// every value (1 for the final requantization, 1 for the propagated error)
/// and a mean under 0.4 (measured: at most 1.23, mean 0.28 over 2 755
/// logits).
#[test]
fn whole_head_is_close_to_float() {
    let (mut worst, mut sum, mut n) = (0.0f64, 0.0, 0usize);
    for (i, s) in heads().into_iter().enumerate() {
        for seed in 0..5u64 {
            let b = RandomHead::new(s, 400 + 10 * i as u64 + seed).unwrap();
            let input = random_input(s.input_len(), 700 + 10 * i as u64 + seed);
            let mut arena = vec![0i8; s.arena_bytes()];
            let mut logits = vec![0i8; s.classes];
            run_head(&s, &b.params(), &input, &mut arena, &mut logits).unwrap();
            let f = FloatHead(&b);
            let x = real(&input, b.input_scale, b.input_zero_point);
            let want = f.fc(&f.pool(&f.conv(&x)));
            for e in steps(&logits, &want, b.logit_scale, b.logits.zero_point) {
                worst = worst.max(e);
                sum += e;
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
