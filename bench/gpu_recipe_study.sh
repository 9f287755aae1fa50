#!/usr/bin/env bash
# Issue 25's recipe study on one GPU: the gpt2-124m shape on GPT-2-tokenized data, batch 8 x 1024,
# STEPS steps (360 by default: under one epoch of the embedded corpus's 3.06M GPT-2 tokens, so no
# batch repeats; DATA=.cache/keel/data/large-gpt2 (29.6M train tokens) allows ~3,600 steps without
# repetition), vanilla vs scaled-embed vs embed-ln vs qk-norm-zloss at a normal LR and two high
# ones, with the monitor in observe mode (every verdict recorded, none acted on: the raw dynamics),
# then vanilla at the high LRs once more with the monitor on (rollback). Prints summarize_runs.py's
# table and writes keel compare's report.
# Needs the GPU build and the data carried: .cache/keel/data/embedded-gpt2, or the large corpus as
# .cache/keel/carry/large-gpt2.tar.xz (the prepared folder is 62 MB, over the device's carry limit; this
# script unpacks it when DATA names it and it is missing). Usage: bash bench/gpu_recipe_study.sh OUT
#   env DATA (default .cache/keel/data/embedded-gpt2), LRS (default "6e-4 3e-3 1e-2"), STEPS (360), RECIPES (default the four above)
set -uo pipefail
out="${1:?usage: gpu_recipe_study.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
keel=${KEEL:-build-gpu/cli/keel}
steps=${STEPS:-360}
data=${DATA:-.cache/keel/data/embedded-gpt2}
if [ ! -f "$data/meta.json" ] && [ -f ".cache/keel/carry/$(basename "$data").tar.xz" ]; then
  mkdir -p "$(dirname "$data")" && tar -C "$(dirname "$data")" -xJf ".cache/keel/carry/$(basename "$data").tar.xz"
fi
[ -f "$data/meta.json" ] || { echo "no prepared data at $data" >&2; exit 1; }
echo "data: $data ($(python3 -c 'import json,sys;m=json.load(open(sys.argv[1]));print(m["train_tokens"],"train tokens")' "$data/meta.json"))"
lrs=${LRS:-"6e-4 3e-3 1e-2"}
recipes=${RECIPES:-"vanilla scaled-embed embed-ln qk-norm-zloss"}
# Each recipe's knobs at the gpt2-124m shape (configs/<recipe>.yaml holds them at the CPU shape).
knobs() {
  case "$1" in
    vanilla) ;;
    scaled-embed) echo "--set model.embed_scale=sqrt_d --set model.init=small" ;;
    embed-ln) echo "--set model.embed_norm=layernorm --set model.init=small" ;;
    qk-norm) echo "--set model.qk_norm=layernorm" ;;
    qk-norm-zloss) echo "--set model.norm=rms --set model.qk_norm=rms --set train.z_loss=1e-5" ;;
    rms-rope) echo "--set model.norm=rms --set model.position=rope --set model.activation=swiglu --set model.bias=false --set train.schedule=wsd" ;;
  esac
}
common=(--set train.device="${DEVICE:-cuda}" --set data.dir="$data" --set data.auto_prepare=false
        --set data.tokenizer=gpt2 --set train.steps="$steps" --set train.batch_size=8 --set train.warmup_steps=$((steps / 10))
        --set train.eval_every=$((steps / 4)) --set train.eval_batches=10 --set checkpoint.every=$((steps / 6))
        --set checkpoint.keep=2 --set diagnostics.every=$((steps / 6)) --set metrics.port=-1 --set metrics.linger_seconds=0)
runs=()
train() {  # name, mode, lr, recipe
  local name=$1 mode=$2 lr=$3 recipe=$4 t=$SECONDS
  # shellcheck disable=SC2046
  "$keel" train configs/gpt2-124m.yaml --run-dir "$out/$name" "${common[@]}" --set run.recipe="$recipe" \
    --set train.lr="$lr" --set stability.mode="$mode" $(knobs "$recipe") > "$out/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - t)) s; $(grep -o 'final val loss [0-9.]*' "$out/$name.log" | tail -1)"
  rm -rf "$out/$name/checkpoints"
  runs+=("$out/$name")
}
for lr in $lrs; do
  for recipe in $recipes; do train "$recipe-lr$lr-observe" observe "$lr" "$recipe"; done
done
for lr in $lrs; do
  [ "$lr" = "$(echo "$lrs" | cut -d' ' -f1)" ] && continue  # the monitor-on pass is for the high LRs
  train "vanilla-lr$lr-rollback" rollback "$lr" vanilla
done
python3 scripts/summarize_runs.py "${runs[@]}" | tee "$out/summary.md"
"$keel" compare "${runs[@]}" > "$out/compare.txt" 2>&1
echo "keel compare: exit $? ($out/compare.txt)"
