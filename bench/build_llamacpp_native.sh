#!/usr/bin/env bash
# Builds NATIVE llama.cpp (the anchor of bench/vs_native.py) outside the repository: the llama.cpp that
# llama-cpp-python 0.3.36 vendors, compiled for this CPU (GGML_NATIVE=ON, no BLAS), only the tools the
# benchmarks use. Nothing of llama.cpp enters this repository. About 10-15 minutes on 2 cores.
#
#   bench/build_llamacpp_native.sh [DEST]      (default DEST: /work/llamacpp-native)
#   -> DEST/bin/llama-bench, llama-speculative-simple, llama-server
set -euo pipefail
dest=${1:-/work/llamacpp-native}
version=0.3.36
mkdir -p "$dest"
cd "$dest"
if [ ! -f "dl/llama_cpp_python-$version.tar.gz" ]; then
  python3 -m pip download --no-deps --no-build-isolation --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d dl
fi
tar xzf "dl/llama_cpp_python-$version.tar.gz"
cd "llama_cpp_python-$version/vendor/llama.cpp"
nice -n 15 cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_BLAS=OFF \
  -DCMAKE_BUILD_TYPE=Release
nice -n 15 cmake --build build -j "${JOBS:-2}" --target llama-bench llama-speculative-simple llama-server
ln -sfn "$PWD/build/bin" "$dest/bin"
echo "$dest/bin/llama-bench"
