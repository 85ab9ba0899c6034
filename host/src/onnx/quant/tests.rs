//! Quantisation maths, the QDQ graph's structure, calibration, and the QDQ
//! network in tract and onnxruntime (random weights; the trained network's
//! int8 accuracy is tested in `cmd::export`).

use std::collections::HashMap;
use std::path::Path;

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::prelude::*;

use super::*;
use crate::onnx::{INPUT_NAME, OUTPUT_NAME, RandomWeights, write_network};
use crate::space::Space;

/// The export parity test's space: a residual block at expansion 1 and at
/// expansion 3, a stride-2 block, a skipped layer.
const SPACE: &str = "
name: qdq
input: { channels: 1, height: 28, width: 28 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 2 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1, k5e1] }
  - { channels: 16, num_layers: 3, stride: 2, first_ops: [k3e3, k5e3], ops: [k3e3, k5e3, id] }
head: { channels: 32 }
";
const ARCH: &str = "k5e1,k5e3,id,k3e3";

fn float_network(seed: u64) -> Vec<u8> {
    let space = Space::from_yaml_str(SPACE, "qdq").expect("space");
    let arch = space.parse_arch(ARCH).expect("arch");
    write_network(&space, &arch, &mut RandomWeights::new(seed)).expect("write")
}

/// `n` random inputs in [−1, 1] (the pixel scaling's range).
fn inputs(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..28 * 28).map(|_| rng.random_range(-1.0..=1.0)).collect())
        .collect()
}

