#!/usr/bin/env bash
# A SIP call between two SIPp instances in two network namespaces joined by a veth pair,
# captured by tcpdump on the callee's end: SIPp's built-in UAS (198.51.100.10:5060, media port
# 6000) answers SIPp's built-in UAC scenario (198.51.100.7:5062, media port 7000), changed
# only to stream WORK/tone.wav as G.711 u-law RTP (rtp_stream) for the call's 3.5 s.
#
# usage: sip-call.sh WORK     (root; WORK/tone.wav is the audio to send)
# writes WORK/cap.pcap, WORK/uac.xml, WORK/uas.log, WORK/uac.log, WORK/tcpdump.log
set -euo pipefail
WORK=$1
NSP="tsi$$-"
VC="tic$$" VS="tis$$"
cleanup() {
    set +e
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

# (sipp -sd exits with 99 after dumping the scenario.)
{ sipp -sd uac || [[ $? -eq 99 ]]; } | python3 -c '
import sys
s = sys.stdin.read()
play = "<nop><action><exec rtp_stream=\"tone.wav,1,0\"/></action></nop>\n  <pause milliseconds=\"3500\"/>"
assert "<pause/>" in s
sys.stdout.write(s.replace("<pause/>", play, 1))' >"$WORK/uac.xml"

ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -w "$WORK/cap.pcap" -U udp >"$WORK/tcpdump.log" 2>&1 &
TCPD=$!
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
# (-bg: the parent exits non-zero once the daemon runs; whether it listens is checked below.)
ip netns exec "${NSP}s" sipp -sn uas -i 198.51.100.10 -p 5060 -mp 6000 -bg >"$WORK/uas.log" 2>&1 || true
for _ in $(seq 100); do ip netns exec "${NSP}s" ss -lun | grep -q ':5060 ' && break; sleep 0.05; done
ip netns exec "${NSP}s" ss -lun | grep -q ':5060 ' || { echo "the UAS never listened" >&2; cat "$WORK/uas.log" >&2; exit 1; }
(cd "$WORK" && ip netns exec "${NSP}c" sipp 198.51.100.10:5060 -sf uac.xml -i 198.51.100.7 -p 5062 -mp 7000 \
    -m 1 -nostdin >"$WORK/uac.log" 2>&1)
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "sip call done"
