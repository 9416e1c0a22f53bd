#!/usr/bin/env bash
# Builds the C++ core (the _core extension) with AddressSanitizer + UndefinedBehaviorSanitizer (gcc)
# and runs the tests that drive it: GGUF parsing (malformed and hostile files), quant and kernel
# references, the forward pass, KV cache, local transport and pipeline, greedy speculation. MPI jobs
# and real-model tests stay out (time; the MPICH libraries are not instrumented), and so do the transformers
# parity tests (torch under the ASan runtime; the forward pass is covered by the reference tests). Any sanitizer report
# fails the run (halt_on_error, -fno-sanitize-recover). Called by .ci/run; usable by hand:
#     scripts/sanitize.sh [extra pytest args]
# Needs g++ (its libasan/libubsan come with it on Debian), python3 with the package's test dependencies
# installed, and cmake, ninja and pybind11 (installed from PyPI here when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=$root/build/sanitize
mkdir -p "$bdir"
py=${PYTHON:-python3}
for mod in cmake ninja pybind11; do
  "$py" -c "import $mod" 2>/dev/null || "$py" -m pip install -q "$mod"
done
export PATH="$("$py" -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR))'):$("$py" -c 'import ninja, os; print(ninja.BIN_DIR)'):$PATH"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [ ! -f "$bdir/build.ninja" ]; then
  cmake -S "$root" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v "$py")" >"$bdir.configure.log" 2>&1 || { cat "$bdir.configure.log" >&2; exit 1; }
fi
cmake --build "$bdir" --target _core -j "${JOBS:-$(nproc)}"
# An importable package: the sources plus the instrumented extension (as scripts/dev-build.sh does).
pkg=$bdir/pkg/pipeinfer
rm -rf "$bdir/pkg"; mkdir -p "$pkg"
for f in "$root"/pipeinfer/*; do ln -s "$f" "$pkg/"; done
cp "$bdir"/csrc/_core*.so "$pkg/"
# The interpreter is not instrumented: the ASan runtime must be loaded first. Python's own allocations
# are not leaks worth reporting here (detect_leaks=0).
# libstdc++ is preloaded too: the interpreter does not link it, and ASan resolves the real __cxa_throw
# when it starts (else the first C++ exception aborts with "CHECK failed: real___cxa_throw").
# Reports go to files (pytest captures stderr, and a halted process never shows it): printed below.
rm -f "$bdir"/asan-report.*
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$bdir/asan-report"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$bdir/asan-report"
# Run from the build folder, so that the checkout's uninstrumented pipeinfer/ is not on sys.path.
cd "$bdir"
t="$root/tests"
PYTHONPATH="$bdir/pkg" "$py" -m pytest -q -p no:randomly -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" \
  -m "not mpi and not realmodel" "$t/gguf" "$t/quant" "$t/kernels" "$t/model" "$t/runtime/test_pipeline_local.py" \
  "$t/transport/test_transport_local.py" "$t/chat" "$t/speculation/test_greedy_equality.py" \
  --ignore "$t/model/test_llamacpp_reference.py" --ignore "$t/model/test_hf_parity.py" "$@" || status=$?
unset LD_PRELOAD
if ls "$bdir"/asan-report.* >/dev/null 2>&1; then
  cat "$bdir"/asan-report.* >&2
  exit 1
fi
exit "${status:-0}"
