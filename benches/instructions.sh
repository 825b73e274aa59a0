#!/usr/bin/env bash
# Instructions per request of each case of benches/overhead.rs, counted by callgrind on the
# request thread: the difference between runs of 10,000 and 20,000 requests, so start-up
# cancels out. Deterministic to about 1-2% run to run on one binary. `--fair-sched=yes`:
# valgrind runs one thread at a time, and without fair scheduling the reporter thread starves,
# its queue fills and spans are dropped, which would undercount the recording path.
# `--toggle-collect`: only what runs under the bench's `main` counts. A dev-dependency
# (fastrace's clock) calibrates in a constructor before `main`, spinning a number of times that
# varies run to run; counted, it would add hundreds of instructions of noise per request.
#
#   benches/instructions.sh [case ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench overhead --all-features --no-run 2>/dev/null
bin=$(ls -t target/release/deps/overhead-* | grep -v '\.d$' | head -1)
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(bare noop_layer tower_http otel_stack fastrace tracewire_sampled tracewire_unsampled bare_client tracewire_client tracewire_sampled_metrics tracewire_unsampled_metrics otel_stack_metrics)
tmp=$(mktemp -d)
count() { # case requests
  TRACEWIRE_BENCH_CASE=$1 TRACEWIRE_BENCH_REQUESTS=$2 valgrind --tool=callgrind --fair-sched=yes --toggle-collect='overhead::main' \
    --separate-threads=yes --callgrind-out-file="$tmp/$1.$2.%p" "$bin" --bench >/dev/null 2>&1
  # The request thread's file ends in -01; the largest such file is the bench process.
  for f in "$tmp/$1.$2".*-01; do
    callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
  done | sort -n | tail -1
}
for case in "${cases[@]}"; do
  a=$(count "$case" 10000)
  b=$(count "$case" 20000)
  echo "$case $(( (b - a) / 10000 ))"
done
rm -rf "$tmp"
