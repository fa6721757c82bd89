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
source "$(dirname "$0")/netns.sh" rt

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
# Read at 4x the clip's rate: paced as a live sender paces (RTP timestamps follow the media, not
# the wall clock), in a quarter of the time.
ip netns exec "${NSP}c" "${FF[@]}" -readrate 4 -i "$WORK/src.mp4" ${CODEC_ARGS:--c copy} -f rtsp -rtsp_transport "$TRANSPORT" "$URL" \
    >"$WORK/sender.log" 2>&1
wait "$RECV" || true
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "rtsp $TRANSPORT done"
