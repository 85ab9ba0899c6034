use std::vec;
use std::vec::Vec;

use super::*;
use crate::reference;
use crate::testkit::{Rng, length};

#[test]
fn pointwise_matches_the_reference() {
    let mut rng = Rng::new(10);
    let mut inside = 0usize;
    for case in 0..400 {
        let (h, w) = (rng.size(1, 6), rng.size(1, 6));
        let (in_c, out_c) = (rng.size(1, 40), rng.size(1, 40));
        let input = rng.i8s(h * w * in_c);
        let l = rng.conv_layer(out_c, in_c, in_c);
        let q = rng.conv_quant();
        let shape = PointwiseShape {
            pixels: h * w,
            in_c,
            out_c,
        };
        let mut out = vec![0i8; h * w * out_c];
        pointwise_s8(shape, &input, &l.view(), &q, &mut out).unwrap();
        let want = reference::pointwise((h, w, in_c, out_c), &input, &l.view(), &q);
        assert_eq!(out, want, "case {case}: {shape:?} {q:?}");
        let (lo, hi) = (q.act_min, q.act_max);
        inside += out.iter().filter(|&&v| lo < v && v < hi).count();
    }
    // The cases must not all be saturated for the comparison to mean much.
    assert!(inside > 10_000, "{inside} values strictly inside the clamp");
}

#[test]
fn depthwise_matches_the_reference() {
    let mut rng = Rng::new(11);
    let mut cases = Vec::new();
    // Edge cases first: kernel 7 on 3×3, stride 2 on odd and even sizes,
    // 1×1 inputs, more channels than one accumulator chunk.
    for &(h, w, k, s) in &[
        (3, 3, 7, 1),
        (3, 3, 7, 2),
        (1, 1, 7, 2),
        (1, 1, 3, 1),
        (4, 4, 3, 2),
        (5, 5, 3, 2),
        (4, 5, 5, 2),
        (6, 7, 7, 2),
        (2, 9, 5, 1),
    ] {
        cases.push((h, w, rng.pick(&[1, 15, 16, 17, 33, 40]), k, s));
    }
    for _ in 0..400 {
        let (h, w) = (rng.size(1, 11), rng.size(1, 11));
        let k = rng.pick(&[1, 2, 3, 3, 5, 5, 7]);
        cases.push((h, w, rng.size(1, 40), k, rng.pick(&[1, 2, 2, 3])));
    }
    let mut inside = 0usize;
    for (i, &(h, w, c, k, s)) in cases.iter().enumerate() {
        let input = rng.i8s(h * w * c);
        let l = rng.conv_layer(c, k * k, k * k);
        let q = rng.conv_quant();
        let shape = DepthwiseShape {
            h,
            w,
            channels: c,
            kernel: k,
            stride: s,
        };
        let (oh, ow) = shape.out_hw();
        assert_eq!((oh, ow), (h.div_ceil(s), w.div_ceil(s)));
        let mut out = vec![0i8; oh * ow * c];
        depthwise_s8(shape, &input, &l.view(), &q, &mut out).unwrap();
        let want = reference::depthwise((h, w, c, k, s), &input, &l.view(), &q);
        assert_eq!(out, want, "case {i}: {shape:?} {q:?}");
        inside += out
            .iter()
            .filter(|&&v| q.act_min < v && v < q.act_max)
            .count();
    }
    assert!(inside > 10_000, "{inside} values strictly inside the clamp");
}

#[test]
fn same_padding_is_tflites() {
    // (size, kernel, stride) -> (out, pad before), worked out by hand from
    // TFLite's ComputePaddingWithOffset.
    let cases = [
        ((8, 3, 1), (8, 1)),
        ((8, 5, 1), (8, 2)),
        ((8, 7, 1), (8, 3)),
        ((8, 3, 2), (4, 0)), // total 1: nothing before, one after
        ((7, 3, 2), (4, 1)),
        ((8, 5, 2), (4, 1)), // total 3
        ((7, 5, 2), (4, 2)),
        ((3, 7, 1), (3, 3)),
        ((3, 7, 2), (2, 3)), // total 6
        ((1, 7, 2), (1, 3)),
        ((2, 7, 2), (1, 2)), // total 5
        ((4, 1, 2), (2, 0)), // total -1 -> 0
    ];
    for ((size, k, s), want) in cases {
        assert_eq!(same_padding(size, k, s), want, "{size} {k} {s}");
    }
    // Stride 1 with an odd kernel: the k / 2 everyone expects.
    for size in 1..20 {
        for k in [1, 3, 5, 7] {
            assert_eq!(same_padding(size, k, 1), (size, k / 2));
        }
    }
    assert_eq!(same_padding(5, 3, 0), (5, 1)); // stride 0 read as 1
    assert_eq!(same_padding(usize::MAX, usize::MAX, usize::MAX).0, 1);
}

