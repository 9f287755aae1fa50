#!/usr/bin/env bash
# Hugging Face round trip on a machine with transformers (the GPU node): Keel's HF export/import
# against transformers itself, which the CPU test machines lack (tests/interop checks the same
# layouts against an independent Python GPT-2 instead).
#
#   1. keel export CHECKPOINT_OR_RUN -> transformers AutoModelForCausalLM loads it with no missing /
#      unexpected weights (loading report and log captured); fp32 logits on a batch equal
#      `keel score`'s (max abs diff < 1e-3, printed); AutoTokenizer (slow, fast) encodes a text
#      like keel-tokenize.
#   2. a randomly initialised GPT2LMHeadModel with a Keel recipe's shape (SHAPE=vanilla or
#      gpt2-124m; the export's vocabulary) -> save_pretrained -> keel import -> keel score equals
#      transformers -> `keel train` STEPS steps with train.init_from on the run's dataset ->
#      keel export -> transformers loads it and gives `keel score`'s logits.
#   3. an untied-head ReLU GPT2LMHeadModel -> keel import -> keel score equals transformers.
#
# Usage: bench/hf_roundtrip.sh CHECKPOINT_OR_RUN OUT_DIR
#   env: KEEL (default build/cli/keel), PYTHON (python3), SHAPE (vanilla), STEPS (20), TOL (1e-3)
# Writes OUT_DIR/results.jsonl (one JSON object per check, "ok" true/false), OUT_DIR/summary.txt and
# OUT_DIR/log.txt; exits 1 if any check failed.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
source_ckpt="$(realpath "$1")"
out="$(realpath -m "$2")"
keel="$(realpath "${KEEL:-${repo}/build/cli/keel}")"
python="${PYTHON:-python3}"
shape="${SHAPE:-vanilla}"
steps="${STEPS:-20}"
tol="${TOL:-1e-3}"
py="${repo}/bench/hf_roundtrip.py"
cd "${repo}"  # relative data.dir / tokenizer_cache of run configs are relative to the repository

rm -rf "${out}"
mkdir -p "${out}"
results="${out}/results.jsonl"
exec > >(tee "${out}/log.txt") 2>&1
echo "hf_roundtrip: ${source_ckpt} -> ${out} (keel ${keel}, shape ${shape}, ${steps} steps)"
"${python}" -c 'import torch, transformers, safetensors; print("torch", torch.__version__, "transformers", transformers.__version__)'

failed=0
check() {  # runs a check; a failure is recorded and the script goes on to the next part
  if ! "$@"; then
    failed=1
    echo "FAILED: $*"
  fi
}

# The config.yaml of the checkpoint (or of its run), for the dataset the model was trained on.
ckpt="$("${python}" - "${source_ckpt}" <<'EOF'
import os, sys
p = sys.argv[1]
if os.path.exists(os.path.join(p, "trainer_state.json")):
    print(p)
else:
    root = os.path.join(p, "checkpoints") if os.path.isdir(os.path.join(p, "checkpoints")) else p
    steps = sorted(d for d in os.listdir(root) if d.startswith("step_") and os.path.exists(os.path.join(root, d, "manifest.json")))
    print(os.path.join(root, steps[-1]))
EOF
)"
config_yaml="${ckpt}/config.yaml"
[[ -f "${config_yaml}" ]] || config_yaml="$(dirname "$(dirname "${ckpt}")")/config.yaml"
data_dir="$(realpath "$("${python}" "${py}" config-value "${config_yaml}" data dir)")"
tokenizer_cache="$(realpath -m "$("${python}" "${py}" config-value "${config_yaml}" data tokenizer_cache)")"
echo "checkpoint ${ckpt}; dataset ${data_dir}"

# ---- 1. export a trained checkpoint, load it in transformers -------------------------------------
"${keel}" export "${source_ckpt}" --format hf --out "${out}/export"
vocab="$("${python}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "${out}/export/config.json")"
context="$("${python}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_positions"])' "${out}/export/config.json")"
length=$(( context < 64 ? context : 64 ))
"${python}" "${py}" tokens "${out}/tokens.json" --vocab "${vocab}" --length "${length}" --batch 4 --seed 1
"${keel}" score "${source_ckpt}" --tokens "${out}/tokens.json" --vocab "${vocab}" \
  --logits "${out}/export_logits.safetensors" --json "${out}/export_score.json" > /dev/null
check "${python}" "${py}" load-check "${out}/export" "${out}/tokens.json" "${out}/export_score.json" \
  "${out}/export_logits.safetensors" "${results}" export_trained --tol "${tol}"

