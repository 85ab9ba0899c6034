//! One-shot evaluation of one architecture, as the search and `rank score`
//! run it for every candidate: BN recalibration on 3 batches of 64 training
//! images, then accuracy on 1000 validation images. Side by side in one
//! run: building the batches for every architecture and scoring in
//! training-sized batches of 64 (`recalibrate_bn` then `evaluate`, what the
//! search did before), against batches built once and scored in batches of
//! 64 to 500 (`OneShotBatches`, what it does now, in batches of
//! `EVAL_BATCH`). One libtorch thread.
//! Run with `cargo bench -p padnas --bench one_shot`; figures in host/README.md.
//!
//! Needs Debian's `dataset-fashion-mnist`. The supernet is freshly
//! initialised: the time of a forward pass does not depend on the weights.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use padnas::config::FASHION_MNIST_DIR;
use padnas::data::load_fashion_mnist;
use padnas::space::Space;
use padnas::supernet::{OneShotBatches, Supernet, evaluate, recalibrate_bn};

const BN_BATCHES: usize = 3;
const BATCH: usize = 64;
const VAL: usize = 1000;
const ARCHS: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn per_arch(c: &mut Criterion) {
    tch::set_num_threads(1);
    let space = Space::load(root().join("configs/spaces/fmnist-small.yaml")).expect("space");
    let (train, test) = load_fashion_mnist(Path::new(FASHION_MNIST_DIR)).expect("fashion-mnist");
    let val = test.subset(&(0..VAL).collect::<Vec<_>>());
    let net = Supernet::new(&space, tch::Device::Cpu, 1).expect("supernet");
    let archs: Vec<Vec<usize>> = (0..ARCHS as u64)
        .map(|s| net.path_of(&space.sample_seeded(s)).expect("path"))
        .collect();
    let mut g = c.benchmark_group("one-shot/fmnist-small");
    g.sample_size(10);
    g.throughput(Throughput::Elements(archs.len() as u64));
    g.bench_function(format!("{ARCHS}-archs/batches-per-arch-eval-64"), |b| {
        b.iter(|| {
            for path in &archs {
                recalibrate_bn(&net, path, &train, BN_BATCHES, BATCH, 1).expect("recalibrate");
                black_box(evaluate(&net, path, &val, BATCH).expect("evaluate"));
            }
        })
    });
    for eval_batch in [64, 128, 256, 500] {
        let prepared = OneShotBatches::new(&net, &train, (BN_BATCHES, BATCH, 1), &val, eval_batch)
            .expect("batches");
        g.bench_function(format!("{ARCHS}-archs/prepared-eval-{eval_batch}"), |b| {
            b.iter(|| {
                for path in &archs {
                    black_box(prepared.score(&net, path).expect("score"));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_arch);
criterion_main!(benches);
