#!/usr/bin/env bash
# Builds the release agent (opt-level 3, fat LTO, stripped) for one or more
# target triples; with no argument, for this machine.
#   scripts/build-agent.sh aarch64-unknown-linux-gnu      # Raspberry Pi 4/5, 64-bit OS
#   scripts/build-agent.sh armv7-unknown-linux-gnueabihf  # Pi 2/3/Zero 2, 32-bit OS
#   scripts/build-agent.sh aarch64-unknown-linux-musl     # static: Android (adb), old glibc
#   scripts/build-agent.sh thumbv7em-none-eabihf          # Cortex-M4F/M7 firmware (mps2-an386)
#   scripts/build-agent.sh thumbv8m.main-none-eabihf      # Cortex-M33 firmware (mps2-an505)
# Output: target/release/padnas-agent (this machine) or
#         target/<triple>/release/padnas-agent;
#         the firmware: target/mcu/<triple>/release/padnas-mcu-agent (an ELF,
#         always the size-optimised release; --emulated changes nothing).
#
#   scripts/build-agent.sh --emulated TRIPLE...
# builds the `emulated` profile instead (no LTO: quicker to build, for the
# qemu-user targets whose timings mean nothing): target/<triple>/emulated/.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
profile=release
if [ "${1:-}" = "--emulated" ]; then profile=emulated; shift; fi
[ $# -gt 0 ] || set -- "$host"
for triple in "$@"; do
  case "$triple" in
    "$host")
      cargo build -p padnas-agent --profile "$profile"
      out=target/$profile/padnas-agent ;;
    aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf)
      cargo build -p padnas-agent --profile "$profile" --target "$triple"
      out=target/$triple/$profile/padnas-agent ;;
    aarch64-unknown-linux-musl)
      # tract-linalg compiles ARM assembly with the target's C compiler; the
      # gnu cross gcc assembles it fine and Rust links musl statically.
      CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
        cargo build -p padnas-agent --profile "$profile" --target "$triple"
      out=target/$triple/$profile/padnas-agent ;;
    thumbv7em-none-eabihf|thumbv8m.main-none-eabihf)
      # The firmware is a workspace of its own (device-agent/mcu), built
      # into target/mcu by its .cargo/config.toml.
      (cd device-agent/mcu && cargo build --release --target "$triple")
      out=target/mcu/$triple/release/padnas-mcu-agent ;;
    *)
      echo "build-agent: unsupported triple $triple (supported: $host, aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf, aarch64-unknown-linux-musl, thumbv7em-none-eabihf, thumbv8m.main-none-eabihf)" >&2
      exit 2 ;;
  esac
  echo "build-agent: $out ($(du -h "$out" | cut -f1))" >&2
done
