#!/usr/bin/env bash
# Measures Kahuna with `kahuna bench` on one node and on three nodes, at 1, 16, 64 and 256
# clients (persistent put unless told otherwise), and prints a table with the nodes' CPU per
# operation: user + system time of the node processes (/proc/PID/stat) over each run divided
# by its operations. On these 2-core machines throughput moves far more between runs than CPU
# per operation does, so that is the figure to compare between builds (bench/PERF-LOG.md:
# run each build alternately, e.g. `BENCH_NODES=3 BENCH_CLIENTS=64 BENCH_DURATION=5`).
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
#   BENCH_NODES      topologies, node counts of 1 and 3 (default "1 3")
#   BENCH_WORKLOADS  `kahuna bench` workloads, each at every client count (default put)
#   BENCH_EXTRA      more `kahuna bench` arguments, such as --pipeline
#   NODE_ENV         VAR=value words set in the nodes' environment only
#   NODE_LOG         the nodes' KAHUNA_LOG (default: the binary's default)
#   BENCH_PORT_BASE  first loopback port; the nodes use it and the next two (default 27300)
#   BENCH_JSON_OUT   file to append every run's JSON summary to
#   BENCH_KEEP       1 keeps the temporary directory (node logs, data) after the run
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
read -ra client_counts <<<"${BENCH_CLIENTS:-1 16 64 256}"
read -ra node_counts <<<"${BENCH_NODES:-1 3}"
read -ra workloads <<<"${BENCH_WORKLOADS:-put}"
read -ra bench_extra <<<"${BENCH_EXTRA:-}"
read -ra node_env <<<"${NODE_ENV:-}"
for n in "${node_counts[@]}"; do
  [[ $n == 1 || $n == 3 ]] || { echo "BENCH_NODES: 1 and 3 only, not $n" >&2; exit 1; }
done
port_base=${BENCH_PORT_BASE:-27300}
ready_timeout_s=60
stop_grace_s=10

# Settings from the caller's environment must not reach the nodes or the bench.
unset KAHUNA_NODE_ID KAHUNA_LISTEN KAHUNA_PEERS KAHUNA_DATA_DIR KAHUNA_PARTITIONS KAHUNA_ENDPOINTS

workdir=$(mktemp -d "${TMPDIR:-/tmp}/kahuna-bench.XXXXXX")
# shellcheck source=scripts/lib/processes.sh
source "$repo/scripts/lib/processes.sh"
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

require_free_ports "$port_base" $((port_base + 1)) $((port_base + 2))

# cpu_ticks: clock ticks of user + system time of the running nodes.
cpu_ticks() {
  local total=0 pid fields
  for pid in "${running[@]}"; do
    read -ra fields <"/proc/$pid/stat"
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
ticks_per_s=$(getconf CLK_TCK)

rows=()

# run_topology LABEL ENDPOINTS
run_topology() {
  local workload clients out before after cpu
  for workload in "${workloads[@]}"; do
    for clients in "${client_counts[@]}"; do
      echo "$1: $workload with $clients clients for ${duration} s..." >&2
      before=$(cpu_ticks)
      out=$("${bench_cmd[@]}" --endpoints "$2" --workload "$workload" --clients "$clients" \
        --duration "$duration" --warmup "$warmup" "${bench_extra[@]}" --json)
      after=$(cpu_ticks)
      report_errors "$1: $workload with $clients clients" "$out"
      if [[ -n ${BENCH_JSON_OUT:-} ]]; then
        printf '{"topology":"%s",%s\n' "$1" "${out#\{}" >>"$BENCH_JSON_OUT"
      fi
      # Counts the run's warmup and key preload too: compare like with like.
      cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v ops="$(json_field ops "$out")" \
        'BEGIN { printf "%.0f", (ops > 0 ? t * 1e6 / hz / ops : 0) }')
      rows+=("$(printf '%-8s %-16s %8s %12.0f %9.3f %9.3f %9.3f %9.3f %8s %10s' "$1" "$workload" "$clients" \
        "$(json_field ops_per_sec "$out")" "$(json_field p50_ms "$out")" "$(json_field p99_ms "$out")" \
        "$(json_field p999_ms "$out")" "$(json_field max_ms "$out")" "$(json_field errors "$out")" "$cpu")")
    done
  done
}

p1=$port_base p2=$((port_base + 1)) p3=$((port_base + 2))

for n in "${node_counts[@]}"; do
  if [[ $n == 1 ]]; then
    start_kahuna single 1 "127.0.0.1:$p1"
    wait_kahuna "127.0.0.1:$p1"
    run_topology "1 node" "127.0.0.1:$p1"
  else
    peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
    for id in 1 2 3; do
      start_kahuna "node$id" "$id" "127.0.0.1:$((port_base + id - 1))" "$peers"
    done
    wait_kahuna "127.0.0.1:$p1"
    run_topology "3 nodes" "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3"
  fi
  stop_running
done

echo
echo "kahuna bench: ${duration} s per run after ${warmup} s warmup, 8-byte keys, 256-byte values${BENCH_EXTRA:+, $BENCH_EXTRA}"
printf '%-8s %-16s %8s %12s %9s %9s %9s %9s %8s %10s\n' topology workload clients ops/s "p50 ms" "p99 ms" \
  "p999 ms" "max ms" errors "CPU us/op"
printf '%s\n' "${rows[@]}"
