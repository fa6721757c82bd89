#!/usr/bin/env bash
# Replay throughput: tapir next to tcpdump and tcpflow on the same generated capture, same run.
#   bash bench/replay.sh [MEGABYTES]      (default 1024)
#   BENCH_DIR=/dev/shm bash bench/replay.sh   capture and outputs on tmpfs (the disk out of it)
# Prints packets/s, MB/s and peak RSS for each. Needs tcpdump, tcpflow and GNU time
# (.ci/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1024}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin tapir --example gen_capture
cap="$work/bench.pcap"
./target/release/examples/gen_capture "$cap" "$MB"
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null   # page cache: every tool reads the same warm file

cat > "$work/none.toml" <<'T'
[[warrant]]
liid = "BENCH-NONE"
start = "2000-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:192.0.2.1"]
T
cat > "$work/all.toml" <<'T'
[[warrant]]
liid = "BENCH-ALL"
start = "2000-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["cidr:10.0.0.0/8"]
T

run() { # name, command...
  local name=$1; shift
  local t0 t1 rss
  # Flush what the previous tool wrote, so that its writeback does not slow this one.
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" > "$work/out.txt" 2>&1 || { echo "$name failed:"; cat "$work/out.txt"; return 1; }
  t1=$(date +%s.%N)
  rss=$(cat "$work/rss")
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v p="$packets" -v b="$bytes" -v r="$rss" \
    'BEGIN { s = t1 - t0; printf "%-28s %8.2f s %12.0f packets/s %9.1f MB/s %9.1f MB peak RSS\n", n, s, p / s, b / s / 1e6, r / 1024 }'
}

echo "capture: $packets packets, $bytes bytes ($(nproc) cores)"
run "tcpdump -r -w /dev/null" tcpdump -r "$cap" -w /dev/null
mkdir -p "$work/tcpflow"
run "tcpflow -r" tcpflow -r "$cap" -o "$work/tcpflow"
rm -rf "$work/tcpflow"
run "tapir replay (0 targets)" ./target/release/tapir replay -q "$cap" --warrants "$work/none.toml" --out "$work/case-none"
rm -rf "$work/case-none"
run "tapir replay (all targeted)" ./target/release/tapir replay -q "$cap" --warrants "$work/all.toml" --out "$work/case-all"
