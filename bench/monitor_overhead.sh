#!/usr/bin/env bash
# The stability monitor's cost: the same training run with the monitor on and off, compared by the
# median step time (metrics.jsonl) after warm-up. Prints both medians and the relative overhead.
# Usage: bash bench/monitor_overhead.sh CONFIG STEPS OUT_DIR [extra keel train args]
set -uo pipefail
config="$1"; steps="$2"; out="$3"; shift 3
mkdir -p "$out"
keel="${KEEL:-$(cd "$(dirname "$0")/.." && pwd)/build/cli/keel}"
for mode in off on; do
  enabled=$([ "$mode" = on ] && echo true || echo false)
  rm -rf "${out:?}/$mode"
  "$keel" train "$config" --run-dir "$out/$mode" --set train.steps="$steps" --set stability.enabled="$enabled" \
    --set train.eval_every=0 --set checkpoint.every=0 --set checkpoint.save_final=false "$@" > "$out/$mode.log" 2>&1 \
    || { echo "monitor $mode: run failed"; tail -5 "$out/$mode.log"; exit 1; }
done
/usr/bin/env python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def median_step(mode):
    rows = [json.loads(l) for l in open(f"{out}/{mode}/metrics.jsonl") if l.strip()]
    times = [r["step_time"] for r in rows[10:] if "val_loss" not in r]
    return statistics.median(times), len(times)
off, n_off = median_step("off")
on, n_on = median_step("on")
print(f"median step time: monitor off {off*1e3:.2f} ms ({n_off} steps), on {on*1e3:.2f} ms ({n_on} steps); "
      f"overhead {100*(on-off)/off:+.2f}%")
PY
