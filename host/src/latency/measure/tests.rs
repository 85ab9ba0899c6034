use padnas_agent::ClientError;
use padnas_agent::proto::{BenchLimits, BenchStats, ModelLoaded};

use super::*;
use crate::latency::fake::Fake;
use crate::latency::link::BenchAgent;
use crate::space::BlockKey;

/// An agent of protocol 1.`minor`: it ignores the Bench fields later
/// versions added (the reference in 1.1, the sensor in 1.2), as its
/// serde defaults would.
struct OldAgent {
    fake: Fake,
    minor: u16,
}

impl BenchAgent for OldAgent {
    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
        self.fake.load_model(onnx)
    }
    fn load_int8(
        &mut self,
        block: padnas_agent::proto::Int8Block,
    ) -> Result<ModelLoaded, ClientError> {
        self.fake.load_int8(block)
    }
    fn bench(
        &mut self,
        h: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        l: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        let reference = reference.filter(|_| self.minor >= 1);
        let sensor_every = sensor_every.filter(|_| self.minor >= 2);
        self.fake.bench(h, reference, sensor_every, l)
    }
    fn unload(&mut self, h: u32) -> Result<(), ClientError> {
        self.fake.unload(h)
    }
}

#[test]
fn steady_block_converges_in_one_round() {
    let mut dev = Fake::steady(2.0);
    let noise = NoiseSettings::default();
    let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
    assert!(m.converged);
    assert_eq!(m.rounds, 1);
    assert_eq!(m.summary.n, noise.min_runs as usize);
    assert!(m.summary.p10 <= m.summary.median && m.summary.median <= m.summary.p90);
    assert_eq!(m.load_ms, 1.5);
    let e = crate::latency::Entry::from_measured(&m, "t".into());
    assert!(e.runs >= noise.min_runs && e.ci95_halfwidth_pct.is_some_and(|h| h < 2.0));
}

#[test]
fn noisy_block_pools_rounds_until_the_cap() {
    // Alternating 1 and 2 ms: the median's interval never gets narrow.
    let mut dev = Fake::steady(1.0);
    dev.draw = Box::new(|i| if i % 2 == 0 { 1.0 } else { 2.0 });
    let noise = NoiseSettings {
        max_runs: 60,
        max_time_ms: 60_000,
        ..NoiseSettings::default()
    };
    let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
    assert!(!m.converged);
    assert_eq!(m.summary.n, 60, "stops exactly at the cap");
    assert!(m.rounds > 1);
}

#[test]
fn skewed_noise_converges_after_pooling() {
    // Mostly 10 ms with a 20% tail of slow runs: one round of 10 is not
    // enough for ±2%, a few pooled rounds are.
    let mut n = 0usize;
    let mut dev = Fake::steady(10.0);
    dev.draw = Box::new(move |_| {
        n += 1;
        let jitter = ((n * 7919) % 13) as f64 / 13.0 * 0.3;
        if n.is_multiple_of(5) {
            14.0 + jitter
        } else {
            10.0 + jitter
        }
    });
    let noise = NoiseSettings {
        max_time_ms: 60_000,
        ..NoiseSettings::default()
    };
    let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("measure");
    assert!(m.converged, "{m:?}");
    assert!(m.ci95_halfwidth_pct.is_some_and(|h| h < 2.0));
    assert!(m.summary.median > 9.9 && m.summary.median < 10.4, "{m:?}");
}

/// Cost of a fake model: its ONNX size, as if time grew with weights.
fn by_size(onnx: &[u8]) -> f64 {
    onnx.len() as f64 / 1000.0
}

/// A neighbour that is busy 40 ticks out of every 50 and slows
/// everything 1.8× meanwhile.
fn mostly_busy(tick: usize) -> f64 {
    if tick % 50 < 10 { 1.0 } else { 1.8 }
}

fn gated(gate: f64, floor: Option<f64>) -> NoiseSettings {
    NoiseSettings {
        min_runs: 10,
        max_runs: 40,
        max_time_ms: 10,
        sensor_gate_pct: Some(gate),
        sensor_wait_ms: 50,
        sensor_calibrate_ms: 20,
        sensor_floor_ms: floor,
        ..NoiseSettings::default()
    }
}

