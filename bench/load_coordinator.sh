#!/usr/bin/env bash
# The coordinator under load, full mode: keel-load-coordinator (bench/load_coordinator.cpp) with
# 256, 1024 and 4096 simulated workers, each run bounded (--seconds of steady state plus the
# rendezvous). Prints each run's table and writes the figures as JSON lines to OUT (default
# BUILD/bench/load_coordinator.jsonl); docs/reliability.md quotes them.
#
#   bench/load_coordinator.sh [SECONDS] [WORKER_COUNTS...]      (default 30 s; 256 1024 4096)
#   KEEL_BUILD_DIR=build-x KEEL_LOAD_ARGS="--connections 64" bench/load_coordinator.sh 20 4096
#
# The load generator and the coordinator share the machine: note its core count and load (printed)
# next to the figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KEEL_BUILD_DIR:-$root/build}
seconds=${1:-30}
shift || true
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(256 1024 4096)
gen=$build/bench/keel-load-coordinator
coordinator=$build/cli/keel-coordinator
[[ -x "$gen" && -x "$coordinator" ]] || cmake --build "$build" --target keel-load-coordinator keel-coordinator
out=${OUT:-$build/bench/load_coordinator.jsonl}
: >"$out"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
read -r -a extra <<<"${KEEL_LOAD_ARGS:-}"
status=0
for n in "${counts[@]}"; do
  json=$(mktemp)
  "$gen" --coordinator "$coordinator" --workers "$n" --seconds "$seconds" --json "$json" "${extra[@]}" || status=1
  echo "{\"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"result\": $(cat "$json")}" >>"$out"
  rm -f "$json"
done
echo "figures: $out"
exit $status
