# shellcheck shell=bash
# Two network namespaces joined by a veth pair, for the media session scripts beside this file:
# the client ${NSP}c (198.51.100.7 on $VC) and the server ${NSP}s (198.51.100.10 on $VS),
# 1500-byte MTU, no offload super-frames. On exit the processes in PIDS are stopped and both
# namespaces removed with everything still in them.
#
# usage: source netns.sh TAG      TAG: two letters, one per script (names stay under 16 bytes)
# If NFT_DROP is set (an nftables expression), the client's link drops the packets it matches
# (netdev egress: silent to a UDP sender, where the output hook would fail its send with
# EPERM), so the capture on the server's end never sees them, as on a lossy link.
NSP="t$1$$-"
VC="t${1}c$$" VS="t${1}s$$"
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
ip netns exec "${NSP}c" ethtool -K "$VC" tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "${NSP}s" ethtool -K "$VS" tso off gso off gro off >/dev/null 2>&1 || true
if [[ -n ${NFT_DROP:-} ]]; then
    ip netns exec "${NSP}c" nft add table netdev loss
    ip netns exec "${NSP}c" nft add chain netdev loss out "{ type filter hook egress device $VC priority 0; }"
    ip netns exec "${NSP}c" nft add rule netdev loss out "$NFT_DROP" drop
fi
