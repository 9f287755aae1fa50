#!/usr/bin/env bash
# `bash scripts/quickstart.sh demo` builds only what the demo runs (issue 27 item 1): the targets it
# names build every program the demo executes (keel, and what keel train starts: keel-coordinator,
# keel-prepare, keel-worker) and no test, fuzz or benchmark program. Reads the build graph with
# `ninja -t inputs`; builds nothing. Usage: check_demo_targets.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir="$1"
build_dir="$2"
read -r -a targets <<< "$(bash "$source_dir/scripts/quickstart.sh" demo-targets)"
[ "${#targets[@]}" -gt 0 ] || { echo "quickstart.sh demo-targets printed no target"; exit 1; }
closure="$(ninja -C "$build_dir" -t inputs "${targets[@]}"; printf '%s\n' "${targets[@]}")"
status=0
for program in keel keel-coordinator keel-prepare keel-worker; do
  if ! grep -qx -e "cli/$program" -e "$program" <<< "$closure"; then
    echo "the demo runs $program, but building '${targets[*]}' does not build it"
    status=1
  fi
done
extra="$(grep -E '^(tests|fuzz|bench)/' <<< "$closure" | grep -vE '\.(h|hpp|cpp|cc|cu|txt|cmake|py|sh)$' || true)"
if [ -n "$extra" ]; then
  echo "building '${targets[*]}' also builds programs the demo never runs:"
  head -20 <<< "$extra"
  status=1
fi
[ "$status" -eq 0 ] && echo "demo targets: ${targets[*]} ($(wc -l <<< "$closure") build inputs, no test programs)"
exit "$status"
