#!/usr/bin/env bash
# slurm_local.sh: a real single-host Slurm cluster (Debian's slurm-wlm + munge) for tests and
# local tries of deploy/slurm/, with its config, state, logs and PID files under one folder.
#
#   scripts/slurm_local.sh start DIR    bring the cluster up (idempotent: a running one is kept)
#   scripts/slurm_local.sh stop DIR     cancel jobs, stop what `start DIR` started (idempotent)
#   scripts/slurm_local.sh env DIR      print `export SLURM_CONF=DIR/slurm.conf` (eval it)
#   scripts/slurm_local.sh status DIR   exit 0 when the cluster of DIR answers and its node is idle/up
#
# What start does (deploy/README.md, "A Slurm cluster on one machine", says why it is configured so):
#   - munge: reuses a running munged when `munge -n | unmunge` works; otherwise starts a private one,
#     as the munge user, on a socket of its own (DIR/munge/) and points slurm.conf's AuthInfo at it, so
#     parallel clusters never share (and never stop) each other's munged. Its PID goes to
#     DIR/pid/munged.pid, so stop kills only a munged that start started. (When DIR's path is too long
#     for unix sockets, munge's and slurmd's sockets go to a /tmp/keel-slurm.* folder that stop removes.)
#   - writes DIR/slurm.conf: NodeName = `hostname -s` on 127.0.0.1, CPUs=4 (config_overrides, so 4
#     tasks run on a smaller machine), proctrack/linuxproc + task/none (no cgroups), MinJobAge=4 and
#     batch_sched_delay=0 (back-to-back jobs start at once), SlurmctldPort and SlurmdPort picked free at
#     start (parallel clusters do not collide); state, spool, logs and PID files under DIR.
#   - starts `slurmctld -i` and `slurmd`, waits until sinfo says the node is idle (KEEL_SLURM_TIMEOUT
#     seconds, default 30), and on failure prints the daemons' log tails and stops what it started.
# stop kills by PID file only, after checking /proc/PID/comm names the expected daemon; it never
# kills by name. Run as root (slurmd must be root to launch tasks as root). Nothing goes to /etc/slurm.
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "slurm_local.sh: error: $*" >&2
  exit 1
}

log() { echo "slurm_local.sh: $*" >&2; }

