#!/usr/bin/env bash
# An RTMP session between real FFmpeg processes in two network namespaces joined by a veth pair
# (1500-byte MTU, no offload super-frames), captured by tcpdump on the server's end.
#
# usage: rtmp-session.sh WORK MODE KEY
#   MODE publish: the client (198.51.100.7) publishes WORK/src.mp4 to an FFmpeg listener
#                 (198.51.100.10:1935, app "live", stream KEY), which writes WORK/recv.flv.
#   MODE play:    an FFmpeg listener serves WORK/src.mp4 as stream KEY; the client plays it
#                 into WORK/recv.flv.
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log, WORK/receiver.log   (root)
set -euo pipefail
WORK=$1 MODE=$2 KEY=$3
NSP="trm$$-"
VC="trc$$" VS="trs$$"
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

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U tcp \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
URL="rtmp://198.51.100.10:1935/live/$KEY"
wait_listen() {
    for _ in $(seq 100); do
        ip netns exec "${NSP}s" ss -ltn | grep -q ':1935 ' && return 0
        sleep 0.05
    done
    echo "no RTMP listener" >&2; return 1
}
FF=(ffmpeg -hide_banner -nostdin -loglevel error)
if [[ $MODE == publish ]]; then
    ip netns exec "${NSP}s" "${FF[@]}" -listen 1 -i "$URL" -c copy -y "$WORK/recv.flv" \
        >"$WORK/receiver.log" 2>&1 & RECV=$!; PIDS+=($RECV)
    wait_listen
    ip netns exec "${NSP}c" "${FF[@]}" -i "$WORK/src.mp4" -c copy -f flv "$URL" >"$WORK/sender.log" 2>&1 || true
    wait "$RECV"
else
    ip netns exec "${NSP}s" "${FF[@]}" -i "$WORK/src.mp4" -c copy -f flv -listen 1 "$URL" \
        >"$WORK/sender.log" 2>&1 & SEND=$!; PIDS+=($SEND)
    wait_listen
    ip netns exec "${NSP}c" "${FF[@]}" -i "$URL" -c copy -y "$WORK/recv.flv" >"$WORK/receiver.log" 2>&1
    wait "$SEND" || true
fi
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "rtmp $MODE done"
