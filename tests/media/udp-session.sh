#!/usr/bin/env bash
# A sender streaming over UDP from one network namespace to another (veth pair, 1500-byte MTU),
# captured by tcpdump on the receiver's end. socat sinks UDP ports 5000-5007 on the receiver
# (198.51.100.10) so that no ICMP port-unreachable stops the sender.
#
# usage: udp-session.sh WORK CMD...    CMD runs in the sender's namespace (198.51.100.7), cwd WORK
#   optional env NFT_DROP: an nftables expression (e.g. "udp dport 5004 numgen inc mod 50 == 7")
#   whose packets the sender's link drops (netns.sh): lost before the capture point.
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log   (root)
set -euo pipefail
WORK=$1; shift
source "$(dirname "$0")/netns.sh" ud
for port in 5000 5001 5002 5003 5004 5005 5006 5007; do
    ip netns exec "${NSP}s" socat -u "UDP-RECV:$port,bind=198.51.100.10" /dev/null & PIDS+=($!)
done
ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U udp \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
(cd "$WORK" && ip netns exec "${NSP}c" "$@") >"$WORK/sender.log" 2>&1
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "udp session done"