#[test]
fn the_sensor_gate_keeps_only_the_quiet_runs() {
    let busy = || Fake {
        machine: mostly_busy,
        ..Fake::steady(2.0)
    };
    let limits = BenchLimits::default();
    // Without the gate the median is the busy machine's.
    let plain =
        measure_model(&mut busy(), b"x", "b", &limits, &NoiseSettings::default()).expect("plain");
    assert!(plain.summary.median > 3.0, "{:?}", plain.summary);
    assert!(plain.quiet.is_none());

    let mut dev = busy();
    let m = measure_model(&mut dev, b"x", "b", &limits, &gated(10.0, Some(0.4))).expect("gated");
    assert!(dev.sensed > 0, "the sensor was asked for");
    let q = m.quiet.clone().expect("gate report");
    assert!(q.found && m.converged, "{q:?}");
    assert!(
        (m.summary.median / 2.0 - 1.0).abs() < 0.01,
        "{:?}",
        m.summary
    );
    assert!(m.summary.max < 2.1, "no busy run kept: {:?}", m.summary);
    assert_eq!(m.summary.n as u32, q.kept);
    assert!(q.kept >= 10 && q.kept < q.of, "{q:?}");
    assert_eq!(q.floor_ms, 0.4);
    // The entry carries the report.
    assert_eq!(
        crate::latency::Entry::from_measured(&m, "t".into()).quiet,
        Some(q)
    );
}

#[test]
fn the_quiet_level_is_learned_and_the_caller_lowers_its_settings() {
    let mut noise = gated(10.0, None);
    let mut dev = Fake {
        machine: mostly_busy,
        ..Fake::steady(2.0)
    };
    let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("m");
    assert!(
        (m.summary.median / 2.0 - 1.0).abs() < 0.01,
        "{:?}",
        m.summary
    );
    // The settings measured with are not changed behind the caller's back.
    assert_eq!(noise.sensor_floor_ms, None);
    // The 5th percentile of readings that are quiet 20% of the time.
    let level = m.learned_floor_ms.expect("learned");
    assert!((level - 0.4).abs() < 1e-9, "{level}");
    noise.lower_sensor_floor(m.learned_floor_ms);
    assert_eq!(noise.sensor_floor_ms, Some(level));
    // A busier reading never raises it; a quieter one lowers it; nonsense
    // changes nothing.
    noise.lower_sensor_floor(Some(0.5));
    assert_eq!(noise.sensor_floor_ms, Some(0.4));
    noise.lower_sensor_floor(Some(0.3));
    noise.lower_sensor_floor(Some(f64::NAN));
    noise.lower_sensor_floor(Some(-1.0));
    noise.lower_sensor_floor(None);
    assert_eq!(noise.sensor_floor_ms, Some(0.3));
    // Stored as a plain number.
    let json = serde_json::to_value(&noise).unwrap();
    assert_eq!(json["sensor_floor_ms"], serde_json::json!(0.3));
    let back: NoiseSettings = serde_json::from_value(json).unwrap();
    assert_eq!(back, noise);
    let none = serde_json::to_value(NoiseSettings::default()).unwrap();
    assert!(none.get("sensor_floor_ms").is_none() && none.get("sensor_gate_pct").is_none());
    // Without the gate nothing is learned.
    let ungated = measure_model(
        &mut Fake::steady(2.0),
        b"x",
        "b",
        &BenchLimits::default(),
        &NoiseSettings::default(),
    )
    .expect("m");
    assert_eq!(ungated.learned_floor_ms, None);
}

