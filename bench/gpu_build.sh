#!/usr/bin/env bash
# Builds only what the GPU benchmarks need (keel, its sibling programs and the GPU unit tests) into
# build-gpu/ on a GPU node without network, through scripts/setup.sh's keel_gpu_node_build with
# targets named: faster than the whole tree.
# Usage: bash bench/gpu_build.sh LOG [extra targets...]
set -uo pipefail
log="${1:?usage: gpu_build.sh LOG [targets...]}"; shift
cd "$(dirname "$0")/.."
source scripts/setup.sh
set +e
keel_gpu_node_build "$log" keel keel-worker keel-prepare keel-coordinator test_optim test_model "$@" || exit 1
grep -E "Keel: LibTorch" "$log" || true
