#!/usr/bin/env bash
# The README's two commands:
#   bash scripts/quickstart.sh demo   set up, then a short pretraining run with the monitor on
#   bash scripts/quickstart.sh test   set up, then the whole test suite (ctest); .ci/run calls this
# Extra arguments after `demo` go to `keel train` (e.g. --set train.steps=100).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
mode="${1:-demo}"
shift || true
cd "$KEEL_ROOT"
keel_setup
case "$mode" in
  demo)
    keel_log "demo: training the default recipe (configs/vanilla.yaml) on the embedded corpus"
    exec "$KEEL_BUILD_DIR/cli/keel" train configs/vanilla.yaml "$@"
    ;;
  test)
    keel_log "running the test suite"
    cd "$KEEL_BUILD_DIR"
    exec ctest --output-on-failure -j 2 "$@"
    ;;
  *)
    echo "usage: $0 demo|test [args]" >&2
    exit 2
    ;;
esac
