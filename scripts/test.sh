#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Installs what is
# missing, builds the release agents that the integration tests drive (this
# machine's, and the ARM ones run under qemu-user), then checks formatting and
# lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/setup.sh
# This machine's agent as shipped (its timings are real); the ARM agents in
# the quicker-to-build `emulated` profile, since under qemu only their
# answers count, not their speed.
scripts/build-agent.sh
scripts/build-agent.sh --emulated \
  aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
echo "test.sh: done in $(( $(date +%s) - start )) s" >&2
