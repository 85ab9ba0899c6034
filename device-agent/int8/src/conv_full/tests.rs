use std::vec;
use std::vec::Vec;

use super::*;
use crate::conv::{DepthwiseShape, depthwise_s8};
use crate::reference;
use crate::requant::Requant;
use crate::testkit::{Rng, length};

fn shape(h: usize, w: usize, in_c: usize, out_c: usize, k: usize, s: usize) -> ConvShape {
    ConvShape {
        h,
        w,
        in_c,
        out_c,
        kernel: k,
        stride: s,
    }
}

/// Edge cases first (stride 2 on odd and even sizes, 1 and 3 input
/// channels, kernels larger than the input, 1×1 inputs), then random ones.
fn cases(rng: &mut Rng) -> Vec<ConvShape> {
    let mut cases = vec![
        shape(8, 8, 3, 16, 3, 2),
        shape(7, 7, 3, 16, 3, 2),
        shape(8, 7, 1, 8, 5, 2),
        shape(7, 8, 1, 8, 5, 2),
        shape(28, 28, 1, 16, 3, 1),
        shape(9, 9, 3, 32, 3, 2),
        shape(3, 3, 3, 4, 7, 1),
        shape(3, 3, 1, 4, 7, 2),
        shape(1, 1, 3, 5, 3, 1),
        shape(1, 1, 1, 1, 5, 2),
        shape(2, 9, 3, 3, 5, 1),
        shape(6, 5, 17, 3, 1, 2),
    ];
    for _ in 0..300 {
        let (h, w) = (rng.size(1, 12), rng.size(1, 12));
        let in_c = rng.pick(&[1, 1, 3, 3, 2, 4, 8, 17]);
        let k = rng.pick(&[1, 2, 3, 3, 3, 5, 5, 7]);
        let s = rng.pick(&[1, 2, 2, 3]);
        cases.push(shape(h, w, in_c, rng.size(1, 33), k, s));
    }
    cases
}

#[test]
fn conv_matches_the_reference() {
    let mut rng = Rng::new(40);
    let mut inside = 0usize;
    for (i, s) in cases(&mut rng).into_iter().enumerate() {
        let input = rng.i8s(s.h * s.w * s.in_c);
        let taps = s.kernel * s.kernel * s.in_c;
        let l = rng.conv_layer(s.out_c, taps, taps);
        let q = rng.conv_quant();
        let (oh, ow) = s.out_hw();
        assert_eq!((oh, ow), (s.h.div_ceil(s.stride), s.w.div_ceil(s.stride)));
        let mut out = vec![0i8; oh * ow * s.out_c];
        conv_s8(s, &input, &l.view(), &q, &mut out).unwrap();
        let dims = (s.h, s.w, s.in_c, s.out_c, s.kernel, s.stride);
        let want = reference::conv(dims, &input, &l.view(), &q);
        assert_eq!(out, want, "case {i}: {s:?} {q:?}");
        inside += out
            .iter()
            .filter(|&&v| q.act_min < v && v < q.act_max)
            .count();
    }
    // The cases must not all be saturated for the comparison to mean much.
    assert!(inside > 20_000, "{inside} values strictly inside the clamp");
}

/// With one input and one output channel a full convolution is a depthwise
/// one: the two kernels (different loops, different weight layouts in
/// general) must agree.
#[test]
fn one_channel_conv_equals_depthwise() {
    let mut rng = Rng::new(41);
    for _ in 0..100 {
        let (h, w) = (rng.size(1, 10), rng.size(1, 10));
        let (k, st) = (rng.pick(&[1, 3, 5, 7]), rng.pick(&[1, 2]));
        let input = rng.i8s(h * w);
        let l = rng.conv_layer(1, k * k, k * k);
        let q = rng.conv_quant();
        let s = shape(h, w, 1, 1, k, st);
        let (oh, ow) = s.out_hw();
        let mut a = vec![0i8; oh * ow];
        let mut b = vec![0i8; oh * ow];
        conv_s8(s, &input, &l.view(), &q, &mut a).unwrap();
        let d = DepthwiseShape {
            h,
            w,
            channels: 1,
            kernel: k,
            stride: st,
        };
        depthwise_s8(d, &input, &l.view(), &q, &mut b).unwrap();
        assert_eq!(a, b, "{s:?}");
    }
}

