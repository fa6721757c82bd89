#!/usr/bin/env bash
# A TCP upload between two VMs over Linux VXLAN (VNI 5001, 10.0.0.5 to 10.0.0.7:8080, ncat),
# whose underlay (the veth of netns.sh, 198.51.100.7 and .10) has a smaller MTU (1200) than the
# overlay (1500). Linux leaves DF unset on VXLAN's outer IPv4, so the underlay fragments the
# encapsulated packets until the overlay's path MTU has shrunk (the first few data packets).
# tcpdump captures the underlay on the receiving end.
#
# usage: vxlan-frag.sh WORK     (root; WORK/sent.bin is what the client sends)
# writes WORK/cap.pcap, WORK/received.bin, WORK/tcpdump.log
set -euo pipefail
WORK=$1
source "$(dirname "$0")/netns.sh" vf
C() { ip netns exec "${NSP}c" "$@"; }
S() { ip netns exec "${NSP}s" "$@"; }
C ip link set "$VC" mtu 1200; S ip link set "$VS" mtu 1200
# No `dev`: a VXLAN device bound to its lower device may not exceed that device's MTU.
C ip link add vx0 type vxlan id 5001 local 198.51.100.7 remote 198.51.100.10 dstport 4789
S ip link add vx0 type vxlan id 5001 local 198.51.100.10 remote 198.51.100.7 dstport 4789
C ip link set vx0 mtu 1500 up; S ip link set vx0 mtu 1500 up
C ip addr add 10.0.0.5/24 dev vx0; S ip addr add 10.0.0.7/24 dev vx0

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -w "$WORK/cap.pcap" -U >"$WORK/tcpdump.log" 2>&1 &
TCPD=$!
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
ip netns exec "${NSP}s" ncat -l 10.0.0.7 8080 >"$WORK/received.bin" &
NC=$!
for _ in $(seq 100); do S ss -ltn | grep -q '10.0.0.7:8080 ' && break; sleep 0.05; done
C ncat --send-only 10.0.0.7 8080 <"$WORK/sent.bin"
wait "$NC" || true
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "vxlan upload done"
