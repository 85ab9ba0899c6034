use std::vec;
use std::vec::Vec;

use super::*;
use crate::reference;
use crate::testkit::Rng;

/// `pixels` int8 values summing to `sum` (|sum| at most 128 · pixels),
/// spread as evenly as possible.
fn values_summing_to(sum: i64, pixels: usize) -> Vec<i8> {
    let n = pixels as i64;
    let base = sum.div_euclid(n);
    let extra = sum.rem_euclid(n) as usize;
    (0..pixels)
        .map(|i| (base + i64::from(i < extra)) as i8)
        .collect()
}

/// One channel per sum: `[pixels][sums.len()]`, channel `c` summing to
/// `sums[c]`.
fn input_with_sums(sums: &[i64], pixels: usize) -> Vec<i8> {
    let columns: Vec<Vec<i8>> = sums.iter().map(|&s| values_summing_to(s, pixels)).collect();
    (0..pixels)
        .flat_map(|p| columns.iter().map(move |col| col[p]))
        .collect()
}

fn pool(pixels: usize, input: &[i8]) -> Vec<i8> {
    let channels = input.len() / pixels;
    let mut out = vec![0i8; channels];
    let shape = PoolShape { pixels, channels };
    avgpool_s8(shape, input, i8::MIN, i8::MAX, &mut out).unwrap();
    out
}

/// Worked out by hand from CMSIS-NN's
/// `sum > 0 ? (sum + n/2) / n : (sum - n/2) / n`: ties go away from zero
/// for either sign, everything else to the nearest integer.
#[test]
fn rounding_known_values() {
    let cases: &[(usize, &[(i64, i8)])] = &[
        // n = 2: every odd sum is a tie.
        (
            2,
            &[(-3, -2), (-2, -1), (-1, -1), (0, 0), (1, 1), (2, 1), (3, 2)],
        ),
        // n = 4: ±1.5 ties, ±1.25 and ±1.75 not.
        (4, &[(6, 2), (-6, -2), (5, 1), (-5, -1), (7, 2), (-7, -2)]),
        // n = 3: no ties; 1/3 → 0, 2/3 → 1.
        (3, &[(1, 0), (2, 1), (-1, 0), (-2, -1), (4, 1), (5, 2)]),
        // The extremes of the int8 range.
        (5, &[(-640, -128), (635, 127), (-638, -128), (-637, -127)]),
        (1, &[(-128, -128), (127, 127), (0, 0)]),
    ];
    for &(n, sums) in cases {
        let (s, want): (Vec<i64>, Vec<i8>) = sums.iter().copied().unzip();
        assert_eq!(pool(n, &input_with_sums(&s, n)), want, "n = {n}");
    }
}

/// Every possible sum for every pixel count up to 40 rounds to the exact
/// average rounded half away from zero (the reference's rational
/// rounding): CMSIS-NN's formula is that rounding, ties included.
#[test]
fn every_sum_rounds_half_away_from_zero() {
    for n in 1..=40usize {
        let sums: Vec<i64> = (-128 * n as i64..=127 * n as i64).collect();
        let got = pool(n, &input_with_sums(&sums, n));
        for (&sum, &g) in sums.iter().zip(&got) {
            assert_eq!(
                i64::from(g),
                reference::round_div_away(sum, n as i64),
                "n {n} sum {sum}"
            );
        }
    }
    // The reference itself, on the ties it must send away from zero.
    assert_eq!(reference::round_div_away(5, 2), 3);
    assert_eq!(reference::round_div_away(-5, 2), -3);
    assert_eq!(reference::round_div_away(-4, 3), -1);
}

#[test]
fn avgpool_matches_the_reference() {
    let mut rng = Rng::new(50);
    let mut inside = 0usize;
    for case in 0..300 {
        let any = rng.size(1, 200);
        let pixels = rng.pick(&[1, 2, 3, 4, 9, 16, 49, 64, 100, any]);
        let channels = rng.size(1, 50);
        let input = rng.i8s(pixels * channels);
        let q = rng.conv_quant();
        let shape = PoolShape { pixels, channels };
        let mut out = vec![0i8; channels];
        avgpool_s8(shape, &input, q.act_min, q.act_max, &mut out).unwrap();
        let want = reference::avgpool(pixels, channels, &input, q.act_min, q.act_max);
        assert_eq!(out, want, "case {case}: {shape:?}");
        inside += out
            .iter()
            .filter(|&&v| q.act_min < v && v < q.act_max)
            .count();
    }
    assert!(inside > 2_000, "{inside} values strictly inside the clamp");
}

#[test]
fn the_largest_window_neither_overflows_nor_is_refused() {
    let pixels = MAX_POOL_PIXELS;
    for (value, want) in [(-128i8, -128i8), (127, 127)] {
        let input = vec![value; pixels];
        assert_eq!(pool(pixels, &input), [want]);
    }
    // Half -128, half 127: the average is exactly -0.5, a tie, → -1; one
    // 127 more moves it above -0.5 → 0.
    let mut input = vec![-128i8; pixels / 2];
    input.extend(vec![127i8; pixels / 2]);
    assert_eq!(pool(pixels, &input), [-1]);
    input[0] = 127;
    assert_eq!(pool(pixels, &input), [0]);
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let shape = PoolShape {
        pixels: 4,
        channels: 3,
    };
    let input = [1i8; 12];
    let mut out = [0i8; 3];
    assert_eq!(avgpool_s8(shape, &input, -128, 127, &mut out), Ok(()));
    assert_eq!(out, [1, 1, 1]);
    assert_eq!(
        avgpool_s8(shape, &input[1..], -128, 127, &mut out),
        Err(Error::Length {
            what: "input",
            expected: 12,
            got: 11
        })
    );
    assert_eq!(
        avgpool_s8(shape, &input, -128, 127, &mut [0; 4]),
        Err(Error::Length {
            what: "output",
            expected: 3,
            got: 4
        })
    );
    assert!(matches!(
        avgpool_s8(shape, &input, 5, 4, &mut out),
        Err(Error::Param(_))
    ));
    // The clamp applies (here it is a fused activation's).
    avgpool_s8(shape, &input, 2, 4, &mut out).unwrap();
    assert_eq!(out, [2, 2, 2]);
    for bad in [
        PoolShape { pixels: 0, ..shape },
        PoolShape {
            channels: 0,
            ..shape
        },
        PoolShape {
            pixels: MAX_POOL_PIXELS + 1,
            ..shape
        },
    ] {
        let got = avgpool_s8(bad, &input, -128, 127, &mut out);
        assert!(matches!(got, Err(Error::Shape(_))), "{bad:?}");
    }
    let huge = PoolShape {
        pixels: MAX_POOL_PIXELS,
        channels: usize::MAX,
    };
    assert!(matches!(
        avgpool_s8(huge, &input, -128, 127, &mut out),
        Err(Error::Shape(_))
    ));
    let mut untouched = [7i8; 3];
    let _ = avgpool_s8(shape, &input[1..], -128, 127, &mut untouched);
    assert_eq!(untouched, [7; 3]);
}
