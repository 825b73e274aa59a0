#!/usr/bin/env bash
# Instructions and allocations per request of each case of benches/overhead.rs, in ALL threads
# of the process (the request thread, the reporter or exporter threads, fastrace's collector
# and the threads it spawns to flush), then the table of overheads and the targets.
#
#   benches/instructions.sh [case ...]        (default: every case; one valgrind at a time)
#
# The per-request figures are also written to target/instructions.txt.
#
# Each case runs twice under callgrind, for 10,000 and 20,000 requests; the difference,
# divided by 10,000, is the cost per request, so start-up and shutdown cancel out. Each run
# ends by flushing the case's pipeline and checking that every span reached its reporter or
# exporter, so the background threads' work on every span is inside the count (a run that
# lost a span fails the script).
#
# What is counted: everything that runs under `std::sys::backtrace::__rust_begin_short_backtrace`,
# the frame std puts at the bottom of `main` and of every thread it spawns, so every Rust
# thread is counted from its first instruction to its last. What is not: the dynamic loader
# and constructors that run before `main`. One of those is fastrace's clock calibration
# (fastant), which spins until its TSC rate settles, a number of times that varies from run to
# run; counted, it would add millions of instructions of noise to one run of the pair.
#
# `--fair-sched=yes`: valgrind runs one thread at a time, and without fair scheduling a
# background thread can starve, its queue fill and spans be dropped.
#
# Under valgrind the process runs ~50x slower, so work a pipeline does on a timer (tracewire's
# worker wakes every 50 ms) is spread over fewer spans than at full speed: the background
# figures are, if anything, high.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
bin=$(cargo bench --bench overhead --all-features --no-run 2>&1 |
  sed -n 's/.*Executable benches\/overhead.rs (\(.*\))/\1/p')
[ -x "$bin" ] || { echo "could not build benches/overhead.rs" >&2; exit 1; }
cases=("$@")
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <(TRACEWIRE_BENCH_LIST=1 "$bin" --bench)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prints: instructions in all threads, in the main (request) thread, allocations.
count() { # case requests
  local out="$tmp/$1.$2"
  if ! TRACEWIRE_BENCH_CASE=$1 TRACEWIRE_BENCH_REQUESTS=$2 valgrind --tool=callgrind \
    --fair-sched=yes --separate-threads=yes \
    --toggle-collect='std::sys::backtrace::__rust_begin_short_backtrace' \
    --callgrind-out-file="$out" "$bin" --bench >"$out.stdout" 2>"$out.stderr"; then
    echo "$1 with $2 requests failed:" >&2
    tail -5 "$out.stderr" >&2
    exit 1
  fi
  local all main allocations
  all=$(cat "$out"-* | awk '/^totals:/ {sum += $2} END {print sum}')
  main=$(awk '/^totals:/ {print $2}' "$out-01")
  allocations=$(sed -n 's/.*allocations=\([0-9]*\).*/\1/p' "$out.stdout")
  echo "$all $main $allocations"
}

# Kept for `TRACEWIRE_BENCH_TABLE=target/instructions.txt target/release/deps/overhead-<hash> --bench`.
figures=target/instructions.txt
: >"$figures"
echo "per request, all threads: instructions, request thread, other threads, allocations" >&2
for case in "${cases[@]}"; do
  read -r a_all a_main a_alloc < <(count "$case" 10000)
  read -r b_all b_main b_alloc < <(count "$case" 20000)
  awk -v c="$case" -v all=$((b_all - a_all)) -v main=$((b_main - a_main)) \
    -v alloc=$((b_alloc - a_alloc)) \
    'BEGIN {printf "%s %.0f %.0f %.0f %.2f\n", c, all / 1e4, main / 1e4, (all - main) / 1e4, alloc / 1e4}' |
    tee -a "$figures" >&2
done
echo
TRACEWIRE_BENCH_TABLE="$figures" "$bin" --bench
