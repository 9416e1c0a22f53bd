#!/usr/bin/env bash
# Coverage-guided fuzzing of the GGUF reader (libFuzzer, C++) and the tokenizer (atheris, Python).
#
#   fuzz/run.sh build                  build build/fuzz/gguf_fuzzer (clang, -fsanitize=fuzzer,address,undefined)
#   fuzz/run.sh gguf MINUTES [ARGS]    fuzz the GGUF reader for MINUTES, one core (extra ARGS go to libFuzzer)
#   fuzz/run.sh tokenizer MINUTES      fuzz the tokenizer for MINUTES, one core (atheris, `pip install atheris`)
#   fuzz/run.sh regress                run every seed and every saved finding once through both targets (CI)
#
# Needs clang >= 16 with its fuzzer and sanitizer runtimes (clang 14 lacks __builtin_cpu_supports("f16c")):
# on Debian 12 `apt-get install clang-19 libclang-rt-19-dev` ($CLANGXX overrides the compiler).
# Corpora: fuzz/corpus/<target> holds the small committed seeds (fuzz/make_seeds.py writes them);
# fuzz/regressions/<target> holds inputs that once found a bug (each has a test in tests/). A run works
# on a copy in build/fuzz/corpus-<target> (new interesting inputs go there, not into the repository)
# and writes crashing inputs to build/fuzz/findings-<target>/. Runs under `nice -n 19`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/fuzz
cmd=${1:-}
mkdir -p "$out"
cxx=${CLANGXX:-$(command -v clang++-19 || command -v clang++)}

build_gguf() {
  local flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
  if [ ! -f "$out/core/build.ninja" ]; then
    cmake -S "$root" -B "$out/core" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
      -DCMAKE_CXX_FLAGS="$flags" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >"$out/configure.log" 2>&1 \
      || { cat "$out/configure.log" >&2; exit 1; }
  fi
  nice -n 19 cmake --build "$out/core" --target pipeinfer_core -j "${JOBS:-1}" >&2
  nice -n 19 "$cxx" -std=c++17 $flags -fsanitize=fuzzer -I"$root/csrc" "$root/fuzz/gguf_fuzzer.cpp" \
    "$out/core/csrc/libpipeinfer_core.a" -lpthread -o "$out/gguf_fuzzer"
}

seed_dirs() {  # committed seeds and regressions of target $1 that exist
  for d in "$root/fuzz/corpus/$1" "$root/fuzz/regressions/$1"; do [ -d "$d" ] && echo "$d"; done
}

run_gguf() {
  local minutes=$1; shift
  [ -x "$out/gguf_fuzzer" ] || build_gguf
  mkdir -p "$out/corpus-gguf" "$out/findings-gguf"
  # -rss_limit_mb / -malloc_limit_mb: a file may not make the reader allocate much more than its size.
  nice -n 19 "$out/gguf_fuzzer" "$out/corpus-gguf" $(seed_dirs gguf) -max_total_time=$((minutes * 60)) \
    -max_len=65536 -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 \
    -artifact_prefix="$out/findings-gguf/" "$@"
}

run_tokenizer() {
  local minutes=$1; shift
  mkdir -p "$out/corpus-tokenizer" "$out/findings-tokenizer"
  nice -n 19 python3 "$root/fuzz/tokenizer_fuzzer.py" "$out/corpus-tokenizer" $(seed_dirs tokenizer) \
    -max_total_time=$((minutes * 60)) -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/findings-tokenizer/" "$@"
}

regress() {
  [ -x "$out/gguf_fuzzer" ] || build_gguf
  local files
  files=$(find $(seed_dirs gguf) -type f)
  # shellcheck disable=SC2086
  "$out/gguf_fuzzer" -runs=0 -rss_limit_mb=1024 -malloc_limit_mb=256 $files
  files=$(find $(seed_dirs tokenizer) -type f)
  # shellcheck disable=SC2086
  python3 "$root/fuzz/tokenizer_fuzzer.py" -runs=0 -rss_limit_mb=2048 $files
}

case "$cmd" in
  build) build_gguf ;;
  gguf) shift; run_gguf "${1:?minutes}" "${@:2}" ;;
  tokenizer) shift; run_tokenizer "${1:?minutes}" "${@:2}" ;;
  regress) regress ;;
  *) sed -n 2,14p "$0" >&2; exit 2 ;;
esac
