#!/usr/bin/env bash
# Trains several recipes on the same data, seed and (deliberately high) learning rate, then writes
# a comparison table (spikes, skips, rollbacks, final val loss) and loss / grad-norm curves.
# Usage: bash scripts/sweep_recipes.sh OUT_DIR LR [extra keel train args ...]
#   env RECIPES="vanilla scaled-embed embed-ln" (default), KEEL=path/to/keel (default build/cli/keel)
set -euo pipefail
out="${1:?usage: sweep_recipes.sh OUT_DIR LR [args]}"
lr="${2:?learning rate}"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
keel="${KEEL:-$root/build/cli/keel}"
recipes="${RECIPES:-vanilla scaled-embed embed-ln}"
mkdir -p "$out"
for recipe in $recipes; do
  if [ -f "$out/$recipe/run_info.json" ] && grep -q '"status": "completed"' "$out/$recipe/run_info.json"; then
    echo "== $recipe: already done"; continue
  fi
  rm -rf "${out:?}/$recipe"
  echo "== $recipe (lr $lr)"
  # A monitor abort (exit 3, kExitStabilityAbort in common/exit_codes.h) is a result to report, not a failure of the sweep.
  "$keel" train "$root/configs/$recipe.yaml" --run-dir "$out/$recipe" --set train.lr="$lr" "$@" \
    > "$out/$recipe.log" 2>&1 || echo "   exit code $? (see $out/$recipe.log)"
  tail -4 "$out/$recipe.log" | sed 's/^/   /'
done
# shellcheck disable=SC2086
/usr/bin/python3 "$root/scripts/summarize_runs.py" --plot "$out/curves.png" $(for r in $recipes; do echo "$out/$r"; done) \
  | tee "$out/summary.md"
