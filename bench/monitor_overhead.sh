#!/usr/bin/env bash
# The cost of Keel's watchfulness: the same training run with the stability monitor and the model
# diagnostics on at their default intervals ("on": stability.enabled=true, diagnostics.every as the
# config says, 100 by default) and both off ("off": stability.enabled=false, diagnostics.every=0),
# compared by the mean step time after warm-up (the diagnostics run only every N steps, so a
# median would hide them; the median is printed too). Use more steps than the diagnostics
# interval, or they never run. Prints both and the relative overhead.
# Usage: bash bench/monitor_overhead.sh CONFIG STEPS OUT_DIR [extra keel train args]
set -uo pipefail
config="$1"; steps="$2"; out="$3"; shift 3
mkdir -p "$out"
root="$(cd "$(dirname "$0")/.." && pwd)"
keel="${KEEL:-$root/build/cli/keel}"
[ -d "$root/.deps/usr/lib/x86_64-linux-gnu" ] && export LD_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
for mode in off on; do
  if [ "$mode" = on ]; then
    switches=(--set stability.enabled=true)
  else
    switches=(--set stability.enabled=false --set diagnostics.every=0)
  fi
  rm -rf "${out:?}/$mode"
  "$keel" train "$config" --run-dir "$out/$mode" --set train.steps="$steps" --set train.eval_every=0 \
    --set checkpoint.every=0 --set checkpoint.save_final=false "$@" "${switches[@]}" > "$out/$mode.log" 2>&1 \
    || { echo "monitor $mode: run failed"; tail -5 "$out/$mode.log"; exit 1; }
done
/usr/bin/env python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def times(mode):
    rows = [json.loads(l) for l in open(f"{out}/{mode}/metrics.jsonl") if l.strip()]
    t = [r["step_time"] for r in rows[10:] if "val_loss" not in r]
    diag = sum(1 for r in rows if any(k.startswith("diag") or k.startswith("attention_entropy") for k in r))
    return statistics.mean(t), statistics.median(t), len(t), diag
off_mean, off_median, n_off, _ = times("off")
on_mean, on_median, n_on, diag = times("on")
print(f"mean step time: off {off_mean*1e3:.2f} ms ({n_off} steps), on {on_mean*1e3:.2f} ms ({n_on} steps, "
      f"{diag} with diagnostics); overhead {100*(on_mean-off_mean)/off_mean:+.2f}%")
print(f"median step time: off {off_median*1e3:.2f} ms, on {on_median*1e3:.2f} ms; "
      f"overhead {100*(on_median-off_median)/off_median:+.2f}%")
PY
