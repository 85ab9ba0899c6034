use std::vec;
use std::vec::Vec;

use super::*;
use crate::block::run_block;
use crate::net_blocks::{run_head, run_stem};
use crate::random::{RandomBlock, RandomHead, RandomStem, random_input};
use crate::testkit::{Rng, block_shape, head_shape, stem_shape};

// The blob has no spatial dimensions, so one map size per kind will do.

pub(super) fn block(
    in_c: usize,
    out_c: usize,
    expand: usize,
    kernel: usize,
    stride: usize,
) -> BlockShape {
    block_shape(in_c, out_c, expand, kernel, stride, (5, 4))
}

pub(super) fn stem(in_c: usize, out_c: usize, kernel: usize, stride: usize) -> StemShape {
    stem_shape(in_c, out_c, kernel, stride, (7, 6))
}

pub(super) fn head(in_c: usize, channels: usize, classes: usize) -> HeadShape {
    head_shape(in_c, channels, classes, (3, 2))
}

/// Ratio 1 or not, residual or not, every kernel, then random shapes.
fn blocks() -> Vec<BlockShape> {
    let mut shapes = vec![
        block(8, 8, 6, 3, 1),
        block(16, 8, 1, 3, 1),
        block(8, 8, 1, 5, 1),
        block(24, 40, 6, 5, 2),
        block(1, 1, 2, 7, 2),
    ];
    let mut rng = Rng::new(90);
    for _ in 0..20 {
        let (in_c, out_c) = (rng.size(1, 24), rng.size(1, 24));
        let (expand, kernel) = (rng.size(1, 6), rng.pick(&[3, 5, 7]));
        shapes.push(block(in_c, out_c, expand, kernel, rng.pick(&[1, 2])));
    }
    shapes
}

fn stems() -> Vec<StemShape> {
    let mut shapes = vec![stem(3, 16, 3, 2), stem(1, 1, 1, 1), stem(3, 8, 7, 1)];
    let mut rng = Rng::new(91);
    for _ in 0..10 {
        let kernel = rng.pick(&[1, 3, 5]);
        shapes.push(stem(
            rng.size(1, 4),
            rng.size(1, 32),
            kernel,
            rng.pick(&[1, 2]),
        ));
    }
    shapes
}

fn heads() -> Vec<HeadShape> {
    let mut shapes = vec![head(24, 64, 10), head(1, 1, 1), head(8, 16, 100)];
    let mut rng = Rng::new(92);
    for _ in 0..10 {
        shapes.push(head(rng.size(1, 32), rng.size(1, 64), rng.size(1, 20)));
    }
    shapes
}

pub(super) fn block_output(shape: &BlockShape, params: &BlockParams<'_>, seed: u64) -> Vec<i8> {
    let input = random_input(shape.input_len(), seed);
    let (mut arena, mut out) = (vec![0; shape.arena_bytes()], vec![0; shape.output_len()]);
    run_block(shape, params, &input, &mut arena, &mut out).unwrap();
    out
}

#[test]
fn blocks_round_trip_bit_for_bit() {
    for (i, shape) in blocks().iter().enumerate() {
        let seed = i as u64;
        let random = RandomBlock::new(*shape, seed).unwrap();
        let blob = encode_block(&random.params());
        assert_eq!(blob.len(), encoded_len_block(shape), "{shape:?}");
        assert_eq!(blob.len(), shape.weight_bytes() + 93);
        let owned = OwnedBlock::decode(shape, &blob).unwrap();
        assert_eq!(owned.params(), random.params());
        assert_eq!(owned.shape(), shape);
        assert_eq!(encode_block(&owned.params()), blob);
        let out = block_output(shape, &owned.params(), seed);
        assert_eq!(out, block_output(shape, &random.params(), seed));
    }
}

#[test]
fn stems_round_trip_bit_for_bit() {
    for (i, shape) in stems().iter().enumerate() {
        let random = RandomStem::new(*shape, i as u64).unwrap();
        let blob = encode_stem(&random.params());
        assert_eq!(blob.len(), encoded_len_stem(shape), "{shape:?}");
        assert_eq!(blob.len(), shape.weight_bytes() + 21);
        let owned = OwnedStem::decode(shape, &blob).unwrap();
        assert_eq!(owned.params(), random.params());
        assert_eq!(owned.shape(), shape);
        assert_eq!(encode_stem(&owned.params()), blob);
        let input = random_input(shape.input_len(), i as u64);
        let run = |p: &StemParams<'_>| {
            let mut out = vec![0; shape.output_len()];
            run_stem(shape, p, &input, &mut out).unwrap();
            out
        };
        assert_eq!(run(&owned.params()), run(&random.params()));
    }
}

