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
def local_gpt2(folder):
    # The GPU node has no network: build tiktoken's GPT-2 encoding from the vocab.bpe the data was
    # prepared with (the same construction as tiktoken's data_gym loader), checked against encoder.json.
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    byte_of, extra = {chr(b): b for b in printable}, 0
    order = list(printable)
    for b in range(256):
        if b not in printable:
            order.append(b)
            byte_of[chr(256 + extra)] = b
            extra += 1
    def raw(token):
        return bytes(byte_of[ch] for ch in token)
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    for line in open(f"{folder}/vocab.bpe", encoding="utf-8").read().split("\n")[1:]:
        if line.strip():
            first, second = line.split()
            ranks[raw(first) + raw(second)] = len(ranks)
    encoder = json.load(open(f"{folder}/encoder.json", encoding="utf-8"))
    assert {raw(k): v for k, v in encoder.items() if k != "<|endoftext|>"} == ranks, "vocab.bpe and encoder.json disagree"
    return tiktoken.Encoding("gpt2-local", pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                             mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
try:
    enc = tiktoken.get_encoding("gpt2")
except Exception as error:  # no network and no cache
    print(f"tiktoken's own gpt2 files are not reachable ({type(error).__name__}); using {data}/vocab.bpe")
    enc = local_gpt2(data)
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
