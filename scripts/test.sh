#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Installs what is
# missing, builds the agents that the integration tests drive (this
# machine's, and the aarch64 one run under qemu-user), then checks formatting
# and lints and runs every test. Prints the time of each phase.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
phase() { echo "test.sh: $1 done at +$(( $(date +%s) - start )) s" >&2; }
scripts/setup.sh
phase setup
# The tests check what the agent answers, not how fast, so this machine's
# agent is the dev-profile build (dependencies optimised, see Cargo.toml),
# which `cargo build` makes almost for free next to the host: the fat-LTO
# release agent cost CI about a quarter of its time. PADNAS_AGENT_PROFILE
# makes padnas (and the tests) run it; it says "unoptimised" in Hello and
# every figure it gives is labelled so. scripts/run.sh and the benchmarks
# build and use the release agent.
export PADNAS_AGENT_PROFILE=debug
# A cold run gains nothing from incremental compilation, whose caches
# cost gigabytes of the CI machine's disk.
export CARGO_INCREMENTAL=0
# padnas without libtorch (feature `train` off: agent, profile, latency,
# verify), so that build keeps working. Before the full build, which then
# leaves the full binaries in target/debug for the tests.
cargo build -p padnas --no-default-features
phase "build without libtorch"
cargo build --workspace
phase "debug build (host and agent)"
# The protocol crate without std, for a Cortex-M: the firmware agent shares it.
cargo build -p padnas-proto -p padnas-int8 --no-default-features --features padnas-proto/binary \
  --target thumbv7em-none-eabihf
# The protocol's tests as the firmware builds it: its CRC (small-crc)
# against the host's, binary headers only (a JSON one refused with its code).
cargo test -p padnas-proto --no-default-features --features std,binary,small-crc --lib
phase "no_std protocol and int8 kernels for thumbv7em"
# The aarch64 agent in the `emulated` profile (no LTO): under qemu only its
# answers count. (armv7 and musl: see the note in tests/integration/agent.rs.)
scripts/build-agent.sh --emulated aarch64-unknown-linux-gnu
phase "aarch64 agent"
# The microcontroller firmware (Cortex-M4F, run under qemu-system-arm by the
# tests; the M33 build is checked to compile), its formatting and lints.
scripts/build-agent.sh thumbv7em-none-eabihf thumbv8m.main-none-eabihf
# The RTT build (a debug probe instead of the UART) is linted, not run:
# nothing here has a probe.
(cd device-agent/mcu && cargo fmt -- --check && cargo clippy --release -- -D warnings \
  && cargo clippy --release --features rtt -- -D warnings)
phase "firmware"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The probe-rs transport (feature off by default: a large build, and no
# probe here), linted so that it keeps compiling.
cargo clippy -p padnas --no-default-features --features probe-rs -- -D warnings
phase "fmt and clippy"
cargo test --workspace
phase "tests"
# The criterion benchmarks (host/benches, device-agent/benches), built in the
# test profile and run once each in criterion's test mode (no timing), so they
# stay compilable and correct. Not `cargo bench --no-run`: that builds the
# bench profile, i.e. release with fat LTO, a quarter hour of CI for a compile
# check. `--bench '*'`, not `--benches`, which also selects the lib and bins
# and would run their tests again.
cargo test --workspace --bench '*'
phase "benchmarks (test profile, run once)"
# Interrupted runs: five SIGKILLs at seeded moments of the tiny job (two of
# them kill its agent first), each rerun to the end and compared with an
# uninterrupted run (README: the figure for 50).
scripts/fault-run configs/ci-tiny/job.yaml 5 1
phase "fault-run K=5"
echo "test.sh: done in $(( $(date +%s) - start )) s" >&2
