#!/usr/bin/env bash
# The main job on the embedded default, with this machine's CPU as the target.
# Until the PAD-NAS pipeline (`padnas run configs/fmnist-local.yaml`) exists,
# this builds everything and measures the latency table of the Fashion-MNIST
# search space on the local target (resumable: rerun to continue).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-agent.sh
cargo build --release -p padnas
target/release/padnas agent hello --target local
target/release/padnas profile --target local --space configs/spaces/fmnist-small.yaml "$@"
