use std::vec;
use std::vec::Vec;

use super::*;
use crate::random::{RandomHead, RandomStem, random_input};
use crate::reference;
use crate::requant::Requant;
use crate::testkit::{Rng, head_shape, stem_shape, too_small};

/// Edge cases (stride 2 on odd and even sizes, grey and RGB inputs, kernels
/// larger than the input), then random stems.
pub(super) fn stems() -> Vec<StemShape> {
    let mut shapes = vec![
        stem_shape(1, 16, 3, 1, (28, 28)),
        stem_shape(3, 32, 3, 2, (32, 32)),
        stem_shape(3, 16, 3, 2, (7, 7)),
        stem_shape(1, 8, 5, 2, (8, 7)),
        stem_shape(3, 8, 5, 1, (3, 3)),
        stem_shape(1, 4, 7, 2, (2, 2)),
        stem_shape(3, 1, 3, 1, (1, 1)),
    ];
    let mut rng = Rng::new(70);
    for _ in 0..40 {
        let hw = (rng.size(1, 14), rng.size(1, 14));
        let k = rng.pick(&[1, 3, 3, 3, 5, 7]);
        let in_c = rng.pick(&[1, 3, 3, 2, 4]);
        shapes.push(stem_shape(in_c, rng.size(1, 32), k, rng.pick(&[1, 2]), hw));
    }
    shapes
}

/// Edge cases (each term of the peak dominating once), then random heads.
pub(super) fn heads() -> Vec<HeadShape> {
    let mut shapes = vec![
        head_shape(24, 256, 10, (4, 4)),
        head_shape(8, 64, 100, (1, 1)),
        head_shape(1, 16, 2, (2, 2)),
        head_shape(16, 40, 10, (7, 7)),
        head_shape(3, 1, 1, (1, 3)),
    ];
    let mut rng = Rng::new(71);
    for _ in 0..40 {
        let hw = (rng.size(1, 7), rng.size(1, 7));
        shapes.push(head_shape(
            rng.size(1, 32),
            rng.size(1, 64),
            rng.size(1, 20),
            hw,
        ));
    }
    shapes
}

#[test]
fn stem_matches_the_reference_and_the_in_arena_run() {
    for (i, s) in stems().into_iter().enumerate() {
        let b = RandomStem::new(s, i as u64).unwrap();
        let p = b.params();
        let input = random_input(s.input_len(), 2000 + i as u64);
        let mut out = vec![0i8; s.output_len()];
        run_stem(&s, &p, &input, &mut out).unwrap();
        assert_eq!(out, reference::stem(&s, &p, &input), "stem {i}: {s:?}");
        for fill in [0i8, -1, 0x55] {
            let mut arena = vec![fill; s.peak_activation_bytes()];
            arena[..input.len()].copy_from_slice(&input);
            let range = run_stem_in_arena(&s, &p, &mut arena).unwrap();
            assert_eq!(range, s.input_len()..s.peak_activation_bytes());
            assert_eq!(arena[range], out[..], "stem {i}: {s:?}");
        }
    }
}

#[test]
fn head_matches_the_reference_and_the_in_arena_run() {
    for (i, s) in heads().into_iter().enumerate() {
        let b = RandomHead::new(s, i as u64).unwrap();
        let p = b.params();
        let input = random_input(s.input_len(), 3000 + i as u64);
        let mut arena = vec![0i8; s.arena_bytes()];
        let mut out = vec![0i8; s.output_len()];
        run_head(&s, &p, &input, &mut arena, &mut out).unwrap();
        assert_eq!(out, reference::head(&s, &p, &input), "head {i}: {s:?}");
        for fill in [0i8, -1, 0x55] {
            let mut arena = vec![fill; s.peak_activation_bytes()];
            arena[..input.len()].copy_from_slice(&input);
            let range = run_head_in_arena(&s, &p, &mut arena).unwrap();
            assert_eq!(range.len(), s.classes);
            assert_eq!(arena[range], out[..], "head {i}: {s:?}");
        }
    }
}

#[test]
fn arenas_of_exactly_the_announced_size_suffice_and_one_byte_less_fails() {
    for (i, s) in stems().into_iter().enumerate() {
        let b = RandomStem::new(s, i as u64).unwrap();
        let input = random_input(s.input_len(), i as u64);
        let needed = s.peak_activation_bytes();
        let mut arena = vec![0i8; needed + 1];
        arena[..input.len()].copy_from_slice(&input);
        assert!(run_stem_in_arena(&s, &b.params(), &mut arena[..needed]).is_ok());
        let got = run_stem_in_arena(&s, &b.params(), &mut arena[..needed - 1]);
        assert_eq!(got, too_small(needed));
        arena[needed] = 99;
        run_stem_in_arena(&s, &b.params(), &mut arena).unwrap();
        assert_eq!(arena[needed], 99);
    }
    for (i, s) in heads().into_iter().enumerate() {
        let b = RandomHead::new(s, i as u64).unwrap();
        let p = b.params();
        let input = random_input(s.input_len(), i as u64);
        let mut out = vec![0i8; s.output_len()];

        let needed = s.arena_bytes();
        let mut arena = vec![0i8; needed];
        assert_eq!(run_head(&s, &p, &input, &mut arena, &mut out), Ok(()));
        let got = run_head(&s, &p, &input, &mut arena[..needed - 1], &mut out);
        assert_eq!(got, too_small(needed));

        let needed = s.peak_activation_bytes();
        let mut arena = vec![0i8; needed + 1];
        arena[..input.len()].copy_from_slice(&input);
        assert!(run_head_in_arena(&s, &p, &mut arena[..needed]).is_ok());
        let got = run_head_in_arena(&s, &p, &mut arena[..needed - 1]);
        assert_eq!(got, too_small(needed));
        // A larger arena works and leaves the bytes past the peak alone.
        arena[..input.len()].copy_from_slice(&input);
        arena[needed] = 99;
        let range = run_head_in_arena(&s, &p, &mut arena).unwrap();
        assert_eq!(arena[range], out[..]);
        assert_eq!(arena[needed], 99);
    }
}

