#!/usr/bin/env bash
# Long fault runs of the register workload: partitions in network namespaces (isolate the
# leader, majority/minority, one-way; needs root, ip and iptables) and SIGSTOP/SIGCONT of
# a leader and a follower, round after round, each judged by the linearizability checker.
# With `sim`, many seeds of the deterministic simulation (sim/) instead.
#
#   scripts/torture.sh [minutes]        (default 10)
#   scripts/torture.sh sim [minutes]    (default 10)
#
# Environment: KAHUNA_T50_SECONDS  length of one round's fault schedule (default 90)
#              KAHUNA_TORTURE_DIR  where failing rounds are kept (default target/torture)
#              KAHUNA_SIM_FIRST_SEED  first simulation seed (default: from the clock; the
#                                  next ones count up)
#              KAHUNA_SIM_SECONDS  simulated seconds of faults per seed (default 20)
#              KAHUNA_SIM_JOBS     seeds run at once (default: the number of CPUs)
#
# Prints one table per round: every fault window with the operations invoked in it (ok /
# failed / unknown), the violations found in it and the time until every key had a
# successful write after the window began. A failing round keeps its output, history
# (JSONL) and node logs under KAHUNA_TORTURE_DIR/round-N; the exit status is the number
# of failing rounds (capped at 100).
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
export KAHUNA_T50_SECONDS=${KAHUNA_T50_SECONDS:-90}
dir=${KAHUNA_TORTURE_DIR:-target/torture}
mkdir -p "$dir"

echo "building the fault tests..." >&2
bin=$(cargo test --test t50_faults --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*t50_faults[^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "cannot build or find the t50_faults test binary" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "note: not root, so only the SIGSTOP faults run (partitions need root)" >&2
fi

end=$(($(date +%s) + minutes * 60))
round=0
failed=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    keep="$dir/round-$round"
    mkdir -p "$keep"
    started=$(date +%s)
    if KAHUNA_T50_KEEP="$keep" "$bin" --test-threads 1 --nocapture partitions sigstop >"$keep/output.log" 2>&1; then
        verdict=PASS
    else
        verdict=FAIL
        failed=$((failed + 1))
    fi
    printf '\n== round %d: %s (%d s)\n' "$round" "$verdict" "$(($(date +%s) - started))"
    printf '%-11s %-24s %7s %7s %7s %8s %11s %10s\n' test window secs ok failed unknown violations all-written
    awk '
        /WINDOW / {
            sub(/.*WINDOW /, "WINDOW ")
            printf "%-11s %-24s %7s %7s %7s %8s %11s %10s\n", $2, $3, $4, $6, $8, $10, $12, $14
        }
        /(TOTAL|ELECTIONS|KEPT|SKIPPED|NOTE) / { sub(/^test .* \.\.\. /, ""); extra = extra "  " $0 "\n" }
        /panicked at/ { line = $0; getline; extra = extra "  " line "\n  " $0 "\n" }
        END { printf "%s", extra }
    ' "$keep/output.log"
    if [ "$verdict" = PASS ]; then
        rm -rf "$keep"
    else
        echo "  kept in $keep"
    fi
done

printf '\n%d round(s), %d failed\n' "$round" "$failed"
exit $((failed > 100 ? 100 : failed))
