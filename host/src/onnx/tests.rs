use std::collections::HashMap;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::prelude::*;

use super::*;
// Explicit, because tract's prelude also exports names such as `Op`.
use crate::space::{Activation, BlockKey, Shape, Space};

mod reference;

use reference::{Fm, Recorded, block_ref, network_ref};

// ---- helpers ---------------------------------------------------------

fn load(bytes: &[u8]) -> TractResult<TypedModel> {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])?
        .into_optimized()
}

fn run(model: TypedModel, x: &Fm) -> TractResult<(Vec<usize>, Vec<f32>)> {
    let plan = model.into_runnable()?;
    let input = Tensor::from_shape(&[1, x.c, x.h, x.w], &x.d)?;
    let out = plan.run(tvec!(input.into_tvalue()))?;
    Ok((
        out[0].shape().to_vec(),
        out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect(),
    ))
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max abs diff {diff} (scale {scale})"
    );
    assert!(
        want.iter().any(|v| v.abs() > 1e-3),
        "{what}: reference is all zero"
    );
}

fn decode(bytes: &[u8]) -> pb::ModelProto {
    pb::ModelProto::decode(bytes).expect("decodes")
}

fn fmnist() -> Space {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/spaces/fmnist-small.yaml");
    Space::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn mb(
    input: Shape,
    kernel: usize,
    expansion: usize,
    out_channels: usize,
    stride: usize,
) -> BlockKey {
    BlockKey::MbConv {
        input,
        kernel,
        expansion,
        out_channels,
        stride,
    }
}

// ---- tests -----------------------------------------------------------

#[test]
fn fold_bn_matches_the_formula() {
    let conv = ConvParams {
        weight: vec![1.0, 2.0, 3.0, 4.0],
        bias: Some(vec![0.5, -1.0]),
    };
    let bn = BnParams {
        gamma: vec![2.0, 0.5],
        beta: vec![0.1, 0.2],
        mean: vec![1.0, -1.0],
        var: vec![3.0, 0.0],
        eps: 1.0,
    };
    let (w, b) = fold_bn(&conv, &bn);
    // Channel 0: scale 2/√4 = 1; channel 1: scale 0.5/√1 = 0.5.
    assert_eq!(w, vec![1.0, 2.0, 1.5, 2.0]);
    assert_eq!(b, vec![(0.5 - 1.0) * 1.0 + 0.1, 0.2]);
}

#[test]
fn blocks_match_the_reference_in_tract() {
    let keys = [
        mb(Shape::new(8, 9, 9), 3, 6, 8, 1),  // residual
        mb(Shape::new(8, 9, 9), 5, 3, 12, 2), // stride 2 on an odd size
        mb(Shape::new(6, 7, 7), 7, 1, 6, 1),  // expansion 1, residual
        mb(Shape::new(6, 7, 7), 3, 1, 10, 2), // expansion 1, shape change
        BlockKey::Stem {
            input: Shape::new(3, 11, 11),
            kernel: 3,
            out_channels: 8,
            stride: 2,
            activation: Activation::Relu6,
        },
        BlockKey::Stem {
            input: Shape::new(1, 8, 8),
            kernel: 5,
            out_channels: 4,
            stride: 1,
            activation: Activation::Relu,
        },
        BlockKey::Head {
            input: Shape::new(16, 5, 5),
            channels: 32,
            num_classes: 7,
            activation: Activation::Relu6,
        },
    ];
    for (i, key) in keys.iter().enumerate() {
        let mut rec = Recorded::new(100 + i as u64);
        let bytes = write_block_with(key, &mut rec, &WriteOptions::default()).unwrap();
        let x = Fm::random(key.input(), i as u64);
        let (shape, got) = run(load(&bytes).unwrap(), &x).unwrap();
        let out = key.output();
        let want_shape = match key {
            BlockKey::Head { num_classes, .. } => vec![1, *num_classes],
            _ => vec![1, out.channels, out.height, out.width],
        };
        assert_eq!(shape, want_shape, "{key}");
        assert_close(&got, &block_ref(key, &rec, &x), &key.to_string());
    }
}

#[test]
fn network_matches_the_reference_in_tract() {
    let space = fmnist();
    let layers = space.layers();
    // An arch with a skipped layer, a stride-2 layer and a residual block.
    let arch = (0..1000)
        .map(|seed| space.sample_seeded(seed))
        .find(|a| {
            let has_residual = layers
                .iter()
                .zip(&a.ops)
                .any(|(l, op)| l.keeps_shape() && !op.is_identity());
            a.num_identities() > 0 && has_residual
        })
        .expect("a suitable arch");
    assert!(
        layers
            .iter()
            .zip(&arch.ops)
            .any(|(l, op)| l.stride == 2 && !op.is_identity())
    );
    let mut rec = Recorded::new(9);
    let bytes = write_network(&space, &arch, &mut rec).unwrap();
    let x = Fm::random(space.input(), 3);
    let (shape, got) = run(load(&bytes).unwrap(), &x).unwrap();
    assert_eq!(shape, vec![1, 10]);
    assert_close(
        &got,
        &network_ref(&space, &arch, &rec, &x),
        &arch.to_string(),
    );

    // Metadata and file-level fields.
    let m = decode(&bytes);
    assert_eq!(
        (m.ir_version, m.opset_import[0].version),
        (IR_VERSION, OPSET_VERSION)
    );
    let meta: HashMap<_, _> = m
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["padnas.arch"], arch.to_string());
    assert_eq!(meta["padnas.space_hash"], space.hash());
    assert_eq!(meta["padnas.space"], "fmnist-small");
    let g = m.graph.expect("graph");
    assert_eq!(
        (g.input[0].name.as_str(), g.output[0].name.as_str()),
        (INPUT_NAME, OUTPUT_NAME)
    );
    // Identity layers vanish: no node mentions a skipped layer.
    for (l, op) in layers.iter().zip(&arch.ops) {
        let prefix = format!("layers.{}.", l.index);
        let present = g.node.iter().any(|n| n.name.starts_with(&prefix));
        assert_eq!(present, !op.is_identity(), "layer {}", l.index);
    }
}

