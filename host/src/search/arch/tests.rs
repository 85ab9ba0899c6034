use std::path::Path;

use super::*;
use crate::memory::{MemoryLimit, MemoryModel};
use crate::space::Op;

/// The embedded default's space (also used by the rank tests).
pub(crate) fn fmnist_small() -> Space {
    Space::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/spaces/fmnist-small.yaml"))
        .expect("fmnist-small space")
}

/// Latency grows with kernel and expansion; identity is free.
pub(crate) fn model(space: &Space) -> LatencyModel {
    let cost = |op: &Op| match op {
        Op::MbConv { kernel, expansion } => 0.01 * (*kernel * *expansion) as f64,
        Op::Identity => 0.0,
    };
    LatencyModel {
        base_ms: 1.0,
        per_layer: space
            .layers()
            .iter()
            .map(|l| l.ops.iter().map(cost).collect())
            .collect(),
        calibration: None,
    }
}

#[test]
fn a_memory_limit_sets_the_window_among_the_networks_that_fit() {
    let space = fmnist_small();
    let latency = model(&space);
    let memory = MemoryModel::new(&space).unwrap();
    // A flash limit at the median of random networks: about half fit, and
    // those are the ones with smaller expansions, so faster.
    let mut flash: Vec<u64> = (0..200)
        .map(|s| {
            let a = space.sample_seeded(s);
            memory
                .footprint(&space.arch_indices(&a).unwrap())
                .flash_bytes
        })
        .collect();
    flash.sort_unstable();
    let limit = MemoryLimit {
        sram_bytes: u64::MAX,
        flash_bytes: flash[100],
    };
    let fits = |g: &[usize]| memory.footprint(g).fits(&limit);
    let all = Window::from_quantiles(&latency, &space, 0.2, 0.8, 500, 3).unwrap();
    let same = Window::from_quantiles_of(&latency, &space, 0.2, 0.8, 500, 3, &|_| true).unwrap();
    assert_eq!(all, same);
    let fitting = Window::from_quantiles_of(&latency, &space, 0.2, 0.8, 500, 3, &fits).unwrap();
    assert!(
        fitting.hi_ms < all.hi_ms,
        "{fitting:?} is not below {all:?}"
    );
}

#[test]
fn a_memory_limit_nothing_fits_is_an_error_not_a_hang() {
    let space = fmnist_small();
    let err =
        Window::from_quantiles_of(&model(&space), &space, 0.2, 0.8, 50, 3, &|_| false).unwrap_err();
    assert!(err.to_string().contains("fit the target's memory"), "{err}");
}
