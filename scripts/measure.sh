#!/usr/bin/env bash
# One `kahuna bench` run per workload against fresh nodes, with the nodes' CPU per
# operation: the figure bench/PERF-LOG.md compares between builds, since on these 2-core
# machines throughput moves far more between runs than CPU per operation does.
#
#   scripts/measure.sh NODES CLIENTS SECONDS [WORKLOADS]
#
# NODES is 1 or 3 (on loopback), WORKLOADS a comma-separated list of `kahuna bench`
# workloads (default put); every workload runs against the same nodes, in turn. Prints
# one line per workload: ops/s, p50 and p99 in ms, and the node processes' user + system
# time (from /proc/PID/stat) over the run divided by its operations, in µs. To compare
# two builds, run each alternately a few times in one sitting.
#
# Environment (all optional):
#   KAHUNA_BIN   kahuna binary (default target/release/kahuna)
#   BENCH_EXTRA  more `kahuna bench` arguments, such as --pipeline
#   NODE_ENV     VAR=value words set in the nodes' environment only
#   NODE_LOG     the nodes' KAHUNA_LOG (default warn)
#   PORT_BASE    the nodes listen on PORT_BASE+1.. (default 27500)
#   KEEP         1 keeps the temporary directory (node logs, data)
set -euo pipefail

if [ $# -lt 3 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
nodes=$1 clients=$2 seconds=$3 workloads=${4:-put}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${KAHUNA_BIN:-$repo/target/release/kahuna}
port_base=${PORT_BASE:-27500}
[ -x "$bin" ] || { echo "no kahuna binary at $bin (cargo build --release)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/kahuna-measure.XXXXXX")
pids=()
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  if [ "${KEEP:-}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

peers="" endpoints=""
for i in $(seq 1 "$nodes"); do
  peers+="${peers:+,}$i=127.0.0.1:$((port_base + i))"
  endpoints+="${endpoints:+,}127.0.0.1:$((port_base + i))"
done
for i in $(seq 1 "$nodes"); do
  args=(serve --node-id "$i" --listen "127.0.0.1:$((port_base + i))" --data-dir "$dir/d$i")
  [ "$nodes" -gt 1 ] && args+=(--peers "$peers")
  # shellcheck disable=SC2086 # NODE_ENV is a list of words
  env ${NODE_ENV:-} KAHUNA_LOG="${NODE_LOG:-warn}" "$bin" "${args[@]}" >"$dir/log$i" 2>&1 &
  pids+=($!)
done

# Ready when every partition reports a leader.
ready=""
for _ in $(seq 1 120); do
  if status=$("$bin" shell --endpoints "127.0.0.1:$((port_base + 1))" --timeout 1000 --format json -c status 2>/dev/null); then
    partitions=$(grep -o '"partition":' <<<"$status" | wc -l)
    led=$(grep -o '"leader":[1-9]' <<<"$status" | wc -l)
    if [ "$partitions" -gt 0 ] && [ "$led" -eq "$partitions" ]; then ready=1; break; fi
  fi
  sleep 0.5
done
[ -n "$ready" ] || { echo "the nodes did not elect leaders within 60 s; logs in $dir" >&2; KEEP=1; exit 1; }

# Clock ticks of user + system time of all node processes.
cpu_ticks() {
  local total=0 pid fields
  for pid in "${pids[@]}"; do
    read -ra fields <"/proc/$pid/stat"
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }

ticks_per_s=$(getconf CLK_TCK)
for workload in ${workloads//,/ }; do
  before=$(cpu_ticks)
  # shellcheck disable=SC2086 # BENCH_EXTRA is a list of words
  out=$("$bin" bench --target kahuna --endpoints "$endpoints" --workload "$workload" --clients "$clients" \
    --duration "$seconds" --warmup 1 --keys 10000 ${BENCH_EXTRA:-} --json)
  after=$(cpu_ticks)
  ops=$(field ops "$out")
  awk -v n="$nodes" -v c="$clients" -v w="$workload" -v rate="$(field ops_per_sec "$out")" \
    -v p50="$(field p50_ms "$out")" -v p99="$(field p99_ms "$out")" -v errors="$(field errors "$out")" \
    -v ticks=$((after - before)) -v hz="$ticks_per_s" -v ops="${ops:-0}" 'BEGIN {
      cpu = ops > 0 ? ticks * 1e6 / hz / ops : 0
      printf "nodes=%s clients=%s %s: %.0f ops/s  p50 %.3f ms  p99 %.3f ms  errors %s  node CPU %.1f us/op\n",
        n, c, w, rate, p50, p99, errors, cpu
    }'
done
