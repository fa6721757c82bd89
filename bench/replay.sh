#!/usr/bin/env bash
# Replay throughput: tapir next to tcpdump and tcpflow on the same generated capture, same run.
#   bash bench/replay.sh [MEGABYTES]      (default 1024)
#   BENCH_DIR=/dev/shm bash bench/replay.sh   capture and outputs on tmpfs (the disk out of it)
#   WORKERS="2 3" bash bench/replay.sh        the sharded runs' worker counts (default 2)
# Prints packets/s, MB/s and peak RSS for each. Needs tcpdump, tcpflow and GNU time
# (.ci/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_capture bench "${1:-1024}"
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")

bench_warrant "$work/none.toml" BENCH-NONE ipv4:192.0.2.1
bench_warrant "$work/all.toml" BENCH-ALL cidr:10.0.0.0/8
bench_warrant "$work/iri.toml" BENCH-IRI cidr:10.0.0.0/8 iri

echo "capture: $packets packets, $bytes bytes ($(nproc) cores)"
bench_run "tcpdump -r -w /dev/null" tcpdump -r "$cap" -w /dev/null
mkdir -p "$work/tcpflow"
bench_run "tcpflow -r" tcpflow -r "$cap" -o "$work/tcpflow"
rm -rf "$work/tcpflow"
bench_run "tapir replay (0 targets)" ./target/release/tapir replay -q "$cap" --warrants "$work/none.toml" --out "$work/case-none"
rm -rf "$work/case-none"
bench_run "tapir replay (all targeted)" ./target/release/tapir replay -q "$cap" --warrants "$work/all.toml" --out "$work/case-all"
rm -rf "$work/case-all"
# Sharded: N pipelines over a share of the flows each (replay --workers).
for n in ${WORKERS:-2}; do
  bench_run "tapir replay (0 targets, $n workers)" ./target/release/tapir replay -q "$cap" --warrants "$work/none.toml" --out "$work/case-none" --workers "$n"
  rm -rf "$work/case-none"
  bench_run "tapir replay (all targeted, $n workers)" ./target/release/tapir replay -q "$cap" --warrants "$work/all.toml" --out "$work/case-all" --workers "$n"
  rm -rf "$work/case-all"
done
# IRI only: every stage up to the digests runs, but no CC or object is written, so the one
# case-writer thread is nearly idle and the sharded runs show how the pipeline stages scale.
bench_run "tapir replay (all targeted, IRI only)" ./target/release/tapir replay -q "$cap" --warrants "$work/iri.toml" --out "$work/case-iri"
rm -rf "$work/case-iri"
for n in ${WORKERS:-2}; do
  bench_run "tapir replay (IRI only, $n workers)" ./target/release/tapir replay -q "$cap" --warrants "$work/iri.toml" --out "$work/case-iri" --workers "$n"
  rm -rf "$work/case-iri"
done
# gzip'd capture: inflated as it is read (MB/s over the decompressed bytes).
gzip -1 -k "$cap"
bench_run "zcat | tcpdump -r - -w /dev/null" bash -c "zcat '$cap.gz' | tcpdump -r - -w /dev/null"
bench_run "tapir replay (0 targets, .gz)" ./target/release/tapir replay -q "$cap.gz" --warrants "$work/none.toml" --out "$work/case-gz"
rm -rf "$work/case-gz"
# Per-core scaling (SCALING=1): the same runs confined to one core by taskset, against the
# sharded runs above on every core. On a machine where one worker's pipeline and case writer
# already fill both cores, workers-vs-one-worker says little; cores-vs-one-core says how much of
# each added core the work turns into throughput.
if [[ ${SCALING:-0} == 1 ]]; then
  bench_run "tapir replay (all targeted, 1 core)" taskset -c 0 ./target/release/tapir replay -q "$cap" --warrants "$work/all.toml" --out "$work/case-all"
  rm -rf "$work/case-all"
  bench_run "tapir replay (IRI only, 1 core)" taskset -c 0 ./target/release/tapir replay -q "$cap" --warrants "$work/iri.toml" --out "$work/case-iri"
  rm -rf "$work/case-iri"
fi