#[test]
fn padded_taps_read_the_zero_point() {
    // A 1×1 input of value zp with a 3×3 all-ones kernel: the 8 padded taps
    // must contribute as if they held the zero point, i.e. nothing.
    let zp = 17i8;
    let input = [zp];
    let weights = [1i8; 9];
    let l = ConvWeights {
        weights: &weights,
        bias: &[5],
        requant: &[Requant::new(1 << 30, 1)], // multiplier 1.0
    };
    let q = ConvQuant {
        input_offset: -i32::from(zp),
        output_offset: 0,
        act_min: -128,
        act_max: 127,
    };
    let shape = DepthwiseShape {
        h: 1,
        w: 1,
        channels: 1,
        kernel: 3,
        stride: 1,
    };
    let mut out = [0i8];
    depthwise_s8(shape, &input, &l, &q, &mut out).unwrap();
    assert_eq!(out, [5]);
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let weights = [1i8; 6];
    let bias = [0i32; 3];
    let requant = [Requant::new(1 << 30, 0); 3];
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
    let shape = PointwiseShape {
        pixels: 2,
        in_c: 2,
        out_c: 3,
    };
    let input = [0i8; 4];
    let mut out = [0i8; 6];
    assert_eq!(pointwise_s8(shape, &input, &ok, &q, &mut out), Ok(()));
    assert_eq!(
        pointwise_s8(shape, &input[..3], &ok, &q, &mut out),
        length("input", 4, 3)
    );
    assert_eq!(
        pointwise_s8(shape, &input, &ok, &q, &mut out[..5]),
        length("output", 6, 5)
    );
    let short = ConvWeights {
        weights: &weights[..5],
        ..ok
    };
    assert_eq!(
        pointwise_s8(shape, &input, &short, &q, &mut out),
        length("weights", 6, 5)
    );
    let short = ConvWeights {
        bias: &bias[..2],
        ..ok
    };
    assert_eq!(
        pointwise_s8(shape, &input, &short, &q, &mut out),
        length("bias", 3, 2)
    );
    let short = ConvWeights {
        requant: &requant[..1],
        ..ok
    };
    assert_eq!(
        pointwise_s8(shape, &input, &short, &q, &mut out),
        length("requant", 3, 1)
    );
    let bad = [
        Requant::new(1 << 30, 0),
        Requant::new(1 << 30, 31),
        Requant::ZERO,
    ];
    let bad = ConvWeights {
        requant: &bad,
        ..ok
    };
    assert!(matches!(
        pointwise_s8(shape, &input, &bad, &q, &mut out),
        Err(Error::Param(_))
    ));
    for bad_q in [
        ConvQuant {
            input_offset: 129,
            ..q
        },
        ConvQuant {
            input_offset: -128,
            ..q
        },
        ConvQuant {
            output_offset: 128,
            ..q
        },
        ConvQuant {
            act_min: 5,
            act_max: 4,
            ..q
        },
    ] {
        let got = pointwise_s8(shape, &input, &ok, &bad_q, &mut out);
        assert!(matches!(got, Err(Error::Param(_))), "{bad_q:?}");
    }
    let zero = PointwiseShape { in_c: 0, ..shape };
    assert!(matches!(
        pointwise_s8(zero, &[], &ok, &q, &mut out),
        Err(Error::Shape(_))
    ));
    let huge = PointwiseShape {
        pixels: usize::MAX,
        ..shape
    };
    assert!(pointwise_s8(huge, &input, &ok, &q, &mut out).is_err());

    // Depthwise: 2×2×3 input, 1×1 kernel (so the 3-channel layer fits).
    let dw_weights = [1i8; 3];
    let dw = ConvWeights {
        weights: &dw_weights,
        ..ok
    };
    let shape = DepthwiseShape {
        h: 2,
        w: 2,
        channels: 3,
        kernel: 1,
        stride: 2,
    };
    let input = [0i8; 12];
    let mut out = [0i8; 3];
    assert_eq!(depthwise_s8(shape, &input, &dw, &q, &mut out), Ok(()));
    assert_eq!(
        depthwise_s8(shape, &input[1..], &dw, &q, &mut out),
        length("input", 12, 11)
    );
    assert_eq!(
        depthwise_s8(shape, &input, &dw, &q, &mut [0; 12]),
        length("output", 3, 12)
    );
    let three = DepthwiseShape { kernel: 3, ..shape };
    assert_eq!(
        depthwise_s8(three, &input, &dw, &q, &mut out),
        length("weights", 27, 3)
    );
    for zero in [
        DepthwiseShape { stride: 0, ..shape },
        DepthwiseShape { kernel: 0, ..shape },
        DepthwiseShape { h: 0, ..shape },
        DepthwiseShape {
            channels: 0,
            ..shape
        },
    ] {
        let got = depthwise_s8(zero, &input, &dw, &q, &mut out);
        assert!(matches!(got, Err(Error::Shape(_))), "{zero:?}");
    }
    let huge = DepthwiseShape {
        kernel: usize::MAX,
        ..shape
    };
    assert!(depthwise_s8(huge, &input, &dw, &q, &mut out).is_err());
}
