#!/usr/bin/env bash
# The GPU build and the GPU tests after a change that touches the training loop (one H200 call):
# builds keel, its sibling programs and every test binary with GPU-only cases (bench/gpu_build.sh),
# runs those binaries (the cases skipped on CPU machines run here), then trains the demo recipe on
# the GPU straight (40 steps) and split (stop at 20, --resume to 40) and compares the two
# metrics.jsonl step by step (loss, grad norm, update ratio: exact equality expected, as on the
# CPU), and times 30 steps of gpt2-124m at batch 32 x 1024 in bf16 (tokens/s, MFU).
# Needs .debs/ and .cache/keel/data/embedded carried. Usage: bash bench/gpu_check.sh OUT
set -uo pipefail
out="${1:?usage: gpu_check.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
start=$SECONDS
bash bench/gpu_build.sh "$out/build.log" test_kernels test_linear_attention test_diagnostics test_parallel_torch \
  || { tail -30 "$out/build.log"; exit 1; }
echo "build: $((SECONDS - start)) s"
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
b=build-gpu
echo "== GPU unit tests =="
for t in optim/test_optim model/test_model model/test_linear_attention kernels/test_kernels diagnostics/test_diagnostics \
         parallel/test_parallel_torch; do
  "$b/tests/$t" > "$out/$(basename "$t").log" 2>&1
  echo "$t: exit $? $(grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$out/$(basename "$t").log" | tr '\n' ' ')"
done
keel=$b/cli/keel
common=(--set train.device=cuda --set metrics.port=-1 --set metrics.linger_seconds=0
        --set data.dir=.cache/keel/data/embedded --set data.auto_prepare=false --set train.eval_every=20
        --set checkpoint.every=10)
echo "== demo recipe on the GPU: straight vs stopped and resumed =="
"$keel" train configs/vanilla.yaml --run-dir "$out/straight" "${common[@]}" --set train.steps=40 > "$out/straight.log" 2>&1
echo "straight: exit $?"
"$keel" train configs/vanilla.yaml --run-dir "$out/split" "${common[@]}" --set train.steps=40 --set train.stop_at=20 \
  > "$out/split1.log" 2>&1
echo "split, first part: exit $?"
"$keel" train configs/vanilla.yaml --run-dir "$out/split" "${common[@]}" --set train.steps=40 --resume > "$out/split2.log" 2>&1
echo "split, resumed: exit $?"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def rows(d):
    return {r["step"]: r for r in (json.loads(l) for l in open(f"{out}/{d}/metrics.jsonl")) if "loss" in r}
a, b = rows("straight"), rows("split")
keys = ["loss", "grad_norm", "update_ratio"]
diff = [(s, k, a[s].get(k), b[s].get(k)) for s in sorted(a) for k in keys if s in b and a[s].get(k) != b[s].get(k)]
print(f"steps compared: {len(set(a) & set(b))} of {len(a)}; differing values: {len(diff)}")
for d in diff[:5]:
    print("  step %d %s: straight %r, resumed %r" % d)
print("val loss at 40: straight %.6f, resumed %.6f" % (a[39].get("val_loss", float('nan')), b[39].get("val_loss", float('nan'))))
PY
echo "== gpt2-124m bf16, batch 32 x 1024, 30 steps =="
"$keel" train configs/gpt2-124m.yaml --run-dir "$out/gpt2-124m" "${common[@]}" --set train.steps=30 \
  --set train.eval_every=0 --set checkpoint.every=0 --set checkpoint.save_final=false --set train.log_every=10 \
  > "$out/gpt2-124m.log" 2>&1
echo "gpt2-124m: exit $?"
python3 - "$out/gpt2-124m" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
timed = rows[5:]
print("steps %d; mean tokens/s (steps 5+) %.0f; mean step %.1f ms; MFU %.3f; peak GPU memory %.2f GiB" % (
    len(rows), sum(r["tokens_per_second"] for r in timed) / len(timed),
    1000 * sum(r["step_time"] for r in timed) / len(timed), sum(r.get("mfu", 0) for r in timed) / len(timed),
    max(r.get("gpu_memory_peak_bytes", 0) for r in rows) / 2**30))
PY
echo "total: $((SECONDS - start)) s"
