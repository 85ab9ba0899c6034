use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

fn spaces_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/spaces")
}

fn load(name: &str) -> Space {
    match Space::load(spaces_dir().join(name)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

const TINY: &str = "
input: { channels: 3, height: 32, width: 32 }
num_classes: 10
stem: { kernel: 3, channels: 8, stride: 1 }
stages:
  - { channels: 8, num_layers: 1, stride: 1, first_ops: [k3e1] }
  - channels: 16
    num_layers: 3
    stride: 2
    first_ops: [k3e3, k5e6]
    ops: [k3e3, k5e6, id]
head: { channels: 32 }
";

fn tiny() -> Space {
    Space::from_yaml_str(TINY, "tiny.yaml").expect("tiny space")
}

fn err(text: &str) -> String {
    match Space::from_yaml_str(text, "x.yaml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn op_text_round_trips_and_rejects_junk() {
    for t in ["k3e6", "k5e3", "k7e1", "k1e1", "id", "k11e12"] {
        let op: Op = t.parse().unwrap();
        assert_eq!(op.to_string(), t);
    }
    for t in [
        "k4e3", "k3e0", "k0e1", "k03e6", "K3E6", "k3", "e6", "identity", "", "k3e6 ",
    ] {
        assert!(t.parse::<Op>().is_err(), "{t:?} accepted");
    }
    let e = "k4e3".parse::<Op>().unwrap_err().to_string();
    assert!(e.contains("unknown op \"k4e3\""), "{e}");
}

#[test]
fn shipped_spaces_have_the_paper_counts() {
    let basic = load("proxyless-basic.yaml");
    assert_eq!(basic.layers().len(), 22);
    let expect = 3u128 * 6u128.pow(6) * 7u128.pow(15);
    assert_eq!(basic.num_architectures_exact(), Some(expect));
    assert_eq!(format_count(basic.num_architectures()), "6.6e17");
    assert_eq!(basic.head_input(), Shape::new(320, 7, 7));

    let large = load("proxyless-large.yaml");
    assert_eq!(large.layers().len(), 22);
    let expect = 3u128 * 18u128.pow(6) * 19u128.pow(15);
    assert_eq!(large.num_architectures_exact(), Some(expect));
    assert_eq!(format_count(large.num_architectures()), "1.5e27");

    let small = load("fmnist-small.yaml");
    assert!((8..=10).contains(&small.layers().len()));
    assert_eq!(small.input(), Shape::new(1, 28, 28));
    assert_eq!(small.num_classes(), 10);
    assert!(small.layers().iter().any(|l| l.ops.contains(&Op::Identity)));
}

#[test]
fn paper_first_block_has_expansion_one() {
    let basic = load("proxyless-basic.yaml");
    let first = &basic.layers()[0];
    assert_eq!(first.input, Shape::new(32, 112, 112));
    assert!(
        first
            .ops
            .iter()
            .all(|op| matches!(op, Op::MbConv { expansion: 1, .. }))
    );
}

#[test]
fn layers_track_shapes() {
    let s = tiny();
    let l = s.layers();
    assert_eq!(l.len(), 4);
    assert_eq!(l[0].input, Shape::new(8, 32, 32));
    assert_eq!(
        (l[1].input, l[1].stride, l[1].out_channels),
        (Shape::new(8, 32, 32), 2, 16)
    );
    assert_eq!(l[2].input, Shape::new(16, 16, 16));
    assert_eq!((l[3].stride, l[3].position, l[3].stage), (1, 2, 1));
    assert_eq!(s.head_input(), Shape::new(16, 16, 16));
    assert_eq!(s.num_architectures_exact(), Some(2 * 3 * 3));
    // Multiply-accumulates, by hand: layer 1 maps 8×32×32 to 16×16×16.
    // k5e6: expand 8·48·1024, depthwise 48·25·256, project 48·16·256.
    let op = |t: &str| t.parse::<Op>().unwrap();
    assert_eq!(l[1].macs(op("k5e6")), 393_216 + 307_200 + 196_608);
    assert_eq!(l[1].macs(op("k3e3")), 196_608 + 55_296 + 98_304);
    // Expansion 1 has no expand convolution: 16·9·256 + 16·16·256.
    assert_eq!(l[2].macs(op("k3e1")), 36_864 + 65_536);
    assert_eq!(l[3].macs(Op::Identity), 0);
}

#[test]
fn odd_sizes_round_up_under_stride_two() {
    assert_eq!(Shape::new(4, 7, 7).after_conv(8, 2), Shape::new(8, 4, 4));
    assert_eq!(
        Shape::new(4, 224, 224).after_conv(8, 2),
        Shape::new(8, 112, 112)
    );
}

#[test]
fn yaml_round_trips_including_layer_wise() {
    for name in [
        "proxyless-basic.yaml",
        "proxyless-large.yaml",
        "fmnist-small.yaml",
    ] {
        let s = load(name);
        let back = Space::from_yaml_str(&s.to_yaml(), "round-trip").unwrap();
        assert_eq!(back, s, "{name}");
        assert_eq!(back.hash(), s.hash());
    }
    // A pruned, layer-wise space.
    let s = tiny();
    let mut ops = s.layer_ops();
    ops[2] = vec![Op::Identity];
    ops[3] = vec![
        Op::MbConv {
            kernel: 5,
            expansion: 6,
        },
        Op::Identity,
    ];
    let pruned = s.with_layer_ops(&ops).unwrap();
    assert_eq!(pruned.layer_ops(), ops);
    let yaml = pruned.to_yaml();
    assert!(yaml.contains("layers:"), "{yaml}");
    let back = Space::from_yaml_str(&yaml, "pruned").unwrap();
    assert_eq!(back, pruned);
    assert_ne!(pruned.hash(), s.hash());
}

#[test]
fn hash_is_stable_and_ignores_the_name() {
    let s = tiny();
    assert_eq!(s.hash().len(), 16);
    // Pinned: latency tables on disk record it, so it must not drift.
    assert_eq!(s.hash(), "983bfc39b1758449");
    assert_eq!(load("proxyless-basic.yaml").hash(), "804561a6a653f0d1");
    let renamed = Space::from_yaml_str(&format!("name: other\n{TINY}"), "r").unwrap();
    assert_eq!(renamed.hash(), s.hash());
    let wider = Space::from_yaml_str(&TINY.replace("channels: 32", "channels: 64"), "w").unwrap();
    assert_ne!(wider.hash(), s.hash());
}

#[test]
fn errors_name_file_and_key() {
    let e = err(&TINY.replace("ops: [k3e3, k5e6, id]", "ops: [k3e3, k4e3]"));
    assert!(
        e.starts_with("x.yaml: stages[1].ops[1]: unknown op \"k4e3\""),
        "{e}"
    );

    let e = err(&TINY.replace("first_ops: [k3e3, k5e6]", "first_ops: [k3e3, id]"));
    assert!(
        e.starts_with("x.yaml: stages[1].first_ops[1]: identity"),
        "{e}"
    );

    let e = err(&TINY.replace("    first_ops: [k3e3, k5e6]\n", ""));
    assert!(
        e.starts_with("x.yaml: stages[1].ops[2]: identity") && e.contains("give first_ops"),
        "{e}"
    );

    let e = err(&TINY.replace("first_ops: [k3e3, k5e6]", "first_ops: []"));
    assert!(
        e.starts_with("x.yaml: stages[1].first_ops: a layer needs"),
        "{e}"
    );

    let e = err(&TINY.replace("ops: [k3e3, k5e6, id]", "ops: [k3e3, id, k3e3]"));
    assert!(
        e.starts_with("x.yaml: stages[1].ops[2]: duplicate op k3e3"),
        "{e}"
    );

    let e = err(&TINY.replace("stride: 2", "stride: 3"));
    assert!(
        e.starts_with("x.yaml: stages[1].stride: must be 1 or 2"),
        "{e}"
    );

    let e = err(&TINY.replace("kernel: 3", "kernel: 4"));
    assert!(e.starts_with("x.yaml: stem.kernel: must be odd"), "{e}");

    let e = err(&TINY.replace("k3e3, k5e6]", "k3e0, k5e6]"));
    assert!(
        e.contains("stages[1].first_ops[0]") && e.contains("k3e0"),
        "{e}"
    );

    let e = err(&TINY.replace("num_layers: 3", "num_layer: 3"));
    assert!(
        e.starts_with("x.yaml: stages[1]: unknown field `num_layer`"),
        "{e}"
    );

    let e = err(&format!("{TINY}extra: 1\n"));
    assert!(e.contains("unknown field `extra`"), "{e}");

    let e = err(&TINY.replace("    ops: [k3e3, k5e6, id]\n", ""));
    assert!(e.starts_with("x.yaml: stages[1]: missing ops"), "{e}");

    let e = err(&TINY.replace("first_ops: [k3e1] }", "first_ops: [k3e1], ops: [k3e1] }"));
    assert!(e.starts_with("x.yaml: stages[0].ops: unused"), "{e}");

    let e = err(&TINY.replace("num_layers: 1, ", ""));
    assert!(
        e.starts_with("x.yaml: stages[0]: missing num_layers"),
        "{e}"
    );
}

#[test]
fn identity_only_where_shape_is_kept() {
    // Stride 1 and same width, but the first layer of the stage.
    let text = TINY.replace("first_ops: [k3e1] }", "first_ops: [k3e1, id] }");
    let e = err(&text);
    assert!(
        e.contains("stages[0].first_ops[1]: identity is not allowed in the first layer"),
        "{e}"
    );
}

#[test]
fn layer_wise_form_reads_and_checks() {
    let text = TINY.replace(
        "    num_layers: 3\n    stride: 2\n    first_ops: [k3e3, k5e6]\n    ops: [k3e3, k5e6, id]\n",
        "    stride: 2\n    layers:\n      - [k5e6]\n      - [k3e3, id]\n      - [id]\n",
    );
    let s = Space::from_yaml_str(&text, "lw.yaml").unwrap();
    assert_eq!(s.num_architectures_exact(), Some(2));
    assert_eq!(s.layers()[3].ops, vec![Op::Identity]);

    let e = err(&text.replace("      - [id]\n", "      - [id]\n    num_layers: 2\n"));
    assert!(
        e.contains("stages[1].layers: has 3 entries but num_layers is 2"),
        "{e}"
    );
    let e = err(&text.replace("      - [k5e6]", "      - [k5e6, id]"));
    assert!(e.contains("stages[1].layers[0][1]: identity"), "{e}");
    let e = err(&text.replace("    stride: 2\n", "    stride: 2\n    ops: [k3e3]\n"));
    assert!(e.contains("stages[1].layers: cannot be combined"), "{e}");
}

#[test]
fn arch_text_validation_and_indices() {
    let s = tiny();
    let a = s.parse_arch("k3e1,k5e6,id,k3e3").unwrap();
    assert_eq!(a.to_string(), "k3e1,k5e6,id,k3e3");
    assert_eq!(a.num_identities(), 1);
    assert_eq!(s.arch_indices(&a).unwrap(), vec![0, 1, 2, 0]);
    assert_eq!(s.arch_from_indices(&[0, 1, 2, 0]).unwrap(), a);
    assert!(s.arch_from_indices(&[0, 2, 0, 0]).is_err());
    assert!(s.parse_arch("k3e1,k5e6,id").is_err(), "too short");
    assert!(
        s.parse_arch("k3e1,id,id,k3e3").is_err(),
        "identity in first layer"
    );
    assert!(
        s.parse_arch("k3e1,k7e6,id,k3e3").is_err(),
        "not a candidate"
    );
    assert!(s.parse_arch("k3e1,k5e6,,k3e3").is_err());
    assert!(s.parse_arch("").is_err());
    let e = s.parse_arch("k3e1,k7e6,id,k3e3").unwrap_err().to_string();
    assert!(e.contains("layer 1: k7e6 is not a candidate"), "{e}");
    // Serde goes through the text form.
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, "\"k3e1,k5e6,id,k3e3\"");
    assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), a);
}

