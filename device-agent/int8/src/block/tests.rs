use std::vec;
use std::vec::Vec;

use super::*;
use crate::conv::ConvWeights;
use crate::random::{RandomBlock, RandomConv, random_input};
use crate::reference;
use crate::testkit::{Rng, block_shape, length, too_small};

/// Edge cases, then random shapes: every branch of the layout (ratio 1 or
/// not, residual or not), kernel 7 on 3×3, stride 2 on odd and even sizes.
pub(super) fn shapes() -> Vec<BlockShape> {
    let mut shapes = vec![
        block_shape(4, 4, 6, 7, 1, (3, 3)),
        block_shape(4, 8, 6, 7, 2, (3, 3)),
        block_shape(8, 8, 1, 3, 1, (5, 5)),
        block_shape(8, 16, 1, 5, 2, (6, 6)),
        block_shape(16, 8, 1, 3, 1, (4, 7)),
        block_shape(3, 5, 2, 3, 2, (7, 7)),
        block_shape(5, 5, 3, 5, 2, (8, 8)), // same channels but strided: no residual
        block_shape(1, 1, 1, 3, 1, (1, 1)),
        block_shape(2, 2, 6, 7, 2, (1, 1)),
    ];
    let mut rng = Rng::new(30);
    for _ in 0..60 {
        let in_c = rng.size(1, 24);
        let out_c = if rng.chance(50) {
            in_c
        } else {
            rng.size(1, 24)
        };
        let hw = (rng.size(1, 9), rng.size(1, 9));
        let stride = rng.pick(&[1, 2]);
        shapes.push(block_shape(
            in_c,
            out_c,
            rng.size(1, 6),
            rng.pick(&[3, 5, 7]),
            stride,
            hw,
        ));
    }
    shapes
}

#[test]
fn run_block_matches_the_reference_and_the_in_arena_run() {
    for (i, s) in shapes().into_iter().enumerate() {
        let block = RandomBlock::new(s, i as u64).unwrap();
        let params = block.params();
        let input = random_input(s.input_len(), 1000 + i as u64);

        let mut arena = vec![0i8; s.arena_bytes()];
        let mut out = vec![0i8; s.output_len()];
        run_block(&s, &params, &input, &mut arena, &mut out).unwrap();
        assert_eq!(
            out,
            reference::block(&s, &params, &input),
            "shape {i}: {s:?}"
        );

        // Same result inside one arena, whatever the arena held before.
        for fill in [0i8, -1, 0x55] {
            let mut arena = vec![fill; s.peak_activation_bytes()];
            arena[..input.len()].copy_from_slice(&input);
            let range = run_block_in_arena(&s, &params, &mut arena).unwrap();
            assert_eq!(range.len(), s.output_len());
            assert_eq!(arena[range], out[..], "shape {i}: {s:?}");
        }
    }
}

