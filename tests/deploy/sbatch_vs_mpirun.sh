#!/usr/bin/env bash
# Runs one job twice with the shipped launchers and compares the two runs' losses:
#   sbatch_vs_mpirun.sh OUT_DIR NTASKS CONFIG [keel-worker args...]
#   1. deploy/mpirun/run.sh -np NTASKS CONFIG OUT_DIR/mpirun ARGS...
#   2. sbatch --wait -N1 -n NTASKS deploy/slurm/keel.sbatch CONFIG OUT_DIR/slurm ARGS...  (on the
#      cluster SLURM_CONF names: scripts/slurm_local.sh's test cluster)
#   3. both exit 0, and their metrics.jsonl losses and grad norms agree (tests/deploy/compare_metrics.py; its options
#      from COMPARE_ARGS, default "--rtol 1e-5 --min-steps 20 --key loss --key grad_norm").
# KEEL_WORKER / KEEL_COORDINATOR (or KEEL_BIN) name the programs, as for the launchers themselves.
set -uo pipefail
[[ $# -ge 3 ]] || { echo "usage: $0 OUT_DIR NTASKS CONFIG [worker args...]" >&2; exit 2; }
OUT=$1 NTASKS=$2 CONFIG=$3
shift 3
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ -n "${SLURM_CONF:-}" && -f "$SLURM_CONF" ]] || { echo "SLURM_CONF is not set to a cluster's slurm.conf" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"

fail() {
  echo "FAILED: $*" >&2
  for f in "$OUT"/slurm.out "$OUT"/mpirun.out "$OUT"/*/coordinator.log; do
    [[ -f "$f" ]] || continue
    echo "----- $f (last 60 lines) -----" >&2
    tail -n 60 "$f" >&2
  done
  exit 1
}

echo "== mpirun: deploy/mpirun/run.sh -np $NTASKS $CONFIG $OUT/mpirun $*"
start=$SECONDS
timeout 600 "$REPO/deploy/mpirun/run.sh" -np "$NTASKS" "$CONFIG" "$OUT/mpirun" "$@" >"$OUT/mpirun.out" 2>&1
rc=$?
echo "   exit $rc after $((SECONDS - start)) s"
[[ $rc -eq 0 ]] || fail "deploy/mpirun/run.sh exited with $rc"

echo "== slurm: sbatch --wait -N1 -n $NTASKS deploy/slurm/keel.sbatch $CONFIG $OUT/slurm $*"
start=$SECONDS
job=$(sbatch --parsable --wait --time=10 -N1 -n "$NTASKS" -o "$OUT/slurm.out" -J keel-deploy-test \
  "$REPO/deploy/slurm/keel.sbatch" "$CONFIG" "$OUT/slurm" "$@")
rc=$?
echo "   job ${job:-?} exit $rc after $((SECONDS - start)) s"
[[ $rc -eq 0 ]] || fail "the sbatch job exited with $rc"
grep -q "coordinator exited with status 0" "$OUT/slurm.out" || fail "the coordinator of the Slurm job did not complete the job"
grep -q "coordinator exited with status 0" "$OUT/mpirun.out" || fail "the coordinator of the mpirun job did not complete the job"

echo "== compare $OUT/mpirun/metrics.jsonl $OUT/slurm/metrics.jsonl"
read -r -a compare_args <<<"${COMPARE_ARGS:---rtol 1e-5 --min-steps 20 --key loss --key grad_norm}"
/usr/bin/python3 "$REPO/tests/deploy/compare_metrics.py" "$OUT/mpirun/metrics.jsonl" "$OUT/slurm/metrics.jsonl" \
  "${compare_args[@]}" || fail "the two runs' metrics differ"