printf 'The river, 1843 \xe2\x80\x94 na\xc3\xafve caf\xc3\xa9 prices rose 12%%.\n    Indented line\twith a tab.\nSecond paragraph: "quoted", (parenthesised) & more!\n' > "${out}/sample.txt"
if "${keel}-tokenize" "${data_dir}" --tokenizer-cache "${tokenizer_cache}" "${out}/sample.txt" "${out}/sample.bin"; then
  check "${python}" "${py}" tokenizer-check "${out}/export" "${out}/sample.txt" "${out}/sample.bin" "${results}" tokenizer
else
  echo '{"check": "tokenizer", "ok": false, "error": "keel-tokenize failed"}' >> "${results}"
  failed=1
fi

# ---- 2. random GPT2LMHeadModel -> keel import -> train in Keel -> export -> transformers ---------
"${python}" "${py}" make-random "${out}/random" --like "${out}/export" --shape "${shape}" --seed 7
"${keel}" import --format hf "${out}/random" --out "${out}/imported" --set "data.dir=${data_dir}" \
  --set "data.tokenizer_cache=${tokenizer_cache}"
length2=$(( $("${python}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_positions"])' "${out}/random/config.json") ))
length2=$(( length2 < 64 ? length2 : 64 ))
"${python}" "${py}" tokens "${out}/tokens2.json" --vocab "${vocab}" --length "${length2}" --batch 4 --seed 2
"${keel}" score "${out}/imported" --tokens "${out}/tokens2.json" --logits "${out}/imported_logits.safetensors" \
  --json "${out}/imported_score.json" > /dev/null
check "${python}" "${py}" load-check "${out}/random" "${out}/tokens2.json" "${out}/imported_score.json" \
  "${out}/imported_logits.safetensors" "${results}" import_random --tol "${tol}"

# stability.mode=observe: a random model's first losses may look like spikes to the monitor, which
# is not what this checks.
if "${keel}" train "${out}/imported/config.yaml" --run-dir "${out}/train" --set "train.init_from=${out}/imported" \
  --set "train.steps=${steps}" --set train.warmup_steps=2 --set "train.eval_every=${steps}" --set train.eval_batches=4 \
  --set train.batch_size=8 --set "checkpoint.every=${steps}" --set metrics.linger_seconds=0 \
  --set stability.mode=observe; then
  "${python}" - "${out}/train" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if l.strip()]
init = json.load(open(sys.argv[1] + "/init_from.json"))
print("trained from the import: val loss at step 0 %.4f (fresh parameters: %s); loss step %d %.4f -> step %d %.4f"
      % (init["val_loss"], init["fresh_parameters"], rows[0]["step"], rows[0]["loss"], rows[-1]["step"], rows[-1]["loss"]))
EOF
  "${keel}" export "${out}/train" --format hf --out "${out}/reexport"
  "${keel}" score "${out}/train" --tokens "${out}/tokens2.json" --vocab "${vocab}" \
    --logits "${out}/reexport_logits.safetensors" --json "${out}/reexport_score.json" > /dev/null
  check "${python}" "${py}" load-check "${out}/reexport" "${out}/tokens2.json" "${out}/reexport_score.json" \
    "${out}/reexport_logits.safetensors" "${results}" trained_after_import --tol "${tol}"
else
  echo '{"check": "trained_after_import", "ok": false, "error": "keel train from the import failed"}' >> "${results}"
  failed=1
fi

# ---- 3. untied head + ReLU -------------------------------------------------------------------------
"${python}" "${py}" make-random "${out}/random_untied" --like "${out}/export" --shape vanilla --variant untied-relu --seed 9
"${keel}" import --format hf "${out}/random_untied" --out "${out}/imported_untied"
"${keel}" score "${out}/imported_untied" --tokens "${out}/tokens2.json" \
  --logits "${out}/untied_logits.safetensors" --json "${out}/untied_score.json" > /dev/null
check "${python}" "${py}" load-check "${out}/random_untied" "${out}/tokens2.json" "${out}/untied_score.json" \
  "${out}/untied_logits.safetensors" "${results}" import_untied_relu --tol "${tol}"

"${python}" - "${results}" > "${out}/summary.txt" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    figures = ", ".join("%s %.3g" % (k, r[k]) for k in ("max_abs_logit_diff", "max_abs_logprob_diff") if k in r)
    print("%-22s %s  %s" % (r["check"], "ok  " if r.get("ok") else "FAIL", figures or r.get("error", "")))
EOF
cat "${out}/summary.txt"
exit "${failed}"
