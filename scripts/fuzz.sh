#!/usr/bin/env bash
# Runs Keel's libFuzzer targets (fuzz/) for longer than the few seconds CTest gives them.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 300 s, every target)
#   KEEL_BUILD_DIR=build-x scripts/fuzz.sh 60 config
#
# The targets are built by the main build (tests/reliability/CMakeLists.txt adds fuzz/ as a clang
# project in BUILD_DIR/fuzz); this script builds them if needed. New interesting inputs accumulate
# in BUILD_DIR/fuzz/corpus-work/TARGET; a crash leaves crash-*/timeout-*/leak-* files in
# BUILD_DIR/fuzz/findings and makes the script exit non-zero. Reproduce one with
# BUILD_DIR/fuzz/fuzz_TARGET FILE. Targets: config token_shard safetensors manifest coordinator_rpc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KEEL_BUILD_DIR:-$root/build}
seconds=${1:-300}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(config token_shard safetensors manifest coordinator_rpc)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing (scripts/setup.sh installs it)" >&2; exit 1; }
[[ -f "$build/CMakeCache.txt" ]] || { echo "fuzz.sh: no build in $build (set KEEL_BUILD_DIR)" >&2; exit 1; }
cmake --build "$build" --target keel_fuzzers
mkdir -p "$build/fuzz/findings"
status=0
for t in "${targets[@]}"; do
  bin=$build/fuzz/fuzz_$t
  [[ -x "$bin" ]] || { echo "fuzz.sh: no target $t ($bin)" >&2; exit 1; }
  mkdir -p "$build/fuzz/corpus-work/$t"
  echo "== fuzz_$t for ${seconds} s"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz/findings/$t-" "$build/fuzz/corpus-work/$t" "$root/fuzz/corpus/$t"; then
    echo "fuzz.sh: fuzz_$t FOUND A PROBLEM (see $build/fuzz/findings)" >&2
    status=1
  fi
done
exit $status
