#!/usr/bin/env bash
# Builds the CUDA variant on a GPU node with no network and runs the foundation's GPU checks:
# the demo recipe and the gpt2-124m shape in bf16, then loads a checkpoint with Python's
# `safetensors`. Expects the .deb folder (.debs/) and the prepared dataset (.cache/keel/data/)
# carried along (see docs/gpu.md). Usage: bash bench/gpu_smoke.sh OUT_DIR [STEPS_124M]
set -euo pipefail
out="${1:-/tmp/keel-gpu}"
steps_124m="${2:-300}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
source scripts/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
time keel_gpu_node_build "$out/build.log" || exit 1
grep -E "Keel: LibTorch" "$out/build.log" || true
keel="$KEEL_BUILD_DIR/cli/keel"
# Each stage reports its own failure and the next one still runs.
set +e
echo "== GPU unit tests (model, optimizer incl. fused AdamW vs multi-tensor) =="
"$KEEL_BUILD_DIR/tests/optim/test_optim" 2>&1 | tail -4
"$KEEL_BUILD_DIR/tests/model/test_model" 2>&1 | tail -2
echo "== demo (configs/vanilla.yaml) =="
"$keel" train configs/vanilla.yaml --run-dir "$out/demo" 2>&1 | grep -vE "^\[" | tail -8
echo "== gpt2-124m bf16, $steps_124m steps =="
"$keel" train configs/gpt2-124m.yaml --run-dir "$out/gpt2-124m" --set train.steps="$steps_124m" \
  --set train.eval_every=100 --set checkpoint.every=100 --set train.log_every=50 2>&1 | grep -vE "^\[..:..:..\] \[info\] checkpoint" | tail -14
echo "== python safetensors =="
python3 - "$out/gpt2-124m" <<'PY'
import glob, sys
from safetensors import safe_open
ckpt = sorted(glob.glob(sys.argv[1] + "/checkpoints/step_*"))[-1]
with safe_open(ckpt + "/model.safetensors", framework="pt") as f:
    keys = list(f.keys())
    print(ckpt, len(keys), "tensors;", "wte.weight", tuple(f.get_tensor("wte.weight").shape),
          "blocks.11.attn.c_attn.weight", tuple(f.get_tensor("blocks.11.attn.c_attn.weight").shape))
PY
echo "== stability monitor overhead, gpt2-124m bf16, 80 steps each =="
KEEL="$keel" bash bench/monitor_overhead.sh configs/gpt2-124m.yaml 80 "$out/overhead" --set train.log_every=1000 2>&1 | tail -3
if [ "${KEEL_GPU_SWEEP:-1}" = 1 ]; then
  echo "== recipe sweep (larger, GPU): vanilla vs scaled-embed vs embed-ln at a high LR =="
  KEEL="$keel" bash scripts/sweep_recipes.sh "$out/sweep" 1e-2 --set model.d_model=512 --set model.num_layers=8 \
    --set model.num_heads=8 --set model.context_length=256 --set train.batch_size=32 --set train.steps=1200 \
    --set train.warmup_steps=100 --set train.eval_every=200 --set checkpoint.every=100 --set train.log_every=1000 2>&1 | tail -12
fi
