# shellcheck shell=bash
# Shared by scripts/bench.sh and scripts/bench-compare.sh (sourced, not run): the processes
# a script starts on loopback, and what `kahuna bench --json` printed.
#
# The sourcing script sets, before calling these:
#   workdir          its temporary directory: one subdirectory (data and log) per process
#   kahuna           the kahuna binary (start_kahuna, wait_kahuna)
#   ready_timeout_s  how long a cluster may take to be ready
#   stop_grace_s     how long a process may take to stop after SIGTERM
#   node_env         optional array of VAR=value words for the Kahuna nodes' environment
# and `running` is the array of the pids it started (the only processes it stops). Each
# set of processes is stopped and reaped before the next starts, so a pid there is never
# reused.
running=()

# port_in_use PORT: whether something accepts on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_free_ports PORT...: exits when something already accepts on one of them.
require_free_ports() {
  local port
  for port in "$@"; do
    if port_in_use "$port"; then
      echo "port $port is in use; set BENCH_PORT_BASE" >&2
      exit 1
    fi
  done
}

# stop_running: SIGTERM to every running process, SIGKILL to those still there after
# stop_grace_s; reaps them all.
stop_running() {
  local pid waited
  for pid in "${running[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${running[@]}"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < stop_grace_s * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "process $pid did not stop in ${stop_grace_s} s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  running=()
}

# cleanup: the EXIT trap. Stops what runs; keeps the work directory when BENCH_KEEP=1 or
# the script failed.
cleanup() {
  local status=$?
  stop_running
  if [[ ${BENCH_KEEP:-0} == 1 || $status != 0 ]]; then
    echo "logs and data kept in $workdir" >&2
  else
    rm -rf "$workdir"
  fi
}

# check_running: fails, with the logs' tails, when a started process has exited.
check_running() {
  local pid
  for pid in "${running[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a process exited during start-up; logs in $workdir" >&2
      tail -n 20 "$workdir"/*/log >&2 || true
      return 1
    fi
  done
}

# start_kahuna NAME ID LISTEN [PEERS]: one `kahuna serve` in the background, data and log
# in $workdir/NAME; NODE_LOG, when set, is its KAHUNA_LOG.
start_kahuna() {
  local dir="$workdir/$1"
  mkdir -p "$dir"
  local args=(serve --node-id "$2" --listen "$3" --data-dir "$dir/data")
  if [[ -n ${4:-} ]]; then
    args+=(--peers "$4")
  fi
  env ${NODE_LOG:+KAHUNA_LOG="$NODE_LOG"} ${node_env[@]+"${node_env[@]}"} "$kahuna" "${args[@]}" >"$dir/log" 2>&1 &
  running+=($!)
}

# wait_kahuna ENDPOINTS: until a node reports a leader for every partition.
wait_kahuna() {
  local deadline=$((SECONDS + ready_timeout_s)) status partitions leaders
  while ((SECONDS < deadline)); do
    check_running
    if status=$("$kahuna" shell --endpoints "$1" --timeout 1000 --format json -c status 2>/dev/null); then
      partitions=$({ grep -o '"partition":' <<<"$status" || true; } | wc -l)
      leaders=$({ grep -o '"leader":[1-9]' <<<"$status" || true; } | wc -l)
      if ((partitions > 0 && leaders == partitions)); then
        return 0
      fi
    fi
    sleep 0.5
  done
  echo "the cluster at $1 found no leader for every partition within ${ready_timeout_s} s" >&2
  tail -n 20 "$workdir"/*/log >&2 || true
  return 1
}

# json_field NAME JSON: a top-level number of the bench's JSON summary.
json_field() {
  sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"
}

# report_errors LABEL JSON: when the run had errors, their kinds and the first one, on
# stderr (the tables only count them).
report_errors() {
  local errors
  errors=$(json_field errors "$2")
  if [[ -n $errors && $errors != 0 ]]; then
    echo "$1: $errors errors, by kind $(sed -n 's/.*"error_kinds":\({[^}]*}\).*/\1/p' <<<"$2"); first: $(
      sed -n 's/.*"first_error":\("\([^"\\]\|\\.\)*"\|null\).*/\1/p' <<<"$2")" >&2
  fi
}
