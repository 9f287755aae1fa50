#!/usr/bin/env bash
# Keel's single-GPU training benchmark (issue 14): trains the gpt2-124m and gpt2-350m shapes with
# `keel train` (the real trainer: stability monitor on, metrics every step) for WARMUP untimed +
# TIMED steps on the prepared token shards, and prints per case tokens/s, step time (median,
# p10-p90), MFU against PEAK_FLOPS and peak GPU memory; then, in the same command on the same GPU,
# the PyTorch reference (bench/pytorch_reference.py: same model, init, data, AdamW, bf16 autocast)
# in eager mode and with torch.compile, Keel's tokens/s as a ratio to each, and the first 20
# steps' losses of both; and the largest gpt2-350m micro-batch that fits, with and without
# activation checkpointing.
#
# Usage: bash bench/train_bench.sh OUT_DIR [TIMED_STEPS] [WARMUP_STEPS]
# Environment:
#   KEEL          the keel binary (default build-gpu/cli/keel, else build/cli/keel)
#   BENCH_CASES   which cases to run (default: all of the list below)
#   BENCH_REFERENCE=0   skip the PyTorch references (eager and compile at gpt2-124m and gpt2-350m);
#   BENCH_REF_SHAPES    which of them ("124m 350m"); BENCH_REF_BATCH / BENCH_REF_BATCH_350M their batch (32 / 16)
#   BENCH_MAX_BATCH=0   skip the largest-micro-batch search
#   PEAK_FLOPS    dense bf16 peak for MFU (default 989e12: H100 SXM, as device/device_memory.h)
#   BENCH_DATA    the prepared GPT-2-tokenized shards both read (default .cache/keel/data/embedded-gpt2)
# Everything lands in OUT_DIR: one folder per run, results.jsonl, summary.txt.
set -uo pipefail
out="${1:?usage: train_bench.sh OUT_DIR [TIMED_STEPS] [WARMUP_STEPS]}"
timed="${2:-30}"
warmup="${3:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
keel="${KEEL:-$([ -x build-gpu/cli/keel ] && echo build-gpu/cli/keel || echo build/cli/keel)}"
peak="${PEAK_FLOPS:-989e12}"
# Air-gapped GPU nodes: the libraries unpacked from .debs/ (scripts/setup.sh) must be found at run time.
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
steps=$((warmup + timed))
# Keel and the PyTorch reference read the same prepared GPT-2-tokenized shards (the configs' own
# data.dir, the large corpus, is usually not on a GPU node).
data="${BENCH_DATA:-.cache/keel/data/embedded-gpt2}"

# name | config | overrides
all_cases=(
  "gpt2-124m-b16|configs/gpt2-124m.yaml|--set train.batch_size=16"
  "gpt2-124m-b32|configs/gpt2-124m.yaml|--set train.batch_size=32"
  "gpt2-124m-b32-ckpt|configs/gpt2-124m.yaml|--set train.batch_size=32 --set train.activation_checkpointing=true"
  "gpt2-350m-b16|configs/gpt2-350m.yaml|--set train.batch_size=16"
  "gpt2-350m-b16-ckpt|configs/gpt2-350m.yaml|--set train.batch_size=16 --set train.activation_checkpointing=true"
)
selected="${BENCH_CASES:-}"

device="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
echo "device: ${device:-unknown}; keel: $keel; MFU peak: $peak FLOP/s (dense bf16); $warmup warm-up + $timed timed steps"

# run_keel NAME CONFIG STEPS [overrides...]: one `keel train`; prints its JSON summary line or fails.
run_keel() {
  local name="$1" config="$2" n="$3"; shift 3
  rm -rf "${out:?}/$name"
  # shellcheck disable=SC2086
  "$keel" train "$config" --run-dir "$out/$name" --set train.steps="$n" --set train.eval_every=0 \
    --set checkpoint.every=0 --set checkpoint.save_final=false --set train.log_every=1000000 \
    --set diagnostics.every=0 --set data.dir="$data" --set data.tokenizer=gpt2 --set data.auto_prepare=false \
    "$@" > "$out/$name.log" 2>&1
}

