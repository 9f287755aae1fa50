#!/usr/bin/env bash
# Second GPU pass: build, the monitor-overhead benchmark, and one sweep recipe under cuda-gdb so a
# crash leaves a backtrace. Usage: bash bench/gpu_followup.sh OUT_DIR
set -uo pipefail
out="${1:-/tmp/keel-gpu2}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export KEEL_DEB_DIR="$PWD/.debs" KEEL_SKIP_APT=1 KEEL_BUILD_DIR="$PWD/build-gpu"
source scripts/setup.sh
keel_unpack_local_debs
keel_configure_and_build > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
keel="$KEEL_BUILD_DIR/cli/keel"
echo "== stability monitor overhead, gpt2-124m bf16, 80 steps each =="
KEEL="$keel" bash bench/monitor_overhead.sh configs/gpt2-124m.yaml 80 "$out/overhead" --set train.log_every=1000 2>&1 | tail -3
echo "== sweep recipe vanilla, 560 steps, under cuda-gdb =="
cuda-gdb -q -batch -ex run -ex bt --args "$keel" train configs/vanilla.yaml --run-dir "$out/vanilla" --set train.lr=1e-2 \
  --set model.d_model=512 --set model.num_layers=8 --set model.num_heads=8 --set model.context_length=256 \
  --set train.batch_size=32 --set train.steps=1200 --set train.stop_at=560 --set train.warmup_steps=100 \
  --set train.eval_every=200 --set checkpoint.every=100 --set train.log_every=1000 > "$out/vanilla.gdb.log" 2>&1
grep -vE "^\[New Thread|^\[Thread .* exited|^\[Detaching" "$out/vanilla.gdb.log" | tail -40
