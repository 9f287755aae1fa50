#!/usr/bin/env bash
# Norm-free recipes side by side ("ReLU's Revival", arXiv 2410.09637): trains `vanilla` (Pre-LN,
# GELU), `normfree-gelu` and `normfree-relu` (no LayerNorm anywhere) on the same data and seed at
# context 128, with the model diagnostics on, then writes
#   OUT/results.md             val loss / perplexity table, ReLU vs GELU perplexity, diagnostics means
#   OUT/compare.txt            `keel compare` of the three runs (per-layer diagnostics included)
#   OUT/curves.png             loss and grad-norm curves
#   OUT/entropy-training.png   last training probe: normalised attention entropy, layer x head, per recipe
#   OUT/<recipe>-diagnose.*    `keel diagnose` of the final checkpoint on the val probe (table, JSON, PNG)
#   OUT/entropy-by-step.png    normalised entropy per layer over training (mean over heads), per recipe
#
# Usage: bash bench/normfree_compare.sh [--gpu] [--out DIR] [--seed N] [--images DIR] [-- extra keel train args]
#   CPU (default): the recipes' configs with d 128 (4 layers x 4 heads of 32), 400 steps of 8 x 128
#                  tokens, 2 threads: ~3 min per recipe on 2 idle cores (longer on a shared machine).
#   --gpu:         GPT-2-small shape at context 128 (12 layers x 12 heads, d 768), batch 64, 6000 steps,
#                  bf16 on CUDA; point data.dir at a bigger dataset with `-- --set data.dir=...`.
#   --images DIR   also copy the PNGs to DIR/diagnostics-<mode>-*.png (docs/images for the docs page).
# Env: KEEL=path/to/keel (default build/cli/keel). Runs already completed in OUT are reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
keel="${KEEL:-$root/build/cli/keel}"
mode=cpu out="" seed=1337 images=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) mode=gpu; shift ;;
    --out) out="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
out="${out:-$root/runs/normfree-$mode}"
recipes="vanilla normfree-gelu normfree-relu"
mkdir -p "$out"

common=(--set train.seed="$seed" --set model.context_length=128 --set diagnostics.every=50
        --set diagnostics.probe_batch_size=8 --set train.log_every=50)
if [ "$mode" = gpu ]; then
  common+=(--set model.num_layers=12 --set model.num_heads=12 --set model.d_model=768
           --set train.batch_size=64 --set train.steps=6000 --set train.warmup_steps=300 --set train.lr=6e-4
           --set train.eval_every=500 --set train.eval_batches=40 --set checkpoint.every=1000
           --set diagnostics.every=250 --set train.device=cuda --set train.precision=bf16)
else
  common+=(--set model.d_model=128 --set train.threads=2 --set train.eval_every=100 --set train.eval_batches=40)
fi

for recipe in $recipes; do
  if [ -f "$out/$recipe/run_info.json" ] && grep -q '"status": "completed"' "$out/$recipe/run_info.json"; then
    echo "== $recipe: already done"; continue
  fi
  rm -rf "${out:?}/$recipe"
  echo "== $recipe ($mode)"
  start=$(date +%s)
  # A stability abort (exit 3, kExitStabilityAbort in common/exit_codes.h) is a result to report (a norm-free run may diverge), not a failure.
  "$keel" train "$root/configs/$recipe.yaml" --run-dir "$out/$recipe" "${common[@]}" "$@" \
    > "$out/$recipe.log" 2>&1 || echo "   exit code $? (see $out/$recipe.log)"
  echo "   $(( $(date +%s) - start )) s"
  grep -E "val loss" "$out/$recipe.log" | tail -1 | sed 's/^/   /' || true
done

runs=(); for r in $recipes; do runs+=("$out/$r"); done
"$keel" compare "${runs[@]}" --plot "$out/curves.png" --heatmap "$out/entropy-training.png" | tee "$out/compare.txt"
for recipe in $recipes; do
  "$keel" diagnose "$out/$recipe" --json "$out/$recipe-diagnose.json" --heatmap "$out/$recipe-diagnose.png" \
    > "$out/$recipe-diagnose.txt"
done

/usr/bin/python3 - "$out" "$mode" $recipes <<'PY'
"""results.md from the run directories and the diagnose reports; entropy-by-step.png via gnuplot."""
import json, math, os, subprocess, sys, tempfile
out, mode, recipes = sys.argv[1], sys.argv[2], sys.argv[3:]

