#!/usr/bin/env bash
# Export cost end to end: the server's CPU time per request, untraced and traced by three
# stacks (and tracewire through the SDK's BatchSpanProcessor), each exporting every span over
# OTLP/gRPC to a real receiver, in one run.
#
#   benches/export_cost.sh [ROUNDS] [SECONDS]     (default 6 rounds of 4 s of load per stack)
#
# Stacks: bare, tower_http (a reference that exports nothing), tracewire (`otlp::init`),
# tracewire_sdk and tracewire_bsp (the recorder with `OtelReporter`, or with the SDK's
# `BatchSpanProcessor`), otel, fastrace: see benches/export_cost/server.rs.
#
# Needs wrk (Debian: apt-get install -y wrk) and taskset (util-linux). Every stack's server
# (benches/export_cost/server.rs) runs at once, pinned to CPU $SERVER_CPU (default 0) with all
# of its threads: request handling and exporting alike are counted. The receivers
# (benches/export_cost/receiver.rs, one per stack) and wrk run on CPU $LOAD_CPU (default 1).
#
# The stacks take turns: each round loads every server once, for SECONDS, with wrk's one
# connection pool of 16, in an order rotated from round to round. A turn reads the server's
# utime+stime (/proc/PID/stat) before the load and 1 s after it (so its last full batches are
# exported inside the window). The host's speed changes in phases of seconds; turns of a few
# seconds spread each phase over every stack, where one long run per stack would give a
# phase to one stack alone. The cost is a stack's CPU over all its turns divided by the
# requests wrk completed in them; each round's ratios are printed too, to show the spread.
# At the end every server exports what is left, and each receiver's span count must equal
# the requests its server handled.
#
# Any `OTEL_*` variable set when calling this reaches every server: for example
# `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=4` keeps four attributes per span in every stack that
# reads it (tracewire's and the OpenTelemetry SDK's; fastrace-axum records four).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-6}
SECONDS_OF_LOAD=${2:-4}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TRACEPARENT="traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The stacks, in this order; `STACKS="bare tracewire otel fastrace"` leaves some out. bare,
# tracewire, otel and fastrace are needed for the ratios. `tower_http` is a reference that
# exports nothing: tower-http's `TraceLayer` over a bare `tracing` registry, what a `tracing`
# span per request costs.
read -r -a STACKS <<<"${STACKS:-bare tower_http tracewire tracewire_sdk tracewire_bsp otel fastrace}"

