use super::*;

const GOOD: &str = "
name: fm
seed: 7
space: spaces/fmnist-small.yaml
data:
  kind: fashion-mnist
  augment: { crop_padding: 2 }
train:
  epochs: 3
  batch_size: 64
  lr: 0.05
  warmup_epochs: 0.5
  schedule: linear
";

fn parse(text: &str) -> Result<JobConfig, ConfigError> {
    JobConfig::from_yaml_str(text, "job.yaml", Path::new("/cfg"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_and_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.run_dir, Path::new("runs/fm"));
    assert_eq!(c.space, Path::new("/cfg/spaces/fmnist-small.yaml"));
    assert_eq!(c.data.path, Path::new(FASHION_MNIST_DIR));
    assert_eq!(c.data.val_split, 0.1);
    assert_eq!(
        c.data.augment,
        Augment {
            crop_padding: 2,
            hflip: false
        }
    );
    assert_eq!(c.device, DeviceSpec::Cpu);
    assert_eq!(c.train.momentum, 0.9);
    assert!(c.train.nesterov);
    assert_eq!(c.train.schedule, Schedule::Linear);
    assert_eq!(c.train.threads, None);
    assert_eq!(c.train.shards, 1);
    let c = parse(&format!("{GOOD}  shards: 2\n")).unwrap();
    assert_eq!(c.train.shards, 2);
}

#[test]
fn saved_copy_reads_back_the_same() {
    let c = parse(GOOD).unwrap();
    let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/elsewhere")).unwrap();
    assert_eq!(back.space, c.space);
    assert_eq!(back.train, c.train);
    assert_eq!(back.data, c.data);
    assert!(back.run_dir.is_absolute());
}

#[test]
fn errors_name_file_and_key() {
    let e = err(&GOOD.replace("lr: 0.05", "lr: 0"));
    assert!(e.starts_with("job.yaml: train.lr: 0 must be > 0"), "{e}");
    let e = err(&GOOD.replace("lr: 0.05", "lr: .nan"));
    assert!(e.starts_with("job.yaml: train.lr:"), "{e}");
    let e = err(&GOOD.replace("epochs: 3", "epoch: 3"));
    assert!(
        e.starts_with("job.yaml: train: unknown field `epoch`"),
        "{e}"
    );
    let e = err(&GOOD.replace("kind: fashion-mnist", "kind: mnist"));
    assert!(
        e.starts_with("job.yaml: data.kind: unknown variant `mnist`"),
        "{e}"
    );
    let e = err(&GOOD.replace("kind: fashion-mnist", "kind: cifar10"));
    assert!(
        e.starts_with("job.yaml: data.path: required for cifar10"),
        "{e}"
    );
    let e = err(&GOOD.replace("warmup_epochs: 0.5", "warmup_epochs: 3"));
    assert!(e.starts_with("job.yaml: train.warmup_epochs:"), "{e}");
    let e = err(&GOOD.replace("name: fm", "name: ../x"));
    assert!(e.starts_with("job.yaml: name:"), "{e}");
    let e = err(&format!("{GOOD}device: tpu\n"));
    assert!(
        e.starts_with("job.yaml: device: unknown device \"tpu\""),
        "{e}"
    );
    let e = err(&format!("{GOOD}  max_train_samples: 10\n"));
    assert!(e.starts_with("job.yaml: train.max_train_samples:"), "{e}");
    let e = err(&format!("{GOOD}  shards: 0\n"));
    assert!(e.starts_with("job.yaml: train.shards: must be ≥ 1"), "{e}");
    let e = err(&format!("{GOOD}  shards: 1000\n"));
    assert!(
        e.starts_with("job.yaml: train.shards: 1000 is more than the batch size"),
        "{e}"
    );
    let e = err(&format!("{GOOD}  momentum: 0\n  nesterov: true\n"));
    assert!(
        e.starts_with("job.yaml: train.nesterov: needs momentum"),
        "{e}"
    );
}

#[test]
fn sampling_is_uniform_unless_fair_is_asked_for() {
    assert_eq!(parse(GOOD).unwrap().train.sampling, Sampling::Uniform);
    let c = parse(&format!("{GOOD}  sampling: fair\n")).unwrap();
    assert_eq!(c.train.sampling, Sampling::Fair);
    let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.train.sampling, Sampling::Fair);
    let z = parse(&format!("{GOOD}  zero_residual_gamma: true\n")).unwrap();
    assert!(z.train.zero_residual_gamma && !c.train.zero_residual_gamma);
    let back = JobConfig::from_yaml_str(&z.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert!(back.train.zero_residual_gamma);
    let e = err(&format!("{GOOD}  sampling: sometimes\n"));
    assert!(e.contains("sampling") && e.contains("sometimes"), "{e}");
    assert_eq!(c.train.momentum_carry, MomentumCarry::Keep);
    let r = parse(&format!("{GOOD}  momentum_carry: reset\n")).unwrap();
    assert_eq!(r.train.momentum_carry, MomentumCarry::Reset);
    let back = JobConfig::from_yaml_str(&r.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.train.momentum_carry, MomentumCarry::Reset);
    assert_eq!(c.train.sandwich, None);
    let w = parse(&format!("{GOOD}  sandwich: {{ random: 2 }}\n")).unwrap();
    let sandwich = Sandwich {
        random: 2,
        distill: true,
    };
    assert_eq!(w.train.sandwich, Some(sandwich), "distillation by default");
    let back = JobConfig::from_yaml_str(&w.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.train.sandwich, Some(sandwich));
    let e = err(&format!(
        "{GOOD}  sandwich: {{ random: 2, teacher: big }}\n"
    ));
    assert!(e.contains("sandwich") && e.contains("teacher"), "{e}");
    let e = err(&format!("{GOOD}  momentum_carry: sometimes\n"));
    assert!(
        e.contains("momentum_carry") && e.contains("sometimes"),
        "{e}"
    );
}

#[test]
fn weight_sharing_is_none_unless_nested_is_asked_for() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.train.weight_sharing, WeightSharing::None);
    // Absent from the written file when unused, so the pipeline's step
    // settings of older runs do not change.
    assert!(!c.to_yaml().contains("weight_sharing"));
    let n = parse(&format!("{GOOD}  weight_sharing: nested\n")).unwrap();
    assert_eq!(n.train.weight_sharing, WeightSharing::Nested);
    let back = JobConfig::from_yaml_str(&n.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.train.weight_sharing, WeightSharing::Nested);
    // A stand-alone network has one candidate per layer: nothing to share.
    assert_eq!(n.train.single_path().weight_sharing, WeightSharing::None);
    let e = err(&format!("{GOOD}  weight_sharing: ofa\n"));
    assert!(e.contains("weight_sharing") && e.contains("ofa"), "{e}");
}

