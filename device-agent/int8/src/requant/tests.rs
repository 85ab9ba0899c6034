use super::*;
use crate::reference;
use crate::testkit::Rng;

fn q(multiplier: i32, shift: i32) -> Requant {
    Requant::new(multiplier, shift)
}

#[test]
fn quantize_multiplier_known_values() {
    let cases: &[(f64, i32, i32)] = &[
        (0.5, 1 << 30, 0),
        (0.25, 1 << 30, -1),
        (1.0, 1 << 30, 1),
        (2.0, 1 << 30, 2),
        (0.75, 3 << 29, 0),
        (0.1, 1_717_986_918, -3), // 0.8 * 2^31 = 1717986918.4
        (-0.5, -(1 << 30), 0),
        // frexp gives q = 1 - 2^-31: q * 2^31 = 2^31 - 1 exactly, kept.
        (1.0 - 2f64.powi(-31), i32::MAX, 0),
        // q * 2^31 = 2^31 - 0.5: rounds (away from zero) to 2^31, which
        // becomes 2^30 with the shift one higher.
        (1.0 - 2f64.powi(-32), 1 << 30, 1),
        (0.5 - 2f64.powi(-40), 1 << 30, 0),
        // The smallest exponent kept, and the first one flushed.
        (2f64.powi(-32), 1 << 30, -31),
        (2f64.powi(-33), 0, 0),
        (1e-12, 0, 0),
        (f64::MIN_POSITIVE / 4.0, 0, 0), // subnormal
        (0.0, 0, 0),
        (-0.0, 0, 0),
        (f64::NAN, 0, 0),
        // The largest exponent kept, then saturation.
        (2f64.powi(29), 1 << 30, 30),
        (2f64.powi(30), i32::MAX, 30),
        (1e20, i32::MAX, 30),
        (f64::INFINITY, i32::MAX, 30),
        (f64::NEG_INFINITY, -i32::MAX, 30),
    ];
    for &(real, multiplier, shift) in cases {
        assert_eq!(quantize_multiplier(real), q(multiplier, shift), "{real:e}");
    }
}

/// frexp by repeated halving and doubling, rounding with std's `round`.
fn quantize_by_loop(real: f64) -> Requant {
    let (mut m, mut e) = (real, 0);
    while m >= 1.0 {
        m /= 2.0;
        e += 1;
    }
    while m < 0.5 {
        m *= 2.0;
        e -= 1;
    }
    let mut fixed = (m * 2f64.powi(31)).round() as i64;
    if fixed == 1 << 31 {
        fixed /= 2;
        e += 1;
    }
    if e < -31 {
        return Requant::ZERO;
    }
    q(fixed as i32, e)
}

#[test]
fn quantize_multiplier_matches_a_loop_frexp_and_is_close() {
    let mut rng = Rng::new(1);
    for _ in 0..20_000 {
        let real = 2f64.powf(rng.float(-34.0, 29.0)) * rng.float(0.5, 1.0);
        let got = quantize_multiplier(real);
        assert_eq!(got, quantize_by_loop(real), "{real:e}");
        if got != Requant::ZERO {
            assert!((1 << 30..=i32::MAX).contains(&got.multiplier));
            let value = f64::from(got.multiplier) * 2f64.powi(got.shift - 31);
            assert!((value - real).abs() <= real * 2f64.powi(-31), "{real:e}");
        }
        assert_eq!(quantize_multiplier(-real).multiplier, -got.multiplier);
    }
}

/// Hand-computed from TFLite's definition (`MultiplyByQuantizedMultiplier`:
/// doubling high multiply with ties upwards, then a division by a power of
/// two with ties away from zero).
#[test]
fn requantize_known_values() {
    // (val, multiplier, shift, result)
    let cases: &[(i32, i32, i32, i32)] = &[
        (3, 1 << 30, 0, 2),    // 1.5 -> 2
        (-3, 1 << 30, 0, -1),  // -1.5 -> -1: the doubling multiply ties upwards
        (-5, 1 << 30, 0, -2),  // -2.5 -> -2
        (5, 1 << 30, -1, 2),   // 1.25: 2.5 -> 3, then 1.5 -> 2 (double rounding)
        (-5, 1 << 30, -1, -1), // -1.25: -2.5 -> -2, then -1
        (-7, 1 << 30, -1, -2), // -1.75: -3.5 -> -3, then -1.5 -> -2 (away)
        (100, 1 << 30, 2, 200),
        (7, 3 << 29, 0, 5),             // 5.25
        (1000, 1_717_986_918, -3, 100), // 1000 * 0.1
        (-1000, 1_717_986_918, -3, -100),
        (i32::MAX, i32::MAX, 0, i32::MAX - 1),
        (i32::MIN, i32::MAX, 0, i32::MIN + 1),
        // (2^31 - 1) / 4: 2^30 - 0.5 -> 2^30, then 0.5 -> 1.
        (i32::MAX, 1 << 30, -31, 1),
        (i32::MIN, 1 << 30, -31, -1), // -2^30 / 2^31 = -0.5 -> -1
        (i32::MAX - 2, 1 << 30, -31, 0),
    ];
    for &(val, m, shift, want) in cases {
        assert_eq!(q(m, shift).apply(val), want, "apply({val}, {m}, {shift})");
        assert_eq!(reference::requantize_tflite(val, q(m, shift)), want);
    }
    // The left shift wraps: 2^20 << 12 is 2^32, which is 0 in 32 bits.
    assert_eq!(q(1 << 30, 12).apply(1 << 20), 0);
    // 2^19 << 12 is 2^31, which is i32::MIN; times 0.5 is -2^30.
    assert_eq!(q(1 << 30, 12).apply(1 << 19), -(1 << 30));
}

