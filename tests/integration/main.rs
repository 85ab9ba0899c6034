//! padnas integration tests: one binary that drives the real `padnas` and
//! `padnas-agent` binaries (release agents built by scripts/build-agent.sh,
//! which scripts/test.sh runs first).

mod agent;
mod cli;
mod export;
mod hostile;
mod int8_export;
mod latency;
mod mcu;
mod pipeline;
mod preauth;
mod silent;
mod ssh;
mod util;