/// Weights are OHWI: on a 1×1 input only the centre tap of a 3×3 kernel
/// reads the input, `weights[oc][1][1][ic]` at index `oc·27 + 12 + ic`.
/// Worked out by hand with the multiplier 1.0 and the input zero point 5.
#[test]
fn weights_are_ohwi_and_padding_reads_the_zero_point() {
    let weights: Vec<i8> = (0..54).collect();
    let l = ConvWeights {
        weights: &weights,
        bias: &[0, 3],
        requant: &[Requant::new(1 << 30, 1); 2],
    };
    let q = ConvQuant {
        input_offset: -5,
        output_offset: 0,
        act_min: -128,
        act_max: 127,
    };
    let input = [6i8, 4, 7]; // 1, -1, 2 after the offset
    let mut out = [0i8; 2];
    conv_s8(shape(1, 1, 3, 2, 3, 1), &input, &l, &q, &mut out).unwrap();
    // oc 0: 12 - 13 + 2·14 = 27; oc 1: 3 + 39 - 40 + 2·41 = 84.
    assert_eq!(out, [27, 84]);

    // 3×3 input 1..=9, 3×3 kernel of ones, stride 2: output 2×2, one row
    // and column of padding before, each output sums a 2×2 corner.
    let input: Vec<i8> = (1..=9).collect();
    let ones = [1i8; 9];
    let l = ConvWeights {
        weights: &ones,
        bias: &[0],
        requant: &[Requant::new(1 << 30, 1)],
    };
    let q = ConvQuant {
        input_offset: 0,
        ..q
    };
    let mut out = [0i8; 4];
    conv_s8(shape(3, 3, 1, 1, 3, 2), &input, &l, &q, &mut out).unwrap();
    assert_eq!(out, [12, 16, 24, 28]);
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let s = shape(3, 3, 2, 4, 3, 2);
    let weights = [1i8; 4 * 9 * 2];
    let bias = [0i32; 4];
    let requant = [Requant::new(1 << 30, 0); 4];
    let ok = ConvWeights {
        weights: &weights,
        bias: &bias,
        requant: &requant,
    };
    let q = ConvQuant {
        input_offset: 0,
        output_offset: 0,
        act_min: -128,
        act_max: 127,
    };
    let input = [0i8; 18];
    let mut out = [0i8; 16];
    assert_eq!(conv_s8(s, &input, &ok, &q, &mut out), Ok(()));
    assert_eq!(
        conv_s8(s, &input[1..], &ok, &q, &mut out),
        length("input", 18, 17)
    );
    assert_eq!(
        conv_s8(s, &input, &ok, &q, &mut out[..15]),
        length("output", 16, 15)
    );
    let short = ConvWeights {
        weights: &weights[1..],
        ..ok
    };
    assert_eq!(
        conv_s8(s, &input, &short, &q, &mut out),
        length("weights", 72, 71)
    );
    let short = ConvWeights {
        bias: &bias[1..],
        ..ok
    };
    assert_eq!(
        conv_s8(s, &input, &short, &q, &mut out),
        length("bias", 4, 3)
    );
    let short = ConvWeights {
        requant: &requant[1..],
        ..ok
    };
    assert_eq!(
        conv_s8(s, &input, &short, &q, &mut out),
        length("requant", 4, 3)
    );
    let bad = [Requant::new(i32::MIN, 0); 4];
    let bad = ConvWeights {
        requant: &bad,
        ..ok
    };
    assert!(matches!(
        conv_s8(s, &input, &bad, &q, &mut out),
        Err(Error::Param(_))
    ));
    let bad_q = ConvQuant {
        input_offset: -128,
        ..q
    };
    assert!(matches!(
        conv_s8(s, &input, &ok, &bad_q, &mut out),
        Err(Error::Param(_))
    ));
    for zero in [
        ConvShape { h: 0, ..s },
        ConvShape { w: 0, ..s },
        ConvShape { in_c: 0, ..s },
        ConvShape { out_c: 0, ..s },
        ConvShape { kernel: 0, ..s },
        ConvShape { stride: 0, ..s },
    ] {
        let got = conv_s8(zero, &input, &ok, &q, &mut out);
        assert!(matches!(got, Err(Error::Shape(_))), "{zero:?}");
    }
    for huge in [
        ConvShape {
            kernel: usize::MAX,
            ..s
        },
        ConvShape {
            in_c: usize::MAX / 2,
            ..s
        },
        ConvShape { h: usize::MAX, ..s },
    ] {
        assert!(
            conv_s8(huge, &input, &ok, &q, &mut out).is_err(),
            "{huge:?}"
        );
    }
    // A failed check writes nothing.
    let mut untouched = [7i8; 16];
    let _ = conv_s8(s, &input, &short, &q, &mut untouched);
    assert_eq!(untouched, [7; 16]);
}
