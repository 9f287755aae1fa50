#!/usr/bin/env bash
# Reproduces the GPU-build crash at the first checkpoint deletion with a tiny model, with the crash
# handler's report turned into source lines by addr2line. Usage: bash bench/gpu_crash_repro.sh OUT
set -uo pipefail
out="${1:-/tmp/keel-crash}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export KEEL_DEB_DIR="$PWD/.debs" KEEL_SKIP_APT=1 KEEL_BUILD_DIR="$PWD/build-gpu"
source scripts/setup.sh
keel_unpack_local_debs
keel_configure_and_build > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
b="$KEEL_BUILD_DIR"
echo "== CPU-only unit tests on the GPU node =="
"$b/tests/common/test_common" 2>&1 | tail -2
"$b/tests/checkpoint/test_checkpoint" 2>&1 | tail -3
"$b/tests/stability/test_stability" 2>&1 | tail -2
for device in cuda cpu; do
  echo "== tiny run on $device, checkpoint every 10, keep 3 =="
  "$b/cli/keel" train tests/worker/tiny.yaml --run-dir "$out/tiny-$device" --set data.dir=.cache/keel/data/embedded \
    --set data.vocab_size=8192 --set model.vocab_size=8192 --set train.steps=80 --set train.device=$device \
    --set train.log_every=1000 > "$out/tiny-$device.log" 2>&1
  echo "exit code $?"
  grep -E "removed|fatal signal|pc |return address|= /" "$out/tiny-$device.log" | head -30
  grep -oE "= [^ ]+\+0x[0-9a-f]+" "$out/tiny-$device.log" | head -12 | while read -r _ loc; do
    file="${loc%+*}"; offset="${loc##*+}"
    echo "   $loc -> $(addr2line -f -C -e "$file" "$offset" 2>/dev/null | tr '\n' ' ')"
  done
done
