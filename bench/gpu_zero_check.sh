#!/usr/bin/env bash
# The sharded optimizer on one GPU and the GPT-2 large/XL shapes (issue 26), one device call:
# builds (bench/gpu_build.sh), then on the NCCL world of one
#   - gpt2-124m batch 8, 40 steps, unsharded / shard_optimizer / shard_optimizer + shard_gradients:
#     the losses and grad norms must match (one shard holds everything: bit-identical on the CPU);
#   - gpt2-760m (batch 8) and gpt2-1.5b (batch 8, activation checkpointing) for 30 steps each:
#     tokens/s (steps 5+), MFU, peak GPU memory, optimizer state per rank.
# Needs .debs/ and .cache/keel/data/embedded-gpt2 carried (GPT-2 ids; the shapes' vocabulary).
# Usage: bash bench/gpu_zero_check.sh OUT
set -uo pipefail
out="${1:?usage: gpu_zero_check.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
bash bench/gpu_build.sh "$out/build.log" || { tail -30 "$out/build.log"; exit 1; }
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
keel=build-gpu/cli/keel
common=(--set train.device=cuda --set metrics.port=-1 --set metrics.linger_seconds=0 --set data.tokenizer=gpt2
        --set data.dir=.cache/keel/data/embedded-gpt2 --set data.auto_prepare=false --set train.eval_every=0
        --set checkpoint.every=0 --set checkpoint.save_final=false --set train.log_every=10 --set train.batch_size=8
        --set train.grad_accum=1)
run() {  # name, config, extra args...
  local name="$1" config="$2"; shift 2
  local start=$SECONDS
  "$keel" train "$config" --run-dir "$out/$name" "${common[@]}" "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - start)) s; $(grep -o 'optimizer: .*' "$out/$name.log" | head -1)"
}
run g124-whole configs/gpt2-124m.yaml --set train.steps=40
run g124-zero1 configs/gpt2-124m.yaml --set train.steps=40 --set parallel.shard_optimizer=true
run g124-zero2 configs/gpt2-124m.yaml --set train.steps=40 --set parallel.shard_optimizer=true \
  --set parallel.shard_gradients=true
run g760 configs/gpt2-760m.yaml --set train.steps=30
run g1558 configs/gpt2-1.5b.yaml --set train.steps=30
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def rows(name):
    p = f"{out}/{name}/metrics.jsonl"
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
whole = rows("g124-whole")
for name in ("g124-zero1", "g124-zero2"):
    other = rows(name)
    n = min(len(whole), len(other))
    worst = max((abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(whole, other)), default=float("nan"))
    exact = sum(a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] for a, b in zip(whole, other))
    print(f"{name} vs unsharded: {n} steps, {exact} bit-identical (loss and grad norm), worst relative loss difference {worst:.3g}")
for name in ("g124-whole", "g124-zero1", "g124-zero2", "g760", "g1558"):
    r = rows(name)
    timed = [x for x in r[5:] if "tokens_per_second" in x]
    if not timed:
        print(f"{name}: no timed steps"); continue
    info = json.load(open(f"{out}/{name}/run_info.json")) if os.path.exists(f"{out}/{name}/run_info.json") else {}
    print("%s: tokens/s %.0f, MFU %.3f, peak GPU memory %.2f GiB, optimizer state %.2f GiB, final loss %.3f" % (
        name, sum(x["tokens_per_second"] for x in timed) / len(timed), sum(x.get("mfu", 0) for x in timed) / len(timed),
        max(x.get("gpu_memory_peak_bytes", 0) for x in r) / 2**30, info.get("optimizer_state_bytes_per_rank", 0) / 2**30,
        r[-1]["loss"]))
PY
