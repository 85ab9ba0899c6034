use std::vec;
use std::vec::Vec;

use super::*;
use crate::conv::{depthwise_s8, pointwise_s8};
use crate::quant::ConvQuant;
use crate::testkit::{block_shape, spread};

/// The generator is PCG32 as its reference implementation computes it:
/// `pcg32_srandom_r(&rng, 42, 54)` in O'Neill's `pcg32-demo`.
#[test]
fn pcg32_matches_the_reference_implementation() {
    let mut rng = Pcg32::new(42, 54);
    let words: Vec<u32> = (0..6).map(|_| rng.next_u32()).collect();
    assert_eq!(
        words,
        [
            0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e
        ]
    );
    let mut rng = Pcg32::new(42, 54);
    assert_eq!(rng.next_u64(), 0x7b47f409_a15c02b7, "low word first");
}

#[test]
fn isqrt_is_cores() {
    let mut rng = Pcg32::new(7, 0);
    // Squares and their neighbours up to 3.6e9 (below 2^32: also on a
    // 32-bit target), then values of every magnitude.
    let near_squares = (0..60_000usize).flat_map(|r| [r * r, (r * r).wrapping_sub(1), r * r + 1]);
    let large = (0..10_000).map(|_| rng.next_u64() as usize >> (rng.next_u32() % usize::BITS));
    for n in (0..100_000)
        .chain(near_squares)
        .chain(large)
        .chain([usize::MAX])
    {
        assert_eq!(isqrt(n), n.isqrt(), "{n}");
    }
}

/// Pinned: these change only if the draws change, which changes every
/// seed's block on every board; update them deliberately, never casually.
#[test]
fn the_stream_is_pinned() {
    let b = RandomBlock::new(block_shape(8, 8, 6, 3, 1, (4, 4)), 1).unwrap();
    assert_eq!(b.fingerprint(), 5320826517829462814);
    assert_eq!(
        random_input(8, 1),
        [-111, -113, -126, -55, 116, -30, -110, 21]
    );
}

#[test]
fn same_seed_same_block_other_seed_other_block() {
    let s = block_shape(8, 16, 4, 5, 2, (6, 6));
    let a = RandomBlock::new(s, 42).unwrap();
    assert_eq!(a, RandomBlock::new(s, 42).unwrap());
    assert_eq!(
        a.fingerprint(),
        RandomBlock::new(s, 42).unwrap().fingerprint()
    );
    let b = RandomBlock::new(s, 43).unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.project.weights, b.project.weights);
    assert_eq!(random_input(100, 7), random_input(100, 7));
    assert_ne!(random_input(100, 7), random_input(100, 8));
    // A prefix of a longer input is the shorter input.
    assert_eq!(random_input(103, 7)[..100], random_input(100, 7)[..]);
}

#[test]
fn lengths_and_ranges_fit_the_shape() {
    for (i, s) in [
        block_shape(8, 8, 6, 3, 1, (4, 4)),
        block_shape(16, 24, 1, 7, 2, (5, 5)),
        block_shape(3, 3, 2, 5, 1, (1, 1)),
    ]
    .into_iter()
    .enumerate()
    {
        let b = RandomBlock::new(s, i as u64).unwrap();
        assert_eq!(b.params().check(&s), Ok(()), "{s:?}");
        let all = [&b.expand, &b.depthwise, &b.project];
        for conv in all {
            assert!(
                conv.weights.iter().all(|&w| w != i8::MIN),
                "weights in [-127, 127]"
            );
            assert_eq!(conv.weight_scales.len(), conv.bias.len());
        }
        assert_eq!(b.expand.weights.is_empty(), s.expand == 1);
    }
    assert!(matches!(
        RandomBlock::new(block_shape(8, 8, 6, 4, 1, (4, 4)), 0),
        Err(Error::Shape(_))
    ));
    assert!(random_input(0, 3).is_empty());
    let x = random_input(4096, 3);
    assert!(x.contains(&-128) && x.contains(&127));
}

/// Every stage's output uses a good part of its range: not mostly stuck at
/// a clamp (all saturated, or all ReLU'd to the zero point), not a handful
/// of values.
#[test]
fn activations_neither_saturate_nor_collapse() {
    for seed in 0..20u64 {
        let s = block_shape(16, 16, 6, [3, 5, 7][seed as usize % 3], 1, (8, 8));
        let b = RandomBlock::new(s, seed).unwrap();
        let p = b.params();
        let input = random_input(s.input_len(), seed);
        let mut e = vec![0i8; s.expanded_len()];
        let q = ConvQuant::new(p.input_zero_point, p.expand_out);
        pointwise_s8(s.expand_shape(), &input, &p.expand, &q, &mut e).unwrap();
        let mut d = vec![0i8; s.depthwise_len()];
        let q = ConvQuant::new(p.expand_out.zero_point, p.depthwise_out);
        depthwise_s8(s.depthwise_shape(), &e, &p.depthwise, &q, &mut d).unwrap();
        let mut o = vec![0i8; s.output_len()];
        let q = ConvQuant::new(p.depthwise_out.zero_point, p.project_out);
        pointwise_s8(s.project_shape(), &d, &p.project, &q, &mut o).unwrap();
        let stages: [(&str, &[i8], Activation); 3] = [
            ("expanded", &e, p.expand_out),
            ("depthwise", &d, p.depthwise_out),
            ("projected", &o, p.project_out),
        ];
        for (name, q, act) in stages {
            let (ends, distinct) = spread(q, act.min, act.max);
            assert!(ends < 0.7, "seed {seed}: {name}: {ends:.2} at the clamps");
            assert!(
                distinct >= 40,
                "seed {seed}: {name}: {distinct} distinct values"
            );
        }
        let mut out = Vec::from(&o[..]);
        crate::add::add_s8_in_place(&input, &mut out, &p.add).unwrap();
        let (ends, distinct) = spread(&out, -128, 127);
        assert!(
            ends < 0.1 && distinct >= 40,
            "seed {seed}: sum {ends:.2} {distinct}"
        );
    }
}