#[test]
fn a_measurement_without_a_quiet_run_says_so() {
    let mut dev = Fake {
        machine: |_| 1.8,
        ..Fake::steady(2.0)
    };
    let noise = gated(10.0, Some(0.4));
    let m = measure_model(&mut dev, b"x", "b", &BenchLimits::default(), &noise).expect("m");
    let q = m.quiet.expect("report");
    assert!(!q.found && !m.converged, "{q:?}");
    // It settles for the runs quietest against its own readings.
    assert!(
        (m.summary.median / 3.6 - 1.0).abs() < 0.01,
        "{:?}",
        m.summary
    );
    assert!((q.floor_ms - 0.72).abs() < 1e-9, "{q:?}");
    // And its own level does not raise the machine's.
    let mut after = noise.clone();
    after.lower_sensor_floor(m.learned_floor_ms);
    assert_eq!(after.sensor_floor_ms, Some(0.4));
}

#[test]
fn an_agent_without_the_sensor_is_a_clear_error() {
    let e = measure_model(
        &mut OldAgent {
            fake: Fake::steady(1.0),
            minor: 1,
        },
        b"x",
        "b",
        &BenchLimits::default(),
        &gated(10.0, Some(0.4)),
    )
    .expect_err("no readings");
    assert!(e.to_string().contains("protocol 1.2"), "{e}");
}

#[test]
fn gate_settings_are_checked() {
    assert!(gated(10.0, None).check().is_ok());
    for bad in [0.0, -5.0, 101.0, f64::NAN] {
        let e = gated(bad, None).check().expect_err("bad gate");
        assert!(e.to_string().contains("--sensor-gate"), "{e}");
    }
    let both = NoiseSettings {
        reference_block: Some("mbconv:k3e3:in4x8x8:out4:s1".parse().unwrap()),
        ..gated(10.0, None)
    };
    let e = both.check().expect_err("gate and reference");
    assert!(e.to_string().contains("--reference"), "{e}");
}

#[test]
fn a_reference_cancels_a_machine_that_changes_speed() {
    // The machine alternates between two speeds 1.45× apart, one per
    // benchmark request, as this VM did: separate medians of the same
    // block disagree by 45%, ratios to a reference run alongside agree.
    let key: BlockKey = "mbconv:k3e3:in8x8x8:out8:s1".parse().expect("key");
    let block = crate::onnx::write_block(&key, 0).expect("onnx");
    let mut dev = Fake {
        cost: Some(by_size),
        phase: |bench| if bench % 2 == 0 { 1.45 } else { 1.0 },
        ..Fake::steady(1.0)
    };
    let plain = NoiseSettings::default();
    let a = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &plain).unwrap();
    let b = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &plain).unwrap();
    let (hi, lo) = (
        a.summary.median.max(b.summary.median),
        a.summary.median.min(b.summary.median),
    );
    let spread = hi / lo - 1.0;
    assert!(spread > 0.4, "{} vs {}", a.summary.median, b.summary.median);
    assert!(a.paired.is_none());

    let reference: BlockKey = "mbconv:k3e3:in4x8x8:out4:s1".parse().expect("key");
    let paired = NoiseSettings {
        reference_block: Some(reference),
        ..NoiseSettings::default()
    };
    let a = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &paired).unwrap();
    let b = measure_model(&mut dev, &block, "b", &BenchLimits::default(), &paired).unwrap();
    let (ra, rb) = (a.paired.unwrap(), b.paired.unwrap());
    assert!((ra.ratio / rb.ratio - 1.0).abs() < 1e-9, "{ra:?} {rb:?}");
    let ref_onnx = crate::onnx::write_block(&reference, 0).unwrap();
    let want = by_size(&block) / by_size(&ref_onnx);
    assert!(
        (ra.ratio / want - 1.0).abs() < 1e-3,
        "{} vs {want}",
        ra.ratio
    );
    assert!(a.converged && b.converged);
    // The reference was loaded and unloaded with each model.
    assert_eq!(dev.loads.len(), 2 + 2 * 2);
    assert_eq!(dev.loads[2], ref_onnx);

    // An agent that ignores the reference (older than protocol 1.1) is
    // a clear error, not a table in mixed units.
    let mut deaf = OldAgent {
        fake: Fake::steady(1.0),
        minor: 0,
    };
    let e = measure_model(&mut deaf, &block, "b", &BenchLimits::default(), &paired)
        .expect_err("no reference samples");
    assert!(e.to_string().contains("no reference samples"), "{e}");
}
