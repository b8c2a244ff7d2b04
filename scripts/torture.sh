#!/usr/bin/env bash
# Long fault runs of every workload of `kahuna check` (register, lock, sequence, append,
# bank) on real processes, each judged by its checker: the fault tests of
# tests/t50_faults.rs with their schedule stretched, one workload after another. One run
# of a workload is two tests: three nodes in network namespaces with the leader of the
# workload's partition isolated, a majority/minority split, a one-way cut (iptables), then
# that partition's leader killed with SIGKILL and restarted (needs root, ip and iptables);
# and three nodes on loopback with a leader, then a follower, paused with SIGSTOP.
# With `sim`, many seeds of the deterministic simulation (sim/) instead.
#
#   scripts/torture.sh [minutes]        (default 10)
#   scripts/torture.sh sim [minutes]    (default 10)
#
# Environment: KAHUNA_T50_SECONDS  length of each test's fault schedule (default 60; a
#                                  run of one workload then takes about 2.5 minutes)
#              KAHUNA_T50_PIPELINE  1: the clients pipeline their single-key calls
#              KAHUNA_TORTURE_WORKLOADS  the workloads, in turn (default: all five)
#              KAHUNA_TORTURE_DIR  where failing runs are kept (default target/torture)
#              KAHUNA_SIM_FIRST_SEED  first simulation seed (default: from the clock; the
#                                  next ones count up)
#              KAHUNA_SIM_SECONDS  simulated seconds of faults per seed (default 20)
#              KAHUNA_SIM_JOBS     seeds run at once (default: the number of CPUs)
#
# Workloads run in turn (register, lock, sequence, append, bank, register, ...) until
# `minutes` have passed; a run started before then finishes. Each run prints one table: a
# row per fault window of each test with the operations invoked in it (ok / failed /
# unknown), `elections` (leaders of new terms seen by polling every node's status) and
# `terms` (how far the highest term rose, elections nobody won included), `first-write`
# (time from the window's start to the first successful write invoked in it or later:
# after a heal, the time to the first write after healing) and `all-keys` (until every
# key had one), and every violation counter of the workload's checker; a `(run)` row sums
# each test. Below the table: the restarted node's recovery, the leaders seen, the
# checker's verdict. Every violation counter must be 0, and writes must succeed again
# within 10 s of each heal. A failing run keeps its output (with the workload's seed),
# history (JSONL) and node logs under KAHUNA_TORTURE_DIR/run-N-WORKLOAD; the exit status is
# the number of failing runs (capped at 100).
#
# `sim` prints one line per seed. The simulation is built with --cfg tokio_unstable in
# target/sim, where one seed gives one run, so a failing seed replays exactly with the
# command it prints; its output and history are kept under KAHUNA_TORTURE_DIR/sim-seed-N.
set -euo pipefail
cd "$(dirname "$0")/.."

# Many seeds of the simulation, until `minutes` have passed; the exit status is the number
# of failing seeds (capped at 100).
simulate() {
    local minutes=$1 dir=$2
    export RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/sim
    echo "building the simulation (deterministic build, in target/sim)..." >&2
    local bin
    bin=$(cargo test -p kahuna-sim --test t10_register --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*t10_register[^"]*\)".*/\1/p' | tail -n 1)
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "cannot build or find the simulation's test binary" >&2
        exit 2
    fi
    local seed=${KAHUNA_SIM_FIRST_SEED:-$(date +%s)}
    local jobs=${KAHUNA_SIM_JOBS:-$(nproc)}
    local end=$(($(date +%s) + minutes * 60)) seeds=0 failed=0
    echo "seeds from $seed, $jobs at a time" >&2
    while [ "$(date +%s)" -lt "$end" ]; do
        local batch=()
        for _ in $(seq "$jobs"); do
            batch+=("$seed")
            mkdir -p "$dir/sim-seed-$seed"
            KAHUNA_SIM_SEED=$seed KAHUNA_SIM_DIR="$dir/sim-seed-$seed" \
                "$bin" --exact seeds --nocapture >"$dir/sim-seed-$seed/output.log" 2>&1 &
            seed=$((seed + 1))
        done
        local s
        for s in "${batch[@]}"; do
            # The jobs end in any order; each one's status is read from its own output.
            wait -n || true
        done
        for s in "${batch[@]}"; do
            seeds=$((seeds + 1))
            local keep="$dir/sim-seed-$s"
            if grep -q '^test result: ok' "$keep/output.log"; then
                grep -h "^seed $s:" "$keep/output.log" || echo "seed $s: PASS"
                rm -rf "$keep"
            else
                failed=$((failed + 1))
                grep -h "^seed $s" "$keep/output.log" || echo "seed $s: FAIL (no summary)"
                echo "  kept in $keep"
                grep -h -A1 "reproduce:" "$keep/output.log" | sed 's/^ */  /' || true
            fi
        done
    done
    printf '\n%d seed(s), %d failed\n' "$seeds" "$failed"
    exit $((failed > 100 ? 100 : failed))
}

if [ "${1:-}" = sim ]; then
    minutes=${2:-10}
    case $minutes in '' | *[!0-9]*) echo "usage: $0 sim [minutes]" >&2; exit 2 ;; esac
    dir=${KAHUNA_TORTURE_DIR:-target/torture}
    mkdir -p "$dir"
    simulate "$minutes" "$dir"
fi

minutes=${1:-10}
case $minutes in '' | *[!0-9]*) echo "usage: $0 [minutes] | $0 sim [minutes]" >&2; exit 2 ;; esac
export KAHUNA_T50_SECONDS=${KAHUNA_T50_SECONDS:-60}
read -r -a workloads <<<"${KAHUNA_TORTURE_WORKLOADS:-register lock sequence append bank}"
dir=${KAHUNA_TORTURE_DIR:-target/torture}
mkdir -p "$dir"

