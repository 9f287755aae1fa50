#!/usr/bin/env bash
# One fused kernel switch on and off in the same session (issue 24): gpt2-124m bf16, batch 32 x 1024,
# STEPS steps (30) through `keel train` with the monitor on, tokens/s and step time of the steps after
# the fifth, MFU and peak memory, and the first losses of both runs side by side (they agree to
# bf16 noise, not bit for bit: the fused kernels round differently).
# Needs the GPU build (bench/gpu_build.sh) and .cache/keel/data/embedded-gpt2 carried.
# Usage: bash bench/gpu_fused_ab.sh OUT [SWITCH]   (SWITCH: a train.* bool key, default fused_residual_norm)
set -uo pipefail
out="${1:?usage: gpu_fused_ab.sh OUT [SWITCH]}"
switch="${2:-fused_residual_norm}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
keel=${KEEL:-build-gpu/cli/keel}
common=(--set train.device=cuda --set metrics.port=-1 --set metrics.linger_seconds=0 --set data.tokenizer=gpt2
        --set data.dir=.cache/keel/data/embedded-gpt2 --set data.auto_prepare=false --set train.eval_every=0
        --set checkpoint.every=0 --set checkpoint.save_final=false --set train.log_every=10
        --set train.steps="${STEPS:-30}" --set train.batch_size="${BATCH:-32}" --set train.grad_accum=1)
for setting in true false; do
  "$keel" train configs/gpt2-124m.yaml --run-dir "$out/$switch-$setting" "${common[@]}" \
    --set "train.$switch=$setting" > "$out/$switch-$setting.log" 2>&1
  echo "train.$switch=$setting: exit $?"
done
python3 - "$out" "$switch" <<'PY'
import json, os, sys
out, switch = sys.argv[1], sys.argv[2]
runs = {}
for setting in ("true", "false"):
    p = f"{out}/{switch}-{setting}/metrics.jsonl"
    rows = [json.loads(l) for l in open(p)] if os.path.exists(p) else []
    runs[setting] = rows
    timed = [r for r in rows[5:] if "tokens_per_second" in r]
    if not timed:
        print(f"{switch}={setting}: no timed steps"); continue
    print("%s=%s: tokens/s %.0f, step %.1f ms, MFU %.3f, peak GPU memory %.2f GiB" % (
        switch, setting, sum(r["tokens_per_second"] for r in timed) / len(timed),
        1000 * sum(r["step_time"] for r in timed) / len(timed), sum(r.get("mfu", 0) for r in timed) / len(timed),
        max(r.get("gpu_memory_peak_bytes", 0) for r in rows) / 2**30))
    for clock in ("device_phase_ms", "host_phase_ms"):
        phases = {}
        for r in timed:
            for k, v in r.get(clock, {}).items():
                phases.setdefault(k, []).append(v)
        if phases:
            print("  %s median: %s" % (clock, ", ".join("%s %.1f" % (k, sorted(v)[len(v) // 2]) for k, v in phases.items())))
on, off = runs["true"], runs["false"]
pairs = list(zip(on, off))[:20]
if pairs:
    worst = max(abs(a["loss"] - b["loss"]) for a, b in pairs)
    print(f"first {len(pairs)} losses: worst |on - off| {worst:.4f}; step 0 {pairs[0][0]['loss']:.4f} / {pairs[0][1]['loss']:.4f}, "
          f"step {len(pairs) - 1} {pairs[-1][0]['loss']:.4f} / {pairs[-1][1]['loss']:.4f}")
PY
