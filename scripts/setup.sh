#!/usr/bin/env bash
# Installs what padnas needs on a fresh Debian machine, skipping what is there:
# cross compilers and qemu-user for the ARM agents, qemu-system-arm for the
# Cortex-M firmware agent (mps2 boards), socat for the serial tests,
# openssh-server (its sshd runs on 127.0.0.1 in the ssh tests),
# the Fashion-MNIST data set, onnxruntime (pip, for a parity test), the rustup
# targets, and libtorch (pip wheel).
# Idempotent and quiet when nothing is missing. Used by scripts/test.sh and
# scripts/run.sh, so the README's two commands work on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf
  libc6-dev-armhf-cross qemu-user qemu-system-arm socat dataset-fashion-mnist python3-pip
  openssh-server)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# onnxruntime + numpy: the host crate's export parity test runs the exported
# network in onnxruntime too (scripts/ort_infer.py), an engine independent of
# tract. Into the virtualenv when python3 is one, else --user (never into the
# system python); Debian's python refuses --user without
# --break-system-packages (PEP 668), which then touches only ~/.local.
if ! python3 -c 'import onnxruntime, numpy' 2>/dev/null; then
  echo "setup: pip install onnxruntime numpy" >&2
  pip_where=(--user)
  python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' && pip_where=()
  python3 -m pip install --quiet ${pip_where[@]+"${pip_where[@]}"} onnxruntime numpy >&2 \
    || python3 -m pip install --quiet ${pip_where[@]+"${pip_where[@]}"} --break-system-packages onnxruntime numpy >&2
fi

RUST_TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl
  thumbv7em-none-eabihf thumbv8m.main-none-eabihf)
installed=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" || { echo "setup: rustup target add $t" >&2; rustup target add "$t" >&2; }
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt >&2

if [ -x scripts/setup-libtorch.sh ]; then
  scripts/setup-libtorch.sh
fi