def records(run):
    rows = []
    with open(os.path.join(out, run, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows

lines = [f"# Norm-free recipes ({mode})", "",
         "| recipe | steps | final val loss | val perplexity | best val loss | norm. entropy | overload | "
         "linearity | lin. w/o resid. | MLP sparsity | exact zeros |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
ppl = {}
for r in recipes:
    info = json.load(open(os.path.join(out, r, "run_info.json")))
    rec = records(r)
    vals = [m["val_loss"] for m in rec if m.get("val_loss") is not None]
    final = info.get("final_val_loss") or (vals[-1] if vals else float("nan"))
    ppl[r] = math.exp(final)
    d = json.load(open(os.path.join(out, f"{r}-diagnose.json")))
    layers = d["layers"]
    heads = [e for l in layers for e in l["attention_normalised_entropy"]]
    mean = lambda xs: sum(xs) / len(xs)
    lines.append(f"| {r} | {info.get('final_step')} ({info.get('status')}) | {final:.4f} | {ppl[r]:.1f} | "
                 f"{min(vals) if vals else float('nan'):.4f} | {mean(heads):.3f} | "
                 f"{d['attention_entropy_overload_fraction']:.3f} | {mean([l['linearity'] for l in layers]):.4f} | "
                 f"{mean([l['linearity_without_residual'] for l in layers]):.4f} | "
                 f"{mean([l['mlp_sparsity'] for l in layers]):.4f} | {mean([l['mlp_exactly_zero'] for l in layers]):.4f} |")
lines.append("")
if "normfree-relu" in ppl and "normfree-gelu" in ppl:
    gain = 100 * (1 - ppl["normfree-relu"] / ppl["normfree-gelu"])
    lines.append(f"Without LayerNorm, ReLU's val perplexity is {abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'} "
                 f"than GELU's ({ppl['normfree-relu']:.1f} vs {ppl['normfree-gelu']:.1f}; the paper: 8.2% lower "
                 "for GPT-2 at context 128).")
lines.append("")
lines.append("Diagnostics above: `keel diagnose` of each final checkpoint on the first validation batch "
             "(means over heads / layers; overload = fraction of heads with normalised entropy > 0.9).")
lines.append("")
lines.append("Per-layer mean normalised attention entropy of the final checkpoint:")
lines.append("")
nl = max(len(json.load(open(os.path.join(out, f"{r}-diagnose.json")))["layers"]) for r in recipes)
lines.append("| layer | " + " | ".join(recipes) + " |")
lines.append("|---|" + "---|" * len(recipes))
per = {r: json.load(open(os.path.join(out, f"{r}-diagnose.json")))["layers"] for r in recipes}
for l in range(nl):
    cells = []
    for r in recipes:
        e = per[r][l]["attention_normalised_entropy"] if l < len(per[r]) else []
        cells.append(f"{sum(e) / len(e):.3f} ({sum(x > 0.9 for x in e)}/{len(e)} overloaded)" if e else "-")
    lines.append(f"| {l} | " + " | ".join(cells) + " |")
open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))

# Mean normalised entropy per layer over training, one panel per recipe.
tmp = tempfile.mkdtemp(prefix="keel-normfree-")
plots = []
for i, r in enumerate(recipes):
    rec = [m for m in records(r) if any(k.startswith("diag.") for k in m)]
    nlayers = len(per[r])
    path = os.path.join(tmp, f"{i}.dat")
    with open(path, "w") as f:
        for m in rec:
            row = [str(m["step"] + 1)]
            for l in range(nlayers):
                hs = [v for k, v in m.items() if k.startswith(f"diag.layer{l}.head") and k.endswith("normalised_entropy")]
                row.append(f"{sum(hs) / len(hs):.6f}" if hs else "NaN")
            f.write(" ".join(row) + "\n")
    cols = ", ".join(f"'{path}' using 1:{l + 2} with linespoints title 'layer {l}'" for l in range(nlayers))
    plots.append(f"set title '{r}'\nplot {cols}\n")
script = (f"set terminal pngcairo size {440 * len(recipes)},380 font ',10' noenhanced\n"
          f"set output '{os.path.join(out, 'entropy-by-step.png')}'\nset datafile missing 'NaN'\n"
          "set xlabel 'step'\nset ylabel 'mean normalised attention entropy'\nset yrange [0:1]\nset grid\n"
          "set key bottom left\n"
          f"set multiplot layout 1,{len(recipes)}\n" + "".join(plots) + "unset multiplot\n")
with open(os.path.join(tmp, "plot.gp"), "w") as f:
    f.write(script)
subprocess.run(["gnuplot", os.path.join(tmp, "plot.gp")], check=True)
PY

if [ -n "$images" ]; then
  mkdir -p "$images"
  cp "$out/entropy-training.png" "$images/diagnostics-$mode-entropy-heatmaps.png"
  cp "$out/entropy-by-step.png" "$images/diagnostics-$mode-entropy-by-step.png"
  cp "$out/curves.png" "$images/diagnostics-$mode-curves.png"
  for recipe in $recipes; do cp "$out/$recipe-diagnose.png" "$images/diagnostics-$mode-$recipe-diagnose.png"; done
  echo "images copied to $images"
fi
echo "results: $out/results.md"
