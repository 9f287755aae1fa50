#!/usr/bin/env bash
# Two GPUs with NCCL, launched the way users launch (`keel train --nproc 2`): gpt2-124m with DP=2
# (batch 16 per GPU) against one GPU on the same global batch (32), and TP=2 (batch 16) against one
# GPU on batch 16, over STEPS steps each; prints the largest relative loss difference per pair and
# tokens/s, and the DP=2 scaling efficiency (DP=2 tokens/s over twice one GPU's at batch 16).
# Usage: bash bench/two_gpu_check.sh OUT_DIR [STEPS]   (after bench/gpu_build.sh on a 2-GPU node)
set -uo pipefail
out="${1:?usage: two_gpu_check.sh OUT_DIR [STEPS]}"; steps="${2:-60}"
cd "$(dirname "$0")/.."
keel="${KEEL:-$PWD/build-gpu/cli/keel}"
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
mkdir -p "$out"
common=(--set train.steps="$steps" --set train.eval_every=0 --set checkpoint.every=0 --set checkpoint.save_final=false
        --set diagnostics.every=0 --set train.log_every=20 --set metrics.port=-1)
run() {  # NAME [args...]
  local name=$1; shift
  local start=$(date +%s)
  timeout 150 "$keel" train configs/gpt2-124m.yaml --run-dir "$out/$name" "${common[@]}" "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - start )) s"
}
run one-b32 --set train.batch_size=32
run dp2 --nproc 2 --set parallel.dp=2 --set train.batch_size=16
run one-b16 --set train.batch_size=16
run tp2 --nproc 2 --set parallel.tp=2 --set train.batch_size=16
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def rows(name):
    try:
        return [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if l.strip()]
    except OSError:
        return []
def tps(r):  # median tokens/s after the first 10 steps
    v = [x["tokens_per_second"] for x in r[10:] if "tokens_per_second" in x]
    return statistics.median(v) if v else float("nan")
for a, b in (("one-b32", "dp2"), ("one-b16", "tp2")):
    ra, rb = rows(a), rows(b)
    n = min(len(ra), len(rb))
    worst = max((abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(ra[:n], rb[:n])), default=float("nan"))
    print(f"{b} vs {a}: {n} steps compared, largest relative loss difference {worst:.3g}; "
          f"loss {ra[n-1]['loss'] if n else float('nan'):.4f} vs {rb[n-1]['loss'] if n else float('nan'):.4f}; "
          f"tokens/s {tps(ra):.0f} vs {tps(rb):.0f}")
print(f"DP=2 scaling efficiency (gpt2-124m, batch 16 per GPU): {tps(rows('dp2')) / (2 * tps(rows('one-b16'))):.3f}")
PY