#[test]
fn heads_round_trip_bit_for_bit() {
    for (i, shape) in heads().iter().enumerate() {
        let random = RandomHead::new(*shape, i as u64).unwrap();
        let blob = encode_head(&random.params());
        assert_eq!(blob.len(), encoded_len_head(shape), "{shape:?}");
        assert_eq!(blob.len(), shape.weight_bytes() + 32);
        let owned = OwnedHead::decode(shape, &blob).unwrap();
        assert_eq!(owned.params(), random.params());
        assert_eq!(owned.shape(), shape);
        assert_eq!(encode_head(&owned.params()), blob);
        let input = random_input(shape.input_len(), i as u64);
        let run = |p: &HeadParams<'_>| {
            let (mut arena, mut out) = (vec![0; shape.arena_bytes()], vec![0; shape.output_len()]);
            run_head(shape, p, &input, &mut arena, &mut out).unwrap();
            out
        };
        assert_eq!(run(&owned.params()), run(&random.params()));
    }
}

/// The README's example: a k5e6 block 24 → 40 (on 14×14; the blob does not
/// depend on the map), a 3 → 16 stem, a 40 → 128 → 10 head.
#[test]
fn typical_sizes() {
    let shape = BlockShape {
        h: 14,
        w: 14,
        ..block(24, 40, 6, 5, 2)
    };
    assert_eq!(shape.weight_bytes(), 16_752);
    let blob = encode_block(&RandomBlock::new(shape, 1).unwrap().params());
    assert_eq!((blob.len(), encoded_len_block(&shape)), (16_845, 16_845));
    let stem = stem(3, 16, 3, 2);
    assert_eq!((stem.weight_bytes(), encoded_len_stem(&stem)), (624, 645));
    let head = head(40, 128, 10);
    assert_eq!(
        (head.weight_bytes(), encoded_len_head(&head)),
        (7_984, 8_016)
    );
}

/// The layout, byte for byte, on a 1×1 stem with one channel.
#[test]
fn stem_layout_is_pinned() {
    let requant = [Requant::new(1 << 30, -1)];
    let params = StemParams {
        conv: ConvWeights {
            weights: &[5],
            bias: &[-2],
            requant: &requant,
        },
        input_zero_point: -3,
        output: Activation::linear(-128),
    };
    let blob = encode_stem(&params);
    let expected: &[u8] = &[
        b'P', b'I', b'8', b'S', 1, // tag, version
        1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, // counts
        5, // weight
        0xfe, 0xff, 0xff, 0xff, // bias -2
        0, 0, 0, 0x40, 0xff, 0xff, 0xff, 0xff, // multiplier 2^30, shift -1
        0xfd, 0x80, 0x80, 0x7f, // input zero point -3, activation
    ];
    assert_eq!(blob, expected);
    let shape = stem(1, 1, 1, 1);
    assert_eq!(encoded_len_stem(&shape), expected.len());
    assert_eq!(OwnedStem::decode(&shape, &blob).unwrap().params(), params);
}

/// The block's parts in the documented order (counts first, the add last),
/// and the head's fully connected part after its convolution.
#[test]
fn block_and_head_layouts_follow_the_table() {
    let shape = block(8, 8, 6, 3, 1);
    let b = RandomBlock::new(shape, 5).unwrap();
    let blob = encode_block(&b.params());
    assert_eq!(&blob[..5], b"PI8B\x01");
    let le = |v: u32| v.to_le_bytes();
    assert_eq!(blob[5..17], [le(384), le(48), le(48)].concat());
    assert_eq!(
        blob[17..17 + 384],
        b.expand
            .weights
            .iter()
            .map(|&w| w as u8)
            .collect::<Vec<_>>()
    );
    let a = b.add;
    let mut tail: Vec<u8> = vec![b.input_zero_point as u8];
    for act in [b.expand_out, b.depthwise_out, b.project_out] {
        tail.extend([act.zero_point as u8, act.min as u8, act.max as u8]);
    }
    let (r1, r2, out) = (a.input1, a.input2, a.output);
    for v in [
        a.input1_offset,
        r1.multiplier,
        r1.shift,
        a.input2_offset,
        r2.multiplier,
    ]
    .into_iter()
    .chain([
        r2.shift,
        a.left_shift,
        a.output_offset,
        out.multiplier,
        out.shift,
    ]) {
        tail.extend(v.to_le_bytes());
    }
    tail.extend([a.act_min as u8, a.act_max as u8]);
    assert_eq!(tail.len(), 1 + 9 + 42);
    assert_eq!(blob[blob.len() - tail.len()..], tail);

    let shape = head(4, 6, 3);
    let h = RandomHead::new(shape, 5).unwrap();
    let blob = encode_head(&h.params());
    let fc = 5 + 12 + 24 + 6 * 12;
    assert_eq!(&blob[..5], b"PI8H\x01");
    assert_eq!(blob[fc..fc + 8], [le(18), le(3)].concat());
    let requant = fc + 8 + 18 + 12;
    assert_eq!(
        blob[requant..requant + 4],
        h.fc.requant.multiplier.to_le_bytes()
    );
    assert_eq!(blob.len(), requant + 8 + 1 + 6);
}
