#!/usr/bin/env bash
# A TCP upload between two VMs over Linux VXLAN (VNI 5001, 10.0.0.5 to 10.0.0.7:8080, ncat),
# whose underlay (the veth of netns.sh, 198.51.100.7 and .10) has a smaller MTU (1200) than the
# overlay (1500). Linux leaves DF unset on VXLAN's outer IPv4, so the underlay fragments the
# encapsulated packets until the overlay's path MTU has shrunk (the first few data packets).
# tcpdump captures the underlay on the receiving end.
# With UNDERLAY=6 the underlay is IPv6 instead (2001:db8::6 and ::10, MTU 1280, IPv6's least),
# and the client's end of the tunnel a VTEP in user space (vtep6.py, on a TAP device): its UDP
# socket leaves fragmentation to the host, whose IPv6 stack sends the encapsulated packets in
# fragments (a kernel VXLAN device over IPv6 would drop them and shrink the overlay's path MTU).
#
# usage: [UNDERLAY=6] vxlan-frag.sh WORK     (root; WORK/sent.bin is what the client sends)
# writes WORK/cap.pcap, WORK/received.bin, WORK/tcpdump.log
set -euo pipefail
WORK=$1
source "$(dirname "$0")/netns.sh" vf
C() { ip netns exec "${NSP}c" "$@"; }
S() { ip netns exec "${NSP}s" "$@"; }
if [[ ${UNDERLAY:-4} == 6 ]]; then
    C ip link set "$VC" mtu 1280; S ip link set "$VS" mtu 1280
    C ip -6 addr add 2001:db8::6/64 dev "$VC" nodad; S ip -6 addr add 2001:db8::10/64 dev "$VS" nodad
    ip netns exec "${NSP}c" python3 "$(dirname "$0")/vtep6.py" vx0 2001:db8::6 2001:db8::10 5001 >"$WORK/vtep.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do grep -qs ready "$WORK/vtep.log" && break; sleep 0.05; done
    grep -qs ready "$WORK/vtep.log"
    S ip link add vx0 type vxlan id 5001 local 2001:db8::10 remote 2001:db8::6 dstport 4789
    # The server's inner checksums computed in software: veth would hand them on unfinished
    # (checksum offload), and the VTEP passes the bytes to its TAP as they are.
    S ethtool -K vx0 tx off >/dev/null; S ethtool -K "$VS" tx off >/dev/null
else
    C ip link set "$VC" mtu 1200; S ip link set "$VS" mtu 1200
    # No `dev`: a VXLAN device bound to its lower device may not exceed that device's MTU.
    C ip link add vx0 type vxlan id 5001 local 198.51.100.7 remote 198.51.100.10 dstport 4789
    S ip link add vx0 type vxlan id 5001 local 198.51.100.10 remote 198.51.100.7 dstport 4789
fi
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
