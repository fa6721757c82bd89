#!/usr/bin/env bash
# A sender streaming over UDP from one network namespace to another (veth pair, 1500-byte MTU),
# captured by tcpdump on the receiver's end. socat sinks UDP ports 5000-5007 on the receiver
# (198.51.100.10) so that no ICMP port-unreachable stops the sender.
#
# usage: udp-session.sh WORK CMD...    CMD runs in the sender's namespace (198.51.100.7), cwd WORK
#   optional env NFT_DROP: an nftables expression (e.g. "udp dport 5004 numgen inc mod 50 == 7")
#   whose packets the sender's link drops (netns.sh): lost before the capture point.
#   optional env SDP_SERVER=1: an HTTP server on 198.51.100.10:8080 answers one POST of an SDP
#   with 201 and that SDP (a WHIP-style offer/answer); its TCP is captured too.
#   optional env MEDIA_IP: a further address of the receiver's namespace, whose ports 5000-5007
#   are sunk too (media sent to another address than the signalling's, as to a media server).
# writes WORK/cap.pcap, WORK/tcpdump.log, WORK/sender.log   (root)
set -euo pipefail
WORK=$1; shift
source "$(dirname "$0")/netns.sh" ud
SINKS=(198.51.100.10)
if [[ -n ${MEDIA_IP:-} ]]; then
    ip netns exec "${NSP}s" ip addr add "$MEDIA_IP/24" dev "$VS"
    SINKS+=("$MEDIA_IP")
fi
for addr in "${SINKS[@]}"; do
    for port in 5000 5001 5002 5003 5004 5005 5006 5007; do
        ip netns exec "${NSP}s" socat -u "UDP-RECV:$port,bind=$addr" /dev/null & PIDS+=($!)
    done
done
FILTER=udp
if [[ -n ${SDP_SERVER:-} ]]; then
    FILTER="udp or tcp port 8080"
    ip netns exec "${NSP}s" python3 -c '
import http.server
class Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        sdp = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Type", "application/sdp")
        self.send_header("Content-Length", str(len(sdp)))
        self.end_headers()
        self.wfile.write(sdp)
http.server.HTTPServer(("198.51.100.10", 8080), Answer).handle_request()
' >"$WORK/sdp-server.log" 2>&1 & PIDS+=($!)
    for _ in $(seq 100); do
        ip netns exec "${NSP}s" ss -ltn | grep -q ':8080 ' && break
        sleep 0.05
    done
fi
ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -B 16384 -w "$WORK/cap.pcap" -U "$FILTER" \
    >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
(cd "$WORK" && ip netns exec "${NSP}c" "$@") >"$WORK/sender.log" 2>&1
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "udp session done"
