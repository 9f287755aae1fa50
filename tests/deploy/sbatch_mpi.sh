#!/usr/bin/env bash
# sbatch_mpi.sh OUT_DIR MPI_PROGRAM: batch jobs on the test cluster (SLURM_CONF) run MPI programs and
# report their status:
#   1. `sbatch --wait -n 4` of a job that runs `srun --mpi=pmix MPI_PROGRAM` exits 0, and all 4 ranks
#      report "0 failures" (tests/parallel/test_mpi_collectives' summary line);
#   2. `sbatch --wait` of a job that exits 3 exits 3 (the launch tests rely on it).
set -uo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 OUT_DIR MPI_PROGRAM" >&2; exit 2; }
OUT=$1 PROG=$2
rm -rf "$OUT"
mkdir -p "$OUT"

job=$(sbatch --parsable --wait --time=5 -N1 -n 4 -o "$OUT/mpi.out" -J keel-mpi-test \
  --wrap="srun --mpi=pmix '$PROG'")
rc=$?
cat "$OUT/mpi.out"
echo "job ${job:-?} exited with $rc"
[[ $rc -eq 0 ]] || { echo "FAILED: the MPI batch job exited with $rc" >&2; exit 1; }
ok=$(grep -c "checks, 0 failures" "$OUT/mpi.out")
[[ "$ok" -eq 4 ]] || { echo "FAILED: $ok of 4 ranks reported 0 failures" >&2; exit 1; }

job=$(sbatch --parsable --wait --time=1 -n 1 -o "$OUT/exit3.out" -J keel-exit-test --wrap="exit 3")
rc=$?
echo "job ${job:-?} (exit 3) exited with $rc"
[[ $rc -eq 3 ]] || { echo "FAILED: sbatch --wait returned $rc for a job that exits 3" >&2; exit 1; }
echo "OK"
