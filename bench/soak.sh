#!/usr/bin/env bash
# Soak: `tapir run` capturing live on a veth port for DURATION seconds while tcpreplay loops the
# FTP and HTTP upload fixtures into it at a fixed packet rate (every packet a target's, so flows,
# reassembly, objects and the case writer all work). Samples tapir's RSS (and /metrics' flows and
# reassembly gauges) every STEP seconds, then stops it with SIGTERM: the RSS curve should be flat
# after warm-up and the flow gauge bounded (no leaked flows).
#
#   sudo bash bench/soak.sh [DURATION=600] [PPS=1500] [STEP=30]
#   PROFILE=dev sudo -E bash bench/soak.sh      use the debug build (no release build needed)
#   WORKERS=1 sudo -E bash bench/soak.sh        capture workers (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600} PPS=${2:-1500} STEP=${3:-30}
PROFILE=${PROFILE:-release}
[[ $(id -u) -eq 0 ]] || { echo "soak.sh: needs root" >&2; exit 1; }
cargo build --quiet --profile "$PROFILE" --bin tapir
BIN=target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")/tapir
NS=tsoak-$$
work=$(mktemp -d /tmp/tsoak.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add name cap0 type veth peer name inj0
ip -n "$NS" link set cap0 up; ip -n "$NS" link set inj0 up; ip -n "$NS" link set lo up
mergecap -w "$work/loop.pcap" pcaps/http-put.pcap pcaps/ftp-upload.pcap
cat >"$work/w.toml" <<W
[[warrant]]
liid = "LIID-SOAK"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:198.51.100.7"]
W
port=$((30000 + $$ % 20000))
cat >"$work/t.toml" <<T
[capture]
interfaces = ["cap0"]
workers = ${WORKERS:-2}
# 2 x 16 MiB of ring: its pages count in RSS once the kernel has written them.
ring = { block_size = 1048576, block_count = 16, frame_size = 2048, block_timeout_ms = 10 }
[paths]
warrants = "$work/w.toml"
case_dir = "$work/case"
spool_dir = "$work/spool"
[metrics]
listen = "127.0.0.1:$port"
T
mkdir -p "$work/case" "$work/spool"
ip netns exec "$NS" "$BIN" run --config "$work/t.toml" 2>"$work/run.log" & tap=$!; pids+=($tap)
sleep 2
ip netns exec "$NS" tcpreplay -q -i inj0 --pps="$PPS" --loop=0 "$work/loop.pcap" >/dev/null 2>&1 & pids+=($!)
metric() { awk -v m="$1" '$1 == m {print $2}' "$work/m.txt" 2>/dev/null; }
echo "| t (s) | RSS (MB) | flows | reassembly bytes | packets in | kernel drops |"
echo "|---|---|---|---|---|---|"
t=0
while (( t < DURATION )); do
    sleep "$STEP"; t=$((t + STEP))
    rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$tap/status")
    ip netns exec "$NS" curl -s "http://127.0.0.1:$port/metrics" >"$work/m.txt" || true
    drops=$(awk '/^tapir_kernel_drops_total/ {s+=$2} END {print s+0}' "$work/m.txt")
    echo "| $t | $rss | $(metric tapir_flows) | $(metric tapir_reassembly_bytes) | $(metric tapir_packets_total) | $drops |"
done
kill -TERM "$tap"; wait "$tap" || true
tail -2 "$work/run.log"
echo "case size: $(du -sh "$work/case" | cut -f1)"
