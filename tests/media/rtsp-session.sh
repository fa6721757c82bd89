#!/usr/bin/env bash
# An RTSP RECORD session between real FFmpeg processes in two network namespaces joined by a
# veth pair (1500-byte MTU, no offload super-frames), captured by tcpdump on the server's end.
#
# usage: rtsp-session.sh WORK TRANSPORT
#   The client (198.51.100.7) announces and records WORK/src.mp4 (-c copy) to an FFmpeg RTSP
#   listener (198.51.100.10:8554, path /cam/live), which decodes nothing (-f null). TRANSPORT: udp
#   (RTP on negotiated ports) or tcp (RTP interleaved in the RTSP connection).
#   optional env CODEC_ARGS: the client's codec options instead of "-c copy".
#   optional env NFT_DROP: an nftables expression whose packets the client's link drops.
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log, WORK/receiver.log   (root)
set -euo pipefail
WORK=$1 TRANSPORT=$2
NSP="trt$$-"
VC="ttc$$" VS="tts$$"
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
    # Loss on the client's link (netdev egress, silent to the sender): never captured.
    ip netns exec "${NSP}c" nft add table netdev loss
    ip netns exec "${NSP}c" nft add chain netdev loss out "{ type filter hook egress device $VC priority 0; }"
    ip netns exec "${NSP}c" nft add rule netdev loss out "$NFT_DROP" drop
fi
ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U ip \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
URL="rtsp://198.51.100.10:8554/cam/live"
FF=(ffmpeg -hide_banner -nostdin -loglevel error)
ip netns exec "${NSP}s" "${FF[@]}" -rtsp_flags listen -i "$URL" -c copy -f null - \
    >"$WORK/receiver.log" 2>&1 & RECV=$!; PIDS+=($RECV)
for _ in $(seq 100); do
    ip netns exec "${NSP}s" ss -ltn | grep -q ':8554 ' && break
    sleep 0.05
done
# shellcheck disable=SC2086 # CODEC_ARGS is a list of options
ip netns exec "${NSP}c" "${FF[@]}" -re -i "$WORK/src.mp4" ${CODEC_ARGS:--c copy} -f rtsp -rtsp_transport "$TRANSPORT" "$URL" \
    >"$WORK/sender.log" 2>&1
wait "$RECV" || true
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "rtsp $TRANSPORT done"
