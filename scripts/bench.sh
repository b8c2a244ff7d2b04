#!/usr/bin/env bash
# Measures Kahuna's persistent put on one node and on three nodes, at 1, 16, 64 and 256
# clients, with `kahuna bench`, and prints a table.
#
# Builds the release binary once (unless KAHUNA_BIN is given), starts each topology's
# nodes in a temporary directory on loopback ports, stops them before the next topology,
# and on any exit stops only the processes this script started.
#
# Environment (all optional):
#   KAHUNA_BIN       kahuna binary to use instead of building target/release/kahuna
#   BENCH_CMD        bench command line (default: "$KAHUNA_BIN bench")
#   BENCH_DURATION   measured seconds per run (default 10)
#   BENCH_WARMUP     warmup seconds per run (default 2)
#   BENCH_CLIENTS    client counts (default "1 16 64 256")
#   BENCH_PORT_BASE  first loopback port; the nodes use it and the next two (default 27300)
#   BENCH_JSON_OUT   file to append every run's JSON summary to
#   BENCH_KEEP       1 keeps the temporary directory (node logs, data) after the run
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
read -ra client_counts <<<"${BENCH_CLIENTS:-1 16 64 256}"
port_base=${BENCH_PORT_BASE:-27300}
ready_timeout_s=60
stop_grace_s=10

# Settings from the caller's environment must not reach the nodes or the bench.
unset KAHUNA_NODE_ID KAHUNA_LISTEN KAHUNA_PEERS KAHUNA_DATA_DIR KAHUNA_PARTITIONS KAHUNA_ENDPOINTS

workdir=$(mktemp -d "${TMPDIR:-/tmp}/kahuna-bench.XXXXXX")
# The nodes of the current topology: the only processes this script starts. A topology's
# nodes are stopped and reaped before the next one starts, so a pid here is never reused.
running=()

stop_nodes() {
  local pid waited
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < stop_grace_s * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node $pid did not stop in ${stop_grace_s} s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  if ((${#running[@]} > 0)); then
    stop_nodes "${running[@]}"
  fi
  if [[ ${BENCH_KEEP:-0} == 1 || $status != 0 ]]; then
    echo "node logs and data kept in $workdir" >&2
  else
    rm -rf "$workdir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary: given, or built once in release.
if [[ -n ${KAHUNA_BIN:-} ]]; then
  kahuna=$KAHUNA_BIN
else
  echo "building kahuna (release)..." >&2
  (cd "$repo" && cargo build --release --bin kahuna)
  kahuna="${CARGO_TARGET_DIR:-$repo/target}/release/kahuna"
fi
[[ -x $kahuna ]] || { echo "no kahuna binary at $kahuna" >&2; exit 1; }
if [[ -n ${BENCH_CMD:-} ]]; then
  read -ra bench_cmd <<<"$BENCH_CMD"
else
  bench_cmd=("$kahuna" bench)
fi
if ! "${bench_cmd[@]}" --help >/dev/null 2>&1; then
  echo "'${bench_cmd[*]}' does not run: is kahuna-bench wired into the kahuna binary? (or set BENCH_CMD)" >&2
  exit 1
fi

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$port_base" $((port_base + 1)) $((port_base + 2)); do
  if port_in_use "$port"; then
    echo "port $port is in use; set BENCH_PORT_BASE" >&2
    exit 1
  fi
done

# start_node NAME ID LISTEN [PEERS]
start_node() {
  local dir="$workdir/$1"
  mkdir -p "$dir"
  local args=(serve --node-id "$2" --listen "$3" --data-dir "$dir/data")
  if [[ -n ${4:-} ]]; then
    args+=(--peers "$4")
  fi
  "$kahuna" "${args[@]}" >"$dir/log" 2>&1 &
  running+=($!)
}

# wait_ready ENDPOINTS: until a node reports a leader for every partition.
wait_ready() {
  local deadline=$((SECONDS + ready_timeout_s)) status partitions leaders pid
  while ((SECONDS < deadline)); do
    for pid in "${running[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "a node exited during start-up; logs in $workdir" >&2
        tail -n 20 "$workdir"/*/log >&2 || true
        return 1
      fi
    done
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

rows=()

# run_topology LABEL ENDPOINTS
run_topology() {
  local clients out
  for clients in "${client_counts[@]}"; do
    echo "$1: put with $clients clients for ${duration} s..." >&2
    out=$("${bench_cmd[@]}" --endpoints "$2" --workload put --clients "$clients" \
      --duration "$duration" --warmup "$warmup" --json)
    if [[ -n ${BENCH_JSON_OUT:-} ]]; then
      printf '{"topology":"%s",%s\n' "$1" "${out#\{}" >>"$BENCH_JSON_OUT"
    fi
    rows+=("$(printf '%-8s %8s %12.0f %9.3f %9.3f %9.3f %9.3f %8s' "$1" "$clients" \
      "$(json_field ops_per_sec "$out")" "$(json_field p50_ms "$out")" "$(json_field p99_ms "$out")" \
      "$(json_field p999_ms "$out")" "$(json_field max_ms "$out")" "$(json_field errors "$out")")")
  done
}

p1=$port_base p2=$((port_base + 1)) p3=$((port_base + 2))

start_node single 1 "127.0.0.1:$p1"
wait_ready "127.0.0.1:$p1"
run_topology "1 node" "127.0.0.1:$p1"
stop_nodes "${running[@]}"
running=()

peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
for id in 1 2 3; do
  start_node "node$id" "$id" "127.0.0.1:$((port_base + id - 1))" "$peers"
done
wait_ready "127.0.0.1:$p1"
run_topology "3 nodes" "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3"
stop_nodes "${running[@]}"
running=()

echo
echo "kahuna persistent put: ${duration} s per run after ${warmup} s warmup, 8-byte keys, 256-byte values"
printf '%-8s %8s %12s %9s %9s %9s %9s %8s\n' topology clients ops/s "p50 ms" "p99 ms" "p999 ms" "max ms" errors
printf '%s\n' "${rows[@]}"
