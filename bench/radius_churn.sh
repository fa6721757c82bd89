#!/usr/bin/env bash
# Memory under RADIUS accounting churn: a tap beside a busy NAS sees a Start, Interim-Updates
# and a Stop for every access session, for months. tapir learns associations from them; what it
# keeps must not grow with the number of sessions seen. Same capture, same run: tshark decoding
# the RADIUS fields (the peer), then tapir replay with one subscriber under warrant.
#   bash bench/radius_churn.sh [SESSIONS] [INTERIMS]     (default 200000 sessions, 3 interims)
#   OLD=/path/to/older/tapir bash bench/radius_churn.sh   also runs an older build for comparison
# Prints packets/s, MB/s and peak RSS for each. Needs tshark, capinfos, python3, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SESSIONS=${1:-200000}
INTERIMS=${2:-3}
work=$(mktemp -d /tmp/tapir-radius.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin tapir
cap="$work/churn.pcap"
python3 bench/gen_radius_churn.py "$cap" "$SESSIONS" "$INTERIMS"
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null
bench_warrant "$work/w.toml" BENCH-RADIUS subscriber:sub0000007

# Peak anonymous memory (heap, stacks) of a command, sampled every 20 ms: the peak RSS above also
# counts the memory-mapped capture, which is file cache, not what the process keeps.
anon_peak() { # command...
  "$@" > /dev/null 2>&1 &
  local pid=$! peak=0 kb
  while kill -0 "$pid" 2> /dev/null; do
    kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
    ((${kb:-0} > peak)) && peak=${kb:-0}
    sleep 0.02
  done
  wait "$pid" || true
  awk -v k="$peak" 'BEGIN { printf "%-34s %8.1f MB peak anonymous memory\n", "  of which heap and stacks", k / 1024 }'
}

echo "capture: $packets packets ($SESSIONS sessions x $((INTERIMS + 2)) requests), $bytes bytes ($(nproc) cores)"
bench_run "tshark (RADIUS fields)" tshark -r "$cap" -T fields -e radius.User_Name -e radius.Framed-IP-Address -e radius.Acct_Status_Type
bench_run "tapir replay" ./target/release/tapir replay "$cap" --warrants "$work/w.toml" --out "$work/case"
grep -E "association events" "$work/out.txt" || true
rm -rf "$work/case"
anon_peak ./target/release/tapir replay "$cap" --warrants "$work/w.toml" --out "$work/case"
if [[ -n "${OLD:-}" ]]; then
  rm -rf "$work/case"
  bench_run "tapir replay ($(basename "$OLD"))" "$OLD" replay "$cap" --warrants "$work/w.toml" --out "$work/case"
  grep -E "association events" "$work/out.txt" || true
  rm -rf "$work/case"
  anon_peak "$OLD" replay "$cap" --warrants "$work/w.toml" --out "$work/case"
fi

