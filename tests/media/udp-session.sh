#!/usr/bin/env bash
# A sender streaming over UDP from one network namespace to another (veth pair, 1500-byte MTU),
# captured by tcpdump on the receiver's end. socat sinks UDP ports 5000-5007 on the receiver
# (198.51.100.10) so that no ICMP port-unreachable stops the sender.
#
# usage: udp-session.sh WORK CMD...    CMD runs in the sender's namespace (198.51.100.7), cwd WORK
#   optional env NFT_DROP: an nftables expression (e.g. "udp dport 5004 numgen inc mod 50 == 7")
#   whose packets the sender's output hook drops: lost before the capture point, as on a link.
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log   (root)
set -euo pipefail
WORK=$1; shift
NSP="tud$$-"
VC="tuc$$" VS="tus$$"
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for ns in "${NSP}c" "${NSP}s"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
}
trap cleanup EXIT
ip netns add "${NSP}c"; ip netns add "${NSP}s"
ip link add "$VC" type veth peer name "$VS"
ip link set "$VC" netns "${NSP}c"; ip link set "$VS" netns "${NSP}s"
ip netns exec "${NSP}c" ip addr add 198.51.100.7/24 dev "$VC"
ip netns exec "${NSP}s" ip addr add 198.51.100.10/24 dev "$VS"
for ns in c s; do ip netns exec "${NSP}$ns" ip link set lo up; done
ip netns exec "${NSP}c" ip link set "$VC" up; ip netns exec "${NSP}s" ip link set "$VS" up
if [[ -n ${NFT_DROP:-} ]]; then
    # Loss on the sender's link (netdev egress: a drop there is silent to a UDP sender, where
    # the output hook would fail its send with EPERM): the capture never sees these packets.
    ip netns exec "${NSP}c" nft add table netdev loss
    ip netns exec "${NSP}c" nft add chain netdev loss out "{ type filter hook egress device $VC priority 0; }"
    ip netns exec "${NSP}c" nft add rule netdev loss out "$NFT_DROP" drop
fi
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
