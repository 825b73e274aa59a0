#!/usr/bin/env bash
# Export cost in instructions: what benches/export_cost.sh measures in CPU time, counted
# instead with callgrind, so that the figure does not move with the machine's load.
#
#   benches/export_instructions.sh [stack ...]     (default: bare tracewire otel fastrace)
#
# Stacks: bare, tracewire (`otlp::init`), tracewire_sdk (recorder + OtelReporter + the
# opentelemetry-otlp tonic exporter, no log layer), tracewire_bsp (the recorder into the SDK's
# BatchSpanProcessor, no log layer), otel, fastrace.
#
# Each stack runs benches/export_cost/instructions.rs twice under callgrind (all threads,
# counted from std's thread entry as in benches/instructions.sh), for N1 and N2 in-memory
# requests (default 5,000 and 10,000; set N1 and N2), each run exporting every span over
# OTLP/gRPC to its own receiver process (benches/export_cost/receiver.rs, not counted). The
# difference divided by N2 - N1 is the cost per request; start-up and shutdown cancel out.
# Each run must deliver one span per request to its receiver, or the script fails.
#
# Under valgrind the process runs ~50x slower, so batches fill before the export interval
# and are exported at the batch size; at full speed this is so too under load.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
N1=${N1:-5000}
N2=${N2:-10000}
cargo build --release --all-features --example export_cost_instructions --example export_cost_receiver
BIN=target/release/examples
stacks=("$@")
[ ${#stacks[@]} -gt 0 ] || stacks=(bare tracewire otel fastrace)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=47300

. benches/lib.sh

# Prints the instructions of all threads of one run of `stack` with `n` requests.
count() { # stack n
  local out="$tmp/$1.$2" receiver
  port=$((port + 1))
  "$BIN/export_cost_receiver" "$port" >"$out.received" &
  receiver=$!
  wait_for_port "$port"
  if ! OTLP_ENDPOINT="http://127.0.0.1:$port" RUST_LOG=warn OTEL_BSP_MAX_QUEUE_SIZE=65536 valgrind --tool=callgrind \
    --fair-sched=yes --separate-threads=yes \
    --toggle-collect='std::sys::backtrace::__rust_begin_short_backtrace' \
    --callgrind-out-file="$out" "$BIN/export_cost_instructions" "$1" "$2" \
    >"$out.stdout" 2>"$out.stderr"; then
    kill "$receiver"
    echo "$1 with $2 requests failed:" >&2
    tail -5 "$out.stderr" >&2
    exit 1
  fi
  kill -TERM "$receiver"
  wait "$receiver" || true
  local received
  received=$(sed -n 's/^received //p' "$out.received")
  if [ "$1" != bare ] && [ "$received" != "$2" ]; then
    echo "$1 with $2 requests: the receiver got $received spans" >&2
    exit 1
  fi
  cat "$out"-* | awk '/^totals:/ {sum += $2} END {print sum}'
}

printf '%-10s %14s %16s\n' stack "instr/request" "over bare"
bare=
for stack in "${stacks[@]}"; do
  a=$(count "$stack" "$N1")
  b=$(count "$stack" "$N2")
  per=$(( (b - a) / (N2 - N1) ))
  [ "$stack" = bare ] && bare=$per
  over=-
  [ -n "$bare" ] && over=$((per - bare))
  printf '%-10s %14d %16s\n' "$stack" "$per" "$over"
done