#[test]
fn the_rank_section_names_a_ground_truth() {
    assert_eq!(parse(GOOD).unwrap().rank, None, "absent: no scoring");
    let c = parse(&format!(
        "{GOOD}search: {{ bn_batches: 4, val_samples: 500 }}\nrank: {{ truth: ../gt.json }}\n"
    ))
    .unwrap();
    let r = c.rank.clone().expect("rank");
    assert_eq!(r.truth, Path::new("/gt.json"));
    assert_eq!(
        (r.bn_batches, r.val_samples),
        (4, 500),
        "the search's settings"
    );
    let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.rank, c.rank);
    let own = parse(&format!(
        "{GOOD}rank: {{ truth: gt.json, bn_batches: 8, val_samples: 3000 }}\n"
    ))
    .unwrap();
    assert_eq!(
        own.rank.map(|r| (r.bn_batches, r.val_samples)),
        Some((8, 3000))
    );
    let e = err(&format!(
        "{GOOD}rank: {{ truth: gt.json, val_samples: 0 }}\n"
    ));
    assert!(e.starts_with("job.yaml: rank.val_samples:"), "{e}");
    let e = err(&format!("{GOOD}rank: {{ truht: gt.json }}\n"));
    assert!(e.contains("rank") && e.contains("truht"), "{e}");
}

