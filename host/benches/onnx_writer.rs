//! The ONNX writer for one block with seeded random weights, as profiling
//! writes every unique block of a space before sending it to the agent.
//! Run with `cargo bench -p padnas --bench onnx_writer`; figures in
//! host/README.md.
//!
//! Two blocks of `proxyless-basic`: a small one (k3e3 on 24×56×56) and the
//! one with the most weights (k7e6 on 192×7×7, about 0.5 M parameters).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use padnas::onnx::write_block;
use padnas::space::{BlockKey, Space};

const SEED: u64 = 0;

fn one_block(c: &mut Criterion) {
    let keys = [
        "mbconv:k3e3:in24x56x56:out24:s1",
        "mbconv:k7e6:in192x7x7:out192:s1",
    ];
    let space = Space::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/spaces/proxyless-basic.yaml"),
    )
    .expect("space");
    let blocks = space.unique_blocks();
    let mut g = c.benchmark_group("onnx/write_block");
    for text in keys {
        let key: BlockKey = text.parse().expect("block key");
        assert!(blocks.contains(&key), "{key} is not a block of the space");
        let bytes = write_block(&key, SEED).expect("write");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(text), |b| {
            b.iter(|| write_block(black_box(&key), SEED).expect("write"))
        });
    }
    g.finish();
}

criterion_group!(benches, one_block);
criterion_main!(benches);
