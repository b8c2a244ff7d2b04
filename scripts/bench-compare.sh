#!/usr/bin/env bash
# Runs `kahuna bench` against Kahuna (one node, three nodes), etcd (one member, three
# members) and Redis (default persistence, and `appendonly yes` + `appendfsync always`)
# on loopback, one system at a time, and writes BENCHMARKS.md: every figure, the
# Kahuna/peer ratios (three-node Kahuna beside three-member etcd, one-node Kahuna beside
# one-member etcd), and the fsync time of the data disk measured in the same run.
#
# What it does:
#   - installs Debian's etcd-server and redis-server with apt-get when `etcd` or
#     `redis-server` is missing;
#   - builds the release binary once with the cargo feature `peers` (the etcd and Redis
#     drivers); etcd-client's build script needs a protoc, so PROTOC is pointed at the
#     vendored protoc of the protoc-bin-vendored crate kahuna-proto already depends on
#     (found with `cargo metadata`; no system protoc needed);
#   - starts each system's processes in a temporary directory (data there too, so the
#     fsync figure is of the same disk), runs its workloads, stops them, then the next;
#   - on any exit stops only the processes it started, by pid.
#
# The matrix, at each client count (— : the system has no faithful equivalent, so the
# driver refuses it and the report shows "—"):
#   workload          Kahuna 1 node  Kahuna 3 nodes  etcd  etcd 3  Redis default  Redis always
#   put, get          yes            yes             yes   yes                     yes (SET, GET)
#   get-serializable  yes                            yes
#   mixed             yes                            yes
#   eput, eget        yes                            —             yes (SET, GET)
#   lock              yes            yes             yes   yes                     yes (SET NX PX + DEL)
#   sequence-next     yes            yes             yes   yes                     yes (INCR)
#   sequence-reserve  yes            yes             yes   yes                     yes (INCRBY)
#   script            yes            yes             —     —                       yes (EVALSHA)
#   txn, txn-2p       yes            yes             yes   yes                     —
# (etcd 3: three etcd members on loopback, the peer of Kahuna 3 nodes; the bench's etcd
# driver gets all three client URLs and balances its requests over them.)
#
# Environment (all optional):
#   KAHUNA_BIN       kahuna binary built with --features peers, instead of building one
#   BENCH_DURATION   measured seconds per run (default 10)
#   BENCH_WARMUP     warmup seconds per run (default 2)
#   BENCH_CLIENTS    client counts (default "1 16 64 256")
#   BENCH_WORKLOADS  run only these workloads of the matrix (default: all of them)
#   BENCH_KEYS       keys (and lock and sequence names) per run (default 10000)
#   BENCH_PORT_BASE  first loopback port (default 27400); uses base..base+2 (Kahuna),
#                    base+10, base+11 (etcd), base+12..base+17 (etcd 3: clients
#                    base+12..base+14, peers base+15..base+17), base+20, base+21 (Redis)
#   BENCH_ETCD3      0 skips the three-member etcd (the kahuna-3 rows then show "-")
#   BENCH_PIPELINE   0 sends Kahuna's single-key calls unary, one HTTP/2 stream each, instead
#                    of in the client's pipelines (default 1: `kahuna bench --pipeline`)
#   BENCH_OUT        report file (default BENCHMARKS.md at the repository root)
#   BENCH_JSON_OUT   file to append every run's JSON summary to
#   BENCH_KEEP       1 keeps the temporary directory (logs, data) after the run
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
clients_list=${BENCH_CLIENTS:-1 16 64 256}
read -ra client_counts <<<"$clients_list"

# The matrix: what each setup runs, and what each peer has no faithful equivalent of.
all_workloads="put get get-serializable mixed eput eget lock sequence-next sequence-reserve script txn txn-2p"
kahuna1_workloads=$all_workloads
kahuna3_workloads="put get lock sequence-next sequence-reserve script txn txn-2p"
etcd_workloads="put get get-serializable mixed lock sequence-next sequence-reserve txn txn-2p"
etcd3_workloads="put get lock sequence-next sequence-reserve txn txn-2p"
redis_default_workloads="eput eget"
redis_always_workloads="put get lock sequence-next sequence-reserve script"
declare -A unsupported=([etcd]="eput eget script" [etcd-3]="eput eget script" [redis-default]="txn txn-2p" [redis-always]="txn txn-2p")
workloads_list=${BENCH_WORKLOADS:-$all_workloads}
for workload in $workloads_list; do
  if [[ " $all_workloads " != *" $workload "* ]]; then
    echo "BENCH_WORKLOADS names $workload, which is none of: $all_workloads" >&2
    exit 1
  fi