echo "building the fault tests..." >&2
bin=$(cargo test --test t50_faults --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*t50_faults[^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "cannot build or find the t50_faults test binary" >&2
    exit 2
fi
if [ "$(id -u)" = 0 ]; then
    # As root the partition test must run, not skip.
    export KAHUNA_FAULTS_REQUIRED=1
else
    echo "note: not root, so only the SIGSTOP faults run (partitions and SIGKILL need root)" >&2
fi

# The table of one run from its output ($1) with its verdict ($2): a row per WINDOW or
# TOTAL line (name/value pairs after the test, workload and window names), columns as wide
# as their widest cell; then the lines that explain the run (KEPT only when it failed, as a
# passing run's directory is removed).
table() {
    awk -v verdict="$2" '
        /(WINDOW|TOTAL) [a-z]+ [a-z]+ / {
            sub(/.*(WINDOW|TOTAL) /, "")
            rows++
            cell[rows, 1] = $1; cell[rows, 2] = $3
            if (!header) { name[1] = "test"; name[2] = "window"; columns = 2 }
            c = 2
            for (i = 4; i < NF; i += 2) {
                c++
                if (!header) { name[c] = $i; columns = c }
                cell[rows, c] = $(i + 1)
            }
            header = 1
        }
        /^(SEED|RESTART|LEADERS|CHECKER|SKIPPED|NOTE) / { extra = extra "  " $0 "\n" }
        /^KEPT / && verdict != "PASS" { extra = extra "  " $0 "\n" }
        /panicked at/ { line = $0; getline; extra = extra "  " line "\n  " $0 "\n" }
        END {
            for (c = 1; c <= columns; c++) {
                width[c] = length(name[c])
                for (r = 1; r <= rows; r++) if (length(cell[r, c]) > width[c]) width[c] = length(cell[r, c])
            }
            for (c = 1; c <= columns; c++)
                printf (c <= 2 ? "%-*s%s" : "%*s%s"), width[c], name[c], (c < columns ? "  " : "\n")
            for (r = 1; r <= rows; r++)
                for (c = 1; c <= columns; c++)
                    printf (c <= 2 ? "%-*s%s" : "%*s%s"), width[c], cell[r, c], (c < columns ? "  " : "\n")
            printf "%s", extra
        }
    ' "$1"
}

end=$(($(date +%s) + minutes * 60))
run=0
failed=0
declare -A runs_of failures_of
while [ "$(date +%s)" -lt "$end" ]; do
    workload=${workloads[$((run % ${#workloads[@]}))]}
    run=$((run + 1))
    keep="$dir/run-$run-$workload"
    mkdir -p "$keep"
    started=$(date +%s)
    if KAHUNA_T50_WORKLOAD=$workload KAHUNA_T50_KEEP="$keep" \
        "$bin" --test-threads 1 --nocapture partitions sigstop >"$keep/output.log" 2>&1; then
        verdict=PASS
    else
        verdict=FAIL
        failed=$((failed + 1))
        failures_of[$workload]=$((${failures_of[$workload]:-0} + 1))
    fi
    runs_of[$workload]=$((${runs_of[$workload]:-0} + 1))
    printf '\n== run %d: %s workload, %s (%d s)\n' "$run" "$workload" "$verdict" "$(($(date +%s) - started))"
    table "$keep/output.log" "$verdict"
    if [ "$verdict" = PASS ]; then
        rm -rf "$keep"
    else
        echo "  kept in $keep"
    fi
done

printf '\n%d run(s), %d failed:' "$run" "$failed"
for workload in "${workloads[@]}"; do
    printf ' %s %d/%d' "$workload" "${failures_of[$workload]:-0}" "${runs_of[$workload]:-0}"
done
printf ' (failed/runs)\n'
exit $((failed > 100 ? 100 : failed))
