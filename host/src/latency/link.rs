//! The host's side of an agent, as measuring sees it: the [`BenchAgent`]
//! calls (implemented by the wire [`Client`], and by fakes in tests), a
//! greeted [`Connection`], and the [`AgentLink`] that reopens a connection
//! when it drops and runs the interrupted operation again.

use std::thread;
use std::time::Duration;

use padnas_agent::ClientError;
use padnas_agent::client::Client;
use padnas_agent::proto::{AgentInfo, BenchLimits, BenchStats, Int8Block, ModelLoaded};

use super::LatencyError;

/// A block as an agent runs it: ONNX for the Linux agent (tract), an int8
/// block description for the microcontroller firmware.
#[derive(Debug, Clone, Copy)]
pub enum BlockModel<'a> {
    /// ONNX bytes.
    Onnx(&'a [u8]),
    /// Shape and seed of an int8 block.
    Int8(Int8Block),
}

/// What the profiler needs from an agent; [`Client`] implements it, tests
/// use fakes (a device that drops, one with scripted samples).
pub trait BenchAgent {
    /// Loads an ONNX model with its declared (concrete) input shape.
    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError>;
    /// Loads an int8 block (microcontroller agents).
    fn load_int8(&mut self, block: Int8Block) -> Result<ModelLoaded, ClientError>;
    /// Loads either kind.
    fn load(&mut self, model: BlockModel<'_>) -> Result<ModelLoaded, ClientError> {
        match model {
            BlockModel::Onnx(bytes) => self.load_model(bytes),
            BlockModel::Int8(block) => self.load_int8(block),
        }
    }
    /// Benchmarks a loaded model, run for run against the loaded model
    /// `reference` when given, with a sensor reading every `sensor_every`
    /// runs when given (see [`NoiseSettings::sensor_gate_pct`](super::NoiseSettings::sensor_gate_pct)).
    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError>;
    /// Drops a loaded model.
    fn unload(&mut self, handle: u32) -> Result<(), ClientError>;
    /// Ends the session politely; errors are of no interest by then.
    fn shutdown(&mut self) {}
}

impl BenchAgent for Client {
    fn load_model(&mut self, onnx: &[u8]) -> Result<ModelLoaded, ClientError> {
        Client::load_model(self, onnx, None)
    }

    fn load_int8(&mut self, block: Int8Block) -> Result<ModelLoaded, ClientError> {
        Client::load_int8_block(self, block)
    }

    fn bench(
        &mut self,
        handle: u32,
        reference: Option<u32>,
        sensor_every: Option<u32>,
        limits: &BenchLimits,
    ) -> Result<BenchStats, ClientError> {
        Client::bench_request(
            self,
            padnas_agent::proto::BenchRequest {
                handle,
                limits: limits.clone(),
                reference,
                sensor_every,
            },
        )
    }

    fn unload(&mut self, handle: u32) -> Result<(), ClientError> {
        Client::unload(self, handle)
    }

    fn shutdown(&mut self) {
        let _ = Client::shutdown(self);
    }
}

/// A greeted agent.
pub struct Connection {
    /// Requests go here.
    pub device: Box<dyn BenchAgent>,
    /// What it said in Hello.
    pub info: AgentInfo,
}

/// Opens a fresh [`Connection`].
pub type Connector<'a> = dyn FnMut() -> Result<Connection, LatencyError> + 'a;

/// A connection that is re-opened when it drops.
///
/// [`AgentLink::run`] runs an operation; when it fails because the link is gone
/// (not because the agent refused the request), a fresh session is opened and
/// the operation runs again from the start, up to `max_reconnects` times in a
/// row.
pub struct AgentLink<'a> {
    conn: Option<Connection>,
    connect: Box<Connector<'a>>,
    max_reconnects: u32,
    backoff: Duration,
    generation: u64,
    fresh: Vec<AgentInfo>,
    stop_agent: bool,
}

