#!/usr/bin/env bash
# The stability monitor on one GPU, on genuinely unstable and clean gpt2-124m runs (issue 22).
# Builds (bench/gpu_build.sh), then trains the gpt2-124m shape at batch 8 on the embedded corpus
# (8,192 tokens a step, an epoch is ~445 steps):
#   healthy-400   default recipe (LR 6e-4, warm-up 200), 400 steps: the reference
#   healthy-1000  the same over 1,000 steps: two epoch crossings that must give no event
#   lr2e-2-MODE   LR 2e-2 without warm-up, 400 steps, monitor off and in each mode
#   lr6e-3-MODE   LR 6e-3 (10x) with the default warm-up, 400 steps, monitor off and rollback
# and prints one table (events by kind, skips, rollbacks, LR at the end, final val loss, events
# within 20 steps of an epoch crossing). Needs .debs/ and .cache/keel/data/embedded carried.
# Usage: bash bench/gpu_stability_check.sh OUT
set -uo pipefail
out="${1:?usage: gpu_stability_check.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
bash bench/gpu_build.sh "$out/build.log" || { tail -30 "$out/build.log"; exit 1; }
keel=build-gpu/cli/keel
# The libraries unpacked from .debs/ into .deps/ (by the build, in its own process) must be found at run time.
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
common=(--set train.batch_size=8 --set train.eval_every=100 --set checkpoint.every=100 --set train.log_every=100
        --set metrics.port=-1 --set metrics.linger_seconds=0 --set data.dir=.cache/keel/data/embedded
        --set data.auto_prepare=false)
run() {  # name, extra args...
  local name="$1"; shift
  local start=$SECONDS
  "$keel" train configs/gpt2-124m.yaml --run-dir "$out/runs/$name" "${common[@]}" "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - start)) s"
}
run healthy-400 --set train.steps=400
run healthy-1000 --set train.steps=1000
run lr2e-2-off --set train.steps=400 --set train.lr=2e-2 --set train.warmup_steps=0 --set stability.enabled=false
for mode in rollback skip_only clip_only observe; do
  run "lr2e-2-$mode" --set train.steps=400 --set train.lr=2e-2 --set train.warmup_steps=0 --set stability.mode=$mode
done
# Ten times the default LR with the default warm-up: a softer failure than 2e-2 without warm-up.
run lr6e-3-off --set train.steps=400 --set train.lr=6e-3 --set stability.enabled=false
run lr6e-3-rollback --set train.steps=400 --set train.lr=6e-3
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
meta = json.load(open(".cache/keel/data/embedded/meta.json"))
epoch_tokens = meta["train_tokens"]
def jsonl(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []
print("| run | status | events (kind:count) | skips | rollbacks | LR at the end | final val | events near an epoch crossing |")
print("|---|---|---|---|---|---|---|---|")
for name in sorted(os.listdir(f"{out}/runs")):
    d = f"{out}/runs/{name}"
    info = json.load(open(f"{d}/run_info.json")) if os.path.exists(f"{d}/run_info.json") else {}
    metrics, events = jsonl(f"{d}/metrics.jsonl"), jsonl(f"{d}/events.jsonl")
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    crossings = [m["step"] for m in metrics if "tokens_seen" in m and
                 (m["tokens_seen"] // epoch_tokens) != ((m["tokens_seen"] - 8 * 1024) // epoch_tokens)]
    near = [e for e in events if any(abs(e["step"] - c) <= 20 for c in crossings)]
    skips = sum(1 for m in metrics if m.get("skipped"))
    rollbacks = sum(1 for m in metrics if "rollback_to" in m)
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    print(f"| {name} | {info.get('status', '?')} | {', '.join(f'{k}:{v}' for k, v in sorted(kinds.items())) or '-'} "
          f"| {skips} | {rollbacks} | {metrics[-1]['lr'] if metrics else float('nan'):.3g} "
          f"| {vals[-1] if vals else float('nan'):.4f} | {len(near)} (crossings at steps {crossings}) |")
PY