fn what(got: Result<impl core::fmt::Debug, Error>) -> &'static str {
    match got {
        Err(Error::Length { what, .. }) => what,
        other => panic!("expected a length error, got {other:?}"),
    }
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let s = stem_shape(3, 4, 3, 2, (5, 5));
    let b = RandomStem::new(s, 1).unwrap();
    let p = b.params();
    let input = random_input(s.input_len(), 1);
    let mut out = vec![0i8; s.output_len()];
    let mut arena = vec![0i8; s.peak_activation_bytes()];
    assert_eq!(run_stem(&s, &p, &input, &mut out), Ok(()));
    assert_eq!(what(run_stem(&s, &p, &input[1..], &mut out)), "input");
    assert_eq!(what(run_stem(&s, &p, &input, &mut out[1..])), "output");
    let mut conv = p.conv;
    conv.weights = &conv.weights[1..];
    let bad = StemParams { conv, ..p };
    assert_eq!(what(run_stem(&s, &bad, &input, &mut out)), "stem.weights");
    assert_eq!(
        what(run_stem_in_arena(&s, &bad, &mut arena)),
        "stem.weights"
    );
    let mut conv = p.conv;
    conv.bias = &conv.bias[1..];
    let bad = StemParams { conv, ..p };
    assert_eq!(what(run_stem(&s, &bad, &input, &mut out)), "stem.bias");
    let mut conv = p.conv;
    conv.requant = &conv.requant[1..];
    let bad = StemParams { conv, ..p };
    assert_eq!(what(run_stem(&s, &bad, &input, &mut out)), "stem.requant");
    let bad = StemParams {
        output: Activation {
            zero_point: 0,
            min: 3,
            max: 2,
        },
        ..p
    };
    assert!(matches!(
        run_stem(&s, &bad, &input, &mut out),
        Err(Error::Param(_))
    ));
    let bad_shape = StemShape { kernel: 2, ..s };
    assert!(matches!(
        run_stem_in_arena(&bad_shape, &p, &mut arena),
        Err(Error::Shape(_))
    ));

    let s = head_shape(4, 8, 3, (3, 2));
    let b = RandomHead::new(s, 2).unwrap();
    let p = b.params();
    let input = random_input(s.input_len(), 2);
    let mut out = vec![0i8; s.output_len()];
    let mut arena = vec![0i8; s.peak_activation_bytes()];
    let mut run =
        |p: &HeadParams<'_>, input: &[i8], out: &mut [i8]| run_head(&s, p, input, &mut arena, out);
    assert_eq!(run(&p, &input, &mut out), Ok(()));
    assert_eq!(what(run(&p, &input[1..], &mut out)), "input");
    assert_eq!(what(run(&p, &input, &mut out[1..])), "output");
    let mut conv = p.conv;
    conv.weights = &conv.weights[1..];
    assert_eq!(
        what(run(&HeadParams { conv, ..p }, &input, &mut out)),
        "head.weights"
    );
    let mut conv = p.conv;
    conv.requant = &conv.requant[1..];
    assert_eq!(
        what(run(&HeadParams { conv, ..p }, &input, &mut out)),
        "head.requant"
    );
    let mut fc = p.fc;
    fc.weights = &fc.weights[1..];
    assert_eq!(
        what(run(&HeadParams { fc, ..p }, &input, &mut out)),
        "fc.weights"
    );
    let mut fc = p.fc;
    fc.bias = &fc.bias[1..];
    let short_fc = HeadParams { fc, ..p };
    assert_eq!(what(run(&short_fc, &input, &mut out)), "fc.bias");
    let mut fc = p.fc;
    fc.requant = Requant::new(1 << 30, -32);
    assert!(matches!(
        run(&HeadParams { fc, ..p }, &input, &mut out),
        Err(Error::Param(_))
    ));
    let bad = HeadParams {
        logits: Activation {
            zero_point: 0,
            min: 1,
            max: 0,
        },
        ..p
    };
    assert!(matches!(run(&bad, &input, &mut out), Err(Error::Param(_))));
    // A failed check writes nothing, in the output or the arena.
    let mut untouched = vec![7i8; s.output_len()];
    let mut arena = vec![5i8; s.peak_activation_bytes()];
    let _ = run_head(&s, &short_fc, &input, &mut arena, &mut untouched);
    assert!(untouched.iter().all(|&v| v == 7));
    assert!(arena.iter().all(|&v| v == 5));
    let _ = run_head_in_arena(&s, &short_fc, &mut arena);
    assert!(arena.iter().all(|&v| v == 5));
    let bad_shape = HeadShape {
        h: MAX_POOL_PIXELS_PLUS_ONE,
        w: 1,
        ..s
    };
    assert!(matches!(
        run_head_in_arena(&bad_shape, &p, &mut arena),
        Err(Error::Shape(_))
    ));
}

const MAX_POOL_PIXELS_PLUS_ONE: usize = crate::pool::MAX_POOL_PIXELS + 1;
