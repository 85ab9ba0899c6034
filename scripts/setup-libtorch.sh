#!/usr/bin/env bash
# Installs the libtorch that `tch` links against into .cache/libtorch/ inside
# the repository, once. Idempotent: a present, complete cache is left alone.
#
# Why PyPI wheels with --no-deps instead of `pip install torch`: the torch
# wheel already contains libtorch (headers + shared libraries), which is all
# tch needs. A plain install drags in ~3.5 GB of CUDA/cuDNN/NCCL wheels that a
# CPU build never loads; only the CUDA runtime and CUPTI are needed at load
# time by libtorch_cpu.so. Result: ~1.25 GB in ~15 s instead of 4.7 GB.
#
# Usage: scripts/setup-libtorch.sh [--force] [--cuda]
#   --force  reinstall from scratch
#   --cuda   also install everything else the wheel depends on (cuDNN, cuBLAS,
#            NCCL, ... and torch's Python deps, ~3.5 GB more) into the same
#            cache: needed for `padnas … --device cuda` on a GPU machine, and
#            for `import torch` in Python (scripts/bench-train), because the
#            Python extension links libtorch_cuda.so.
# Env:   PADNAS_LIBTORCH_CACHE  install prefix (default: <repo>/.cache/libtorch)
set -euo pipefail

TORCH_VERSION=2.13.0
CUDA_RUNTIME_VERSION=13.0.96
CUPTI_VERSION=13.0.85

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PADNAS_LIBTORCH_CACHE:-$repo/.cache/libtorch}"
stamp="$cache/.padnas-installed-$TORCH_VERSION"

force=0
cuda=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --cuda) cuda=1 ;;
        *) echo "usage: $0 [--force] [--cuda]" >&2; exit 2 ;;
    esac
done
[[ $force == 1 ]] && rm -rf "$cache"
cuda_stamp="$cache/.padnas-cuda-$TORCH_VERSION"

python="${PYTHON:-python3}"

install_cuda_deps() {
    [[ -f "$cuda_stamp" ]] && return 0
    # The wheel's own Requires-Dist (Linux ones, no extras), so the versions
    # are exactly those torch was built against.
    mapfile -t reqs < <("$python" - "$cache/torch-$TORCH_VERSION.dist-info/METADATA" <<'PY'
import sys
for line in open(sys.argv[1]):
    if line.startswith("Requires-Dist:") and "extra ==" not in line:
        print(line.split(":", 1)[1].strip())
PY
)
    local tmp="$cache.cuda.$$"
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    echo "installing torch's CUDA and Python dependencies into $cache ..." >&2
    "$python" -m pip install --quiet --no-compile --target "$tmp" "${reqs[@]}"
    # Merge: nvidia/ is a namespace directory shared with the CPU install.
    cp -a -n "$tmp"/. "$cache"/
    rm -rf "$tmp"
    trap - EXIT
    touch "$cuda_stamp"
    echo "CUDA dependencies ready" >&2
}

if [[ -f "$stamp" && -f "$cache/torch/lib/libtorch_cpu.so" ]]; then
    echo "libtorch $TORCH_VERSION already in $cache" >&2
    [[ $cuda == 1 ]] && install_cuda_deps
    exit 0
fi

if ! command -v "$python" >/dev/null; then
    echo "error: python3 with pip is needed to fetch the torch wheel" >&2
    exit 1
fi

# Install into a sibling temp dir and rename, so an interrupted download never
# leaves a half cache that the stamp check would miss.
tmp="$cache.tmp.$$"
rm -rf "$tmp"
mkdir -p "$(dirname "$cache")"
trap 'rm -rf "$tmp"' EXIT

echo "installing torch==$TORCH_VERSION (no deps) into $cache ..." >&2
"$python" -m pip install --quiet --no-deps --no-compile --target "$tmp" \
    "torch==$TORCH_VERSION" \
    "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" \
    "nvidia-cuda-cupti==$CUPTI_VERSION"

touch "$tmp/.padnas-installed-$TORCH_VERSION"
rm -rf "$cache"
mv "$tmp" "$cache"
trap - EXIT
echo "libtorch ready: LIBTORCH=$cache/torch" >&2
[[ $cuda == 1 ]] && install_cuda_deps
exit 0
