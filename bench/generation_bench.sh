#!/usr/bin/env bash
# Figures of docs/linear-attention.md in one command: SUPRA uptraining (val loss of the softmax
# model, of the linearised model before uptraining and after N steps), generation tokens/s and
# memory of softmax (KV cache) vs linear attention (fixed state) at growing lengths, and the TDA
# table (decode tokens/s and quality per threshold).
#
# Usage: bash bench/generation_bench.sh [--gpu] [OUT_DIR]
#   CPU (default): small models (d=192, 4 layers), 2 threads; about 15-25 minutes on 2 cores.
#   --gpu:         builds with scripts/setup.sh's GPU-node build, larger models, bf16, on CUDA.
# Writes OUT_DIR/report.md (the tables) and the JSON of every measurement beside it.
set -euo pipefail
mode=cpu
if [ "${1:-}" = "--gpu" ]; then mode=gpu; shift; fi
out="$(realpath -m "${1:-/tmp/keel-generation-bench-$mode}")"
cd "$(dirname "$0")/.."
root="$(pwd)"
mkdir -p "$out"

if [ "$mode" = gpu ]; then
  source scripts/setup.sh
  keel_gpu_node_build "$out/build.log" keel keel-worker keel-coordinator keel-prepare  # only what it runs
  keel="$KEEL_BUILD_DIR/cli/keel"
  device=(--device cuda)
  # Pretraining: d=512, 8 layers, context 512; long-context models for the generation sweep.
  shape=(--set model.d_model=512 --set model.num_layers=8 --set model.num_heads=8 --set model.context_length=512
         --set train.batch_size=32)
  pretrain_steps=2000
  long_context=4096
  lengths="512 1024 2048 4000"
  threads=()
else
  keel="${KEEL:-$root/build/cli/keel}"
  device=(--device cpu)
  shape=(--set train.threads=2)
  pretrain_steps=400
  long_context=2048
  lengths="256 512 1024 2000"
  threads=(--threads 2)
fi
[ -x "$keel" ] || { echo "no keel binary at $keel (build it, or set KEEL=...)"; exit 1; }
common=(--set run.runs_root="$out/runs" --set train.log_every=100 --set metrics.port=-1)
uptrain_steps=$((pretrain_steps * 3 / 10))  # 30% of pretraining, evaluated at 10%, 20%, 30%

echo "== 1. pretrain the softmax model ($pretrain_steps steps) =="
"$keel" train configs/vanilla.yaml "${common[@]}" "${shape[@]}" --set train.steps=$pretrain_steps \
  --set train.eval_every=$((pretrain_steps / 4)) --set checkpoint.every=$((pretrain_steps / 4)) \
  --set diagnostics.every=0 --run-dir "$out/softmax" > "$out/softmax.log" 2>&1
echo "== 2. uptrain it to SUPRA linear attention ($uptrain_steps steps) =="
"$keel" uptrain --from "$out/softmax" --steps $uptrain_steps "${common[@]}" "${shape[@]}" \
  --set train.eval_every=$((pretrain_steps / 10)) --set checkpoint.every=$uptrain_steps \
  --set diagnostics.every=0 --run-dir "$out/linear" > "$out/linear.log" 2>&1

echo "== 3. TDA sweep on the softmax model =="
"$keel" generate "$out/softmax" --prompt-from-val 64 --max-tokens 48 --tda-sweep 0,0.25,0.5,0.75,1,1.5 \
  --eval-sequences 8 "${device[@]}" "${threads[@]}" --json "$out/tda.json" | tee "$out/tda.txt"

echo "== 4. long-context models for the generation sweep (context $long_context; timing only) =="
long=(--set model.context_length=$long_context --set train.batch_size=1 --set train.eval_batches=1
      --set train.warmup_steps=2 --set checkpoint.every=0 --set diagnostics.every=0)
"$keel" train configs/vanilla.yaml "${common[@]}" "${shape[@]}" "${long[@]}" --set train.steps=4 \
  --run-dir "$out/long-softmax" > "$out/long-softmax.log" 2>&1
"$keel" uptrain --from "$out/long-softmax" --steps 2 "${common[@]}" "${shape[@]}" "${long[@]}" \
  --run-dir "$out/long-linear" > "$out/long-linear.log" 2>&1
for kind in softmax linear; do
  for n in $lengths; do
    "$keel" generate "$out/long-$kind" --prompt-from-val 16 --max-tokens "$n" --ignore-eos --greedy \
      "${device[@]}" "${threads[@]}" --json "$out/gen-$kind-$n.json" > /dev/null 2> "$out/gen-$kind-$n.log"
    tail -1 "$out/gen-$kind-$n.log"
  done
done

python3 - "$out" "$mode" "$lengths" <<'PY'
import json, sys, os
out, mode, lengths = sys.argv[1], sys.argv[2], sys.argv[3].split()
def jsonl(path):
    return [json.loads(l) for l in open(path) if l.strip()]
def val_points(run):
    return [(r["step"], r["val_loss"]) for r in jsonl(f"{out}/{run}/metrics.jsonl") if "val_loss" in r]
soft = val_points("softmax")
pre_steps = soft[-1][0]
init = json.load(open(f"{out}/linear/init_from.json"))
lin = val_points("linear")
lines = [f"### Uptraining ({mode})", "",
         "| model | uptraining steps | fraction of pretraining | val loss |", "|---|---|---|---|",
         f"| softmax (pretrained, {pre_steps} steps) | - | - | {soft[-1][1]:.4f} |",
         f"| linearised, before uptraining | 0 | 0% | {init['val_loss']:.4f} |"]
for step, loss in lin:
    lines.append(f"| linearised + uptraining | {step} | {100*step/pre_steps:.0f}% | {loss:.4f} |")
lines += ["", f"### Generation at long lengths ({mode})", "",
          "| new tokens | softmax tok/s | softmax KV cache MiB | softmax peak MiB | linear tok/s | linear state MiB | linear peak MiB |",
          "|---|---|---|---|---|---|---|"]
for n in lengths:
    s = json.load(open(f"{out}/gen-softmax-{n}.json")); l = json.load(open(f"{out}/gen-linear-{n}.json"))
    mib = lambda b: b / 1048576
    lines.append(f"| {s['new_tokens']} | {s['decode_tokens_per_second']:.1f} | {mib(s['cache_bytes']):.2f} | "
                 f"{mib(s['peak_memory_bytes']):.0f} | {l['decode_tokens_per_second']:.1f} | {mib(l['cache_bytes']):.3f} | "
                 f"{mib(l['peak_memory_bytes']):.0f} |")
peak_kind = s["peak_memory_kind"]
lines += ["", f"(peak = {peak_kind}; device {s['device']}, {s['precision']}, {s['parameters']} parameters)", "",
          f"### TDA ({mode})", "",
          "| threshold | MLP sparsity | decode tok/s | agreement with dense greedy | first divergence | dense-model loss on the text | val loss under the mask |",
          "|---|---|---|---|---|---|---|"]
for r in json.load(open(f"{out}/tda.json"))["tda"]:
    t = "dense" if r["threshold"] is None else f"{r['threshold']:g}"
    lines.append(f"| {t} | {r['sparsity']:.3f} | {r['decode_tokens_per_second']:.1f} | {r['agreement']:.3f} | "
                 f"{r['first_divergence']} | {r['dense_loss_on_text']:.4f} | {r['val_loss_masked']:.4f} |")
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "report: $out/report.md"
