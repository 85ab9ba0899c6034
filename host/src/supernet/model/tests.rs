use super::*;
use crate::config::{TrainConfig, WeightSharing};

pub(crate) const TINY: &str = "
input: { channels: 1, height: 8, width: 8 }
num_classes: 3
stem: { kernel: 3, channels: 4, stride: 1 }
stages:
  - { channels: 4, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - { channels: 8, num_layers: 2, stride: 2, first_ops: [k3e3, k5e2], ops: [k3e3, id] }
head: { channels: 16 }
";

fn tiny() -> Space {
    Space::from_yaml_str(TINY, "tiny").unwrap()
}

#[test]
fn names_follow_the_onnx_param_refs() {
    let net = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
    let names: Vec<&str> = net.named_tensors().map(|(n, _, _)| n).collect();
    for want in [
        "stem.conv.weight",
        "stem.conv.bn.running_var",
        "layers.0.k3e1.depthwise.weight",
        "layers.1.k5e2.expand.bn.weight",
        "layers.2.k3e3.project.bn.bias",
        "head.conv.weight",
        "classifier.fc.weight",
        "classifier.fc.bias",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Expansion 1 has no expand conv; identity has no tensors.
    assert!(!names.iter().any(|n| n.starts_with("layers.0.k3e1.expand")));
    assert!(!names.iter().any(|n| n.contains(".id.")));
    let dw = net.tensor("layers.1.k5e2.depthwise.weight").unwrap();
    assert_eq!(dw.size(), [8, 1, 5, 5]);
    assert_eq!(
        net.tensor("stem.conv.bn.weight")
            .unwrap()
            .double_value(&[0]),
        1.0
    );
}

#[test]
fn init_depends_on_seed_and_name_only() {
    let a = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
    let b = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
    let c = Supernet::new(&tiny(), Device::Cpu, 2).unwrap();
    let w = "layers.2.k3e3.expand.weight";
    assert!(a.tensor(w).unwrap().equal(b.tensor(w).unwrap()));
    assert!(!a.tensor(w).unwrap().equal(c.tensor(w).unwrap()));
}

#[test]
fn dense_depthwise_matches_libtorch() {
    // 4×4 and 3×5 maps, stride 1 and 2, k5 and k7: values and both
    // gradients as libtorch's depthwise convolution computes them.
    for (h, w, k, stride) in [(4, 4, 7, 1), (4, 4, 5, 1), (3, 5, 5, 2), (4, 4, 7, 2)] {
        let c = 6;
        let d = Dense::new(h, w, k, stride, Device::Cpu).unwrap();
        let x = channels_last(&Tensor::randn(
            [3, c, h as i64, w as i64],
            (Kind::Float, Device::Cpu),
        ))
        .unwrap()
        .set_requires_grad(true);
        let wt = Tensor::randn([c, 1, k as i64, k as i64], (Kind::Float, Device::Cpu))
            .set_requires_grad(true);
        let s = stride as i64;
        let p = (k / 2) as i64;
        let want = x.conv2d::<&Tensor>(&wt, None, [s, s], [p, p], [1, 1], c);
        let got = d.forward(&x, &wt).unwrap();
        assert_eq!(got.size(), want.size(), "{h}×{w} k{k} s{stride}");
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(diff(&got, &want) < 1e-4, "{h}×{w} k{k} s{stride}: values");
        let g = Tensor::randn(want.size(), (Kind::Float, Device::Cpu));
        let gw = Tensor::run_backward(&[&(&want * &g).sum(Kind::Float)], &[&x, &wt], false, false);
        let gg = Tensor::run_backward(&[&(&got * &g).sum(Kind::Float)], &[&x, &wt], false, false);
        assert!(
            diff(&gw[0], &gg[0]) < 1e-4,
            "{h}×{w} k{k} s{stride}: input gradient"
        );
        assert!(
            diff(&gw[1], &gg[1]) < 1e-4,
            "{h}×{w} k{k} s{stride}: weight gradient"
        );
    }
    assert!(Dense::pays(4, 4, 5) && !Dense::pays(4, 4, 3) && !Dense::pays(7, 7, 7));
}

#[test]
fn forward_shapes_and_layout() {
    let net = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
    let x = Tensor::randn([5, 1, 8, 8], (Kind::Float, Device::Cpu));
    for path in [[0, 0, 0], [0, 1, 1], [0, 0, 1]] {
        let y = net.forward(&x, &path, BnMode::Train).unwrap();
        assert_eq!(y.size(), [5, 3]);
    }
    assert!(net.forward(&x, &[0, 2, 0], BnMode::Eval).is_err());
    assert!(net.forward(&x, &[0, 0], BnMode::Eval).is_err());
    // 3×3 weights over 3 channels: NHWC strides. (1×1 and depthwise
    // weights are laid out the same either way.)
    let w = channels_last(&Tensor::randn([2, 3, 3, 3], (Kind::Float, Device::Cpu))).unwrap();
    assert_eq!(w.stride(), [27, 1, 9, 3]);
}

/// `(a, b)` equal as values.
fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.equal(b)
}

/// Nested sharing: layer 1's k5e2 and k3e3 are the leading channels and the
/// centred taps of one tensor per part, sized and initialised as the
/// largest candidate there would be (k5e3, not itself a candidate); a
/// write through one candidate shows in the other; without sharing the two
/// are independent.
#[test]
fn nested_sharing_makes_candidates_parts_of_the_largest() {
    let cfg = TrainConfig {
        weight_sharing: WeightSharing::Nested,
        ..TrainConfig::default()
    };
    let net = Supernet::for_training(&tiny(), Device::Cpu, 1, &cfg).unwrap();
    let t = |n: &str| net.tensor(&format!("layers.1.{n}.weight")).unwrap();
    assert_eq!(t("k3e3.depthwise").size(), [12, 1, 3, 3]);
    assert_eq!(t("k5e2.depthwise").size(), [8, 1, 5, 5]);
    // k5e2's first 8 channels' centred 3×3 taps are k3e3's.
    let centre = t("k5e2.depthwise").narrow(2, 1, 3).narrow(3, 1, 3);
    assert!(same(&centre, &t("k3e3.depthwise").narrow(0, 0, 8)));
    assert!(same(t("k5e2.expand"), &t("k3e3.expand").narrow(0, 0, 8)));
    assert!(same(t("k5e2.project"), &t("k3e3.project").narrow(1, 0, 8)));
    // The largest candidate's initial values, whose name is k5e3's.
    let plain = Supernet::new(&tiny(), Device::Cpu, 1).unwrap();
    assert!(!same(
        t("k3e3.expand"),
        plain.tensor("layers.1.k3e3.expand.weight").unwrap()
    ));
    // Batch norms stay per candidate: their channels see other inputs.
    assert_eq!(
        net.tensor("layers.1.k5e2.expand.bn.weight").unwrap().size(),
        [8]
    );
    // An optimiser's in-place update through k3e3 moves k5e2's centre too.
    {
        let _g = tch::no_grad_guard();
        let mut w = t("k3e3.depthwise").shallow_clone();
        let _ = w.f_add_scalar_(1.0).unwrap();
    }
    let centre = t("k5e2.depthwise").narrow(2, 1, 3).narrow(3, 1, 3);
    assert!(same(&centre, &t("k3e3.depthwise").narrow(0, 0, 8)));
    // Each candidate stays an autograd leaf of its own, which the
    // optimiser's per-parameter gradients need.
    let x = Tensor::ones([2, 1, 8, 8], (tch::Kind::Float, Device::Cpu));
    let path = net
        .path_of(&tiny().parse_arch("k3e1,k3e3,id").unwrap())
        .unwrap();
    let loss = net.forward(&x, &path, BnMode::Train).unwrap().sum(None);
    let g = Tensor::run_backward(&[loss], &[t("k3e3.depthwise")], false, false);
    assert!(g[0].abs().sum(None).double_value(&[]) > 0.0);
    // Unshared, a write to one leaves the other alone.
    let before = plain
        .tensor("layers.1.k5e2.depthwise.weight")
        .unwrap()
        .copy();
    {
        let _g = tch::no_grad_guard();
        let mut w = plain
            .tensor("layers.1.k3e3.depthwise.weight")
            .unwrap()
            .shallow_clone();
        let _ = w.f_add_scalar_(1.0).unwrap();
    }
    assert!(same(
        &before,
        plain.tensor("layers.1.k5e2.depthwise.weight").unwrap()
    ));
}

/// A nested supernet's weights, saved per candidate, load into an unshared
/// supernet (as search and `rank score` build one) and give the same
/// outputs on every path.
#[test]
fn nested_weights_evaluate_the_same_in_an_unshared_supernet() {
    let cfg = TrainConfig {
        weight_sharing: WeightSharing::Nested,
        ..TrainConfig::default()
    };
    let space = tiny();
    let net = Supernet::for_training(&space, Device::Cpu, 3, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.safetensors");
    crate::supernet::checkpoint::save_weights(&net, &file).unwrap();
    let plain = Supernet::new(&space, Device::Cpu, 9).unwrap();
    crate::supernet::checkpoint::load_weights(
        &plain,
        &file,
        crate::supernet::checkpoint::LoadMode::Exact,
    )
    .unwrap();
    let x = Tensor::randn([4, 1, 8, 8], (tch::Kind::Float, Device::Cpu));
    for arch in ["k3e1,k3e3,k3e3", "k3e1,k5e2,id", "k3e1,k5e2,k3e3"] {
        let path = net.path_of(&space.parse_arch(arch).unwrap()).unwrap();
        let a = net.forward(&x, &path, BnMode::Eval).unwrap();
        let b = plain.forward(&x, &path, BnMode::Eval).unwrap();
        assert!(same(&a, &b), "{arch}");
    }
}