impl<'a> AgentLink<'a> {
    /// A link starting on `first`, re-opened with `connect`.
    pub fn new(
        first: Connection,
        connect: Box<Connector<'a>>,
        max_reconnects: u32,
    ) -> AgentLink<'a> {
        AgentLink {
            conn: Some(first),
            connect,
            max_reconnects,
            backoff: Duration::from_millis(500),
            generation: 0,
            fresh: Vec::new(),
            stop_agent: true,
        }
    }

    /// Whether [`AgentLink::shutdown`] tells the agent to exit (true by default).
    /// False for agents this host did not start (tcp, serial): they keep
    /// serving other hosts after this session.
    pub fn with_stop_agent(mut self, stop: bool) -> Self {
        self.stop_agent = stop;
        self
    }

    /// Sets the pause before each reconnection (tests use zero).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sessions opened so far after the first.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Hellos of sessions opened since the last call (reconnections), so the
    /// caller can record and check them.
    pub fn take_reconnected(&mut self) -> Vec<AgentInfo> {
        std::mem::take(&mut self.fresh)
    }

    /// Runs `op` on the device, reconnecting and retrying when the link drops.
    pub fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut dyn BenchAgent) -> Result<T, LatencyError>,
    ) -> Result<T, LatencyError> {
        let mut failures = 0u32;
        loop {
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => {
                    if !self.backoff.is_zero() {
                        thread::sleep(self.backoff * failures);
                    }
                    match (self.connect)() {
                        Ok(c) => {
                            tracing::info!("reconnected to the agent ({})", c.info.cpu);
                            self.generation += 1;
                            self.fresh.push(c.info.clone());
                            self.conn.insert(c)
                        }
                        Err(e) => {
                            if failures >= self.max_reconnects {
                                return Err(LatencyError::LinkLost {
                                    attempts: failures,
                                    last: Box::new(e),
                                });
                            }
                            failures += 1;
                            tracing::warn!(
                                "reconnecting failed ({failures}/{}): {e}",
                                self.max_reconnects
                            );
                            continue;
                        }
                    }
                }
            };
            match op(conn.device.as_mut()) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_link_failure() => {
                    // Dropping the connection stops a spawned agent for good.
                    self.conn = None;
                    if failures >= self.max_reconnects {
                        return Err(LatencyError::LinkLost {
                            attempts: failures,
                            last: Box::new(e),
                        });
                    }
                    failures += 1;
                    tracing::warn!(
                        "the link to the agent dropped ({e}); reconnecting ({failures}/{})",
                        self.max_reconnects
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the session: the agent is told to exit only when it is ours
    /// ([`AgentLink::with_stop_agent`]); otherwise the connection is just dropped.
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.conn.take()
            && self.stop_agent
        {
            c.device.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::latency::NoiseSettings;
    use crate::latency::fake::{Fake, info};
    use crate::latency::measure::measure_model;

    #[test]
    fn link_reconnects_then_gives_up() {
        let mut dropping = Fake::steady(1.0);
        dropping.drop_after = Some(0);
        let mut spare: VecDeque<Fake> = VecDeque::from([Fake::steady(1.0)]);
        let mut opened = 0;
        let connect = move || {
            opened += 1;
            spare
                .pop_front()
                .map(|f| Connection {
                    device: Box::new(f) as Box<dyn BenchAgent>,
                    info: info(),
                })
                .ok_or_else(|| LatencyError::InvalidArgument(format!("no agent ({opened})")))
        };
        let mut link = AgentLink::new(
            Connection {
                device: Box::new(dropping),
                info: info(),
            },
            Box::new(connect),
            2,
        )
        .with_backoff(Duration::ZERO);
        let noise = NoiseSettings::default();
        let limits = BenchLimits::default();
        let m = link
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect("second session works");
        assert!(m.converged);
        assert_eq!(link.generation(), 1);
        assert_eq!(link.take_reconnected().len(), 1);

        // Now the good session drops too and no agent comes back.
        let mut link2 = AgentLink::new(
            Connection {
                device: Box::new(Fake {
                    drop_after: Some(0),
                    ..Fake::steady(1.0)
                }),
                info: info(),
            },
            Box::new(|| Err(LatencyError::InvalidArgument("unreachable".into()))),
            2,
        )
        .with_backoff(Duration::ZERO);
        let e = link2
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect_err("lost");
        assert!(
            matches!(e, LatencyError::LinkLost { attempts: 2, .. }),
            "{e}"
        );

        // A refused request is not a drop: no reconnect, the error surfaces.
        let mut link3 = AgentLink::new(
            Connection {
                device: Box::new(Fake {
                    bad_model: true,
                    ..Fake::steady(1.0)
                }),
                info: info(),
            },
            Box::new(|| -> Result<Connection, LatencyError> { panic!("must not reconnect") }),
            2,
        );
        let e = link3
            .run(|d| measure_model(d, b"x", "b", &limits, &noise))
            .expect_err("refused");
        assert!(
            matches!(e, LatencyError::Device { .. }) && !e.is_link_failure(),
            "{e}"
        );
    }
}
