use std::vec;
use std::vec::Vec;

use super::*;
use crate::reference;
use crate::testkit::{Rng, length};

fn random_params(rng: &mut Rng) -> AddParams {
    let zp = |rng: &mut Rng| rng.int(-128, 127) as i8;
    let mut p = if rng.chance(70) {
        let scale = |rng: &mut Rng| 2f64.powf(rng.float(-9.0, -2.0)) as f32;
        AddParams::from_scales(
            scale(rng),
            zp(rng),
            scale(rng),
            zp(rng),
            scale(rng),
            zp(rng),
        )
    } else {
        AddParams {
            input1_offset: rng.int(-127, 128) as i32,
            input1: rng.requant(),
            input2_offset: rng.int(-127, 128) as i32,
            input2: rng.requant(),
            left_shift: rng.int(0, 23) as i32,
            output_offset: rng.int(-128, 127) as i32,
            output: rng.requant(),
            act_min: -128,
            act_max: 127,
        }
    };
    if rng.chance(30) {
        let (a, b) = (zp(rng), zp(rng));
        (p.act_min, p.act_max) = (a.min(b), a.max(b));
    }
    p
}

#[test]
fn add_matches_the_reference_on_every_input_pair() {
    let mut rng = Rng::new(20);
    // Every (x1, x2) pair, for a few parameter sets.
    let all: Vec<(i8, i8)> = (-128..=127)
        .flat_map(|a| (-128..=127).map(move |b| (a as i8, b as i8)))
        .collect();
    let a: Vec<i8> = all.iter().map(|p| p.0).collect();
    let b: Vec<i8> = all.iter().map(|p| p.1).collect();
    for case in 0..40 {
        let p = random_params(&mut rng);
        let mut out = vec![0i8; a.len()];
        add_s8(&a, &b, &p, &mut out).unwrap();
        assert_eq!(out, reference::add(&a, &b, &p), "case {case}: {p:?}");
        let mut in_place = b.clone();
        add_s8_in_place(&a, &mut in_place, &p).unwrap();
        assert_eq!(in_place, out);
    }
}

#[test]
fn from_scales_is_tflites_prepare() {
    // Equal input scales: each input's multiplier is 1/2, the output's
    // 2s / (2^20 s_out).
    let p = AddParams::from_scales(0.5, 3, 0.5, -4, 0.25, 7);
    assert_eq!(p.input1, Requant::new(1 << 30, 0));
    assert_eq!(p.input2, Requant::new(1 << 30, 0));
    assert_eq!(p.output, quantize_multiplier(4.0 / f64::from(1 << 20)));
    assert_eq!(p.output, Requant::new(1 << 30, -17));
    assert_eq!(
        (p.input1_offset, p.input2_offset, p.output_offset),
        (-3, 4, 7)
    );
    assert_eq!((p.left_shift, p.act_min, p.act_max), (20, -128, 127));
    // Unequal: the smaller input gets the smaller multiplier.
    let p = AddParams::from_scales(0.25, 0, 1.0, 0, 1.0, 0);
    assert_eq!(p.input1, quantize_multiplier(0.125));
    assert_eq!(p.input2, quantize_multiplier(0.5));
}

/// With TFLite's parameters the int8 sum is within one output step of the
/// real sum of the dequantized inputs, rounded: the two lifted inputs are
/// rescaled with 20 fractional bits to spare (an error of about 2^-20 of a
/// step each), and only the final requantization (≤ 1 step, double
/// rounding) matters.
#[test]
fn add_is_within_one_step_of_the_real_sum() {
    let mut rng = Rng::new(21);
    for _ in 0..200 {
        let s1 = rng.float(0.005, 0.1) as f32;
        let s2 = rng.float(0.005, 0.1) as f32;
        let so = rng.float(0.005, 0.2) as f32;
        let (z1, z2, zo) = (
            rng.int(-128, 127) as i8,
            rng.int(-128, 127) as i8,
            rng.int(-128, 127) as i8,
        );
        let p = AddParams::from_scales(s1, z1, s2, z2, so, zo);
        let a = rng.i8s(256);
        let b = rng.i8s(256);
        let mut out = vec![0i8; 256];
        add_s8(&a, &b, &p, &mut out).unwrap();
        for ((&x1, &x2), &o) in a.iter().zip(&b).zip(&out) {
            let real = f64::from(s1) * f64::from(i32::from(x1) - i32::from(z1))
                + f64::from(s2) * f64::from(i32::from(x2) - i32::from(z2));
            let want = (real / f64::from(so) + f64::from(zo))
                .round()
                .clamp(-128.0, 127.0);
            assert!(
                (f64::from(o) - want).abs() <= 1.0,
                "{x1} {x2} -> {o}, want {want}"
            );
        }
    }
}

#[test]
fn wrong_lengths_and_parameters_are_errors() {
    let p = AddParams::from_scales(0.1, 0, 0.1, 0, 0.1, 0);
    assert_eq!(
        add_s8(&[0; 4], &[0; 3], &p, &mut [0; 4]),
        length("input2", 4, 3)
    );
    assert_eq!(
        add_s8(&[0; 4], &[0; 4], &p, &mut [0; 5]),
        length("output", 4, 5)
    );
    assert_eq!(
        add_s8_in_place(&[0; 4], &mut [0; 3], &p),
        length("input2", 4, 3)
    );
    assert_eq!(add_s8(&[], &[], &p, &mut []), Ok(()));
    for bad in [
        AddParams {
            input1_offset: 129,
            ..p
        },
        AddParams {
            input2_offset: -128,
            ..p
        },
        AddParams {
            output_offset: 128,
            ..p
        },
        AddParams {
            left_shift: 24,
            ..p
        },
        AddParams {
            left_shift: -1,
            ..p
        },
        AddParams {
            act_min: 1,
            act_max: 0,
            ..p
        },
        AddParams {
            input1: Requant::new(i32::MIN, 0),
            ..p
        },
        AddParams {
            input2: Requant::new(1, 31),
            ..p
        },
        AddParams {
            output: Requant::new(1, -32),
            ..p
        },
    ] {
        let got = add_s8(&[0; 4], &[0; 4], &bad, &mut [0; 4]);
        assert!(matches!(got, Err(Error::Param(_))), "{bad:?}");
        assert!(matches!(
            add_s8_in_place(&[0; 4], &mut [0; 4], &bad),
            Err(Error::Param(_))
        ));
    }
}
