#!/usr/bin/env bash
# An RTSP PLAY session: GStreamer's RTSP server (gst-rtsp-server, through PyGObject) serves
# WORK/src.mp4 (H.264 and AAC, payloaded as they are) from one network namespace; an FFmpeg
# client in the other plays it with RTP over UDP, decoding nothing (DESCRIBE, SETUP x2, PLAY,
# TEARDOWN). Captured by tcpdump on the server's end.
#
# usage: rtsp-play-session.sh WORK
#   client 198.51.100.7, server 198.51.100.10:8554, path /clip
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/server.log, WORK/receiver.log   (root)
set -euo pipefail
WORK=$1
source "$(dirname "$0")/netns.sh" rp

cat >"$WORK/rtsp_server.py" <<'PY'
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GLib

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("198.51.100.10")
server.set_service("8554")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( filesrc location={sys.argv[1]} ! qtdemux name=d "
    "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 "
    "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
)
server.get_mount_points().add_factory("/clip", factory)
server.attach(None)
print("serving", flush=True)
GLib.MainLoop().run()
PY

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U ip \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
# The system's Python: PyGObject (python3-gi) is a Debian package.
ip netns exec "${NSP}s" /usr/bin/python3 "$WORK/rtsp_server.py" "$WORK/src.mp4" >"$WORK/server.log" 2>&1 & PIDS+=($!)
for _ in $(seq 200); do
    ip netns exec "${NSP}s" ss -ltn | grep -q ':8554 ' && break
    sleep 0.05
done
ip netns exec "${NSP}c" ffmpeg -hide_banner -nostdin -loglevel error -rtsp_transport udp \
    -i rtsp://198.51.100.10:8554/clip -c copy -f null - >"$WORK/receiver.log" 2>&1
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "rtsp play done"
