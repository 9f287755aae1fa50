#!/usr/bin/env bash
# Keel with mpirun: the coordinator in the background on this host, one keel-worker per MPI rank.
#
#   deploy/mpirun/run.sh -np N CONFIG RUN_DIR [keel-worker args...]
#
#   deploy/mpirun/run.sh -np 4 configs/vanilla.yaml runs/v4 --set parallel.dp=2 --set parallel.tp=2
#   deploy/mpirun/run.sh -np 4 configs/vanilla.yaml runs/v4 --resume        # continue it
#   KEEL_MPIRUN_ARGS="--hostfile hosts" KEEL_COORDINATOR_HOST=$(hostname -f) \
#       deploy/mpirun/run.sh -np 16 configs/gpt2-350m.yaml runs/big             # several hosts
#
# Everything after RUN_DIR goes to every keel-worker unchanged (--resume, --set section.key=value ...).
# What it does: starts `keel-coordinator --listen HOST:0 --world-size N --tp T [--dp D]`, reads the
# address it prints ("listening on HOST:PORT"), runs
# `mpirun -np N keel-worker CONFIG --coordinator HOST:PORT --run-dir RUN_DIR ...`, waits for the
# coordinator to finish (it exits once every rank has shut down; stopped after a grace period
# otherwise) and exits with mpirun's status. The coordinator's output goes to RUN_DIR/coordinator.log.
# The layout comes from the worker arguments (the last `--set parallel.tp=N` / `parallel.dp=N`), else
# CONFIG's `parallel:` section, else tp=1 and dp = N / tp; keel-worker checks dp * tp == N itself.
# mpirun gets --oversubscribe (more ranks than cores is fine on a CPU) and, as root,
# --allow-run-as-root.
#
# Security: the coordinator always requires a shared token, even on loopback (any local user can
# reach 127.0.0.1): KEEL_COORDINATOR_TOKEN when set, else a random one made for this job, handed to
# the coordinator and the ranks through their environment (mpirun -x names the variable, never its
# value), never on a command line or in a log. On loopback (one host: it sees the run's files as the
# ranks write them) the coordinator also gets --checkpoint-dir RUN_DIR/checkpoints, so it records a
# step as committed only once it is sealed on disk (docs/reliability.md).
#
# Environment (all optional):
#   KEEL_WORKER, KEEL_COORDINATOR   paths of the two programs; otherwise looked up in
#   KEEL_BIN                        a folder holding both, or a build tree (cli/ or coordinator/); otherwise
#                                   the build/ of the repository holding this script, then PATH
#   KEEL_TP, KEEL_DP                the layout, when the detection above is not what you want
#   KEEL_COORDINATOR_HOST           the address the coordinator listens on and workers dial
#                                   (default 127.0.0.1: every rank on this host)
#   KEEL_COORDINATOR_ARGS           more coordinator options, e.g. "--heartbeat-timeout 10"
#   KEEL_COORDINATOR_STATE_DIR      its --state-dir (default RUN_DIR/coordinator)
#   KEEL_MPIRUN                     the mpirun program (default: mpirun)
#   KEEL_MPIRUN_ARGS                more mpirun options, e.g. "--hostfile hosts --bind-to none"
#   KEEL_JOB_ID                     the job id (coordinator and workers' --job-id; default "default")
#   KEEL_COORDINATOR_GRACE          seconds to wait for the coordinator after the workers (default 15)
#   KEEL_COORDINATOR_TOKEN          the shared token (default: a random one per job)
set -uo pipefail

say() { echo "run.sh: $*" >&2; }
die() {
  echo "run.sh: error: $*" >&2
  exit 1
}
usage() {
  echo "usage: deploy/mpirun/run.sh -np N CONFIG RUN_DIR [keel-worker args...]" >&2
  exit 2
}

