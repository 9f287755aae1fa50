#!/usr/bin/env bash
# Trains several recipes on the same data at one or more learning rates and seeds, then writes a
# comparison table (spikes, skips, rollbacks, final val loss) and loss / grad-norm curves, and the
# side-by-side `keel compare` of every run.
# Usage: bash scripts/sweep_recipes.sh OUT_DIR LR[,LR...] [extra keel train args ...]
#   env RECIPES="vanilla scaled-embed embed-ln" (default; any names of configs/, e.g. qk-norm
#       qk-norm-zloss rms-rope), SEEDS="1 2 3" (default: the recipes' own seed),
#       KEEL=path/to/keel (default build/cli/keel)
# Run folders: OUT_DIR/<recipe> for one LR and no SEEDS (as before), else
# OUT_DIR/<recipe>-lr<LR>[-seed<S>].
set -euo pipefail
out="${1:?usage: sweep_recipes.sh OUT_DIR LR[,LR...] [args]}"
lrs="${2:?learning rate(s), comma-separated}"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
keel="${KEEL:-$root/build/cli/keel}"
recipes="${RECIPES:-vanilla scaled-embed embed-ln}"
seeds="${SEEDS:-}"
mkdir -p "$out"
IFS=',' read -r -a lr_list <<< "$lrs"
runs=()
for recipe in $recipes; do
  for lr in "${lr_list[@]}"; do
    for seed in ${seeds:-default}; do
      name="$recipe"
      if [ "${#lr_list[@]}" -gt 1 ] || [ -n "$seeds" ]; then name="$recipe-lr$lr"; fi
      seed_args=()
      if [ "$seed" != default ]; then name="$name-seed$seed"; seed_args=(--set "train.seed=$seed"); fi
      runs+=("$out/$name")
      if [ -f "$out/$name/run_info.json" ] && grep -q '"status": "completed"' "$out/$name/run_info.json"; then
        echo "== $name: already done"; continue
      fi
      rm -rf "${out:?}/$name"
      echo "== $name (lr $lr)"
      # A monitor abort (exit 3, kExitStabilityAbort in common/exit_codes.h) is a result to report, not a failure of the sweep.
      "$keel" train "$root/configs/$recipe.yaml" --run-dir "$out/$name" --set train.lr="$lr" "${seed_args[@]}" "$@" \
        > "$out/$name.log" 2>&1 || echo "   exit code $? (see $out/$name.log)"
      tail -4 "$out/$name.log" | sed 's/^/   /'
    done
  done
done
/usr/bin/python3 "$root/scripts/summarize_runs.py" --plot "$out/curves.png" "${runs[@]}" | tee "$out/summary.md"
"$keel" compare "${runs[@]}" > "$out/compare.txt" 2>&1 || echo "keel compare: exit $? (see $out/compare.txt)"
