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
cat > "$work/w.toml" <<'T'
[[warrant]]
liid = "BENCH-RADIUS"
start = "2000-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["subscriber:sub0000007"]
T

run() { # name, command...
  local name=$1; shift
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" > "$work/out.txt" 2>&1 || { echo "$name failed:"; cat "$work/out.txt"; return 1; }
  t1=$(date +%s.%N)
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v p="$packets" -v b="$bytes" -v r="$(cat "$work/rss")" \
    'BEGIN { s = t1 - t0; printf "%-34s %8.2f s %10.0f packets/s %7.1f MB/s %8.1f MB peak RSS\n", n, s, p / s, b / s / 1e6, r / 1024 }'
}

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
run "tshark (RADIUS fields)" tshark -r "$cap" -T fields -e radius.User_Name -e radius.Framed-IP-Address -e radius.Acct_Status_Type
run "tapir replay" ./target/release/tapir replay "$cap" --warrants "$work/w.toml" --out "$work/case"
grep -E "association events" "$work/out.txt" || true
rm -rf "$work/case"
anon_peak ./target/release/tapir replay "$cap" --warrants "$work/w.toml" --out "$work/case"
if [[ -n "${OLD:-}" ]]; then
  rm -rf "$work/case"
  run "tapir replay ($(basename "$OLD"))" "$OLD" replay "$cap" --warrants "$work/w.toml" --out "$work/case"
  grep -E "association events" "$work/out.txt" || true
  rm -rf "$work/case"
  anon_peak "$OLD" replay "$cap" --warrants "$work/w.toml" --out "$work/case"
fi

