#!/usr/bin/env bash
# CI step: the AArch64 NEON kernels, bit-exact with the scalar reference. Cross-compiles the quant
# sources and tests/native/kernel-check.cpp with Debian's g++-aarch64-linux-gnu and runs the checker
# under qemu-user twice: on a CPU without the dot-product extension (Cortex-A53: levels scalar, neon)
# and on one with it (qemu's "max": scalar, neon, dotprod), so both run-time choices are exercised.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build/arm-kernels}
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null
fi
mkdir -p "$out"
cxx="aarch64-linux-gnu-g++ -std=c++17 -O2 -ffp-contract=off -Wall -Wextra -Wno-unused-parameter -DPIPEINFER_ARM=1 -I$src/csrc"
objs=()
pids=()
build() {  # build SOURCE [EXTRA FLAGS]: one object per source, in parallel
  local o="$out/$(basename "${1%.cpp}").o"
  $cxx "${@:2}" -c "$1" -o "$o" &
  pids+=($!)
  objs+=("$o")
}
for f in "$src"/csrc/common/error.cpp "$src"/csrc/quant/*.cpp "$src"/tests/native/kernel-check.cpp; do build "$f"; done
build "$src/csrc/quant/arch/arm-neon.cpp" -march=armv8-a
build "$src/csrc/quant/arch/arm-neon-dotprod.cpp" -march=armv8.2-a+dotprod
for p in "${pids[@]}"; do wait "$p"; done
aarch64-linux-gnu-g++ -static "${objs[@]}" -o "$out/kernel-check"
echo "arm-kernels: Cortex-A53 (no dot product)"
qemu-aarch64 -cpu cortex-a53 "$out/kernel-check"
echo "arm-kernels: max (dot product)"
qemu-aarch64 -cpu max "$out/kernel-check"