#[test]
fn arenas_of_exactly_the_announced_size_suffice_and_one_byte_less_fails() {
    for (i, s) in shapes().into_iter().enumerate() {
        let block = RandomBlock::new(s, i as u64).unwrap();
        let params = block.params();
        let input = random_input(s.input_len(), i as u64);
        let mut out = vec![0i8; s.output_len()];

        let needed = s.arena_bytes();
        let mut arena = vec![0i8; needed];
        assert_eq!(run_block(&s, &params, &input, &mut arena, &mut out), Ok(()));
        let got = run_block(&s, &params, &input, &mut arena[..needed - 1], &mut out);
        assert_eq!(got, too_small(needed));

        let needed = s.peak_activation_bytes();
        let mut arena = vec![0i8; needed + 1];
        arena[..input.len()].copy_from_slice(&input);
        assert!(run_block_in_arena(&s, &params, &mut arena[..needed]).is_ok());
        let got = run_block_in_arena(&s, &params, &mut arena[..needed - 1]);
        assert_eq!(got, too_small(needed));
        // A larger arena works and leaves the bytes past the peak alone.
        arena[..input.len()].copy_from_slice(&input);
        arena[needed] = 99;
        let range = run_block_in_arena(&s, &params, &mut arena).unwrap();
        assert_eq!(arena[range], out[..]);
        assert_eq!(arena[needed], 99);
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // `which` picks a slice and a name
fn wrong_lengths_and_inconsistent_parameters_are_errors() {
    let s = block_shape(4, 4, 2, 3, 1, (3, 3));
    let b = RandomBlock::new(s, 5).unwrap();
    let p = b.params();
    let input = random_input(s.input_len(), 5);
    let mut arena = vec![0i8; s.peak_activation_bytes()];
    let mut out = vec![0i8; s.output_len()];
    let run = |p: &BlockParams<'_>, input: &[i8], arena: &mut [i8], out: &mut [i8]| {
        run_block(&s, p, input, arena, out)
    };
    assert_eq!(run(&p, &input, &mut arena, &mut out), Ok(()));
    assert_eq!(
        run(&p, &input[1..], &mut arena, &mut out),
        length("input", 36, 35)
    );
    assert_eq!(
        run(&p, &input, &mut arena, &mut out[1..]),
        length("output", 36, 35)
    );

    fn short(c: &RandomConv, which: usize) -> ConvWeights<'_> {
        let mut w = c.as_weights();
        match which {
            0 => w.weights = &w.weights[1..],
            1 => w.bias = &w.bias[1..],
            _ => w.requant = &w.requant[1..],
        }
        w
    }
    let names = [
        ["expand.weights", "expand.bias", "expand.requant"],
        ["depthwise.weights", "depthwise.bias", "depthwise.requant"],
        ["project.weights", "project.bias", "project.requant"],
    ];
    for which in 0..3 {
        let cases = [
            BlockParams {
                expand: short(&b.expand, which),
                ..p
            },
            BlockParams {
                depthwise: short(&b.depthwise, which),
                ..p
            },
            BlockParams {
                project: short(&b.project, which),
                ..p
            },
        ];
        for (layer, bad) in cases.iter().enumerate() {
            let got = run(bad, &input, &mut arena, &mut out);
            let want = names[layer][which];
            assert!(
                matches!(got, Err(Error::Length { what, .. }) if what == want),
                "{got:?}"
            );
            let got = run_block_in_arena(&s, bad, &mut arena);
            assert!(
                matches!(got, Err(Error::Length { what, .. }) if what == want),
                "{got:?}"
            );
        }
    }
    // The add must read the zero points the block declares.
    let mut add = p.add;
    add.input1_offset += 1;
    let bad = BlockParams { add, ..p };
    assert!(matches!(
        run(&bad, &input, &mut arena, &mut out),
        Err(Error::Param(_))
    ));
    let bad = BlockParams {
        project_out: Activation::linear(p.project_out.zero_point.wrapping_add(1)),
        ..p
    };
    assert!(matches!(
        run(&bad, &input, &mut arena, &mut out),
        Err(Error::Param(_))
    ));
    // Clamps and shapes.
    let bad = BlockParams {
        depthwise_out: Activation {
            min: 3,
            max: 2,
            zero_point: 0,
        },
        ..p
    };
    assert!(matches!(
        run(&bad, &input, &mut arena, &mut out),
        Err(Error::Param(_))
    ));
    let bad_shape = BlockShape { kernel: 4, ..s };
    let got = run_block(&bad_shape, &p, &input, &mut arena, &mut out);
    assert!(matches!(got, Err(Error::Shape(_))));
    // Ratio 1: the expand slices must be empty.
    let s1 = block_shape(4, 4, 1, 3, 1, (3, 3));
    let b1 = RandomBlock::new(s1, 6).unwrap();
    let bad = BlockParams {
        expand: b.expand.as_weights(),
        ..b1.params()
    };
    let got = run_block(&s1, &bad, &input, &mut arena, &mut out);
    assert!(matches!(
        got,
        Err(Error::Length {
            what: "expand.weights",
            expected: 0,
            ..
        })
    ));
    // A failed check writes nothing.
    let mut untouched = vec![7i8; s.output_len()];
    let _ = run(
        &BlockParams { add, ..p },
        &input,
        &mut arena,
        &mut untouched,
    );
    assert!(untouched.iter().all(|&v| v == 7));
}