done
reserve_count=100
keys=${BENCH_KEYS:-10000}
port_base=${BENCH_PORT_BASE:-27400}
out_file=${BENCH_OUT:-$repo/BENCHMARKS.md}
etcd3=${BENCH_ETCD3:-1}
if [[ $etcd3 != 0 && $etcd3 != 1 ]]; then
  echo "BENCH_ETCD3 is $etcd3; it takes 0 (skip the three-member etcd) or 1" >&2
  exit 1
fi
pipeline=${BENCH_PIPELINE:-1}
if [[ $pipeline != 0 && $pipeline != 1 ]]; then
  echo "BENCH_PIPELINE is $pipeline; it takes 0 (unary calls) or 1 (pipelined calls)" >&2
  exit 1
fi
ready_timeout_s=60
stop_grace_s=10
command_line="$0${*:+ $*}"
env_line=""
for var in BENCH_DURATION BENCH_WARMUP BENCH_CLIENTS BENCH_WORKLOADS BENCH_KEYS BENCH_PORT_BASE BENCH_ETCD3 BENCH_PIPELINE KAHUNA_BIN; do
  if [[ -n ${!var:-} ]]; then
    env_line+="$var=\"${!var}\" "
  fi
done

# Settings from the caller's environment must not reach the servers or the bench.
unset KAHUNA_NODE_ID KAHUNA_LISTEN KAHUNA_PEERS KAHUNA_DATA_DIR KAHUNA_PARTITIONS KAHUNA_ENDPOINTS
while IFS='=' read -r name _; do
  if [[ $name == ETCD_* || $name == ETCDCTL_* ]]; then unset "$name"; fi
done < <(env)

# The runs write about 2 GiB (three etcd members' logs and databases, Redis's append-only
# file, Kahuna's logs); a disk filling up mid-run kills the peers and spoils the figures.
free_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
if [[ -n $free_kib && $free_kib -lt $((4 * 1024 * 1024)) ]]; then
  echo "only $((free_kib / 1024)) MiB free under ${TMPDIR:-/tmp}; the runs need about 4 GiB" >&2
  exit 1
fi
workdir=$(mktemp -d "${TMPDIR:-/tmp}/kahuna-bench-compare.XXXXXX")
# shellcheck source=scripts/lib/processes.sh
source "$repo/scripts/lib/processes.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the peers, installed only when missing ---------------------------------------------
if ! command -v etcd >/dev/null || ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing etcd-server and redis-server (apt-get)..." >&2
  sudo_cmd=()
  if ((EUID != 0)); then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq etcd-server redis-server redis-tools >&2
fi
etcd_bin=$(command -v etcd)
redis_bin=$(command -v redis-server)

# --- the binary, built once with the peer drivers ---------------------------------------
# vendored_protoc: the protoc binary of the protoc-bin-vendored crate for this host.
vendored_protoc() {
  local manifest candidate
  while read -r manifest; do
    candidate="$(dirname "$manifest")/bin/protoc"
    if [[ -x $candidate ]] && "$candidate" --version >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done < <(cd "$repo" && cargo metadata --format-version 1 |
    grep -o '"manifest_path":"[^"]*protoc-bin-vendored-[^"/]*/Cargo.toml"' | sed 's/^"manifest_path":"//; s/"$//')
  return 1
}

if [[ -n ${KAHUNA_BIN:-} ]]; then
  kahuna=$KAHUNA_BIN
else
  if [[ -z ${PROTOC:-} ]]; then
    PROTOC=$(vendored_protoc) || { echo "cannot find the vendored protoc (protoc-bin-vendored)" >&2; exit 1; }
    export PROTOC
  fi
  echo "building kahuna (release, --features peers; PROTOC=$PROTOC)..." >&2
  (cd "$repo" && cargo build --release --features peers --bin kahuna)
  kahuna="${CARGO_TARGET_DIR:-$repo/target}/release/kahuna"
  # The build leaves hundreds of MiB of dirty pages; written back during the first runs,
  # they slowed every fsync there (0.57 ms measured right after a build, 0.24 ms later).
  echo "flushing the build's writes to disk..." >&2
  sync
  sleep 10
