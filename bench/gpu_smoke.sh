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
export KEEL_DEB_DIR="$PWD/.debs" KEEL_SKIP_APT=1 KEEL_BUILD_DIR="$PWD/build-gpu"
source scripts/setup.sh
keel_unpack_local_debs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
time keel_configure_and_build > "$out/build.log" 2>&1 || { tail -60 "$out/build.log"; exit 1; }
grep -E "Keel: LibTorch" "$out/build.log" || true
keel="$KEEL_BUILD_DIR/cli/keel"
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