for entry in "${all_cases[@]}"; do
  IFS='|' read -r name config overrides <<< "$entry"
  if [ -n "$selected" ] && [[ " $selected " != *" $name "* ]]; then continue; fi
  # shellcheck disable=SC2086
  if run_keel "$name" "$config" "$steps" $overrides; then
    python3 bench/bench_report.py keel "$out/$name" "$warmup" "$peak" |
      python3 -c "import json,sys; r=json.load(sys.stdin); r['case']='$name'; r['device']='$device'; print(json.dumps(r))" >> "$results"
  else
    echo "{\"case\": \"$name\", \"error\": $(tail -3 "$out/$name.log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >> "$results"
  fi
done

if [ "${BENCH_REFERENCE:-1}" = 1 ]; then
  # The same model in PyTorch eager and torch.compile at both goal shapes (issue 24): shape, batch,
  # layers, heads, d, LR as in configs/gpt2-<shape>.yaml; BENCH_REF_SHAPES picks ("124m 350m").
  for shape in ${BENCH_REF_SHAPES:-124m 350m}; do
    case "$shape" in
      124m) ref_args=(--batch "${BENCH_REF_BATCH:-32}" --layers 12 --heads 12 --d 768 --lr 6e-4) ;;
      350m) ref_args=(--batch "${BENCH_REF_BATCH_350M:-16}" --layers 24 --heads 16 --d 1024 --lr 3e-4) ;;
      *) echo "unknown reference shape $shape (124m or 350m)" >&2; continue ;;
    esac
    echo "== PyTorch reference (gpt2-$shape, ${ref_args[*]}): eager and torch.compile =="
    PYTHONUNBUFFERED=1 python3 bench/pytorch_reference.py "${ref_args[@]}" --data-dir "$data" --steps "$timed" \
      --warmup-steps "$warmup" --total-steps "$steps" --profile > "$out/pytorch_reference_$shape.log" 2>&1 ||
      tail -20 "$out/pytorch_reference_$shape.log"
    grep '^RESULT ' "$out/pytorch_reference_$shape.log" | sed 's/^RESULT //' |
      python3 -c "import json,sys
for l in sys.stdin:
    r=json.loads(l); r['case']='pytorch-$shape-'+r['mode']; print(json.dumps(r))" >> "$results"
  done
fi
{
  echo "device: $device; MFU peak $peak FLOP/s; $warmup warm-up + $timed timed steps; keel = $keel"
  python3 bench/bench_report.py table "$results"
  if [ "${BENCH_REFERENCE:-1}" = 1 ]; then
    python3 bench/bench_report.py compare "$results" "gpt2-124m-b${BENCH_REF_BATCH:-32}" pytorch-124m-
    python3 bench/bench_report.py compare "$results" "gpt2-350m-b${BENCH_REF_BATCH_350M:-16}" pytorch-350m-
  fi
} | tee "$out/summary.txt"

if [ "${BENCH_MAX_BATCH:-1}" = 1 ]; then
  # Largest gpt2-350m micro-batch that trains 2 steps: doubling, then bisection.
  fits() { run_keel "maxb-$2-$1" configs/gpt2-350m.yaml 2 --set train.batch_size="$1" $3; }
  for ckpt in false true; do
    extra="--set train.activation_checkpointing=$ckpt"
    lo=0; hi=16
    while fits "$hi" "$ckpt" "$extra"; do lo=$hi; hi=$((hi * 2)); [ $hi -gt 1024 ] && break; done
    while [ $((hi - lo)) -gt 4 ]; do
      mid=$(((lo + hi) / 2))
      if fits "$mid" "$ckpt" "$extra"; then lo=$mid; else hi=$mid; fi
    done
    mem=$(python3 -c "import json; print(max(json.loads(l).get('gpu_memory_peak_bytes',0) for l in open('$out/maxb-$ckpt-$lo/metrics.jsonl'))/2**30)" 2>/dev/null || echo "?")
    echo "gpt2-350m largest micro-batch, activation_checkpointing=$ckpt: $lo (fails at $hi; within 4), peak ${mem} GiB" |
      tee -a "$out/summary.txt"
    grep -h -m1 -iE "out of memory|error" "$out/maxb-$ckpt-$hi.log" 2>/dev/null | cut -c1-200
    rm -rf "$out"/maxb-*/checkpoints
  done
fi