#[test]
fn search_sections_validate_and_round_trip() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.search, SearchConfig::default());
    assert_eq!(c.target.name, "local");
    assert_eq!(c.prune.finetune_epochs, vec![2, 1]);
    assert_eq!(c.prune.threshold, 0.01);
    assert_eq!(c.retrain.epochs, 3);
    let text = format!(
        "{GOOD}target: {{ name: rpi4, targets_dir: ../targets, table: t.json, \
             reference: 'mbconv:k3e3:in16x28x28:out16:s1', passes: 4 }}\n\
             search: {{ population: 16, generations: 5, window: {{ lo_ms: 1.5, hi_ms: 3 }} }}\n\
             prune: {{ finetune_epochs: [4, 2, 1], threshold: 0.05 }}\n\
             retrain: {{ epochs: 9, inherit: true }}\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.target.table.as_deref(), Some(Path::new("/cfg/t.json")));
    assert_eq!(c.target.targets_dir, Path::new("/targets"));
    assert_eq!(lexical(Path::new("../a/./b/../c")), Path::new("../a/c"));
    assert_eq!(lexical(Path::new("a/..")), Path::new("."));
    assert_eq!(c.search.window, WindowSpec::Ms { lo: 1.5, hi: 3.0 });
    assert_eq!(c.search.population, 16);
    assert_eq!(c.prune.finetune_epochs, vec![4, 2, 1]);
    assert!(c.retrain.inherit);
    let back = JobConfig::from_yaml_str(&c.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(back.search, c.search);
    assert_eq!(back.prune, c.prune);
    assert_eq!(back.retrain, c.retrain);
    assert_eq!(back.target.name, "rpi4");
    assert_eq!((c.target.passes, back.target.passes), (4, 4));
    assert_eq!(
        parse(GOOD).unwrap().target.passes,
        1,
        "one pass when absent"
    );
    let e = err(&format!("{GOOD}target: {{ name: rpi4, passes: 0 }}\n"));
    assert!(
        e.starts_with("job.yaml: target.passes: must be 1 to"),
        "{e}"
    );
    let gated = parse(&format!("{GOOD}target: {{ name: vm, sensor_gate: 10 }}\n")).unwrap();
    assert_eq!(gated.target.sensor_gate, Some(10.0));
    let again = JobConfig::from_yaml_str(&gated.to_yaml(), "job.yaml", Path::new("/x")).unwrap();
    assert_eq!(again.target.sensor_gate, Some(10.0));
    assert_eq!(back.target.sensor_gate, None);
    let e = err(&format!("{GOOD}target: {{ name: vm, sensor_gate: 0 }}\n"));
    assert!(
        e.starts_with("job.yaml: target.sensor_gate: must be above 0"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}target: {{ name: vm, sensor_gate: 10, reference: 'mbconv:k3e3:in16x28x28:out16:s1' }}\n"
    ));
    assert!(
        e.starts_with("job.yaml: target.sensor_gate: does not combine"),
        "{e}"
    );
    assert_eq!(
        back.target.reference.map(|k| k.to_string()).as_deref(),
        Some("mbconv:k3e3:in16x28x28:out16:s1")
    );
    let e = err(&format!(
        "{GOOD}target: {{ name: rpi4, reference: 'k3e3' }}\n"
    ));
    assert!(
        e.starts_with("job.yaml: target") && e.contains("block key \"k3e3\""),
        "{e}"
    );

    let e = err(&format!(
        "{GOOD}search: {{ window: {{ lo_ms: 3, hi_ms: 1 }} }}\n"
    ));
    assert!(e.starts_with("job.yaml: search.window:"), "{e}");
    let e = err(&format!(
        "{GOOD}search: {{ window: {{ lo_ms: 1, quantiles: [0.1, 0.2] }} }}\n"
    ));
    assert!(
        e.contains("give either lo_ms and hi_ms, or quantiles"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}search: {{ window: {{ quantiles: [0.5, 0.2] }} }}\n"
    ));
    assert!(e.starts_with("job.yaml: search.window.quantiles:"), "{e}");
    let e = err(&format!(
        "{GOOD}prune: {{ finetune_epochs: [1], threshold: 1.5 }}\n"
    ));
    assert!(e.starts_with("job.yaml: prune.threshold:"), "{e}");
    let e = err(&format!("{GOOD}search: {{ populaton: 3 }}\n"));
    assert!(e.contains("unknown field `populaton`"), "{e}");
}

#[test]
fn devices_parse() {
    assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
    assert_eq!("cuda:2".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(2)));
    assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    assert!("cuda:x".parse::<DeviceSpec>().is_err());
}

#[test]
fn every_shipped_job_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut loaded = Vec::new();
    for sub in [dir.clone(), dir.join("ci-tiny")] {
        for entry in std::fs::read_dir(&sub).expect("configs/") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Jobs only: target files and spaces live beside some of them.
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !name.ends_with(".yaml") || !text.contains("\nspace:") {
                continue;
            }
            JobConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded.push(name.to_string());
        }
    }
    for want in [
        "fmnist-local.yaml",
        "fmnist-mcu.yaml",
        "job.yaml",
        "mcu-job.yaml",
    ] {
        assert!(
            loaded.iter().any(|n| n == want),
            "{want} not among {loaded:?}"
        );
    }
}