[[ $# -eq 2 ]] || usage
cmd=$1
[[ -n "$2" ]] || usage
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/slurm.conf
PIDDIR=$DIR/pid
LOGDIR=$DIR/log
HOST=$(hostname -s)
TIMEOUT=${KEEL_SLURM_TIMEOUT:-30}

# ---- PID-file helpers -------------------------------------------------------------------------

# running PID COMM: that process exists, is not a zombie, and its /proc/PID/comm is COMM.
running() {
  local stat
  [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == "$2" ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat:0:1}" != Z ]]
}

# pid_of FILE COMM: the PID in FILE when that process is running and its /proc/PID/comm is COMM.
pid_of() {
  local file=$1 comm=$2 pid
  [[ -s "$file" ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [[ -n "$pid" ]] || return 1
  running "$pid" "$comm" || return 1
  echo "$pid"
}

# stop_pids FILE COMM [FILE COMM ...]: SIGTERM each daemon named by a PID file (if its comm is COMM),
# all at once, wait up to 10 s for them to go, then SIGKILL what is left. Removes the PID files.
stop_pids() {
  local pids=() comms=() pid i j alive
  while (($# >= 2)); do
    if pid=$(pid_of "$1" "$2"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      comms+=("$2")
    fi
    rm -f "$1"
    shift 2
  done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for j in "${!pids[@]}"; do
      running "${pids[j]}" "${comms[j]}" && alive=1
    done
    ((alive)) || return 0
    sleep 0.1
  done
  for j in "${!pids[@]}"; do
    if running "${pids[j]}" "${comms[j]}"; then
      log "${comms[j]} (pid ${pids[j]}) ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "${pids[j]}" 2>/dev/null || true
    fi
  done
  sleep 0.2
}

# ---- ports --------------------------------------------------------------------------------------

port_in_use() {
  # Any local TCP socket on that port (listening or not) counts as taken.
  ss -Htan 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$"
}

# free_ports N: N distinct TCP ports nobody uses now, from the range below the kernel's ephemeral one.
free_ports() {
  local n=$1 got=() p tries=0
  while ((${#got[@]} < n)); do
    ((tries++ < 1000)) || die "no free TCP port found"
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    port_in_use "$p" && continue
    [[ " ${got[*]-} " == *" $p "* ]] && continue
    got+=("$p")
  done
  echo "${got[@]}"
}

# ---- short paths for sockets --------------------------------------------------------------------
# munged's socket and slurmd's step sockets (in SlurmdSpoolDir) must fit a unix socket path
# (108 bytes). Under a long DIR they go to a /tmp/keel-slurm.XXXXXX folder instead, recorded in
# DIR/socket.root and removed by stop.
socket_root() {
  if ((${#DIR} <= 60)); then
    echo "$DIR"
    return
  fi
  if [[ ! -s "$DIR/socket.root" || ! -d "$(cat "$DIR/socket.root")" ]]; then
    local t
    t=$(mktemp -d /tmp/keel-slurm.XXXXXX)
    chmod 755 "$t"  # the munge user must reach its folder inside
    echo "$t" >"$DIR/socket.root"
  fi
  cat "$DIR/socket.root"
}

remove_socket_root() {
  if [[ -s "$DIR/socket.root" ]]; then
    local t
    t=$(cat "$DIR/socket.root")
    [[ "$t" == /tmp/keel-slurm.* ]] && rm -rf "$t"
    rm -f "$DIR/socket.root"
  fi
}

# ---- munge --------------------------------------------------------------------------------------

munge_socket() {  # the socket our slurm.conf uses, empty for the system default
  if [[ -s "$DIR/munge.socket" ]]; then cat "$DIR/munge.socket"; fi
}

munge_works() {  # munge_works [SOCKET]
  if [[ -n "${1:-}" ]]; then
    munge -n -S "$1" 2>/dev/null | unmunge -S "$1" >/dev/null 2>&1
  else
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
  fi
}

start_munge() {
  local sock
  sock=$(munge_socket)
  if [[ -n "$sock" ]] && pid_of "$PIDDIR/munged.pid" munged >/dev/null && munge_works "$sock"; then
    return 0  # ours, still running
  fi
  if munge_works; then
    log "reusing the running munged (default socket)"
    rm -f "$DIR/munge.socket"
    return 0
  fi
  PATH=$PATH:/usr/sbin command -v munged >/dev/null || die "munged not found: install munge (scripts/setup.sh)"
  id munge >/dev/null 2>&1 || die "no 'munge' user: install munge (scripts/setup.sh)"
  # The key: created once if the package did not (owned by munge, 0600 in a 0700 folder).
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 700 /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
  fi
  # A private socket folder: DIR/munge when short enough for a unix socket path (108 bytes),
  # otherwise a folder under /tmp that stop removes.
  local sockdir
  sockdir=$(socket_root)/munge
  install -d -o munge -g munge -m 755 "$sockdir"
  rm -f "$sockdir"/munge.socket.2*
  sock=$sockdir/munge.socket.2
  # munged refuses to run as root ("Keyfile is insecure"): run it as the munge user. Its PID, log
  # and seed files live in sockdir (writable by munge); the PID file is copied to DIR/pid.
  runuser -u munge -- /usr/sbin/munged --socket="$sock" --pid-file="$sockdir/munged.pid" \
    --log-file="$sockdir/munged.log" --seed-file="$sockdir/munged.seed" ||
    die "munged did not start: $(tail -n 5 "$sockdir/munged.log" 2>/dev/null)"
  local i
  for ((i = 0; i < 50; i++)); do
    munge_works "$sock" && break
    sleep 0.1
  done
  munge_works "$sock" || die "munged started but 'munge -n | unmunge' fails: $(tail -n 5 "$sockdir/munged.log" 2>/dev/null)"
  cp "$sockdir/munged.pid" "$PIDDIR/munged.pid"
  echo "$sock" >"$DIR/munge.socket"
  log "started munged (pid $(cat "$PIDDIR/munged.pid"), socket $sock)"
}

stop_munge() {
  stop_pids "$PIDDIR/munged.pid" munged
  rm -f "$DIR/munge.socket"
}

# ---- slurm --------------------------------------------------------------------------------------

write_conf() {
  local ctld_port=$1 slurmd_port=$2 mem sock authinfo="" first_job_id
  # Distinct job ids per cluster (parallel clusters on one host stay apart in /tmp and the logs).
  first_job_id=$((1000 + (RANDOM * 32768 + RANDOM) % 900000))
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  sock=$(munge_socket)
  [[ -n "$sock" ]] && authinfo="AuthInfo=socket=$sock"
  mkdir -p "$DIR/state" "$(socket_root)/spool/slurmd" "$PIDDIR" "$LOGDIR"
  cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm_local.sh start $DIR: a one-node test cluster on loopback.
ClusterName=keeltest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$authinfo
MpiDefault=pmix
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$(socket_root)/spool/slurmd
SlurmctldPidFile=$PIDDIR/slurmctld.pid
SlurmdPidFile=$PIDDIR/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
FirstJobId=$first_job_id
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=4
SchedulerParameters=batch_sched_delay=0
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  mv "$CONF.tmp" "$CONF"
  # PMIx (srun --mpi=pmix) keeps per-step client folders named by job and step id under /tmp by
  # default: two clusters on one host would collide there. Give each cluster its own.
  mkdir -p "$(socket_root)/pmix"
  printf '%s\n' "# Written by scripts/slurm_local.sh (Slurm reads it from the folder of slurm.conf)." \
    "PMIxCliTmpDirBase=$(socket_root)/pmix" >"$DIR/mpi.conf"
}

node_state() {
  SLURM_CONF=$CONF timeout 10 sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 | tr -d ' *'
}

cluster_up() {
  [[ -f "$CONF" ]] || return 1
  pid_of "$PIDDIR/slurmctld.pid" slurmctld >/dev/null || return 1
  pid_of "$PIDDIR/slurmd.pid" slurmd >/dev/null || return 1
  local sock
  sock=$(munge_socket)
  munge_works "$sock" || return 1
  case "$(node_state)" in
    idle | mix | alloc | comp) return 0 ;;
    *) return 1 ;;
  esac
}

show_logs() {
  local f
  for f in "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"; do
    echo "----- tail of $f -----" >&2
    tail -n 25 "$f" >&2 2>/dev/null || echo "(missing)" >&2
  done
  echo "----- sinfo -----" >&2
  SLURM_CONF=$CONF timeout 10 sinfo -N -l >&2 2>&1 || true
}

stop_slurm() {
  if [[ -f "$CONF" ]] && pid_of "$PIDDIR/slurmctld.pid" slurmctld >/dev/null; then
    # Cancel what still runs so no job step outlives its daemons, and give it a moment to end.
    local jobs
    jobs=$(SLURM_CONF=$CONF timeout 5 squeue -h -o %i 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -n "$jobs" ]] && { SLURM_CONF=$CONF timeout 10 scancel --quiet --full $jobs >/dev/null 2>&1 || true; }
    local i
    for ((i = 0; i < 50; i++)); do
      [[ -z "$(SLURM_CONF=$CONF timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break
      sleep 0.2
    done
  fi
  stop_pids "$PIDDIR/slurmd.pid" slurmd "$PIDDIR/slurmctld.pid" slurmctld
}

do_start() {
  if cluster_up; then
    log "cluster of $DIR is already up"
    return 0
  fi
  # A half-started or dead cluster from an earlier run: clear it away first.
  stop_slurm
  local slurmctld slurmd
  slurmctld=$(PATH=$PATH:/usr/sbin command -v slurmctld) || die "slurmctld not found: install slurm-wlm (scripts/setup.sh)"
  slurmd=$(PATH=$PATH:/usr/sbin command -v slurmd) || die "slurmd not found: install slurm-wlm (scripts/setup.sh)"
  [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd launches the tasks)"
  mkdir -p "$PIDDIR" "$LOGDIR"
  start_munge
  local ports
  read -r -a ports <<<"$(free_ports 2)"
  write_conf "${ports[0]}" "${ports[1]}"
  # Fresh logs per start, so a failure shows this start's lines.
  for f in slurmctld slurmd; do
    [[ -f "$LOGDIR/$f.log" ]] && mv -f "$LOGDIR/$f.log" "$LOGDIR/$f.log.prev"
  done
  rm -rf "$DIR/state"/* "$(socket_root)/spool/slurmd"/*
  local failed=""
  "$slurmctld" -f "$CONF" -i || failed="slurmctld exited with status $?"
  if [[ -z "$failed" ]]; then
    "$slurmd" -f "$CONF" || failed="slurmd exited with status $?"
  fi
  if [[ -z "$failed" ]]; then
    local started=$SECONDS deadline=$((SECONDS + TIMEOUT)) state=""
    while :; do
      state=$(node_state)
      [[ "$state" == idle ]] && break
      if ((SECONDS >= deadline)); then
        failed="node $HOST is '${state:-no answer}' after ${TIMEOUT} s, not idle"
        break
      fi
      if ((SECONDS >= started + 3)); then
        pid_of "$PIDDIR/slurmctld.pid" slurmctld >/dev/null || { failed="slurmctld is not running"; break; }
        pid_of "$PIDDIR/slurmd.pid" slurmd >/dev/null || { failed="slurmd is not running"; break; }
      fi
      sleep 0.1
    done
  fi
  if [[ -n "$failed" ]]; then
    echo "slurm_local.sh: error: the Slurm cluster in $DIR did not come up: $failed" >&2
    show_logs
    stop_slurm
    stop_munge
    remove_socket_root
    exit 1
  fi
  log "cluster up in $DIR (node $HOST idle; slurmctld port ${ports[0]}, slurmd port ${ports[1]});" \
    "use: eval \"\$($0 env $DIR)\""
}

do_stop() {
  stop_slurm
  stop_munge
  remove_socket_root
  log "cluster of $DIR stopped"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  env)
    [[ -f "$CONF" ]] || die "$CONF does not exist: run '$0 start $DIR' first"
    printf 'export SLURM_CONF=%q\n' "$CONF"
    ;;
  status)
    if cluster_up; then
      echo "up: node $HOST is $(node_state) (SLURM_CONF=$CONF)"
    else
      echo "down"
      exit 1
    fi
    ;;
  *) usage ;;
esac
