#!/usr/bin/env bash
# The README's two commands:
#   bash scripts/quickstart.sh demo   set up, then a short pretraining run with the monitor on
#   bash scripts/quickstart.sh test   set up, then the whole test suite (ctest); .ci/run calls this
#   bash scripts/quickstart.sh demo-targets   print the build targets of the demo (tests/scripts)
# Extra arguments after `demo` go to `keel train` (e.g. --set train.steps=100).
# The demo builds only the programs it runs: `keel`, whose target depends on the programs keel
# train starts (keel-coordinator, keel-prepare for the automatic data preparation, keel-worker for
# --nproc; cli/CMakeLists.txt), not the ~90 test programs and benchmarks; `test` builds everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
demo_targets=(keel)
mode="${1:-demo}"
shift || true
cd "$KEEL_ROOT"
case "$mode" in
  demo)
    keel_setup "${demo_targets[@]}"
    keel_log "demo: training the default recipe (configs/vanilla.yaml) on the embedded corpus"
    exec "$KEEL_BUILD_DIR/cli/keel" train configs/vanilla.yaml "$@"
    ;;
  test)
    keel_setup
    keel_log "running the test suite"
    cd "$KEEL_BUILD_DIR"
    exec ctest --output-on-failure -j 2 "$@"
    ;;
  demo-targets)
    echo "${demo_targets[@]}"
    ;;
  *)
    echo "usage: $0 demo|test|demo-targets [args]" >&2
    exit 2
    ;;
esac
