#!/usr/bin/env bash
# Every GPU check the open issues wait for, in one command, most valuable first, inside a time
# budget: the device machine costs minutes to start and hands itself back 30 s after a command, so
# a session gets one or two long commands (docs/gpu.md). Each part runs under its own `timeout`,
# is skipped when its estimate no longer fits in what is left, and leaves its output under
# OUT/<part>/ plus one line in OUT/summary.txt; run folders lose their checkpoints/ at the end and
# are packed into OUT/<part>.tgz so the reply brings them back as one file each.
#
# Parts (estimates on one H100, after the ~100 s build):
#   units     GPU unit tests: kernels, model, optim, linear attention, diagnostics, parallel   ~30 s
#   study     issue 25: the recipe study (bench/gpu_recipe_study.sh) on DATA                     ~300 s
#   stability issue 22: bench/gpu_stability_check.sh                                             ~250 s
#   bench     issue 24: bench/train_bench.sh OUT 25 5 with BENCH_MAX_BATCH=0                      ~200 s
#   zero      issue 26: bench/gpu_zero_check.sh (ZeRO peaks in the world of one)                 ~120 s
# Usage: bash bench/gpu_pending.sh OUT [BUDGET_SECONDS (default 540)] [PARTS (default all, in order)]
#   env DATA for the study (default .cache/keel/data/large-gpt2 if present or packed in
#   .cache/keel/carry/large-gpt2.tar.xz, else .cache/keel/data/embedded-gpt2)
set -uo pipefail
out="${1:?usage: gpu_pending.sh OUT [BUDGET_SECONDS] [PARTS]}"
budget="${2:-540}"
parts="${3:-units study stability bench zero}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
note() { echo "$*" | tee -a "$out/summary.txt"; }

bash bench/gpu_build.sh "$out/build.log" test_kernels test_linear_attention test_diagnostics test_parallel_torch \
  || { note "build: FAILED (tail of $out/build.log below)"; tail -30 "$out/build.log"; exit 1; }
note "build: ok at $((SECONDS - start)) s"
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"

if [ -z "${DATA:-}" ]; then
  if [ -f .cache/keel/data/large-gpt2/meta.json ] || [ -f .cache/keel/carry/large-gpt2.tar.xz ]; then
    DATA=.cache/keel/data/large-gpt2
  else
    DATA=.cache/keel/data/embedded-gpt2
  fi
fi

run_part() {  # NAME ESTIMATE_SECONDS COMMAND...
  local name="$1" estimate="$2"; shift 2
  local remaining; remaining=$(left)
  if [ "$remaining" -lt "$estimate" ]; then
    note "$name: skipped (needs ~${estimate} s, ${remaining} s left)"
    return
  fi
  mkdir -p "$out/$name"
  local t=$SECONDS
  timeout "$remaining" "$@" > "$out/$name/output.txt" 2>&1
  local code=$?
  note "$name: exit $code in $((SECONDS - t)) s"
  tail -25 "$out/$name/output.txt"
}

for part in $parts; do
  case "$part" in
    units) run_part units 30 bash -c '
      for t in kernels/test_kernels model/test_model optim/test_optim model/test_linear_attention \
               diagnostics/test_diagnostics parallel/test_parallel_torch; do
        build-gpu/tests/$t > "$0/$(basename $t).log" 2>&1
        echo "$t: exit $? $(grep -E "^\[  (PASSED|FAILED)  \]" "$0/$(basename $t).log" | tr "\n" " ")"
        grep -A3 Failure "$0/$(basename $t).log" | head -12
      done' "$out/units" ;;
    study) run_part study 300 env DATA="$DATA" bash bench/gpu_recipe_study.sh "$out/study/runs" ;;
    stability) run_part stability 250 bash bench/gpu_stability_check.sh "$out/stability/runs" ;;
    bench) run_part bench 200 env BENCH_MAX_BATCH=0 bash bench/train_bench.sh "$out/bench/runs" 25 5 ;;
    zero) run_part zero 120 bash bench/gpu_zero_check.sh "$out/zero/runs" ;;
    *) note "$part: unknown part (units study stability bench zero)" ;;
  esac
done

# Compact what comes back: no checkpoints, one archive per part's runs.
find "$out" -name checkpoints -type d -prune -exec rm -rf {} +
for dir in "$out"/*/runs; do
  [ -d "$dir" ] || continue
  tar -C "$(dirname "$dir")" -czf "$(dirname "$dir").tgz" runs && rm -rf "$dir"
done
note "total: $((SECONDS - start)) s of a ${budget} s budget"
