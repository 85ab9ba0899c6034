use std::vec;
use std::vec::Vec;

use super::*;
use crate::reference;
use crate::testkit::{Rng, length};

struct Owned {
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Requant,
}

impl Owned {
    fn view(&self) -> FcWeights<'_> {
        FcWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: self.requant,
        }
    }
}

/// Random cases: mostly requants giving outputs inside the int8 range, some
/// far too large (saturating outputs), some anything CMSIS-NN accepts.
#[test]
fn fully_connected_matches_the_reference() {
    let mut rng = Rng::new(60);
    let (mut inside, mut saturated) = (0usize, 0usize);
    for case in 0..400 {
        let any = rng.size(1, 300);
        let inputs = rng.pick(&[1, 2, 3, 16, 32, 64, 256, 1280, any]);
        let outputs = rng.size(1, 40);
        let acc = 128.0 * 128.0 * (inputs as f64).sqrt();
        let requant = match rng.int(0, 9) {
            0..=5 => rng.requant_for(acc),
            6 | 7 => rng.requant_for(acc / 50.0), // saturates often
            _ => rng.requant(),
        };
        let l = Owned {
            weights: rng.i8s(outputs * inputs),
            bias: (0..outputs).map(|_| rng.bias_for(acc)).collect(),
            requant,
        };
        let input = rng.i8s(inputs);
        let q = rng.conv_quant();
        let shape = FcShape {
            in_features: inputs,
            out_features: outputs,
        };
        let mut out = vec![0i8; outputs];
        fully_connected_s8(shape, &input, &l.view(), &q, &mut out).unwrap();
        let want = reference::fully_connected((inputs, outputs), &input, &l.view(), &q);
        assert_eq!(out, want, "case {case}: {shape:?} {requant:?} {q:?}");
        for &v in &out {
            if q.act_min < v && v < q.act_max {
                inside += 1;
            } else if v == -128 || v == 127 {
                saturated += 1;
            }
        }
    }
    assert!(
        inside > 2_000,
        "{inside} values strictly inside the clamp ({saturated} saturated)"
    );
    assert!(saturated > 500, "{saturated} values saturated at ±127");
}

/// Worked out by hand: multiplier 0.5 (`2^30`, shift 0), input zero point
/// −3, output zero point 10; the third output saturates at the clamp.
#[test]
fn known_values_and_saturation() {
    let input = [-2i8, 0, 5]; // 1, 3, 8 after the offset
    let weights = [
        1i8, 1, 1, // 12
        -1, 2, -4, // -1 + 6 - 32 = -27
        127, 127, 127, // 127 · 12 = 1524
    ];
    let l = FcWeights {
        weights: &weights,
        bias: &[4, 0, 0],
        requant: Requant::new(1 << 30, 0),
    };
    let q = ConvQuant {
        input_offset: 3,
        output_offset: 10,
        act_min: -100,
        act_max: 100,
    };
    let shape = FcShape {
        in_features: 3,
        out_features: 3,
    };
    let mut out = [0i8; 3];
    fully_connected_s8(shape, &input, &l, &q, &mut out).unwrap();
    // (4 + 12) / 2 + 10 = 18; -27 / 2 = -13.5 → -13 (the doubling high
    // multiply rounds ties up; the shift is 0), + 10 = -3;
    // 1524 / 2 + 10 = 772 → 100.
    assert_eq!(out, [18, -3, 100]);
    let q = ConvQuant {
        act_min: -128,
        act_max: 127,
        ..q
    };
    fully_connected_s8(shape, &input, &l, &q, &mut out).unwrap();
    assert_eq!(out, [18, -3, 127]);
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let shape = FcShape {
        in_features: 4,
        out_features: 2,
    };
    let weights = [1i8; 8];
    let ok = FcWeights {
        weights: &weights,
        bias: &[0, 0],
        requant: Requant::new(1 << 30, 0),
    };
    let q = ConvQuant {
        input_offset: 0,
        output_offset: 0,
        act_min: -128,
        act_max: 127,
    };
    let input = [1i8; 4];
    let mut out = [0i8; 2];
    assert_eq!(fully_connected_s8(shape, &input, &ok, &q, &mut out), Ok(()));
    assert_eq!(
        fully_connected_s8(shape, &input[1..], &ok, &q, &mut out),
        length("input", 4, 3)
    );
    assert_eq!(
        fully_connected_s8(shape, &input, &ok, &q, &mut [0; 3]),
        length("output", 2, 3)
    );
    let short = FcWeights {
        weights: &weights[1..],
        ..ok
    };
    assert_eq!(
        fully_connected_s8(shape, &input, &short, &q, &mut out),
        length("weights", 8, 7)
    );
    let short = FcWeights { bias: &[0], ..ok };
    assert_eq!(
        fully_connected_s8(shape, &input, &short, &q, &mut out),
        length("bias", 2, 1)
    );
    for requant in [Requant::new(1 << 30, 31), Requant::new(i32::MIN, 0)] {
        let bad = FcWeights { requant, ..ok };
        assert!(matches!(
            fully_connected_s8(shape, &input, &bad, &q, &mut out),
            Err(Error::Param(_))
        ));
    }
    let bad_q = ConvQuant {
        output_offset: 128,
        ..q
    };
    assert!(matches!(
        fully_connected_s8(shape, &input, &ok, &bad_q, &mut out),
        Err(Error::Param(_))
    ));
    for zero in [
        FcShape {
            in_features: 0,
            ..shape
        },
        FcShape {
            out_features: 0,
            ..shape
        },
    ] {
        let got = fully_connected_s8(zero, &input, &ok, &q, &mut out);
        assert!(matches!(got, Err(Error::Shape(_))), "{zero:?}");
    }
    let huge = FcShape {
        in_features: usize::MAX,
        out_features: 2,
    };
    assert!(fully_connected_s8(huge, &input, &ok, &q, &mut out).is_err());
    let mut untouched = [7i8; 2];
    let _ = fully_connected_s8(shape, &input, &short, &q, &mut untouched);
    assert_eq!(untouched, [7; 2]);
}