#[test]
fn symbolic_batch_concretizes_and_agrees() {
    let space = fmnist();
    let arch = space.sample_seeded(4);
    let opts = WriteOptions {
        batch: None,
        metadata: vec![("k".into(), "v".into())],
    };
    let sym = write_network_with(&space, &arch, &mut RandomWeights::new(1), &opts).unwrap();
    let fixed = write_network(&space, &arch, &mut RandomWeights::new(1)).unwrap();
    let m = decode(&sym);
    assert_eq!(
        m.metadata_props
            .last()
            .map(|p| (p.key.as_str(), p.value.as_str())),
        Some(("k", "v"))
    );

    let x = Fm::random(space.input(), 5);
    let model = tract_onnx::onnx()
        .model_for_read(&mut &sym[..])
        .unwrap()
        .with_input_fact(0, f32::fact([1, x.c, x.h, x.w]).into())
        .unwrap()
        .into_optimized()
        .unwrap();
    let (_, a) = run(model, &x).unwrap();
    let (_, b) = run(load(&fixed).unwrap(), &x).unwrap();
    assert_close(&a, &b, "symbolic vs fixed batch");
}

#[test]
fn paper_space_network_loads_and_runs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/spaces/proxyless-basic.yaml");
    let space = Space::load(path).unwrap();
    let arch = space.sample_seeded(11);
    let bytes = write_network(&space, &arch, &mut RandomWeights::new(2)).unwrap();
    let (shape, out) = run(load(&bytes).unwrap(), &Fm::random(space.input(), 1)).unwrap();
    assert_eq!(shape, vec![1, 1000]);
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn write_block_is_seeded() {
    let key = mb(Shape::new(16, 14, 14), 5, 6, 24, 2);
    let a = write_block(&key, 5).unwrap();
    assert_eq!(a, write_block(&key, 5).unwrap());
    assert_ne!(a, write_block(&key, 6).unwrap());
    let m = decode(&a);
    assert_eq!(m.metadata_props[0].key, "padnas.block");
    assert_eq!(m.metadata_props[0].value, key.to_string());
    // Concrete shapes, batch 1, in and out.
    let dims = |v: &pb::ValueInfoProto| match &v.r#type.as_ref().unwrap().value {
        Some(pb::type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value {
                Some(DimValue::DimValue(n)) => n,
                _ => -1,
            })
            .collect::<Vec<_>>(),
        None => vec![],
    };
    let g = m.graph.unwrap();
    assert_eq!(dims(&g.input[0]), vec![1, 16, 14, 14]);
    assert_eq!(dims(&g.output[0]), vec![1, 24, 7, 7]);
    // No expand conv at expansion 1, no Add when the shape changes.
    assert!(g.node.iter().any(|n| n.name.ends_with(".expand")));
    assert!(!g.node.iter().any(|n| n.op_type == "Add"));
    let e1 = decode(&write_block(&mb(Shape::new(16, 14, 14), 3, 1, 16, 1), 1).unwrap())
        .graph
        .unwrap();
    assert!(!e1.node.iter().any(|n| n.name.ends_with(".expand")));
    assert_eq!(e1.node.iter().filter(|n| n.op_type == "Add").count(), 1);
}

#[test]
fn corrupt_bytes_are_rejected_without_panic() {
    let bytes = write_block(&mb(Shape::new(8, 8, 8), 3, 3, 8, 1), 1).unwrap();
    let cases: [&[u8]; 4] = [
        &bytes[..bytes.len() / 2],
        &bytes[..bytes.len() - 3],
        b"this is not an onnx model",
        &[],
    ];
    for (i, bad) in cases.into_iter().enumerate() {
        assert!(load(bad).is_err(), "case {i} accepted");
    }
}

#[test]
fn bad_inputs_are_errors() {
    struct Short;
    impl WeightProvider for Short {
        fn conv(&mut self, _: ParamRef, s: ConvShape) -> Result<ConvParams, OnnxError> {
            Ok(ConvParams {
                weight: vec![0.0; s.weight_len() - 1],
                bias: None,
            })
        }
        fn batch_norm(&mut self, _: ParamRef, _: usize) -> Result<BnParams, OnnxError> {
            unreachable!()
        }
        fn linear(&mut self, _: ParamRef, _: usize, _: usize) -> Result<LinearParams, OnnxError> {
            unreachable!()
        }
    }
    let space = fmnist();
    let arch = space.sample_seeded(0);
    let e = write_network(&space, &arch, &mut Short)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("weights for stem.conv: conv weight has"),
        "{e}"
    );

    let mut wrong = arch.clone();
    wrong.ops.pop();
    assert!(matches!(
        write_network(&space, &wrong, &mut RandomWeights::new(0)),
        Err(OnnxError::Space(_))
    ));

    let even = mb(Shape::new(8, 8, 8), 4, 3, 8, 1);
    assert!(matches!(
        write_block(&even, 0),
        Err(OnnxError::Block { .. })
    ));
    let opts = WriteOptions {
        batch: Some(0),
        metadata: vec![],
    };
    let key = mb(Shape::new(8, 8, 8), 3, 3, 8, 1);
    assert!(matches!(
        write_block_with(&key, &mut RandomWeights::new(0), &opts),
        Err(OnnxError::Options(_))
    ));
}
