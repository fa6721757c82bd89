#!/usr/bin/env bash
# An RTMP session between real FFmpeg processes in two network namespaces joined by a veth pair
# (1500-byte MTU, no offload super-frames), captured by tcpdump on the server's end.
#
# usage: rtmp-session.sh WORK MODE KEY
#   MODE publish: the client (198.51.100.7) publishes WORK/src.mp4 to an FFmpeg listener
#                 (198.51.100.10:1935, app "live", stream KEY), which writes WORK/recv.flv.
#   MODE play:    an FFmpeg listener serves WORK/src.mp4 as stream KEY; the client plays it
#                 into WORK/recv.flv.
#   optional env UPLOAD: a file the client first uploads over FTP (curl to pyftpdlib on
#                 198.51.100.10:2121), 1.5 s before the stream starts.
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log, WORK/receiver.log   (root)
set -euo pipefail
WORK=$1 MODE=$2 KEY=$3
source "$(dirname "$0")/netns.sh" rm

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U tcp \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
if [[ -n ${UPLOAD:-} ]]; then
    mkdir -p "$WORK/ftp"
    ip netns exec "${NSP}s" python3 -m pyftpdlib -i 198.51.100.10 -p 2121 -w -d "$WORK/ftp" \
        >"$WORK/ftpd.log" 2>&1 & FTPD=$!; PIDS+=($FTPD)
    for _ in $(seq 100); do
        ip netns exec "${NSP}s" ss -ltn | grep -q ':2121 ' && break
        sleep 0.05
    done
    ip netns exec "${NSP}c" curl -sS -T "$UPLOAD" "ftp://198.51.100.10:2121/" >"$WORK/upload.log" 2>&1
    cmp "$UPLOAD" "$WORK/ftp/$(basename "$UPLOAD")"
    sleep 1.5
fi
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
