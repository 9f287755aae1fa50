#!/usr/bin/env bash
# GPU pass for the stability work: build, the checkpoint-retention check on CUDA (a tiny run that
# deletes old checkpoints), then the larger recipe sweep at a high learning rate.
# Usage: bash bench/gpu_sweep.sh OUT_DIR STEPS
set -uo pipefail
out="${1:-/tmp/keel-sweep}"
steps="${2:-600}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
source scripts/setup.sh
keel_gpu_node_build "$out/build.log" || exit 1
keel="$KEEL_BUILD_DIR/cli/keel"
echo "== tiny CUDA run with checkpoint retention (keep 3 of 8) =="
"$keel" train tests/worker/tiny.yaml --run-dir "$out/tiny" --set data.dir=.cache/keel/data/embedded \
  --set data.vocab_size=8192 --set model.vocab_size=8192 --set train.steps=80 --set train.log_every=1000 \
  > "$out/tiny.log" 2>&1
echo "exit code $?; pruned: $(grep -c 'pruned' "$out/tiny.log"); left: $(ls "$out/tiny/checkpoints" | tr '\n' ' ')"
echo "== recipe sweep (d=512, 8 layers, context 256, batch 32), lr 1e-2, $steps steps =="
KEEL="$keel" bash scripts/sweep_recipes.sh "$out/sweep" 1e-2 --set model.d_model=512 --set model.num_layers=8 \
  --set model.num_heads=8 --set model.context_length=256 --set train.batch_size=32 --set train.steps="$steps" \
  --set train.warmup_steps=100 --set train.eval_every=200 --set checkpoint.every=100 --set train.log_every=1000 2>&1 \
  | grep -vE "^\s+\[" | tail -14
