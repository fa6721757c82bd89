#!/usr/bin/env bash
# A SYN flood from a target: N concurrent TCP flows (one SYN each, never closed), every one
# targeted. tapir replay with 1 and 2 workers next to tcpflow (which keeps a state per flow too)
# on the same capture, same run: seconds, packets/s, peak RSS, and what tapir says it evicted.
#   bash bench/syn_flood.sh [FLOWS] [MAX_FLOWS]     defaults: 1000000, 1048576
#   BENCH_DIR=/dev/shm bash bench/syn_flood.sh      capture and cases on tmpfs
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
FLOWS=${1:-1000000}
MAX=${2:-1048576}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-syn.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin tapir
cap="$work/syn.pcap"
# The target 10.9.0.7 opens FLOWS connections: to 256 servers, from every source port.
python3 - "$cap" "$FLOWS" <<'PY'
import struct, sys
out, n = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    src = bytes([10, 9, 0, 7])
    for i in range(n):
        dst = bytes([10, 8, (i >> 16) & 0xff, (i >> 8) & 0xff])
        sport = 1024 + (i & 0xff) * 200 + (i >> 24)
        tcp = struct.pack("!HHIIBBHHH", sport, 80, i, 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
        pkt = eth + ip + tcp
        ts = 1800000000 * 1000000 + i * 10
        f.write(struct.pack("<IIII", ts // 1000000, ts % 1000000, len(pkt), len(pkt)) + pkt)
PY
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null
bench_warrant "$work/w.toml" SYN ipv4:10.9.0.7
echo "capture: $packets SYNs, $bytes bytes, max_flows $MAX ($(nproc) cores)"
mkdir -p "$work/tcpflow"
bench_run "tcpflow -r" tcpflow -r "$cap" -o "$work/tcpflow"
rm -rf "$work/tcpflow"
for n in 1 2; do
  bench_run "tapir replay ($n worker(s))" ./target/release/tapir replay -q "$cap" --warrants "$work/w.toml" \
    --out "$work/case" --workers "$n" --max-flows "$MAX"
  grep -E "^flows:" "$work/out.txt" | sed 's/^/    /'
  rm -rf "$work/case"
done
