#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Installs what is
# missing, builds the release agents that the integration tests drive (this
# machine's, and the ARM ones run under qemu-user), then checks formatting and
# lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
# This machine's agent as shipped (its timings are real); the aarch64 agent in
# the quicker-to-build `emulated` profile, since under qemu only its answers
# count, not its speed. (armv7 and musl: see the note in tests/integration/agent.rs.)
scripts/build-agent.sh
scripts/build-agent.sh --emulated aarch64-unknown-linux-gnu
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
echo "test.sh: done in $(( $(date +%s) - start )) s" >&2
