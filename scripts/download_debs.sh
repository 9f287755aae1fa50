#!/usr/bin/env bash
# Downloads (on a Debian 12 machine with network) the .deb files an air-gapped GPU node lacks:
# gRPC with its dependencies, prometheus-cpp with civetweb, SentencePiece, CLI11, nlohmann-json,
# SQLite headers and GoogleTest. Carry the folder to the node and build with
#   KEEL_DEB_DIR=FOLDER KEEL_SKIP_APT=1 bash scripts/quickstart.sh demo
# Usage: bash scripts/download_debs.sh [FOLDER]   (default .debs)
set -euo pipefail
dir="${1:-.debs}"
mkdir -p "$dir"
cd "$dir"
apt-get download \
  libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 protobuf-compiler-grpc libabsl20220623 libabsl-dev \
  libre2-9 libre2-dev libc-ares2 libc-ares-dev \
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0 \
  libcivetweb1 libcivetweb-dev civetweb \
  libsentencepiece0 libsentencepiece-dev libcli11-dev nlohmann-json3-dev libsqlite3-dev libgtest-dev libgmock-dev
echo "downloaded $(ls ./*.deb | wc -l) packages into $dir"