NP=""
case "${1:-}" in
  -np | -n | --np)
    [[ $# -ge 2 ]] || usage
    NP=$2
    shift 2
    ;;
  -np=* | -n=* | --np=*)
    NP=${1#*=}
    shift
    ;;
esac
[[ "$NP" =~ ^[1-9][0-9]*$ ]] || usage
[[ $# -ge 2 ]] || usage
CONFIG=$1
RUN_DIR=$2
shift 2
[[ -f "$CONFIG" ]] || die "config '$CONFIG' not found"

# ---- programs -----------------------------------------------------------------------------------
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
find_program() {  # find_program NAME SUBDIR
  local name=$1 sub=$2 c
  if [[ -n "${KEEL_BIN:-}" ]]; then
    for c in "$KEEL_BIN/$name" "$KEEL_BIN/cli/$name" "$KEEL_BIN/$sub/$name"; do
      [[ -x "$c" ]] && { echo "$c"; return 0; }
    done
    return 1
  fi
  for c in "$REPO/build/cli/$name" "$REPO/build/$sub/$name"; do
    [[ -x "$c" ]] && { echo "$c"; return 0; }
  done
  command -v "$name"
}
WORKER=${KEEL_WORKER:-$(find_program keel-worker cli)} || die "keel-worker not found (set KEEL_BIN or KEEL_WORKER; build it with cmake --build build --target keel-worker)"
COORDINATOR=${KEEL_COORDINATOR:-$(find_program keel-coordinator coordinator)} || die "keel-coordinator not found (set KEEL_BIN or KEEL_COORDINATOR)"
[[ -x "$WORKER" ]] || die "keel-worker '$WORKER' is not an executable"
[[ -x "$COORDINATOR" ]] || die "keel-coordinator '$COORDINATOR' is not an executable"
MPIRUN=${KEEL_MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null || die "'$MPIRUN' not found (install openmpi-bin: scripts/setup.sh)"

# ---- layout -------------------------------------------------------------------------------------
config_parallel() {  # config_parallel KEY: parallel.KEY from the YAML file's `parallel:` block
  awk -v key="$1" '
    /^[^ \t#][^:]*:/ { section = $0; sub(/:.*/, "", section) }
    section == "parallel" && $0 ~ "^[ \t]+" key "[ \t]*:" {
      v = $0; sub(/^[^:]*:[ \t]*/, "", v); sub(/[ \t]*(#.*)?$/, "", v); gsub(/["\047]/, "", v); print v
    }' "$CONFIG" | tail -n 1
}
arg_parallel() {  # arg_parallel KEY "$@": the last --set parallel.KEY=V among the worker args
  local key=$1 v="" prev=""
  shift
  for a in "$@"; do
    if [[ "$prev" == --set && "$a" == parallel.$key=* ]]; then v=${a#*=}; fi
    if [[ "$a" == --set=parallel.$key=* ]]; then v=${a#--set=parallel."$key"=}; fi
    prev=$a
  done
  echo "$v"
}
TP=${KEEL_TP:-$(arg_parallel tp "$@")}
TP=${TP:-$(config_parallel tp)}
TP=${TP:-1}
DP=${KEEL_DP:-$(arg_parallel dp "$@")}
DP=${DP:-$(config_parallel dp)}
layout=(--tp "$TP")
[[ -n "$DP" && "$DP" != 0 ]] && layout+=(--dp "$DP")

# ---- coordinator --------------------------------------------------------------------------------
HOST=${KEEL_COORDINATOR_HOST:-127.0.0.1}
mkdir -p "$RUN_DIR" || die "cannot create run directory '$RUN_DIR'"
COORD_LOG=$RUN_DIR/coordinator.log
STATE_DIR=${KEEL_COORDINATOR_STATE_DIR-$RUN_DIR/coordinator}
state_args=()
[[ -n "$STATE_DIR" ]] && state_args=(--state-dir "$STATE_DIR")
read -r -a extra_coordinator_args <<<"${KEEL_COORDINATOR_ARGS:-}"
job_args=()
[[ -n "${KEEL_JOB_ID:-}" ]] && job_args=(--job-id "$KEEL_JOB_ID")
# The shared token: given, or random per job; the coordinator and the ranks get it by environment.
if [[ -z "${KEEL_COORDINATOR_TOKEN:-}" ]]; then
  KEEL_COORDINATOR_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
fi
export KEEL_COORDINATOR_TOKEN
checkpoint_args=()
case "$HOST" in
  127.* | localhost | ::1 | "[::1]") checkpoint_args=(--checkpoint-dir "$RUN_DIR/checkpoints") ;;
esac

coord_pid=""
mpirun_pid=""
stop_coordinator() {
  [[ -n "$coord_pid" ]] || return 0
  if kill -0 "$coord_pid" 2>/dev/null; then
    kill -TERM "$coord_pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      kill -0 "$coord_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$coord_pid" 2>/dev/null
  fi
  wait "$coord_pid" 2>/dev/null
  coord_pid=""
}
# shellcheck disable=SC2317  # invoked by the trap below
on_signal() {
  say "signal received: stopping the workers and the coordinator"
  # mpirun forwards SIGTERM to its ranks and tears the job down.
  [[ -n "$mpirun_pid" ]] && kill -TERM "$mpirun_pid" 2>/dev/null && wait "$mpirun_pid" 2>/dev/null
  stop_coordinator
  exit 143
}
trap on_signal TERM INT
trap stop_coordinator EXIT

say "$NP ranks; coordinator on $HOST, layout tp=$TP dp=${DP:-auto}"
"$COORDINATOR" --listen "$HOST:0" --world-size "$NP" "${layout[@]}" "${job_args[@]}" \
  "${state_args[@]}" "${checkpoint_args[@]}" "${extra_coordinator_args[@]}" >"$COORD_LOG" 2>&1 &
coord_pid=$!
ADDR=""
for ((i = 0; i < 300; i++)); do
  ADDR=$(sed -n 's/^listening on //p' "$COORD_LOG" | head -n 1)
  [[ -n "$ADDR" ]] && break
  kill -0 "$coord_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ADDR" ]]; then
  say "the coordinator did not start; its output ($COORD_LOG):"
  cat "$COORD_LOG" >&2
  exit 1
fi
METRICS=$(sed -n 's/^metrics on //p' "$COORD_LOG" | head -n 1)
say "coordinator at $ADDR (pid $coord_pid, log $COORD_LOG${METRICS:+, Prometheus metrics at http://$METRICS/metrics})"

# ---- workers ------------------------------------------------------------------------------------
mpi_args=(-np "$NP" --oversubscribe -x KEEL_COORDINATOR_TOKEN)
[[ $(id -u) -eq 0 ]] && mpi_args+=(--allow-run-as-root)
read -r -a extra_mpirun_args <<<"${KEEL_MPIRUN_ARGS:-}"
"$MPIRUN" "${mpi_args[@]}" "${extra_mpirun_args[@]}" "$WORKER" "$CONFIG" --coordinator "$ADDR" \
  --run-dir "$RUN_DIR" "${job_args[@]}" "$@" &
mpirun_pid=$!
wait "$mpirun_pid"
status=$?
mpirun_pid=""
say "workers exited with status $status"

grace=${KEEL_COORDINATOR_GRACE:-15}
for ((i = 0; i < grace * 10; i++)); do
  kill -0 "$coord_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$coord_pid" 2>/dev/null; then
  say "the coordinator is still running ${grace} s after the workers; stopping it"
  stop_coordinator
else
  wait "$coord_pid"
  say "coordinator exited with status $?"
  coord_pid=""
fi
exit "$status"
