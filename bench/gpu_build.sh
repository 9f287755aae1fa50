#!/usr/bin/env bash
# Builds only what the GPU benchmarks need (keel, its sibling programs and the GPU unit tests) into
# build-gpu/ on a GPU node without network, as scripts/setup.sh's keel_gpu_node_build does but
# without the whole tree (the fuzzers' sub-build, say, is not needed to benchmark).
# Usage: bash bench/gpu_build.sh LOG [extra targets...]
set -uo pipefail
log="${1:?usage: gpu_build.sh LOG [targets...]}"; shift
cd "$(dirname "$0")/.."
export KEEL_DEB_DIR="$PWD/.debs" KEEL_SKIP_APT=1 KEEL_BUILD_DIR="$PWD/build-gpu"
source scripts/setup.sh
set +e
keel_unpack_local_debs
torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
{
  [ -f build-gpu/build.ninja ] || cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_PREFIX_PATH=${KEEL_EXTRA_PREFIX};${torch_prefix}"
  cmake --build build-gpu -j "$(nproc)" --target keel keel-worker keel-prepare keel-coordinator \
    test_optim test_model "$@"
} > "$log" 2>&1 || { grep -E "error|FAILED" "$log" | head -20; tail -20 "$log"; exit 1; }
grep -E "Keel: LibTorch" "$log" || true
