//! A contention sensor: a fixed, throughput-bound kernel timed between the
//! runs of a benchmarked model (Bench with `sensor_every`, protocol 1.2).
//!
//! Why: on a shared machine (a VM whose SMT sibling or cache another tenant
//! uses) the same model runs at two or more speeds, switching every few
//! seconds. No statistic over one model's samples can tell which speed a
//! sample saw. The sensor can: its work is always the same and touches only
//! its own buffers, so its time moves only with the machine's state (on the
//! 2-vCPU EPYC VM, this build read about 0.85 ms quiet and 1.1–1.2 ms while
//! busy, in the same seconds as the blocks' own jumps). The host keeps only
//! the model runs whose neighbouring sensor readings were quiet.
//!
//! Why this kernel: two 160×160 f32 matrix products, 300 KiB of data. It
//! is throughput-bound (it feels a busy SMT sibling and a contended L2, where
//! a register-only loop does not; timed side by side in C, it jumped 1.9×
//! between states where a 256³ product jumped 1.4× and sums over 1–16 MiB
//! 1.2–1.4×) and short (about 0.85 ms on that VM), and the host reads it
//! only every ~10 ms of runs. Its buffers are allocated
//! once per benchmark, before the warm-up: allocating inside the timed loop
//! would change the model's own memory behaviour (an interleaved tract
//! reference block slowed one block 2.5× that way).

use std::time::Instant;

/// Side of the sensor's square matrices.
const N: usize = 160;
/// Products per sensor run.
const PRODUCTS: usize = 2;

/// The sensor's buffers; one per benchmark.
pub struct Sensor {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Default for Sensor {
    fn default() -> Self {
        Sensor::new()
    }
}

impl Sensor {
    /// Allocates and fills the buffers (deterministic values, so every run
    /// does exactly the same arithmetic).
    pub fn new() -> Sensor {
        let a = (0..N * N).map(|i| (i % 7) as f32 * 0.125).collect();
        let b = (0..N * N).map(|i| (i % 5) as f32 * 0.25).collect();
        Sensor {
            a,
            b,
            c: vec![0.0; N * N],
        }
    }

    /// One product C = A·B, in i-k-j order so the inner loop is a
    /// contiguous multiply-add the compiler vectorises.
    fn product(&mut self) {
        for (i, row) in self.c.chunks_exact_mut(N).enumerate() {
            row.fill(0.0);
            for k in 0..N {
                let a = self.a[i * N + k];
                let b = &self.b[k * N..(k + 1) * N];
                for (c, b) in row.iter_mut().zip(b) {
                    *c += a * b;
                }
            }
        }
    }

    /// Runs the kernel once and returns its time in ms.
    pub fn time_one(&mut self) -> f64 {
        let start = Instant::now();
        for _ in 0..PRODUCTS {
            self.product();
        }
        // Keeps the products from being optimised away.
        std::hint::black_box(&self.c);
        start.elapsed().as_secs_f64() * 1e3
    }

    /// An element of the last product (for tests).
    pub fn value(&self, i: usize, j: usize) -> f32 {
        self.c[i * N + j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_computes_the_product() {
        let mut s = Sensor::new();
        let t = s.time_one();
        assert!(t.is_finite() && t > 0.0);
        // An independent dot product for a few cells.
        for (i, j) in [(0, 0), (3, 17), (159, 159), (80, 1)] {
            let want: f32 = (0..N)
                .map(|k| ((i * N + k) % 7) as f32 * 0.125 * (((k * N + j) % 5) as f32 * 0.25))
                .sum();
            let got = s.value(i, j);
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{i},{j}: {got} vs {want}"
            );
        }
        // Every run does the same work: the result does not accumulate.
        let before = s.value(5, 5);
        s.time_one();
        assert_eq!(s.value(5, 5), before);
    }
}
