#!/usr/bin/env bash
# prometheus_local.sh: a real Prometheus (Debian's `prometheus`) on loopback that scrapes one Keel
# coordinator and evaluates Keel's alert rules, with its config, data, log and PID file under one
# folder. The tests start it against a coordinator fed by a driver or a real training run; a person
# can use it to look at a local run (then open http://ADDRESS/alerts or /graph).
#
#   scripts/prometheus_local.sh start DIR TARGET [RULE_FILE...]   start it; prints "prometheus on HOST:PORT pid PID"
#   scripts/prometheus_local.sh stop DIR                          stop what `start DIR` started (idempotent)
#   scripts/prometheus_local.sh address DIR                       print its HOST:PORT
#
# TARGET is the HOST:PORT a coordinator printed as "metrics on HOST:PORT". RULE_FILEs default to
# deploy/prometheus/rules/*.yml. start writes DIR/prometheus.yml (scrape and rule evaluation every
# KEEL_PROMETHEUS_INTERVAL, default 1s, job "keel-coordinator"), wipes DIR/data, picks a free port
# on 127.0.0.1, starts the server in the background (log in DIR/prometheus.log, PID in
# DIR/prometheus.pid, address in DIR/address) and waits up to KEEL_PROMETHEUS_TIMEOUT seconds
# (default 30) until it is ready and has scraped TARGET once with success (Prometheus takes about
# 5 s to hand new targets to its scraper; KEEL_PROMETHEUS_WAIT_TARGET=0 skips this wait). stop kills
# by PID file only, after checking /proc/PID/comm says prometheus; it never kills by name.
# KEEL_PROMETHEUS names the binary (default: prometheus on PATH).
set -euo pipefail

usage() {
  sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "prometheus_local.sh: error: $*" >&2
  exit 1
}

log() { echo "prometheus_local.sh: $*" >&2; }

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$2
[[ -n "$dir" ]] || usage
source_root=$(cd "$(dirname "$0")/.." && pwd)
pid_file=$dir/prometheus.pid

running_pid() {
  [[ -f "$pid_file" ]] || return 1
  local pid
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == prometheus ]] || return 1
  echo "$pid"
}

# The response (status line, headers, body) of GET http://127.0.0.1:PORT/PATH (bash's /dev/tcp:
# no curl needed).
http_get() {
  local port=$1 path=$2
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
    cat <&3
  ) 2>/dev/null
}

ready() {
  http_get "$1" /-/ready | head -n 1 | grep -q ' 200 '
}

# 0 once the scrape target is up: its last scrape succeeded.
target_up() {
  http_get "$1" /api/v1/targets | grep -q '"health":"up"'
}

port_free() {
  [[ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
}

write_config() {
  local target=$1 interval=$2
  shift 2
  {
    echo "# Written by scripts/prometheus_local.sh: scrape one Keel coordinator."
    echo "global:"
    echo "  scrape_interval: $interval"
    echo "  scrape_timeout: $interval"
    echo "  evaluation_interval: $interval"
    echo "rule_files:"
    local rule
    for rule in "$@"; do echo "  - \"$rule\""; done
    echo "scrape_configs:"
    echo "  - job_name: keel-coordinator"
    echo "    static_configs:"
    echo "      - targets: [\"$target\"]"
  } >"$dir/prometheus.yml"
}

start() {
  [[ $# -ge 1 ]] || usage
  local target=$1
  shift
  [[ "$target" =~ ^[^[:space:]]+:[0-9]+$ ]] || die "target '$target' is not HOST:PORT"
  local binary=${KEEL_PROMETHEUS:-$(command -v prometheus || true)}
  [[ -n "$binary" && -x "$binary" ]] ||
    die "prometheus not found (Debian: apt-get install prometheus; scripts/setup.sh installs it)"
  if pid=$(running_pid); then die "a Prometheus started for $dir is still running (pid $pid): stop it first"; fi

  local rules=("$@")
  if [[ ${#rules[@]} -eq 0 ]]; then
    shopt -s nullglob
    rules=("$source_root"/deploy/prometheus/rules/*.yml)
    shopt -u nullglob
  fi
  local i
  for i in "${!rules[@]}"; do
    [[ -f "${rules[$i]}" ]] || die "rule file '${rules[$i]}' does not exist"
    rules[i]=$(cd "$(dirname "${rules[$i]}")" && pwd)/$(basename "${rules[$i]}")
  done

  mkdir -p "$dir"
  write_config "$target" "${KEEL_PROMETHEUS_INTERVAL:-1s}" "${rules[@]}"
  local timeout=${KEEL_PROMETHEUS_TIMEOUT:-30}
  local attempt port pid
  for attempt in 1 2 3 4 5; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_free "$port" || continue
    rm -rf "$dir/data"
    "$binary" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" >"$dir/prometheus.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    local waited=0
    while ((waited < timeout * 10)); do
      if ready "$port"; then
        echo "127.0.0.1:$port" >"$dir/address"
        wait_for_target "$port" "$pid" "$target" "$((timeout * 10 - waited))"
        echo "prometheus on 127.0.0.1:$port pid $pid"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      rm -f "$pid_file"
      tail -n 20 "$dir/prometheus.log" >&2
      die "Prometheus (pid $pid) was not ready on 127.0.0.1:$port within $timeout s"
    fi
    rm -f "$pid_file"
    if grep -q 'address already in use' "$dir/prometheus.log"; then
      log "port $port was taken meanwhile (attempt $attempt); trying another"
      continue
    fi
    tail -n 20 "$dir/prometheus.log" >&2
    die "Prometheus exited at start (log: $dir/prometheus.log)"
  done
  die "found no free port for Prometheus in 5 attempts"
}

# Waits (up to TENTHS tenths of a second) until Prometheus has scraped the target with success;
# on timeout stops Prometheus and fails with the target's last error.
wait_for_target() {
  local port=$1 pid=$2 target=$3 tenths=$4
  [[ "${KEEL_PROMETHEUS_WAIT_TARGET:-1}" == 1 ]] || return 0
  while ((tenths > 0)); do
    target_up "$port" && return 0
    sleep 0.1
    tenths=$((tenths - 1))
  done
  local targets
  targets=$(http_get "$port" /api/v1/targets | tail -n 1)
  stop
  die "Prometheus did not scrape $target with success in time; its targets: $targets"
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pid_file"
    return 0
  fi
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "Prometheus (pid $pid) did not stop in 10 s; killing it"
    kill -KILL "$pid"
  fi
  rm -f "$pid_file"
}

case "$cmd" in
  start) shift 2; start "$@" ;;
  stop) stop ;;
  address) cat "$dir/address" ;;
  *) usage ;;
esac