#[test]
fn sampling_is_seeded_valid_and_uniform_enough() {
    let s = load("proxyless-basic.yaml");
    assert_eq!(s.sample_seeded(7), s.sample_seeded(7));
    assert_ne!(s.sample_seeded(7), s.sample_seeded(8));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut counts = vec![0usize; 7];
    for _ in 0..7000 {
        let a = s.sample(&mut rng);
        s.check_arch(&a).unwrap();
        // Layer 2: a non-first layer, seven candidates.
        counts[s.arch_indices(&a).unwrap()[2]] += 1;
    }
    assert!(
        counts.iter().all(|&c| (800..1200).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn unique_blocks_cover_every_layer_once() {
    let s = load("proxyless-basic.yaml");
    let blocks = s.unique_blocks();
    assert!(blocks.contains(&s.stem_block()));
    assert!(blocks.contains(&s.head_block()));
    // Layers 2..4 of a stage share (input, out, stride): one key per op.
    // basic: 3 + per stage 6 (first) + 6 (rest, same shape) except the
    // one-layer 320 stage with 6; 5 multi-layer stages.
    assert_eq!(blocks.len(), 2 + 3 + 5 * 12 + 6);
    assert!(blocks.iter().all(|b| b.op() != Some(Op::Identity)));
    for b in &blocks {
        let back: BlockKey = b.to_string().parse().unwrap();
        assert_eq!(&back, b);
    }
    let a = s.sample_seeded(3);
    let used = s.arch_blocks(&a).unwrap();
    assert_eq!(used.len(), 2 + 22 - a.num_identities());
    assert!(used.iter().all(|b| blocks.contains(b)));
}

#[test]
fn block_key_text() {
    let s = load("proxyless-basic.yaml");
    assert_eq!(
        s.stem_block().to_string(),
        "stem:k3:in3x224x224:out32:s2:relu6"
    );
    assert_eq!(
        s.head_block().to_string(),
        "head:in320x7x7:out1280:classes1000:relu6"
    );
    let k = s.layers()[1]
        .block(Op::MbConv {
            kernel: 5,
            expansion: 6,
        })
        .unwrap();
    assert_eq!(k.to_string(), "mbconv:k5e6:in16x112x112:out24:s2");
    assert_eq!(k.output(), Shape::new(24, 56, 56));
    for bad in [
        "mbconv:k5e6:in16x112x112:out24",
        "mbconv:id:in1x1x1:out1:s1",
        "x",
        "mbconv:k5e6:in16x112:out24:s2",
        "mbconv:k5e6:in16x112x112:out024:s2",
    ] {
        assert!(bad.parse::<BlockKey>().is_err(), "{bad}");
    }
}
