use std::vec;
use std::vec::Vec;

use super::*;
use crate::conv::pointwise_s8;
use crate::fc::fully_connected_s8;
use crate::net_blocks::run_stem;
use crate::pool::avgpool_s8;
use crate::quant::ConvQuant;
use crate::random::{RandomBlock, random_input};
use crate::testkit::{block_shape, head_shape, spread, stem_shape};

/// Pinned: these change only if the draws change, which changes every
/// seed's stem or head on every board; update them deliberately, never
/// casually.
#[test]
fn the_streams_are_pinned() {
    let s = RandomStem::new(stem_shape(3, 8, 3, 2, (8, 8)), 1).unwrap();
    assert_eq!(s.fingerprint(), 14201739062334447129);
    let h = RandomHead::new(head_shape(8, 16, 10, (2, 2)), 1).unwrap();
    assert_eq!(h.fingerprint(), 7709176642841435275);
}

#[test]
fn same_seed_same_draw_other_seed_other_draw() {
    let s = stem_shape(1, 16, 3, 1, (6, 6));
    let a = RandomStem::new(s, 42).unwrap();
    assert_eq!(a, RandomStem::new(s, 42).unwrap());
    let b = RandomStem::new(s, 43).unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.conv.weights, b.conv.weights);

    let s = head_shape(8, 32, 10, (3, 3));
    let a = RandomHead::new(s, 42).unwrap();
    assert_eq!(a, RandomHead::new(s, 42).unwrap());
    let b = RandomHead::new(s, 43).unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fc.weights, b.fc.weights);
    assert_ne!(a.fc.weight_scale, b.fc.weight_scale);

    // Stem, head and block of one seed come from different streams: their
    // first draws (the input's scale) differ.
    let block = block_shape(8, 8, 2, 3, 1, (3, 3));
    let seed = 7;
    let scales = [
        RandomBlock::new(block, seed).unwrap().scales.input,
        RandomStem::new(stem_shape(8, 8, 3, 1, (3, 3)), seed)
            .unwrap()
            .input_scale,
        RandomHead::new(head_shape(8, 8, 2, (3, 3)), seed)
            .unwrap()
            .input_scale,
    ];
    assert!(scales[0] != scales[1] && scales[1] != scales[2] && scales[0] != scales[2]);
}

#[test]
fn lengths_and_ranges_fit_the_shape() {
    for (i, s) in [
        stem_shape(3, 32, 3, 2, (8, 8)),
        stem_shape(1, 4, 5, 1, (3, 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let b = RandomStem::new(s, i as u64).unwrap();
        assert_eq!(b.params().check(&s), Ok(()));
        assert!(b.conv.weights.iter().all(|&w| w != i8::MIN));
        assert_eq!(b.conv.weights.len(), s.out_c * s.kernel * s.kernel * s.in_c);
        assert_eq!(b.conv.weight_scales.len(), s.out_c);
    }
    for (i, s) in [head_shape(24, 64, 10, (4, 4)), head_shape(1, 1, 1, (1, 1))]
        .into_iter()
        .enumerate()
    {
        let b = RandomHead::new(s, i as u64).unwrap();
        assert_eq!(b.params().check(&s), Ok(()));
        assert!(b.fc.weights.iter().all(|&w| w != i8::MIN));
        assert_eq!(b.fc.weights.len(), s.classes * s.channels);
        assert_eq!(b.fc.bias.len(), s.classes);
        assert_eq!(b.conv.weights.len(), s.channels * s.in_c);
    }
    assert!(matches!(
        RandomStem::new(stem_shape(3, 8, 4, 1, (8, 8)), 0),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        RandomHead::new(head_shape(3, 8, 0, (8, 8)), 0),
        Err(Error::Shape(_))
    ));
}

/// Every stage's output uses a good part of its range: not mostly stuck at
/// a clamp, not a handful of values. The logits of one head are short, so
/// they are judged over 20 seeds together (measured: 104 distinct values of
/// 200, none saturated).
#[test]
fn activations_neither_saturate_nor_collapse() {
    for seed in 0..20u64 {
        let s = stem_shape(
            [1, 3][seed as usize % 2],
            16,
            3,
            1 + seed as usize % 2,
            (12, 12),
        );
        let b = RandomStem::new(s, seed).unwrap();
        let input = random_input(s.input_len(), seed);
        let mut out = vec![0i8; s.output_len()];
        run_stem(&s, &b.params(), &input, &mut out).unwrap();
        let (ends, distinct) = spread(&out, b.output.min, b.output.max);
        assert!(
            ends < 0.7 && distinct >= 40,
            "stem {seed}: {ends:.2} {distinct}"
        );
    }
    let (mut pooled_all, mut logits_all) = (Vec::new(), Vec::new());
    for seed in 0..20u64 {
        let hw = [1, 2, 4, 7][seed as usize % 4];
        let s = head_shape(16, 64, 10, (hw, hw));
        let b = RandomHead::new(s, seed).unwrap();
        let p = b.params();
        let input = random_input(s.input_len(), seed);
        let mut features = vec![0i8; s.conv_len()];
        let q = ConvQuant::new(p.input_zero_point, p.conv_out);
        pointwise_s8(s.conv_shape(), &input, &p.conv, &q, &mut features).unwrap();
        let (ends, distinct) = spread(&features, p.conv_out.min, p.conv_out.max);
        let enough = if features.len() >= 256 { 40 } else { 20 };
        assert!(
            ends < 0.7 && distinct >= enough,
            "conv {seed}: {ends:.2} {distinct}"
        );
        let mut pooled = vec![0i8; s.channels];
        avgpool_s8(s.pool_shape(), &features, -128, 127, &mut pooled).unwrap();
        let (ends, distinct) = spread(&pooled, p.conv_out.min, p.conv_out.max);
        assert!(
            ends < 0.7 && distinct >= 25,
            "pooled {seed}: {ends:.2} {distinct}"
        );
        let mut logits = vec![0i8; s.classes];
        let q = ConvQuant::new(p.conv_out.zero_point, p.logits);
        fully_connected_s8(s.fc_shape(), &pooled, &p.fc, &q, &mut logits).unwrap();
        pooled_all.extend(pooled);
        logits_all.extend(logits);
    }
    let (_, distinct) = spread(&pooled_all, 0, 0);
    assert!(distinct >= 100, "pooled: {distinct} distinct values");
    let (ends, distinct) = spread(&logits_all, -128, 127);
    assert!(
        ends < 0.05 && distinct >= 70,
        "logits: {ends:.2} {distinct}"
    );
}
