//! Tests only: random test cases, including the extremes the kernels must
//! survive (shifts at both ends of their range, multipliers near
//! `i32::MAX`, offsets at the ends of CMSIS-NN's ranges, clamps).

use std::vec::Vec;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::quant::ConvQuant;
use crate::requant::{Requant, quantize_multiplier};

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `lo..=hi` (i64 arithmetic, any i32 bounds).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1) as u128;
        lo + ((u128::from(self.0.next_u64()) * span) >> 64) as i64
    }

    pub fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.int(lo as i64, hi as i64) as usize
    }

    pub fn chance(&mut self, percent: i64) -> bool {
        self.int(0, 99) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.size(0, items.len() - 1)]
    }

    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.int(-128, 127) as i8).collect()
    }

    /// Uniform in `[lo, hi)`.
    pub fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Any valid requant, weighted towards the awkward ones.
    pub fn requant(&mut self) -> Requant {
        match self.int(0, 9) {
            // plausible: a real multiplier between 2^-20 and 2^4
            0..=4 => quantize_multiplier(2f64.powf(self.float(-20.0, 4.0))),
            // multiplier at or near i32::MAX
            5 => Requant::new(i32::MAX - self.int(0, 3) as i32, self.int(-31, 30) as i32),
            // exactly 2^30: every odd product is a tie
            6 => Requant::new(1 << 30, self.int(-31, 30) as i32),
            // shift at an end of its range
            7 => Requant::new(
                self.int(1 << 30, i64::from(i32::MAX)) as i32,
                self.pick(&[-31, -30, 29, 30]),
            ),
            // anything CMSIS-NN accepts, negative multipliers included
            _ => Requant::new(
                self.int(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32,
                self.int(-31, 30) as i32,
            ),
        }
    }

    /// Requant giving int8-sized outputs for accumulators of this size.
    pub fn requant_for(&mut self, acc_magnitude: f64) -> Requant {
        quantize_multiplier(self.float(20.0, 200.0) / acc_magnitude)
    }

    /// Offsets anywhere in range (ends included), clamps sometimes narrow.
    pub fn conv_quant(&mut self) -> ConvQuant {
        let input_offset = if self.chance(20) {
            self.pick(&[-127, 128])
        } else {
            self.int(-127, 128) as i32
        };
        let output_offset = if self.chance(20) {
            self.pick(&[-128, 127])
        } else {
            self.int(-128, 127) as i32
        };
        let (act_min, act_max) = if self.chance(50) {
            (-128, 127)
        } else {
            let a = self.int(-128, 127) as i8;
            let b = self.int(-128, 127) as i8;
            (a.min(b), a.max(b))
        };
        ConvQuant {
            input_offset,
            output_offset,
            act_min,
            act_max,
        }
    }
}

/// One random convolution's owned constants (tests of the newer kernels).
pub struct OwnedConv {
    pub weights: Vec<i8>,
    pub bias: Vec<i32>,
    pub requant: Vec<Requant>,
}

impl OwnedConv {
    pub fn view(&self) -> crate::conv::ConvWeights<'_> {
        crate::conv::ConvWeights {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
        }
    }
}

impl Rng {
    /// A bias for an accumulator of about this size, sometimes far larger.
    pub fn bias_for(&mut self, acc_magnitude: f64) -> i32 {
        if self.chance(10) {
            self.int(-(1 << 24), 1 << 24) as i32
        } else {
            self.int(-(acc_magnitude as i64), acc_magnitude as i64) as i32
        }
    }

    /// Random constants for `channels` outputs of `per_channel` weights,
    /// `taps` terms per accumulator: mostly requants that keep outputs
    /// inside the int8 range, sometimes any valid one.
    pub fn conv_layer(&mut self, channels: usize, per_channel: usize, taps: usize) -> OwnedConv {
        let acc = 128.0 * 128.0 * (taps as f64).sqrt();
        let plausible = self.chance(70);
        OwnedConv {
            weights: self.i8s(channels * per_channel),
            bias: (0..channels).map(|_| self.bias_for(acc)).collect(),
            requant: (0..channels)
                .map(|_| {
                    if plausible {
                        self.requant_for(acc)
                    } else {
                        self.requant()
                    }
                })
                .collect(),
        }
    }
}
