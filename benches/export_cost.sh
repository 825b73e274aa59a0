#!/usr/bin/env bash
# Export cost end to end: the server's CPU time per request, untraced and traced by three
# stacks (and tracewire through the SDK's BatchSpanProcessor), each exporting every span over OTLP/gRPC to a real receiver, in one run.
#
#   benches/export_cost.sh [SECONDS]        (default 10 s of load per stack)
#
# Needs wrk (Debian: apt-get install -y wrk) and taskset (util-linux). The server
# (benches/export_cost/server.rs) runs pinned to CPU $SERVER_CPU (default 0), with all of its
# threads: request handling and exporting alike are counted. The receiver
# (benches/export_cost/receiver.rs) and wrk run on CPU $LOAD_CPU (default 1). Each stack: a 2 s
# warm-up, then wrk for SECONDS with one connection pool of 16; the server's utime+stime
# (/proc/PID/stat) is read before the load and 2 s after it (so the last batches are exported
# inside the window) and divided by the requests wrk completed. At the end every server exports
# what is left and the receiver's span count must equal the requests the server handled.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_OF_LOAD=${1:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TRACEPARENT="traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

command -v wrk >/dev/null || { echo "export_cost.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --all-features --example export_cost_server --example export_cost_receiver
BIN=target/release/examples
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# utime + stime, in clock ticks (fields 14 and 15; the program names hold no spaces).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_for_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

printf '%-14s %10s %12s %10s %10s %s\n' stack requests "cpu µs/req" handled exported "all exported"
declare -A COST
port=47000
for stack in bare tracewire tracewire_bsp otel fastrace; do
    receiver_port=$((port++))
    server_port=$((port++))
    taskset -c "$LOAD_CPU" "$BIN/export_cost_receiver" "$receiver_port" >"$WORK/receiver" &
    receiver=$!
    wait_for_port "$receiver_port"
    OTLP_ENDPOINT="http://127.0.0.1:$receiver_port" RUST_LOG=warn \
        OTEL_BSP_MAX_QUEUE_SIZE=65536 \
        taskset -c "$SERVER_CPU" "$BIN/export_cost_server" "$stack" "$server_port" >"$WORK/server" &
    server=$!
    wait_for_port "$server_port"
    url="http://127.0.0.1:$server_port/work"
    taskset -c "$LOAD_CPU" wrk -t1 -c16 -d2s -H "$TRACEPARENT" "$url" >/dev/null
    sleep 2
    before=$(cpu_ticks "$server")
    taskset -c "$LOAD_CPU" wrk -t1 -c16 -d"${SECONDS_OF_LOAD}s" -H "$TRACEPARENT" "$url" >"$WORK/wrk"
    sleep 2
    after=$(cpu_ticks "$server")
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk")
    if grep -q "Non-2xx" "$WORK/wrk"; then echo "$stack: some requests failed" >&2; fi
    kill -TERM "$server"; wait "$server"
    kill -TERM "$receiver"; wait "$receiver"
    handled=$(awk '/handled/ {print $2}' "$WORK/server")
    exported=$(awk '/received/ {print $2}' "$WORK/receiver")
    cost=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    COST[$stack]=$cost
    if [ "$stack" = bare ]; then all="-"; elif [ "$exported" = "$handled" ]; then all=yes; else all=NO; fi
    printf '%-14s %10s %12s %10s %10s %s\n' "$stack" "$requests" "$cost" "$handled" "$exported" "$all"
done

echo
echo "CPU per request above bare (µs):"
for stack in tracewire tracewire_bsp otel fastrace; do
    awk -v s="$stack" -v c="${COST[$stack]}" -v b="${COST[bare]}" 'BEGIN {printf "  %-14s %6.2f\n", s, c - b}'
done
awk -v t="${COST[tracewire]}" -v o="${COST[otel]}" -v f="${COST[fastrace]}" -v b="${COST[bare]}" \
    'BEGIN {printf "tracewire / otel: %.2f   tracewire / fastrace: %.2f (above bare)\n", (t - b) / (o - b), (t - b) / (f - b)}'
