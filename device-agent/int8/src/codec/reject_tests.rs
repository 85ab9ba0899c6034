//! What decoding refuses: shapes that do not match, truncated, retagged and
//! extended blobs, random and mutated bytes, parameters that fail their
//! check.

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::tests::{block, block_output, head, stem};
use super::*;
use crate::net_blocks::{run_head, run_stem};
use crate::random::{RandomBlock, RandomHead, RandomStem};
use crate::testkit::{Rng, length};

#[test]
fn a_shape_that_does_not_match_names_the_slice() {
    let shape = block(8, 16, 6, 3, 2);
    let blob = encode_block(&RandomBlock::new(shape, 3).unwrap().params());
    let cases = [
        (
            block(16, 16, 6, 3, 2),
            length("expand.weights", 96 * 16, 384),
        ),
        (block(8, 16, 1, 3, 2), length("expand.weights", 0, 384)),
        (block(8, 16, 3, 3, 2), length("expand.weights", 24 * 8, 384)),
        (
            block(8, 16, 6, 5, 2),
            length("depthwise.weights", 25 * 48, 9 * 48),
        ),
        (
            block(8, 24, 6, 3, 2),
            length("project.weights", 24 * 48, 16 * 48),
        ),
        (
            block(8, 16, 6, 4, 2),
            Err(Error::Shape("kernel is not 3, 5 or 7")),
        ),
    ];
    for (other, expected) in cases {
        assert_eq!(OwnedBlock::decode(&other, &blob), expected, "{other:?}");
    }
    // The blob has no spatial dimensions: another map or stride decodes.
    let other = BlockShape {
        h: 1,
        w: 9,
        stride: 1,
        ..shape
    };
    let owned = OwnedBlock::decode(&other, &blob).unwrap();
    assert_eq!(
        owned.params(),
        OwnedBlock::decode(&shape, &blob).unwrap().params()
    );

    let blob = encode_stem(&RandomStem::new(stem(3, 8, 3, 2), 1).unwrap().params());
    assert_eq!(
        OwnedStem::decode(&stem(1, 8, 3, 2), &blob),
        length("stem.weights", 72, 216)
    );
    let blob = encode_head(&RandomHead::new(head(8, 16, 10), 1).unwrap().params());
    assert_eq!(
        OwnedHead::decode(&head(8, 16, 12), &blob),
        length("fc.weights", 192, 160)
    );
    assert_eq!(
        OwnedHead::decode(&head(8, 12, 10), &blob),
        length("head.weights", 96, 128)
    );
}

/// A blob for each kind, ratio 1 and residual blocks among them.
fn sample_blobs() -> Vec<(Vec<u8>, usize)> {
    let mut blobs = Vec::new();
    for (i, shape) in [block(8, 8, 6, 3, 1), block(4, 8, 1, 5, 2)]
        .iter()
        .enumerate()
    {
        blobs.push((
            encode_block(&RandomBlock::new(*shape, 7).unwrap().params()),
            i,
        ));
    }
    blobs.push((
        encode_stem(&RandomStem::new(stem(3, 4, 3, 2), 7).unwrap().params()),
        2,
    ));
    blobs.push((
        encode_head(&RandomHead::new(head(4, 8, 3), 7).unwrap().params()),
        3,
    ));
    blobs
}

/// Decodes `bytes` as the `kind`-th sample; `Ok` only with parameters that
/// pass their check, re-encode to `bytes` and run.
fn decode(kind: usize, bytes: &[u8]) -> Result<(), Error> {
    match kind {
        0 | 1 => {
            let shape = [block(8, 8, 6, 3, 1), block(4, 8, 1, 5, 2)][kind];
            let owned = OwnedBlock::decode(&shape, bytes)?;
            assert_eq!(encode_block(&owned.params()), bytes);
            block_output(&shape, &owned.params(), 0);
        }
        2 => {
            let shape = stem(3, 4, 3, 2);
            let owned = OwnedStem::decode(&shape, bytes)?;
            assert_eq!(encode_stem(&owned.params()), bytes);
            let mut out = vec![0; shape.output_len()];
            let input = vec![0; shape.input_len()];
            run_stem(&shape, &owned.params(), &input, &mut out).unwrap();
        }
        _ => {
            let shape = head(4, 8, 3);
            let owned = OwnedHead::decode(&shape, bytes)?;
            assert_eq!(encode_head(&owned.params()), bytes);
            let (mut arena, mut out) = (vec![0; shape.arena_bytes()], vec![0; 3]);
            let input = vec![0; shape.input_len()];
            run_head(&shape, &owned.params(), &input, &mut arena, &mut out).unwrap();
        }
    }
    Ok(())
}

