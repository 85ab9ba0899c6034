//! Latency prediction from a table, per architecture: the blocks of the
//! architecture, a table lookup for each, the sum and the calibration. The
//! search calls it for every candidate it draws (the latency window).
//! Run with `cargo bench -p padnas --bench predict`; figures in host/README.md.
//!
//! Uses the committed table `latency-tables/local-amd-epyc/proxyless-basic.json`
//! and 1000 architectures sampled from `proxyless-basic` with a fixed seed.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use padnas::latency::{Table, predict};
use padnas::space::{Arch, Space};

const ARCHS: usize = 1000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn per_arch(c: &mut Criterion) {
    let space = Space::load(root().join("configs/spaces/proxyless-basic.yaml")).expect("space");
    let path = root().join("latency-tables/local-amd-epyc/proxyless-basic.json");
    let table = Table::load(&path).expect("table");
    let archs: Vec<Arch> = (0..ARCHS as u64).map(|s| space.sample_seeded(s)).collect();
    for a in &archs {
        predict(&table, &path, &space, a).expect("every block is in the table");
    }
    let mut g = c.benchmark_group("latency/predict");
    g.throughput(Throughput::Elements(ARCHS as u64));
    g.bench_function("proxyless-basic/1000-archs", |b| {
        b.iter(|| {
            archs
                .iter()
                .map(|a| predict(&table, &path, &space, black_box(a)).map(|p| p.predicted_ms))
                .sum::<Result<f64, _>>()
                .expect("predict")
        })
    });
    g.finish();
}

criterion_group!(benches, per_arch);
criterion_main!(benches);
