#!/usr/bin/env bash
# Developer build without pip: builds the extension into build/dev-NAME and assembles an importable
# package at build/dev-NAME/pkg/pipeinfer (symlinks to the sources + the built _core). Prints the
# PYTHONPATH to use:   PYTHONPATH=$(scripts/dev-build.sh me) pytest tests/...
set -euo pipefail
name=${1:-default}
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=$root/build/dev-$name
mkdir -p "$bdir"
if [ ! -f "$bdir/build.ninja" ]; then
  cmake -S "$root" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >"$bdir/configure.log" 2>&1 \
    || { cat "$bdir/configure.log" >&2; exit 1; }
fi
cmake --build "$bdir" -j "${JOBS:-2}" >&2
pkg=$bdir/pkg/pipeinfer
rm -rf "$bdir/pkg"; mkdir -p "$pkg"
for f in "$root"/pipeinfer/*; do ln -s "$f" "$pkg/"; done
cp "$bdir"/csrc/_core*.so "$pkg/"
echo "$bdir/pkg"