#[test]
fn doubling_high_multiply_and_divide_known_values() {
    assert_eq!(
        saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
        i32::MAX
    );
    assert_eq!(doubling_high_mult_no_sat(i32::MIN, i32::MIN), i32::MIN); // wraps
    assert_eq!(
        saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
        i32::MAX - 1
    );
    assert_eq!(doubling_high_mult_no_sat(1 << 30, 1 << 30), 1 << 29);
    let cases: &[(i32, u32, i32)] = &[
        (5, 1, 3),
        (-5, 1, -3),
        (4, 1, 2),
        (-4, 1, -2),
        (7, 2, 2),
        (-6, 2, -2),
        (-5, 2, -1),
        (0, 31, 0),
        (1 << 30, 31, 1),
        (-(1 << 30), 31, -1),
        ((1 << 30) - 1, 31, 0),
        (i32::MAX, 31, 1),
        (i32::MIN, 31, -1),
        (i32::MIN, 0, i32::MIN),
        (i32::MAX, 0, i32::MAX),
    ];
    for &(x, e, want) in cases {
        assert_eq!(divide_by_power_of_two(x, e), want, "{x} / 2^{e}");
    }
}

fn random_val(rng: &mut Rng) -> i32 {
    match rng.int(0, 3) {
        0 => rng.pick(&[i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX]),
        1 => rng.int(-300, 300) as i32,
        2 => rng.int(-(1 << 20), 1 << 20) as i32,
        _ => rng.int(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
    }
}

#[test]
fn requantize_matches_exact_rational_rounding_and_tflite() {
    let mut rng = Rng::new(2);
    let mut ties = 0;
    for _ in 0..200_000 {
        let r = rng.requant();
        let val = random_val(&mut rng);
        let got = r.apply(val);
        assert_eq!(got, reference::requantize(val, r), "{val} {r:?}");
        assert_eq!(got, reference::requantize_tflite(val, r), "{val} {r:?}");
        let lifted = i64::from(val.wrapping_shl(r.shift.max(0) as u32));
        if (lifted * i64::from(r.multiplier)).rem_euclid(1 << 31) == 1 << 30 {
            ties += 1;
        }
    }
    assert!(
        ties > 100,
        "the test should meet ties of the doubling multiply ({ties})"
    );
}

#[test]
fn cmsis_and_gemmlowp_doubling_multiplies_agree_except_min_squared() {
    let mut rng = Rng::new(4);
    let edge = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30),
        -3,
        -1,
        0,
        1,
        3,
        1 << 30,
        i32::MAX,
    ];
    for &a in &edge {
        for &b in &edge {
            if a != i32::MIN || b != i32::MIN {
                assert_eq!(
                    doubling_high_mult_no_sat(a, b),
                    saturating_rounding_doubling_high_mul(a, b)
                );
            }
        }
    }
    for _ in 0..100_000 {
        let a = random_val(&mut rng);
        let b = rng.requant().multiplier;
        assert_eq!(
            doubling_high_mult_no_sat(a, b),
            saturating_rounding_doubling_high_mul(a, b)
        );
    }
}

/// Double rounding stays within one unit of the exact product (when the
/// left shift does not wrap).
#[test]
fn requantize_is_within_one_of_the_exact_value() {
    let mut rng = Rng::new(3);
    for _ in 0..100_000 {
        let r = rng.requant();
        let val = rng.int(-(1 << 20), 1 << 20) as i32;
        let lifted = i128::from(val) << r.shift.max(0);
        if lifted != i128::from(lifted as i32) {
            continue;
        }
        let bits = 31 + (-r.shift).max(0) as u32;
        let exact = lifted * i128::from(r.multiplier); // result * 2^bits
        let error = i128::from(r.apply(val)) * (1i128 << bits) - exact;
        assert!(error.abs() <= 1i128 << bits, "{val} {r:?}");
    }
}

#[test]
fn check_rejects_what_cmsis_nn_does_not_support_and_apply_never_panics() {
    assert!(q(1 << 30, 0).check().is_ok());
    assert!(q(i32::MIN + 1, -31).check().is_ok());
    assert!(q(i32::MAX, 30).check().is_ok());
    assert!(q(i32::MIN, 0).check().is_err());
    assert!(q(1 << 30, 31).check().is_err());
    assert!(q(1 << 30, -32).check().is_err());
    for shift in [i32::MIN, -100, -32, 31, 32, 100, i32::MAX] {
        for val in [i32::MIN, -1, 0, 1, i32::MAX] {
            let _ = q(i32::MIN, shift).apply(val);
            let _ = q(i32::MAX, shift).apply(val);
        }
    }
    for e in [32, 33, u32::MAX] {
        let _ = divide_by_power_of_two(-7, e);
    }
}

#[test]
fn round_f32_is_c_roundf() {
    let cases: &[(f32, i32)] = &[
        (0.0, 0),
        (0.49999997, 0),
        (0.5, 1),
        (-0.5, -1),
        (2.5, 3),
        (-2.5, -3),
        (254.99, 255),
        (8_388_607.5, 8_388_608),
        (1e10, i32::MAX),
        (-1e10, i32::MIN),
        (f32::INFINITY, i32::MAX),
        (f32::NAN, 0),
    ];
    for &(x, want) in cases {
        assert_eq!(round_f32(x), want, "{x}");
        if x.is_finite() && x.abs() < 1e9 {
            assert_eq!(round_f32(x), x.round() as i32, "{x}");
        }
    }
}