fi
[[ -x $kahuna ]] || { echo "no kahuna binary at $kahuna" >&2; exit 1; }
build_note="release build"
if [[ -n ${KAHUNA_BIN:-} ]]; then build_note="the given binary $KAHUNA_BIN"; fi

p1=$port_base p2=$((port_base + 1)) p3=$((port_base + 2))
etcd_port=$((port_base + 10)) etcd_peer_port=$((port_base + 11))
# etcd 3: member i (1..3) serves clients on base+11+i and peers on base+14+i.
etcd3_client_ports=($((port_base + 12)) $((port_base + 13)) $((port_base + 14)))
etcd3_peer_ports=($((port_base + 15)) $((port_base + 16)) $((port_base + 17)))
redis_port=$((port_base + 20)) redis_always_port=$((port_base + 21))
require_free_ports "$p1" "$p2" "$p3" "$etcd_port" "$etcd_peer_port" "${etcd3_client_ports[@]}" \
  "${etcd3_peer_ports[@]}" "$redis_port" "$redis_always_port"

# --- fsync time of the data disk --------------------------------------------------------
# fsync_ms: mean time of one 4 KiB write + fdatasync (dd oflag=dsync) in the work directory.
fsync_ms() {
  local count=500 seconds
  seconds=$(LC_ALL=C dd if=/dev/zero of="$workdir/fsync-probe" bs=4k count=$count oflag=dsync 2>&1 |
    sed -n 's/.* copied, \([0-9.e+-]*\) s.*/\1/p')
  rm -f "$workdir/fsync-probe"
  awk -v s="$seconds" -v n=$count 'BEGIN { printf "%.3f", s * 1000 / n }'
}

# --- starting and waiting ---------------------------------------------------------------
# wait_port PORT: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local deadline=$((SECONDS + ready_timeout_s))
  while ((SECONDS < deadline)); do
    check_running
    if port_in_use "$1"; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1 after ${ready_timeout_s} s" >&2
  return 1
}

# start_etcd_member DIR NAME CLIENT_PORT PEER_PORT INITIAL_CLUSTER TOKEN: one etcd member
# in the background, data and log in $workdir/DIR.
start_etcd_member() {
  local dir="$workdir/$1"
  mkdir -p "$dir"
  "$etcd_bin" --name "$2" --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$3" --advertise-client-urls "http://127.0.0.1:$3" \
    --listen-peer-urls "http://127.0.0.1:$4" \
    --initial-advertise-peer-urls "http://127.0.0.1:$4" \
    --initial-cluster "$5" --initial-cluster-token "$6" --initial-cluster-state new \
    >"$dir/log" 2>&1 &
  running+=($!)
}

# wait_etcd_ready DIR PATTERN: until the member's log in $workdir/DIR matches PATTERN.
wait_etcd_ready() {
  local deadline=$((SECONDS + ready_timeout_s))
  until grep -q "$2" "$workdir/$1/log"; do
    check_running
    if ((SECONDS >= deadline)); then
      echo "etcd in $workdir/$1 did not become ready within ${ready_timeout_s} s" >&2
      return 1
    fi
    sleep 0.2
  done
}

start_etcd() {
  start_etcd_member etcd bench "$etcd_port" "$etcd_peer_port" "bench=http://127.0.0.1:$etcd_peer_port" bench-1
  wait_port "$etcd_port"
  # A single member elects itself at once; give it a moment to become leader.
  wait_etcd_ready etcd "ready to serve client requests\|became leader"
}

# start_etcd3: three members; each reports "ready to serve client requests" only once
# the cluster has a leader and the member has published itself through it.
start_etcd3() {
  local i cluster=""
  for i in 1 2 3; do
    cluster+="${cluster:+,}etcd$i=http://127.0.0.1:${etcd3_peer_ports[i - 1]}"
  done
  for i in 1 2 3; do
    start_etcd_member "etcd3-$i" "etcd$i" "${etcd3_client_ports[i - 1]}" "${etcd3_peer_ports[i - 1]}" "$cluster" bench-3
  done
  for i in 1 2 3; do
    wait_port "${etcd3_client_ports[i - 1]}"
  done
  for i in 1 2 3; do
    wait_etcd_ready "etcd3-$i" "ready to serve client requests"
  done
}

