#!/usr/bin/env bash
# Runs `kahuna bench` against Kahuna (one node, three nodes), etcd (one member) and Redis
# (default persistence, and `appendonly yes` + `appendfsync always`) on loopback, one
# system at a time, and writes BENCHMARKS.md: every figure, the Kahuna/peer ratios, and
# the fsync time of the data disk measured in the same run.
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
# The matrix, at each client count:
#   Kahuna 1 node   put, get, eput, eget     etcd            put, get
#   Kahuna 3 nodes  put, get                 Redis default   eput, eget (SET, GET)
#                                            Redis always    put, get   (SET, GET)
#
# Environment (all optional):
#   KAHUNA_BIN       kahuna binary built with --features peers, instead of building one
#   BENCH_DURATION   measured seconds per run (default 10)
#   BENCH_WARMUP     warmup seconds per run (default 2)
#   BENCH_CLIENTS    client counts (default "1 16 64 256")
#   BENCH_PORT_BASE  first loopback port (default 27400); uses base..base+2 (Kahuna),
#                    base+10, base+11 (etcd), base+20, base+21 (Redis)
#   BENCH_OUT        report file (default BENCHMARKS.md at the repository root)
#   BENCH_JSON_OUT   file to append every run's JSON summary to
#   BENCH_KEEP       1 keeps the temporary directory (logs, data) after the run
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
clients_list=${BENCH_CLIENTS:-1 16 64 256}
read -ra client_counts <<<"$clients_list"
port_base=${BENCH_PORT_BASE:-27400}
out_file=${BENCH_OUT:-$repo/BENCHMARKS.md}
ready_timeout_s=60
stop_grace_s=10
command_line="$0${*:+ $*}"
env_line=""
for var in BENCH_DURATION BENCH_WARMUP BENCH_CLIENTS BENCH_PORT_BASE KAHUNA_BIN; do
  if [[ -n ${!var:-} ]]; then
    env_line+="$var=\"${!var}\" "
  fi
done

# Settings from the caller's environment must not reach the servers or the bench.
unset KAHUNA_NODE_ID KAHUNA_LISTEN KAHUNA_PEERS KAHUNA_DATA_DIR KAHUNA_PARTITIONS KAHUNA_ENDPOINTS
while IFS='=' read -r name _; do
  if [[ $name == ETCD_* || $name == ETCDCTL_* ]]; then unset "$name"; fi
done < <(env)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/kahuna-bench-compare.XXXXXX")
# The processes of the current system: the only ones this script starts. Each system's
# processes are stopped and reaped before the next starts, so a pid here is never reused.
running=()

