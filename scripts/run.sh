#!/usr/bin/env bash
# The main job on the embedded default: PAD-NAS on Fashion-MNIST with this
# machine's CPU as the target (`padnas run configs/fmnist-local.yaml`). Rerun
# to resume an interrupted run; extra arguments go to `padnas run` (e.g.
# `--until final`). The result is runs/fmnist-local/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The agent is what gets timed: release build. The host binary uses the dev
# profile, whose dependencies (libtorch bindings, tract) are optimised anyway
# (Cargo.toml): training time is spent in libtorch, and a fat-LTO release
# build of the host would add minutes to a cold run.
scripts/build-agent.sh
cargo build -p padnas
target/debug/padnas run configs/fmnist-local.yaml "$@"
