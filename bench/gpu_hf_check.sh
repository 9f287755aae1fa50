#!/usr/bin/env bash
# Issue 23's proof on the GPU node (it has transformers, safetensors, tiktoken): trains a gpt2-124m
# checkpoint on GPT-2-tokenized data (the embedded corpus prepared with --tokenizer gpt2), then runs
# bench/hf_roundtrip.sh on it with the gpt2-124m shape: export -> transformers loads it with no
# missing/unexpected weights and gives Keel's `keel score` logits; a random GPT2LMHeadModel ->
# import -> 20 Keel steps -> export -> transformers equals Keel. Also checks Keel's GPT-2 BPE against
# tiktoken's on the corpus text.
# Needs the GPU build (bench/gpu_build.sh, or bench/gpu_check.sh first) and
# .cache/keel/data/embedded-gpt2 carried. Usage: bash bench/gpu_hf_check.sh OUT
set -uo pipefail
out="${1:?usage: gpu_hf_check.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
[ -d .deps/usr/lib/x86_64-linux-gnu ] && export LD_LIBRARY_PATH="$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
keel=build-gpu/cli/keel
data=.cache/keel/data/embedded-gpt2
start=$SECONDS
"$keel" train configs/gpt2-124m.yaml --run-dir "$out/gpt2-124m-gpt2data" --set train.device=cuda \
  --set data.dir="$data" --set data.auto_prepare=false --set data.tokenizer=gpt2 --set train.steps=120 \
  --set train.batch_size=8 --set train.warmup_steps=20 --set train.eval_every=60 --set train.eval_batches=10 \
  --set checkpoint.every=0 --set metrics.port=-1 --set metrics.linger_seconds=0 > "$out/train.log" 2>&1
echo "gpt2-124m on GPT-2 ids, 120 steps: exit $? ($((SECONDS - start)) s); $(grep -o 'final val loss [0-9.]*' "$out/train.log" | tail -1)"
KEEL="$keel" SHAPE=gpt2-124m bash bench/hf_roundtrip.sh "$out/gpt2-124m-gpt2data" "$out/hf" > "$out/hf_roundtrip.out" 2>&1
echo "hf_roundtrip: exit $?"
cat "$out/hf/summary.txt" 2>/dev/null || tail -30 "$out/hf_roundtrip.out"
# Keel's BPE vs tiktoken on the validation text of the corpus, decoded by Keel.
python3 - "$data" <<'PY'
import json, subprocess, sys, numpy as np, tiktoken
data = sys.argv[1]
ids = np.fromfile(f"{data}/val_000.bin", dtype="<u2", offset=1024).astype(np.int64)
enc = tiktoken.get_encoding("gpt2")
docs, cur = [], []
for t in ids.tolist():
    if t == 50256:
        docs.append(cur); cur = []
    else:
        cur.append(t)
same = sum(enc.encode_ordinary(enc.decode(d)) == d for d in docs)
print(f"tiktoken re-encodes {same}/{len(docs)} validation documents ({len(ids)} ids) to Keel's ids exactly")
PY
echo "total: $((SECONDS - start)) s"