#[test]
fn truncated_tagged_or_extended_blobs_fail() {
    for (blob, kind) in sample_blobs() {
        assert_eq!(decode(kind, &blob), Ok(()));
        for len in 0..blob.len() {
            assert_eq!(decode(kind, &blob[..len]), Err(TRUNCATED), "{kind} {len}");
        }
        for at in 0..5 {
            for flip in [1, 0x20, 0x80] {
                let mut bad = blob.clone();
                bad[at] ^= flip;
                let why = if at < 4 {
                    "wrong tag (not this kind of blob)"
                } else {
                    "unsupported version"
                };
                assert_eq!(decode(kind, &bad), Err(Error::Codec(why)));
            }
        }
        let trailing = Err(Error::Codec("trailing bytes after the parameters"));
        for extra in [&[0u8][..], &[0xff; 3], &blob[..]] {
            assert_eq!(decode(kind, &[&blob[..], extra].concat()), trailing);
        }
        // A blob of another kind.
        let other = (kind + 2) % 4;
        let tag = Err(Error::Codec("wrong tag (not this kind of blob)"));
        assert_eq!(decode(other, &blob), tag);
        // Counts far beyond the blob: refused before allocating.
        let huge = [&blob[..5], &[0xff; 12][..], &blob[17..]].concat();
        assert_eq!(decode(kind, &huge), Err(TRUNCATED));
    }
}

/// Random bytes, random bytes after a valid header, and valid blobs with
/// bytes changed, inserted or removed: never a panic, and whatever decodes
/// passes its check, re-encodes to the same bytes and runs.
#[test]
fn random_and_mutated_blobs_never_panic() {
    let mut rng = Rng::new(93);
    let samples = sample_blobs();
    let (mut ok, mut codec, mut length, mut param) = (0, 0, 0, 0);
    for round in 0..6000 {
        let (blob, kind) = &samples[round % samples.len()];
        let len = rng.size(0, 200);
        let noise: Vec<u8> = rng.i8s(len).iter().map(|&b| b as u8).collect();
        let mut bytes = match round % 3 {
            0 => noise,
            1 => [&blob[..5], &noise[..]].concat(),
            _ => blob.clone(),
        };
        for _ in 0..rng.size(1, 3) {
            let at = rng.size(0, bytes.len());
            let value = rng.int(0, 255) as u8;
            match rng.int(0, 9) {
                0 => bytes.insert(at, value),
                1 if at < bytes.len() => drop(bytes.remove(at)),
                _ if at < bytes.len() => bytes[at] = value,
                _ => bytes.push(value),
            }
        }
        match decode(*kind, &bytes) {
            Ok(()) => ok += 1,
            Err(Error::Codec(_)) => codec += 1,
            Err(Error::Length { .. }) => length += 1,
            Err(Error::Param(_)) => param += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    // Changed weights still decode, changed shifts and clamps fail their
    // check; a count that is wrong but consistent with the bytes (a
    // `Length` error) needs more than random edits (see the shape tests).
    assert!(
        ok > 500 && codec > 4000 && param > 100,
        "{ok} {codec} {length} {param}"
    );
}

#[test]
fn parameters_that_do_not_fit_encode_faithfully_and_do_not_decode() {
    let shape = block(8, 8, 6, 3, 1);
    let random = RandomBlock::new(shape, 2).unwrap();
    let mut params = random.params();
    params.depthwise.requant = &random.depthwise.requant[1..];
    let blob = encode_block(&params);
    assert_eq!(blob.len(), encoded_len_block(&shape) - 8);
    let got = OwnedBlock::decode(&shape, &blob);
    assert_eq!(got, length("depthwise.requant", 48, 47));

    let mut requant = random.project.requant.clone();
    requant[3].shift = 31;
    let params = BlockParams {
        project: ConvWeights {
            requant: &requant,
            ..random.project.as_weights()
        },
        ..random.params()
    };
    let why = "requant shift outside -31..=30";
    assert_eq!(
        OwnedBlock::decode(&shape, &encode_block(&params)),
        Err(Error::Param(why))
    );

    // Residual: the add's offsets must match the zero points.
    let mut params = random.params();
    params.input_zero_point = params.input_zero_point.wrapping_add(1);
    let why = "add offsets do not match the input and projection zero points";
    assert_eq!(
        OwnedBlock::decode(&shape, &encode_block(&params)),
        Err(Error::Param(why))
    );
}

#[test]
fn codec_errors_display() {
    assert_eq!(TRUNCATED.to_string(), "bad parameter blob: blob truncated");
}