# start_redis NAME PORT [EXTRA ARGS...]: Redis' built-in defaults (RDB snapshots at the
# default save points, no AOF) plus the extra arguments.
start_redis() {
  local name=$1 port=$2
  shift 2
  local dir="$workdir/$name"
  mkdir -p "$dir"
  "$redis_bin" --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no "$@" >"$dir/log" 2>&1 &
  running+=($!)
  wait_port "$port"
  local deadline=$((SECONDS + ready_timeout_s))
  until [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; do
    check_running
    if ((SECONDS >= deadline)); then
      echo "redis on $port did not answer PING within ${ready_timeout_s} s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# --- running the bench ------------------------------------------------------------------
declare -A result   # "system|workload|clients" -> "ops/s p50 p99 p999 max errors"
runs=()             # the keys in run order

# bench SYSTEM TARGET ENDPOINTS WORKLOAD...: every workload that BENCH_WORKLOADS selects,
# at every client count.
bench() {
  local system=$1 target=$2 endpoints=$3 workload clients out
  local extra=()
  if [[ $target == kahuna && $pipeline == 1 ]]; then extra=(--pipeline); fi
  shift 3
  for workload in "$@"; do
    if [[ " $workloads_list " != *" $workload "* ]]; then continue; fi
    for clients in "${client_counts[@]}"; do
      echo "$system: $workload with $clients clients for ${duration} s..." >&2
      if out=$("$kahuna" bench --target "$target" --endpoints "$endpoints" --workload "$workload" \
        --clients "$clients" --duration "$duration" --warmup "$warmup" --keys "$keys" --reserve "$reserve_count" ${extra[@]+"${extra[@]}"} --json); then
        if [[ -n ${BENCH_JSON_OUT:-} ]]; then
          printf '{"system":"%s",%s\n' "$system" "${out#\{}" >>"$BENCH_JSON_OUT"
        fi
        report_errors "$system: $workload with $clients clients" "$out"
        result["$system|$workload|$clients"]="$(json_field ops_per_sec "$out") $(json_field p50_ms "$out") \
$(json_field p99_ms "$out") $(json_field p999_ms "$out") $(json_field max_ms "$out") $(json_field errors "$out")"
      else
        echo "$system: $workload with $clients clients failed" >&2
        result["$system|$workload|$clients"]="failed"
      fi
      runs+=("$system|$workload|$clients")
    done
  done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
fsync_before=$(fsync_ms)
echo "fsync (4 KiB write + fdatasync) in $workdir: $fsync_before ms" >&2

# selects WORKLOADS...: whether BENCH_WORKLOADS keeps any of them (else the setup is skipped).
selects() {
  local workload
  for workload in "$@"; do
    if [[ " $workloads_list " == *" $workload "* ]]; then return 0; fi
  done
  return 1
}

# shellcheck disable=SC2086 # the workload lists split into words on purpose
if selects $kahuna1_workloads; then
  start_kahuna single 1 "127.0.0.1:$p1"
  wait_kahuna "127.0.0.1:$p1"
  bench "kahuna-1" kahuna "127.0.0.1:$p1" $kahuna1_workloads
  stop_running
fi

# shellcheck disable=SC2086
if selects $kahuna3_workloads; then
  peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
  for id in 1 2 3; do
    start_kahuna "node$id" "$id" "127.0.0.1:$((port_base + id - 1))" "$peers"
  done
  wait_kahuna "127.0.0.1:$p1"
  bench "kahuna-3" kahuna "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3" $kahuna3_workloads
  stop_running
fi

# shellcheck disable=SC2086
if selects $etcd_workloads; then
  start_etcd
  bench "etcd" etcd "127.0.0.1:$etcd_port" $etcd_workloads
  stop_running
fi

# shellcheck disable=SC2086
if ((etcd3 == 1)) && selects $etcd3_workloads; then
  start_etcd3
  bench "etcd-3" etcd "$(printf '127.0.0.1:%s,' "${etcd3_client_ports[@]}" | sed 's/,$//')" $etcd3_workloads
  stop_running
fi

# shellcheck disable=SC2086
if selects $redis_default_workloads; then
  start_redis redis-default "$redis_port"
  bench "redis-default" redis "127.0.0.1:$redis_port" $redis_default_workloads
  stop_running
fi

# shellcheck disable=SC2086
if selects $redis_always_workloads; then
  start_redis redis-always "$redis_always_port" --appendonly yes --appendfsync always
  bench "redis-always" redis "127.0.0.1:$redis_always_port" $redis_always_workloads
  stop_running
fi

fsync_after=$(fsync_ms)
echo "fsync after the runs: $fsync_after ms" >&2

# --- the report -------------------------------------------------------------------------
# A cell is a figure, "-" (not run, or the run failed) or "—" (the system has no faithful
# equivalent of the workload).
unsupported_mark="—"

# is_unsupported SYSTEM WORKLOAD
is_unsupported() {
  [[ " ${unsupported[$1]:-} " == *" $2 "* ]]
}

# field KEY N: the Nth figure (1 ops/s, 2 p50, 3 p99, 4 p999, 5 max, 6 errors) of run KEY
# ("system|workload|clients").
field() {
  local figures=${result[$1]:-} system workload
  IFS='|' read -r system workload _ <<<"$1"
  if is_unsupported "$system" "$workload"; then
    echo "$unsupported_mark"
  elif [[ -z $figures || $figures == failed ]]; then
    echo "-"
  else
    awk -v n="$2" '{ print $n }' <<<"$figures"
  fi
}

# is_number X: a decimal figure as the bench prints them (not "-" or "—").
is_number() {
  [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]
}

# ratio A B: A / B to two decimals; "—" when either side is unsupported, else "-" when
# either is missing.
ratio() {
  if [[ $1 == "$unsupported_mark" || $2 == "$unsupported_mark" ]]; then
    echo "$unsupported_mark"
  elif ! is_number "$1" || ! is_number "$2"; then
    echo "-"
  else
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
  fi
}

fmt_ops() {
  if is_number "$1"; then awk -v x="$1" 'BEGIN { printf "%.0f", x }'; else echo "$1"; fi
}

fmt_ms() {
  if is_number "$1"; then awk -v x="$1" 'BEGIN { printf "%.3f", x }'; else echo "$1"; fi
}

version_of() {
  "$@" 2>/dev/null | head -n 1 || echo unknown
}

# ran SYSTEM WORKLOAD: whether any client count of it has a result (or failed).
ran() {
  local clients
  for clients in "${client_counts[@]}"; do
    if [[ -n ${result["$1|$2|$clients"]:-} ]]; then return 0; fi
  done
  return 1
}

full_matrix=1
if [[ $duration -lt 10 || $clients_list != "1 16 64 256" || $workloads_list != "$all_workloads" || $keys != 10000 ]]; then
  full_matrix=0
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
data_fs=$(df -PT "$workdir" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }')
systems=(kahuna-1 kahuna-3 etcd etcd-3 redis-default redis-always)

{
  echo "# Benchmarks: Kahuna beside etcd and Redis"
  echo
  if ((full_matrix == 0)); then
    echo "**Short smoke run** (${duration} s per run, clients: ${clients_list}, ${keys} keys; workloads: ${workloads_list}):"
    echo "it proves the script and the drivers work; the figures are too short and too few to quote."
    echo
  fi
  echo "Written by \`scripts/bench-compare.sh\`; every figure comes from \`kahuna bench\` in one run."
  echo
  echo "- Command: \`${env_line}${command_line}\`"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $(nproc) cores (${cpu:-unknown CPU}), $(uname -sr), all traffic on loopback; data in a temporary directory ($data_fs); load average before the runs: $load_before (other work on the machine skews the figures)"
  echo "- Kahuna: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown) ($build_note); etcd: $(version_of "$etcd_bin" --version); Redis: $(version_of "$redis_bin" --version)"
  echo "- Each run: ${warmup} s warmup, then ${duration} s measured; closed loop, one connection shared by the clients, $keys keys (lock and sequence names) of 8 bytes, 256-byte values; gets, mixed, script and txn runs first write every key, sequence runs first create every sequence; sequence-reserve takes ${reserve_count} values."
  if ((pipeline == 1)); then
    echo "- Kahuna's client pipelines its single-key calls (\`kahuna bench --pipeline\`): the sets and gets of the put, get, mixed, eput and eget runs share one KeyValue.Pipeline stream per node, as many to a message as are in flight, as the Redis driver's multiplexed connection pipelines its commands; etcd's client sends each call as its own HTTP/2 stream. Lock, sequence, script and txn calls are unary either way."
  else
    echo "- Kahuna's client sends every call as its own HTTP/2 stream (BENCH_PIPELINE=0), as etcd's does."
  fi
  etcd3_setup="etcd as one member and as three members (the peer of Kahuna on 3 nodes; the driver balances over the three client URLs)"
  if ((etcd3 == 0)); then etcd3_setup="etcd as one member (three members skipped: BENCH_ETCD3=0)"; fi
  echo "- Setups: Kahuna on 1 node and on 3 nodes (loopback, the default partition count); $etcd3_setup; Redis with its default persistence (RDB snapshots, no AOF) and with \`appendonly yes\` + \`appendfsync always\`. One system runs at a time."
  echo "- fsync of the data disk (4 KiB write + fdatasync, \`dd oflag=dsync\`, mean of 500): ${fsync_before} ms before the runs, ${fsync_after} ms after."
  echo
  echo "## Ratios"
  echo
  echo "Kahuna/peer: above 1 means Kahuna did more ops/s; for p99, below 1 means Kahuna was faster."
  echo "Kahuna on 3 nodes is compared with etcd on 3 members (etcd-3), Kahuna on 1 node with etcd on 1 member."
  echo "$unsupported_mark: the peer has no faithful equivalent (see the workloads below); -: not run or failed."
  echo
  echo "| Kahuna | peer | workload (Kahuna / peer) | clients | Kahuna ops/s | peer ops/s | ops/s ratio | Kahuna p99 ms | peer p99 ms | p99 ratio |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  # pair KAHUNA_SYSTEM PEER_SYSTEM WORKLOAD LABEL: one row per client count, when the
  # Kahuna side ran.
  pair() {
    local clients k_ops p_ops k_p99 p_p99
    ran "$1" "$3" || return 0
    for clients in "${client_counts[@]}"; do
      k_ops=$(field "$1|$3|$clients" 1) p_ops=$(field "$2|$3|$clients" 1)
      k_p99=$(field "$1|$3|$clients" 3) p_p99=$(field "$2|$3|$clients" 3)
      echo "| $1 | $2 | $4 | $clients | $(fmt_ops "$k_ops") | $(fmt_ops "$p_ops") | $(ratio "$k_ops" "$p_ops") |" \
        "$(fmt_ms "$k_p99") | $(fmt_ms "$p_p99") | $(ratio "$k_p99" "$p_p99") |"
    done
  }
  pair kahuna-1 etcd put "put / Put"
  pair kahuna-3 etcd-3 put "put / Put"
  pair kahuna-1 etcd get "linearizable get / Range"
  pair kahuna-3 etcd-3 get "linearizable get / Range"
  pair kahuna-1 etcd get-serializable "serializable get / serializable Range"
  pair kahuna-1 etcd mixed "mixed / Put + Range"
  pair kahuna-1 redis-default eput "eput / SET"
  pair kahuna-1 redis-default eget "eget / GET"
  pair kahuna-1 redis-always put "put / SET (fsync always)"
  pair kahuna-1 redis-always get "get / GET (fsync always)"
  pair kahuna-1 etcd lock "lock cycle / lease Txn + Txn delete"
  pair kahuna-3 etcd-3 lock "lock cycle / lease Txn + Txn delete"
  pair kahuna-1 redis-always lock "lock cycle / SET NX PX + DEL, no fencing (fsync always)"
  pair kahuna-1 etcd sequence-next "sequence next / compare-and-swap"
  pair kahuna-3 etcd-3 sequence-next "sequence next / compare-and-swap"
  pair kahuna-1 redis-always sequence-next "sequence next / INCR (fsync always)"
  pair kahuna-1 etcd sequence-reserve "sequence reserve ${reserve_count} / compare-and-swap"
  pair kahuna-3 etcd-3 sequence-reserve "sequence reserve ${reserve_count} / compare-and-swap"
  pair kahuna-1 redis-always sequence-reserve "sequence reserve ${reserve_count} / INCRBY (fsync always)"
  pair kahuna-1 redis-always script "script / EVALSHA (fsync always)"
  pair kahuna-3 redis-always script "script / EVALSHA (fsync always)"
  pair kahuna-1 etcd script "script / none"
  pair kahuna-1 etcd txn "txn, one partition / read Txn + compare Txn"
  pair kahuna-3 etcd-3 txn "txn, one partition / read Txn + compare Txn"
  pair kahuna-1 etcd txn-2p "txn, two partitions / read Txn + compare Txn"
  pair kahuna-3 etcd-3 txn-2p "txn, two partitions / read Txn + compare Txn"
  pair kahuna-1 redis-always txn "txn / none"
  echo
  echo "## Goals"
  echo
  one_p50=$(field "kahuna-1|put|1" 2)
  etcd_one_p50=$(field "etcd|put|1" 2)
  if is_number "$one_p50"; then
    echo "- One client's sequential persistent put on one node: Kahuna 1 node p50 $(fmt_ms "$one_p50") ms," \
      "etcd 1 member p50 $(fmt_ms "$etcd_one_p50") ms; goal: below etcd and at most fsync + 0.2 ms" \
      "= $(awk -v f="$fsync_before" 'BEGIN { printf "%.3f", f + 0.2 }') ms."
  fi
  # goal_throughput KAHUNA PEER WORKLOAD LABEL P99: at 64 and 256 clients, KAHUNA/PEER
  # ops/s against the goal of at least 2 (and, when P99 is 1, a p99 ratio below 1).
  goal_throughput() {
    local clients ops_r p99_r verdict line="$4:" any=0
    ran "$1" "$3" || return 0
    for clients in 64 256; do
      if [[ " ${client_counts[*]} " != *" $clients "* ]]; then continue; fi
      any=1
      ops_r=$(ratio "$(field "$1|$3|$clients" 1)" "$(field "$2|$3|$clients" 1)")
      p99_r=$(ratio "$(field "$1|$3|$clients" 3)" "$(field "$2|$3|$clients" 3)")
      verdict=""
      if is_number "$ops_r" && { [[ $5 != 1 ]] || is_number "$p99_r"; }; then
        verdict=$(awk -v o="$ops_r" -v p="$p99_r" -v lat="$5" \
          'BEGIN { print ((o >= 2 && (lat != 1 || p < 1)) ? " (met)" : " (not met)") }')
      fi
      if [[ $5 == 1 ]]; then
        line+=" $clients clients ops/s $ops_r, p99 $p99_r$verdict;"
      else
        line+=" $clients clients $ops_r$verdict;"
      fi
    done
    if ((any == 0)); then
      line+=" not measured (this run's clients: ${clients_list});"
    fi
    echo "${line%;}."
  }
  goal_throughput kahuna-3 etcd-3 put \
    "- Three-node persistent put, Kahuna 3 nodes / etcd 3 members, goal ops/s at least 2 and p99 below 1 at 64 and 256 clients" 1
  goal_throughput kahuna-3 etcd-3 get \
    "- Linearizable get, Kahuna 3 nodes / etcd 3 members, goal ops/s at least 2 at 64 and 256 clients" 0
  goal_throughput kahuna-1 etcd get \
    "- Linearizable get, Kahuna 1 node / etcd 1 member, goal ops/s at least 2 at 64 and 256 clients" 0
  # goal_ratio KAHUNA PEER WORKLOAD CLIENTS: KAHUNA/PEER ops/s against the goal of 0.5.
  goal_ratio() {
    local r verdict=""
    r=$(ratio "$(field "$1|$3|$4" 1)" "$(field "$2|$3|$4" 1)")
    if is_number "$r"; then
      verdict=$(awk -v r="$r" 'BEGIN { print (r >= 0.5 ? " (met)" : " (not met)") }')
    fi
    echo "$r$verdict"
  }
  if ran kahuna-1 eput || ran kahuna-1 eget; then
    echo "- Ephemeral set/get, Kahuna 1 node / Redis with default persistence, goal at least 0.5 at 64 clients:" \
      "eput/SET $(goal_ratio kahuna-1 redis-default eput 64); eget/GET $(goal_ratio kahuna-1 redis-default eget 64)."
  fi
  if ran kahuna-1 script; then
    line="- Script (read + write one key), Kahuna 1 node / Redis EVALSHA with \`appendfsync always\`, goal at least 0.5:"
    for clients in "${client_counts[@]}"; do
      line+=" $clients clients $(goal_ratio kahuna-1 redis-always script "$clients");"
    done
    echo "${line%;}."
  fi
  echo
  echo "## Matrix (ops/s)"
  echo
  echo "$unsupported_mark: no faithful equivalent in that system; -: not run in this matrix, or failed."
  echo
  echo "| workload | clients |$(printf ' %s |' "${systems[@]}")"
  echo "| --- | ---: |$(printf ' ---: |%.0s' "${systems[@]}")"
  for workload in $workloads_list; do
    for clients in "${client_counts[@]}"; do
      row="| $workload | $clients |"
      for system in "${systems[@]}"; do
        row+=" $(fmt_ops "$(field "$system|$workload|$clients" 1)") |"
      done
      echo "$row"
    done
  done
  echo
  echo "## Every figure"
  echo
  echo "Errors include conflicts: a txn or txn-2p whose keys changed after its reads commits"
  echo "nothing and counts as an error (kind Conflict), not retried; ops/s counts commits only."
  echo
  echo "| system | workload | clients | ops/s | p50 ms | p99 ms | p999 ms | max ms | errors |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for key in "${runs[@]}"; do
    IFS='|' read -r system workload clients <<<"$key"
    if [[ ${result[$key]} == failed ]]; then
      echo "| $system | $workload | $clients | failed | | | | | |"
    else
      echo "| $system | $workload | $clients | $(fmt_ops "$(field "$key" 1)") | $(fmt_ms "$(field "$key" 2)") |" \
        "$(fmt_ms "$(field "$key" 3)") | $(fmt_ms "$(field "$key" 4)") | $(fmt_ms "$(field "$key" 5)") | $(field "$key" 6) |"
    fi
  done
  echo
  echo "## Workloads, as each driver runs them"
  echo
  echo "One operation is one row; its latency covers every request in it."
  echo
  echo "| workload | Kahuna | etcd | Redis |"
  echo "| --- | --- | --- | --- |"
  echo "| put | set (Raft quorum + fsync) | Put | SET |"
  echo "| get | linearizable get (ReadIndex on the leader) | linearizable Range | GET |"
  echo "| get-serializable | serializable get (any replica) | serializable Range | GET |"
  echo "| mixed | half put, half get | half Put, half Range | half SET, half GET |"
  echo "| eput, eget | set, get in the ephemeral keyspace (leader memory) | $unsupported_mark | SET, GET |"
  echo "| lock | try-lock (no wait, 10 s lease, fencing token), then unlock; a lock held by another client is a miss | Txn \"create revision = 0 → Put owner with the connection's lease\", then Txn \"value = owner → Delete\" | SET NX PX 10000, then DEL: no fencing token, and DEL does not check the owner |"
  echo "| sequence-next | next (idempotency key per call) | Range, then Txn \"mod revision unchanged → Put n + 1\", repeated on a lost race (at most 64) | INCR |"
  echo "| sequence-reserve | reserve ${reserve_count} | as sequence-next, + ${reserve_count} | INCRBY ${reserve_count} |"
  echo "| script | run by hash (loaded first): get a key, set it to its value + 1 | $unsupported_mark | EVALSHA of the same steps (loaded first) |"
  echo "| txn | begin; two gets of one bucket (one partition) sent together; two sets sent together; commit | one Txn of two Ranges, then Txn \"both mod revisions unchanged → Put both\" | $unsupported_mark (WATCH/MULTI/EXEC binds to a connection the clients share) |"
  echo "| txn-2p | as txn, the keys in buckets of two partitions | as txn (etcd has one log for all keys) | $unsupported_mark |"
  if [[ -f $repo/bench/PERF-LOG.md ]]; then
    echo
    cat "$repo/bench/PERF-LOG.md"
  fi
} >"$out_file"

echo "wrote $out_file" >&2