command -v wrk >/dev/null || { echo "export_cost.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --all-features --example export_cost_server --example export_cost_receiver
BIN=target/release/examples
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
declare -A SERVER RECEIVER PORT CPU REQUESTS ROUND_COST
cleanup() {
    for pid in "${SERVER[@]}" "${RECEIVER[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# utime + stime, in clock ticks (fields 14 and 15; the program names hold no spaces).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

. benches/lib.sh

load() { # stack seconds: prints the requests wrk completed
    taskset -c "$LOAD_CPU" wrk -t1 -c16 -d"$2s" -H "$TRACEPARENT" \
        "http://127.0.0.1:${PORT[$1]}/work" >"$WORK/wrk.$1"
    if grep -q "Non-2xx" "$WORK/wrk.$1"; then echo "$1: some requests failed" >&2; exit 1; fi
    awk '/requests in/ {print $1}' "$WORK/wrk.$1"
}

port=47000
for stack in "${STACKS[@]}"; do
    receiver_port=$((port++))
    PORT[$stack]=$((port++))
    taskset -c "$LOAD_CPU" "$BIN/export_cost_receiver" "$receiver_port" >"$WORK/receiver.$stack" &
    RECEIVER[$stack]=$!
    wait_for_port "$receiver_port"
    OTLP_ENDPOINT="http://127.0.0.1:$receiver_port" RUST_LOG=warn \
        OTEL_BSP_MAX_QUEUE_SIZE=65536 \
        taskset -c "$SERVER_CPU" "$BIN/export_cost_server" "$stack" "${PORT[$stack]}" \
        >"$WORK/server.$stack" &
    SERVER[$stack]=$!
    wait_for_port "${PORT[$stack]}"
    CPU[$stack]=0
    REQUESTS[$stack]=0
done
for stack in "${STACKS[@]}"; do load "$stack" 2 >/dev/null; done # warm-up
sleep 1

printf '%-6s' round
for stack in "${STACKS[@]}"; do printf ' %14s' "$stack"; done
printf '   µs of CPU per request\n'
for round in $(seq 1 "$ROUNDS"); do
    # Rotated order: each stack goes first, and after each other one, in turn.
    shift_by=$(((round - 1) % ${#STACKS[@]}))
    order=("${STACKS[@]:shift_by}" "${STACKS[@]:0:shift_by}")
    declare -A cost=()
    for stack in "${order[@]}"; do
        before=$(cpu_ticks "${SERVER[$stack]}")
        requests=$(load "$stack" "$SECONDS_OF_LOAD")
        sleep 1
        after=$(cpu_ticks "${SERVER[$stack]}")
        CPU[$stack]=$((CPU[$stack] + after - before))
        REQUESTS[$stack]=$((REQUESTS[$stack] + requests))
        cost[$stack]=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" \
            'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    done
    printf '%-6s' "$round"
    for stack in "${STACKS[@]}"; do printf ' %14s' "${cost[$stack]}"; done
    awk -v t="${cost[tracewire]}" -v o="${cost[otel]}" -v f="${cost[fastrace]}" -v b="${cost[bare]}" \
        'BEGIN {printf "   tracewire / otel %.2f, / fastrace %.2f\n", (t - b) / (o - b), (t - b) / (f - b)}'
    ROUND_COST[$round]="${cost[tracewire]} ${cost[otel]} ${cost[fastrace]} ${cost[bare]}"
done

echo
printf '%-14s %10s %12s %10s %10s %s\n' stack requests "cpu µs/req" handled exported "all exported"
declare -A COST
for stack in "${STACKS[@]}"; do
    kill -TERM "${SERVER[$stack]}"; wait "${SERVER[$stack]}"
    kill -TERM "${RECEIVER[$stack]}"; wait "${RECEIVER[$stack]}"
    unset "SERVER[$stack]" "RECEIVER[$stack]"
    handled=$(awk '/handled/ {print $2}' "$WORK/server.$stack")
    exported=$(awk '/received/ {print $2}' "$WORK/receiver.$stack")
    COST[$stack]=$(awk -v t="${CPU[$stack]}" -v hz="$TICKS" -v n="${REQUESTS[$stack]}" \
        'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    if [ "$stack" = bare ] || [ "$stack" = tower_http ]; then all="-"; elif [ "$exported" = "$handled" ]; then all=yes; else all=NO; fi
    printf '%-14s %10s %12s %10s %10s %s\n' "$stack" "${REQUESTS[$stack]}" "${COST[$stack]}" "$handled" "$exported" "$all"
done

echo
echo "CPU per request above bare (µs), over all rounds:"
for stack in "${STACKS[@]:1}"; do
    awk -v s="$stack" -v c="${COST[$stack]}" -v b="${COST[bare]}" 'BEGIN {printf "  %-14s %6.2f\n", s, c - b}'
done
awk -v t="${COST[tracewire]}" -v o="${COST[otel]}" -v f="${COST[fastrace]}" -v b="${COST[bare]}" \
    'BEGIN {printf "tracewire / otel: %.2f   tracewire / fastrace: %.2f (above bare)\n", (t - b) / (o - b), (t - b) / (f - b)}'
for round in $(seq 1 "$ROUNDS"); do echo "${ROUND_COST[$round]}"; done | awk '
    { o[NR] = ($1 - $4) / ($2 - $4); f[NR] = ($1 - $4) / ($3 - $4) }
    function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "median of the rounds: tracewire / otel %.2f, / fastrace %.2f\n", median(o, NR), median(f, NR) }'