stop_pids() {
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
      echo "process $pid did not stop in ${stop_grace_s} s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

stop_running() {
  if ((${#running[@]} > 0)); then
    stop_pids "${running[@]}"
  fi
  running=()
}

cleanup() {
  local status=$?
  stop_running
  if [[ ${BENCH_KEEP:-0} == 1 || $status != 0 ]]; then
    echo "logs and data kept in $workdir" >&2
  else
    rm -rf "$workdir"
  fi
}
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
fi
[[ -x $kahuna ]] || { echo "no kahuna binary at $kahuna" >&2; exit 1; }

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

p1=$port_base p2=$((port_base + 1)) p3=$((port_base + 2))
etcd_port=$((port_base + 10)) etcd_peer_port=$((port_base + 11))
redis_port=$((port_base + 20)) redis_always_port=$((port_base + 21))
for port in "$p1" "$p2" "$p3" "$etcd_port" "$etcd_peer_port" "$redis_port" "$redis_always_port"; do
  if port_in_use "$port"; then
    echo "port $port is in use; set BENCH_PORT_BASE" >&2
    exit 1
  fi
done

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

# start_kahuna NAME ID LISTEN [PEERS]
start_kahuna() {
  local dir="$workdir/$1"
  mkdir -p "$dir"
  local args=(serve --node-id "$2" --listen "$3" --data-dir "$dir/data")
  if [[ -n ${4:-} ]]; then
    args+=(--peers "$4")
  fi
  "$kahuna" "${args[@]}" >"$dir/log" 2>&1 &
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
  return 1
}

start_etcd() {
  local dir="$workdir/etcd"
  mkdir -p "$dir"
  "$etcd_bin" --name bench --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new \
    >"$dir/log" 2>&1 &
  running+=($!)
  wait_port "$etcd_port"
  # A single member elects itself at once; give it a moment to become leader.
  local deadline=$((SECONDS + ready_timeout_s))
  until grep -q "ready to serve client requests\|became leader" "$dir/log"; do
    check_running
    if ((SECONDS >= deadline)); then
      echo "etcd did not become ready within ${ready_timeout_s} s" >&2
      return 1
    fi
    sleep 0.2
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
# json_field NAME JSON: a top-level number of the bench's JSON summary.
json_field() {
  sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"
}

declare -A result   # "system|workload|clients" -> "ops/s p50 p99 p999 max errors"
runs=()             # the keys in run order

# bench SYSTEM TARGET ENDPOINTS WORKLOAD...: every workload at every client count.
bench() {
  local system=$1 target=$2 endpoints=$3 workload clients out
  shift 3
  for workload in "$@"; do
    for clients in "${client_counts[@]}"; do
      echo "$system: $workload with $clients clients for ${duration} s..." >&2
      if out=$("$kahuna" bench --target "$target" --endpoints "$endpoints" --workload "$workload" \
        --clients "$clients" --duration "$duration" --warmup "$warmup" --json); then
        if [[ -n ${BENCH_JSON_OUT:-} ]]; then
          printf '{"system":"%s",%s\n' "$system" "${out#\{}" >>"$BENCH_JSON_OUT"
        fi
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

start_kahuna single 1 "127.0.0.1:$p1"
wait_kahuna "127.0.0.1:$p1"
bench "kahuna-1" kahuna "127.0.0.1:$p1" put get eput eget
stop_running

peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
for id in 1 2 3; do
  start_kahuna "node$id" "$id" "127.0.0.1:$((port_base + id - 1))" "$peers"
done
wait_kahuna "127.0.0.1:$p1"
bench "kahuna-3" kahuna "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3" put get
stop_running

start_etcd
bench "etcd" etcd "127.0.0.1:$etcd_port" put get
stop_running

start_redis redis-default "$redis_port"
bench "redis-default" redis "127.0.0.1:$redis_port" eput eget
stop_running

start_redis redis-always "$redis_always_port" --appendonly yes --appendfsync always
bench "redis-always" redis "127.0.0.1:$redis_always_port" put get
stop_running

fsync_after=$(fsync_ms)
echo "fsync after the runs: $fsync_after ms" >&2

# --- the report -------------------------------------------------------------------------
# field KEY N: the Nth figure (1 ops/s, 2 p50, 3 p99, 4 p999, 5 max, 6 errors) of a run.
field() {
  local figures=${result[$1]:-}
  if [[ -z $figures || $figures == failed ]]; then
    echo "-"
  else
    awk -v n="$2" '{ print $n }' <<<"$figures"
  fi
}

# ratio A B: A / B to two decimals, or "-".
ratio() {
  if [[ $1 == - || $2 == - ]]; then
    echo "-"
  else
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
  fi
}

fmt_ops() {
  if [[ $1 == - ]]; then echo "-"; else awk -v x="$1" 'BEGIN { printf "%.0f", x }'; fi
}

fmt_ms() {
  if [[ $1 == - ]]; then echo "-"; else awk -v x="$1" 'BEGIN { printf "%.3f", x }'; fi
}

version_of() {
  "$@" 2>/dev/null | head -n 1 || echo unknown
}

full_matrix=1
if [[ $duration -lt 10 || $clients_list != "1 16 64 256" ]]; then
  full_matrix=0
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
data_fs=$(df -PT "$workdir" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }')

{
  echo "# Benchmarks: Kahuna beside etcd and Redis"
  echo
  if ((full_matrix == 0)); then
    echo "**Short smoke run** (${duration} s per run, clients: ${clients_list}): it proves the"
    echo "script and the drivers work; the figures are too short and too few to quote."
    echo
  fi
  echo "Written by \`scripts/bench-compare.sh\`; every figure comes from \`kahuna bench\` in one run."
  echo
  echo "- Command: \`${env_line}${command_line}\`"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $(nproc) cores (${cpu:-unknown CPU}), $(uname -sr), all traffic on loopback; data in a temporary directory ($data_fs); load average before the runs: $load_before (other work on the machine skews the figures)"
  echo "- Kahuna: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown) (release build); etcd: $(version_of "$etcd_bin" --version); Redis: $(version_of "$redis_bin" --version)"
  echo "- Each run: ${warmup} s warmup, then ${duration} s measured; closed loop, one connection shared by the clients, 10,000 keys of 8 bytes, 256-byte values; gets read preloaded keys."
  echo "- Setups: Kahuna on 1 node and on 3 nodes (loopback); etcd as one member; Redis with its default persistence (RDB snapshots, no AOF) and with \`appendonly yes\` + \`appendfsync always\`. One system runs at a time."
  echo "- fsync of the data disk (4 KiB write + fdatasync, \`dd oflag=dsync\`, mean of 500): ${fsync_before} ms before the runs, ${fsync_after} ms after."
  echo
  echo "## Ratios"
  echo
  echo "Kahuna/peer: above 1 means Kahuna did more ops/s; for p99, below 1 means Kahuna was faster."
  echo
  echo "| Kahuna | peer | workload (Kahuna / peer) | clients | Kahuna ops/s | peer ops/s | ops/s ratio | Kahuna p99 ms | peer p99 ms | p99 ratio |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  # pair KAHUNA_SYSTEM KAHUNA_WORKLOAD PEER_SYSTEM PEER_WORKLOAD LABEL
  pair() {
    local clients k_ops p_ops k_p99 p_p99
    for clients in "${client_counts[@]}"; do
      k_ops=$(field "$1|$2|$clients" 1) p_ops=$(field "$3|$4|$clients" 1)
      k_p99=$(field "$1|$2|$clients" 3) p_p99=$(field "$3|$4|$clients" 3)
      echo "| $1 | $3 | $5 | $clients | $(fmt_ops "$k_ops") | $(fmt_ops "$p_ops") | $(ratio "$k_ops" "$p_ops") |" \
        "$(fmt_ms "$k_p99") | $(fmt_ms "$p_p99") | $(ratio "$k_p99" "$p_p99") |"
    done
  }
  pair kahuna-1 put etcd put "put / Put"
  pair kahuna-3 put etcd put "put / Put"
  pair kahuna-1 get etcd get "linearizable get / Range"
  pair kahuna-3 get etcd get "linearizable get / Range"
  pair kahuna-1 eput redis-default eput "eput / SET"
  pair kahuna-1 eget redis-default eget "eget / GET"
  pair kahuna-1 put redis-always put "put / SET (fsync always)"
  pair kahuna-1 get redis-always get "get / GET (fsync always)"
  echo
  one_p50=$(field "kahuna-1|put|1" 2)
  etcd_one_p50=$(field "etcd|put|1" 2)
  if [[ $one_p50 != - ]]; then
    echo "One client's sequential persistent put on one node: Kahuna p50 $(fmt_ms "$one_p50") ms," \
      "etcd p50 $(fmt_ms "$etcd_one_p50") ms; goal: below etcd and at most fsync + 0.2 ms" \
      "= $(awk -v f="$fsync_before" 'BEGIN { printf "%.3f", f + 0.2 }') ms."
    echo
  fi
  echo "## Every figure"
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
  echo "Workloads as the drivers map them: etcd put = Put, get = linearizable Range; Redis put and"
  echo "eput = SET, get and eget = GET. Kahuna's eput/eget use its ephemeral keyspace (leader memory)."
} >"$out_file"

echo "wrote $out_file" >&2
