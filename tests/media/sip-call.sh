#!/usr/bin/env bash
# A SIP call between two SIPp instances in two network namespaces joined by a veth pair,
# captured by tcpdump on the callee's end: SIPp's built-in UAS (198.51.100.10:5060, media port
# 6000) answers SIPp's built-in UAC scenario (198.51.100.7:5062, media port 7000), changed
# only to stream WORK/tone.wav as G.711 u-law RTP (rtp_stream) for the call's 3.5 s.
#
# With MEDIA_IP set, the UAS's media are at that further address of the server's namespace
# (its SDP answer's c= line, where the caller's RTP goes), as behind a media relay or a
# session border controller: the call's signalling and its media run between different
# address pairs.
#
# With MTU set, both ends of the link have that MTU: with 400, the INVITE and its 200 OK (SDP
# and all) go in IP fragments, while the 200-byte RTP packets do not.
#
# With TRANSPORT=tcp, the signalling goes over one TCP connection (SIPp -t t1), as SIP trunks
# and messages too large for UDP do (RFC 3261 18.1.1); the media stay RTP over UDP.
#
# usage: [MEDIA_IP=ADDR] [MTU=N] [TRANSPORT=tcp] sip-call.sh WORK
#        (root; WORK/tone.wav is the audio to send)
# writes WORK/cap.pcap, WORK/uac.xml, WORK/uas.log, WORK/uac.log, WORK/tcpdump.log
set -euo pipefail
WORK=$1
source "$(dirname "$0")/netns.sh" si
if [[ -n ${MTU:-} ]]; then
    ip netns exec "${NSP}c" ip link set "$VC" mtu "$MTU"
    ip netns exec "${NSP}s" ip link set "$VS" mtu "$MTU"
fi
T=(-t u1)
LISTEN=-lun
if [[ ${TRANSPORT:-udp} == tcp ]]; then
    T=(-t t1)
    LISTEN=-ltn
fi
MI=()
if [[ -n ${MEDIA_IP:-} ]]; then
    ip netns exec "${NSP}s" ip addr add "$MEDIA_IP/24" dev "$VS"
    MI=(-mi "$MEDIA_IP")
fi

# (sipp -sd exits with 99 after dumping the scenario.)
{ sipp -sd uac || [[ $? -eq 99 ]]; } | python3 -c '
import sys
s = sys.stdin.read()
play = "<nop><action><exec rtp_stream=\"tone.wav,1,0\"/></action></nop>\n  <pause milliseconds=\"3500\"/>"
assert "<pause/>" in s
sys.stdout.write(s.replace("<pause/>", play, 1))' >"$WORK/uac.xml"

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -w "$WORK/cap.pcap" -U "udp or tcp port 5060" >"$WORK/tcpdump.log" 2>&1 &
TCPD=$!
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
# (-bg: the parent exits non-zero once the daemon runs; whether it listens is checked below.)
ip netns exec "${NSP}s" sipp -sn uas "${T[@]}" -i 198.51.100.10 "${MI[@]}" -p 5060 -mp 6000 -bg >"$WORK/uas.log" 2>&1 || true
for _ in $(seq 100); do ip netns exec "${NSP}s" ss "$LISTEN" | grep -q ':5060 ' && break; sleep 0.05; done
ip netns exec "${NSP}s" ss "$LISTEN" | grep -q ':5060 ' || { echo "the UAS never listened" >&2; cat "$WORK/uas.log" >&2; exit 1; }
(cd "$WORK" && ip netns exec "${NSP}c" sipp 198.51.100.10:5060 "${T[@]}" -sf uac.xml -i 198.51.100.7 -p 5062 -mp 7000 \
    -m 1 -nostdin >"$WORK/uac.log" 2>&1)
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "sip call done"
