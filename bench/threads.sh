#!/usr/bin/env bash
# CPU per thread of a fully targeted replay, 1 and 2 workers (perf, cpu-clock samples at 1 kHz).
#   bash bench/threads.sh [MEGABYTES]     (default 400; BENCH_DIR=/dev/shm for tmpfs)
# On a machine with a core for every thread, a run takes at least as long as its busiest
# thread: the largest figure of each run is the wall time more cores could bring it down to,
# and the ratio of the two runs' largest figures is what a second worker can give there. On
# this 2-core machine the threads share two cores, so wall time alone cannot show it. The case's
# hashing and disk threads are on (TAPIR_DISK_THREADS=1), as on a box with more than two cores;
# TAPIR_DISK_THREADS=0 shows the case writer doing both itself, as here by default.
# Needs perf (linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_capture threads "${1:-400}" 2> /dev/null
bench_warrant "$work/all.toml" BENCH-ALL cidr:10.0.0.0/8
export TAPIR_DISK_THREADS=${TAPIR_DISK_THREADS:-1}
for n in 1 2; do
  rm -rf "$work/case"
  t0=$(date +%s.%N)
  perf record -q -e cpu-clock -F 1000 -o "$work/perf.data" \
    ./target/release/tapir replay -q "$cap" --warrants "$work/all.toml" --out "$work/case" --workers "$n" > /dev/null
  t1=$(date +%s.%N)
  echo "all targeted, $n worker(s), TAPIR_DISK_THREADS=$TAPIR_DISK_THREADS: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s wall (perf slows it a little); CPU by thread:"
  perf report -i "$work/perf.data" -n --no-children --sort comm --stdio 2> /dev/null \
    | awk '/^ +[0-9.]+%/ && $2 > 10 { printf "  %-16s %6.2f s\n", $3, $2 / 1000 }'
done
