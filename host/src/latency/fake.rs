//! Test doubles for the agent: [`Fake`], a scripted [`BenchAgent`] that can
//! drop its link, refuse models, or run on a machine whose speed changes.

use padnas_agent::ClientError;
use padnas_agent::proto::{AgentInfo, BenchLimits, BenchStats, ErrorCode, ErrorReply, ModelLoaded};

use super::link::BenchAgent;

/// A fake agent: every bench returns samples from `draw`; it drops the
/// link (as a dead child would) after `drop_after` benches. With `cost`,
/// a model's samples are instead `cost(its ONNX bytes)` times the
/// machine speed `phase(bench number)`, for model and reference alike.
pub(crate) struct Fake {
    pub draw: Box<dyn FnMut(usize) -> f64>,
    pub drop_after: Option<usize>,
    pub benches: usize,
    pub loads: Vec<Vec<u8>>,
    pub bad_model: bool,
    pub cost: Option<fn(&[u8]) -> f64>,
    pub phase: fn(usize) -> f64,
    /// The machine's slowdown at each tick (one tick per timed run
    /// and one per sensor reading), for model and sensor alike: a
    /// neighbour that comes and goes. The sensor reads 0.4 ms × it.
    pub machine: fn(usize) -> f64,
    pub ticks: usize,
    /// Sensor requests seen.
    pub sensed: usize,
}

impl Fake {
    pub(crate) fn steady(ms: f64) -> Fake {
        Fake {
            draw: Box::new(move |i| ms * (1.0 + 0.001 * (i % 7) as f64)),
            drop_after: None,
            benches: 0,
            loads: Vec::new(),
            bad_model: false,
            cost: None,
            phase: |_| 1.0,
            machine: |_| 1.0,
            ticks: 0,
            sensed: 0,
        }
    }

    fn samples(&mut self, handle: u32, n: usize) -> Vec<f64> {
        match self.cost {
            Some(cost) => {
                let c = cost(&self.loads[handle as usize - 1]);
                let speed = (self.phase)(self.benches);
                (0..n)
                    .map(|i| c * speed * (1.0 + 0.001 * (i % 7) as f64))
                    .collect()
            }
            None => (0..n).map(|i| (self.draw)(i)).collect(),
        }
    }
}

pub(crate) fn info() -> AgentInfo {
    AgentInfo {
        protocol: 1,
        protocol_minor: 0,
        agent_version: "0.1.0".into(),
        tract_version: "0.23.9".into(),
        arch: "x86_64".into(),
        os: "linux".into(),
        cpu: "Test CPU".into(),
        cores: 2,
        governor: Some("performance".into()),
        cur_freq_khz: Some(2_000_000),
        temperature_c: None,
        features: vec!["bench".into()],
        mcu: None,
    }
}

impl BenchAgent for Fake {
    /// Recorded like an ONNX model, as its debug text, so cost functions
    /// see one byte string per block either way.
    fn load_int8(
        &mut self,
        block: padnas_agent::proto::Int8Block,
    ) -> Result<ModelLoaded, ClientError> {
        self.load_model(format!("{block:?}").as_bytes())
    }

    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
        if self.bad_model {
            return Err(ClientError::Remote(ErrorReply::new(
                ErrorCode::BadModel,
                "no",
            )));
        }
        self.loads.push(onnx.to_vec());
        Ok(ModelLoaded {
            handle: self.loads.len() as u32,
            input_shape: vec![1],
            output_shape: vec![1],
            load_ms: 1.5,
            memory: None,
        })
    }

    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        if self.drop_after.is_some_and(|n| self.benches >= n) {
            // What a dead child agent looks like: the stream ends.
            return Err(ClientError::Closed);
        }
        self.benches += 1;
        assert!(limits.return_samples);
        let n = limits.max_runs as usize;
        let mut samples = self.samples(handle, n);
        // Reading, k runs, reading, …, reading: one tick each.
        let k = sensor_every.unwrap_or(1) as usize;
        let mut readings = Vec::with_capacity(n / k + 2);
        let mut tick = || {
            self.ticks += 1;
            (self.machine)(self.ticks - 1)
        };
        readings.push(0.4 * tick());
        for (i, x) in samples.iter_mut().enumerate() {
            if i > 0 && i % k == 0 {
                readings.push(0.4 * tick());
            }
            *x *= tick();
        }
        readings.push(0.4 * tick());
        if sensor_every.is_some() {
            self.sensed += 1;
        }
        let sensor_samples_ms = sensor_every.map(|_| readings);
        let reference_samples = reference.map(|r| {
            if self.cost.is_some() {
                self.samples(r, n)
            } else {
                vec![1.0; n]
            }
        });
        let s = padnas_agent::stats::summarize(&samples).expect("samples");
        Ok(BenchStats {
            runs: s.n as u32,
            warmup_runs: limits.warmup_runs,
            min_ms: s.min,
            median_ms: s.median,
            mean_ms: s.mean,
            p10_ms: s.p10,
            p90_ms: s.p90,
            max_ms: s.max,
            stddev_ms: s.stddev,
            total_ms: s.total,
            threads: 1,
            pinned_cpu: None,
            samples_ms: Some(samples),
            wall_ms: None,
            timed_wall_ms: None,
            reference_samples_ms: reference_samples,
            reference_median_ms: None,
            ratio_median: None,
            sensor_samples_ms,
            cycles: None,
        })
    }

    fn unload(&mut self, _handle: u32) -> Result<(), ClientError> {
        Ok(())
    }
}