fn tract_run(bytes: &[u8], xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads")
        .into_optimized()
        .expect("tract optimises")
        .into_runnable()
        .expect("tract plans");
    xs.iter()
        .map(|x| {
            let t = Tensor::from_shape(&[1, 1, 28, 28], x).expect("tensor");
            let out = plan.run(tvec!(t.into_tvalue())).expect("runs");
            out[0]
                .to_plain_array_view::<f32>()
                .expect("f32")
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

fn qdq_network(seed: u64) -> (Vec<u8>, Vec<u8>, Calibration) {
    let float = float_network(seed);
    let xs = inputs(32, seed);
    let cal = calibrate(&float, xs.iter().map(Vec::as_slice)).expect("calibrates");
    let qdq = write_qdq(&float, &cal, vec![("k".into(), "v".into())]).expect("qdq");
    (float, qdq, cal)
}

fn graph(bytes: &[u8]) -> pb::GraphProto {
    pb::ModelProto::decode(bytes)
        .expect("decodes")
        .graph
        .expect("graph")
}

fn count(g: &pb::GraphProto, op: &str) -> usize {
    g.node.iter().filter(|n| n.op_type == op).count()
}

/// The output's quantisation, read from the graph.
fn output_quant(g: &pb::GraphProto) -> ActQuant {
    let dq = g
        .node
        .iter()
        .find(|n| n.output[0] == OUTPUT_NAME)
        .expect("output producer");
    assert_eq!(dq.op_type, "DequantizeLinear");
    let init = |name: &str| {
        g.initializer
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let s = init(&dq.input[1]);
    let z = init(&dq.input[2]);
    ActQuant {
        scale: f32::from_le_bytes(s.raw_data[..4].try_into().expect("4 bytes")),
        zero_point: z.raw_data[0] as i8,
    }
}

/// onnxruntime's outputs for `xs` (through scripts/ort_infer.py), or None
/// where it is not installed (a failure under CI).
pub(crate) fn ort_run(model: &[u8], xs: &[Vec<f32>]) -> Option<Vec<f32>> {
    let has_ort = std::process::Command::new("python3")
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ort {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "onnxruntime is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("SKIPPED: onnxruntime not installed (scripts/setup.sh installs it)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, i, o) = (
        dir.path().join("model.onnx"),
        dir.path().join("inputs.f32"),
        dir.path().join("outputs.f32"),
    );
    std::fs::write(&m, model).expect("write model");
    let raw: Vec<u8> = xs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&i, raw).expect("write inputs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ort_infer.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([&m, &i, &o])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&o).expect("outputs");
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

// ---- maths -----------------------------------------------------------

#[test]
fn activation_quant_widens_the_range_to_zero() {
    let q = |lo, hi| activation_quant(lo, hi).expect("finite");
    // ReLU6 output: 0 is the lowest int8 value.
    let r = q(0.0, 6.0);
    assert_eq!(r.zero_point, -128);
    assert!((r.scale - 6.0 / 255.0).abs() < 1e-9);
    // A range above 0 becomes [0, max]; below 0, [min, 0].
    assert_eq!(q(2.0, 5.0), q(0.0, 5.0));
    let r = q(-3.0, -1.0);
    assert_eq!(r.zero_point, 127);
    assert!((r.scale - 3.0 / 255.0).abs() < 1e-9);
    // Straddling 0: −128 − (−1)/(4/255) = −64.25 → −64.
    let r = q(-1.0, 3.0);
    assert_eq!(r.zero_point, -64);
    assert!((r.scale - 4.0 / 255.0).abs() < 1e-9);
    // Symmetric: −0.5 rounds away from zero, as TFLite's nudging.
    assert_eq!(q(-1.0, 1.0).zero_point, -1);
    // Always 0: any scale represents it.
    assert_eq!(
        q(0.0, 0.0),
        ActQuant {
            scale: 1.0,
            zero_point: 0
        }
    );
    // Both ends stay representable (within half a step) and 0 is exact.
    for (lo, hi) in [(-0.7f32, 13.1f32), (-5.0, 0.01), (0.3, 0.9), (-2.5, -0.2)] {
        let r = q(lo, hi);
        let real = |v: i32| (v - i32::from(r.zero_point)) as f32 * r.scale;
        assert!(real(QMIN) <= lo.min(0.0) + r.scale / 2.0, "[{lo}, {hi}]");
        assert!(real(QMAX) >= hi.max(0.0) - r.scale / 2.0, "[{lo}, {hi}]");
    }
    for bad in [(f32::NAN, 1.0), (0.0, f32::INFINITY), (2.0, 1.0)] {
        assert!(activation_quant(bad.0, bad.1).is_err(), "{bad:?}");
    }
}

#[test]
fn weights_are_symmetric_per_output_channel() {
    // Three output channels of two weights each.
    let w = [0.5, -1.27, 0.0, 0.0, 2.54, 1.0];
    let s = weight_scales(&w, 3);
    assert!(
        (s[0] - 0.01).abs() < 1e-7 && (s[2] - 0.02).abs() < 1e-7,
        "{s:?}"
    );
    assert_eq!(s[1], 1.0, "an all-zero channel");
    assert_eq!(quantize_weight(&w, &s), vec![50, -127, 0, 0, 127, 50]);
    // The largest magnitude maps to ±127 exactly, never −128.
    let w = [-3.0f32, 1.0, 2.0, -0.1];
    let s = weight_scales(&w, 1);
    assert_eq!(quantize_weight(&w, &s), vec![-127, 42, 85, -4]);
    // Ties go to even, as ONNX's QuantizeLinear rounds.
    assert_eq!(
        quantize_weight(&[127.0, 2.5, -3.5], &[1.0]),
        vec![127, 2, -4]
    );
}

#[test]
fn bias_scale_is_input_scale_times_weight_scale() {
    let (q, s) = quantize_bias(&[0.1, -0.2], 0.5, &[0.01, 0.02]);
    assert_eq!(s, vec![0.5f32 * 0.01, 0.5f32 * 0.02]);
    assert_eq!(q, vec![20, -20]);
    // Saturates rather than wrapping.
    let (q, _) = quantize_bias(&[1e6, -1e6], 1e-3, &[1e-6, 1e-6]);
    assert_eq!(q, vec![i32::MAX, i32::MIN]);
}

// ---- the graph -------------------------------------------------------

#[test]
fn qdq_graph_has_a_pair_per_activation_and_integer_weights() {
    let (float, qdq, cal) = qdq_network(1);
    let f = graph(&float);
    let g = graph(&qdq);
    // Activations of k5e1,k5e3,id,k3e3: input; stem ReLU6; layer 0 (e1):
    // depthwise ReLU6, project, add; layer 1: expand, depthwise, project;
    // layer 3: expand, depthwise, project, add; head: ReLU6, flatten, logits.
    let acts = activation_tensors(&f).expect("activations");
    assert_eq!(acts.len(), 15, "{acts:?}");
    assert_eq!(acts[0], INPUT_NAME);
    assert_eq!(acts.last().map(String::as_str), Some(OUTPUT_NAME));
    let expected = 1
        + count(&f, "Clip")
        + count(&f, "Relu")
        + count(&f, "Add")
        + count(&f, "Flatten")
        + count(&f, "Gemm")
        + f.node
            .iter()
            .filter(|n| n.op_type == "Conv")
            .filter(|n| {
                !f.node
                    .iter()
                    .any(|m| m.input.contains(&n.output[0]) && m.op_type == "Clip")
            })
            .count();
    assert_eq!(acts.len(), expected);
    assert_eq!(cal.ranges.len(), acts.len());

    let layers = count(&f, "Conv") + count(&f, "Gemm");
    assert_eq!(layers, 11);
    assert_eq!(count(&g, "QuantizeLinear"), acts.len());
    // One per activation, one per weight, one per bias.
    assert_eq!(count(&g, "DequantizeLinear"), acts.len() + 2 * layers);
    // The float graph's nodes are all still there, none added but Q/DQ.
    for op in [
        "Conv",
        "Gemm",
        "Clip",
        "Add",
        "GlobalAveragePool",
        "Flatten",
    ] {
        assert_eq!(count(&g, op), count(&f, op), "{op}");
    }
    assert_eq!(
        g.node.len(),
        f.node.len() + 2 * acts.len() + 2 * layers,
        "no other node"
    );

    let inits: HashMap<&str, &pb::TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let dtype = |name: &str| inits[name].data_type;
    for n in g
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
    {
        // The input is a dequantised activation, weight and bias DQ outputs.
        let producer = |v: &str| {
            g.node
                .iter()
                .find(|m| m.output[0] == v)
                .unwrap_or_else(|| panic!("{v} has no producer"))
        };
        assert_eq!(
            producer(&n.input[0]).op_type,
            "DequantizeLinear",
            "{}",
            n.name
        );
        for (k, int) in [(1, DataType::Int8), (2, DataType::Int32)] {
            let dq = producer(&n.input[k]);
            assert_eq!(dq.op_type, "DequantizeLinear", "{}", n.name);
            assert_eq!(dtype(&dq.input[0]), int as i32, "{}", dq.input[0]);
            assert_eq!(dtype(&dq.input[1]), DataType::Float as i32);
            assert_eq!(dtype(&dq.input[2]), int as i32);
            let axis = dq.attribute.iter().find(|a| a.name == "axis").map(|a| a.i);
            assert_eq!(axis, Some(0), "{}", dq.name);
            // One scale per output channel.
            let rows = inits[dq.input[0].as_str()].dims[0];
            assert_eq!(inits[dq.input[1].as_str()].dims, vec![rows]);
        }
    }
    // Activations: int8 zero points (never uint8), scalar f32 scales.
    for n in g.node.iter().filter(|n| n.op_type == "QuantizeLinear") {
        assert_eq!(dtype(&n.input[1]), DataType::Float as i32);
        assert_eq!(dtype(&n.input[2]), DataType::Int8 as i32);
        assert!(inits[n.input[1].as_str()].dims.is_empty());
    }
    // No float weight is left: the float initializers are scales and
    // ReLU6's two bounds.
    let floats: Vec<&str> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::Float as i32 && !t.name.ends_with(".scale"))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(floats, vec!["relu6.min", "relu6.max"]);
    // Same interface: f32 input and output, same names; metadata kept.
    assert_eq!(g.input, f.input);
    assert_eq!(g.output, f.output);
    let m = pb::ModelProto::decode(&qdq[..]).expect("decodes");
    let keys: Vec<&str> = m.metadata_props.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.starts_with(&["padnas.arch", "padnas.space_hash", "padnas.space"]));
    assert!(keys.ends_with(&[META_SCHEME, "k"]), "{keys:?}");
}

#[test]
fn calibration_records_each_tensors_min_and_max() {
    let float = float_network(2);
    let xs = inputs(8, 2);
    let cal = calibrate(&float, xs.iter().map(Vec::as_slice)).expect("calibrates");
    assert_eq!(cal.inputs, 8);
    let flat: Vec<f32> = xs.iter().flatten().copied().collect();
    let lo = flat.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = flat.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(cal.range(INPUT_NAME), Some((lo, hi)));
    let logits: Vec<f32> = tract_run(&float, &xs).into_iter().flatten().collect();
    let lo = logits.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(cal.range(OUTPUT_NAME), Some((lo, hi)));
    // ReLU6 outputs stay in [0, 6]; a linear tensor goes negative.
    let (lo, hi) = cal.range("stem.conv.relu6").expect("stem");
    assert!(lo >= 0.0 && hi <= 6.0 && hi > 0.0, "[{lo}, {hi}]");
    let (lo, _) = cal.range("layers.1.k5e3.project").expect("project");
    assert!(lo < 0.0);
    // More images widen (never narrow) every range.
    let more = inputs(16, 2);
    let cal2 = calibrate(&float, more.iter().map(Vec::as_slice)).expect("calibrates");
    for ((n, lo, hi), (_, lo2, hi2)) in cal.ranges.iter().zip(&cal2.ranges) {
        assert!(lo2 <= lo && hi2 >= hi, "{n}");
    }

    // Bad inputs are errors, not panics.
    assert!(calibrate(&float, std::iter::empty()).is_err());
    assert!(calibrate(&float, [&[0.0f32; 3][..]]).is_err());
    let missing = Calibration {
        ranges: cal.ranges[1..].to_vec(),
        inputs: 1,
    };
    let err = write_qdq(&float, &missing, vec![]).expect_err("no input range");
    assert!(err.to_string().contains(INPUT_NAME), "{err}");
}

#[test]
fn qdq_network_runs_in_tract_on_the_output_grid_near_the_float_one() {
    let (float, qdq, _) = qdq_network(3);
    let xs = inputs(16, 30);
    let want = tract_run(&float, &xs);
    let got = tract_run(&qdq, &xs);
    let q = output_quant(&graph(&qdq));
    let range = want.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), 10);
        for (&a, &b) in g.iter().zip(w) {
            // Every output is a dequantised int8 value.
            let steps = a / q.scale + f32::from(q.zero_point);
            assert!((steps - steps.round()).abs() < 1e-3, "{a} off the grid");
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "random weights, 16 inputs: int8 vs float max |Δ| = {worst} ({:.1} output steps, logit range ±{range})",
        worst / q.scale
    );
    // Random weights on noise give small logits (about ±0.8) after 11
    // layers of rounding to grids set by far wider intermediate tensors:
    // measured 0.10 (12% of the range, 20 output steps); the trained
    // network's accuracy is what matters (`cmd::export`'s tests).
    assert!(worst <= 0.25 * range, "{worst} vs range {range}");
    assert!(
        worst > 0.0,
        "the QDQ network computes exactly the float one"
    );
}

#[test]
fn tract_and_onnxruntime_agree_on_the_qdq_network() {
    let (_, qdq, _) = qdq_network(4);
    let xs = inputs(32, 40);
    let Some(ort) = ort_run(&qdq, &xs) else {
        return;
    };
    let tract: Vec<f32> = tract_run(&qdq, &xs).into_iter().flatten().collect();
    assert_eq!(ort.len(), tract.len());
    let q = output_quant(&graph(&qdq));
    let worst = tract
        .iter()
        .zip(&ort)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "tract vs onnxruntime, QDQ, random weights, 32 inputs: max |Δ| = {worst} ({:.1} output steps)",
        worst / q.scale
    );
    assert!(
        worst <= 3.0 * q.scale,
        "{worst} = {} steps",
        worst / q.scale
    );
}
