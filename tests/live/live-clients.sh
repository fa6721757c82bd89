#!/usr/bin/env bash
# Live acceptance for `tapir run` (issue 5): two network namespaces joined by a veth pair, real
# clients in one (curl FTP upload, curl HTTP PUT, swaks with an attachment), real servers in the
# other (pyftpdlib, tests' HTTP upload server, aiosmtpd). `tapir run` captures live on the
# server's veth end while tcpdump captures the same interface; the test then replays tcpdump's
# capture with `tapir replay` and compares.
#
# usage: live-clients.sh WORK TAPIR WORKERS [PIPELINES]   (root; writes everything under WORK)
#   WORKERS capture threads (rings in one fanout group), PIPELINES pipeline workers
#   WORK/cap.pcap       tcpdump's capture          WORK/case/<start>/  tapir run's case
#   WORK/sent.sha256    sha256sum of the files the clients sent
#   WORK/run.log        tapir run's stderr         WORK/metrics.txt     /metrics before stop
set -euo pipefail
WORK=$1 TAPIR=$2 WORKERS=${3:-1} PIPELINES=${4:-1}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
NSP="tl$$-"
VC="tlc$$" VS="tls$$"
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
S() { ip netns exec "${NSP}s" "$@"; }
C() { ip netns exec "${NSP}c" "$@"; }
wait_port() { # ns port
    for _ in $(seq 100); do ip netns exec "$1" bash -c "exec 3<>/dev/tcp/198.51.100.10/$2" 2>/dev/null && return 0; sleep 0.1; done
    echo "port $2 never opened" >&2; return 1
}

ip netns add "${NSP}c"; ip netns add "${NSP}s"
ip link add "$VC" type veth peer name "$VS"
ip link set "$VC" netns "${NSP}c"; ip link set "$VS" netns "${NSP}s"
C ip addr add 198.51.100.7/24 dev "$VC"; S ip addr add 198.51.100.10/24 dev "$VS"
C ip link set "$VC" up; S ip link set "$VS" up; C ip link set lo up; S ip link set lo up
# Wire-sized frames, as a tap port would see them (no GRO/TSO super-frames).
C ethtool -K "$VC" tso off gso off gro off >/dev/null 2>&1 || true
S ethtool -K "$VS" tso off gso off gro off >/dev/null 2>&1 || true

mkdir -p "$WORK/ftp-root" "$WORK/http-root" "$WORK/case" "$WORK/spool"
# tapir writes its case and journal as nobody.
chmod 0755 "$WORK"; chmod 0777 "$WORK/case" "$WORK/spool"
S python3 -m pyftpdlib -i 198.51.100.10 -p 21 -w -d "$WORK/ftp-root" -u joe -P secret -r 60000-60009 \
    >"$WORK/ftp.log" 2>&1 & PIDS+=($!)
S python3 "$HERE/pcaps/tools/http_upload_server.py" --bind 198.51.100.10 --port 8080 --dir "$WORK/http-root" \
    >"$WORK/http.log" 2>&1 & PIDS+=($!)
S python3 -m aiosmtpd -n -l 198.51.100.10:2525 >"$WORK/smtp.log" 2>&1 & PIDS+=($!)
wait_port "${NSP}c" 21; wait_port "${NSP}c" 8080; wait_port "${NSP}c" 2525

cat >"$WORK/w.toml" <<W
[[warrant]]
liid = "LIID-LIVE"
start = "2020-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["ipv4:198.51.100.7"]
W
PORT=$((20000 + $$ % 20000))
cat >"$WORK/tapir.toml" <<T
[capture]
interfaces = ["$VS"]
workers = $WORKERS
pipelines = $PIPELINES
promiscuous = true
# Started as root: once its rings are open tapir becomes nobody, with no capability left.
user = "nobody"
ring = { block_size = 1048576, block_count = 16, frame_size = 2048, block_timeout_ms = 10 }
[paths]
warrants = "$WORK/w.toml"
case_dir = "$WORK/case"
spool_dir = "$WORK/spool"
[metrics]
listen = "127.0.0.1:$PORT"
T
# Not through S(): a backgrounded function is a subshell, and the signals below must reach the
# programs themselves (ip netns exec execs them, keeping the pid).
# tcpdump is the reference: with its default 2 MiB buffer it dropped packets of the 3 MB upload
# now and then (its log says "N packets dropped by kernel") while tapir dropped none, and the
# test then blamed tapir. 64 MiB holds the whole exchange.
ip netns exec "${NSP}s" tcpdump -i "$VS" -B 65536 -w "$WORK/cap.pcap" -U >"$WORK/tcpdump.log" 2>&1 & TCPD=$!; PIDS+=($TCPD)
ip netns exec "${NSP}s" "$TAPIR" run --config "$WORK/tapir.toml" 2>"$WORK/run.log" & TAP=$!; PIDS+=($TAP)
for _ in $(seq 200); do grep -q "tapir running" "$WORK/run.log" && break; sleep 0.05; done
grep -q "tapir running" "$WORK/run.log" || { cat "$WORK/run.log" >&2; exit 1; }
for _ in $(seq 100); do grep -q "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
# Every thread's identity and capabilities while capturing.
for t in /proc/"$TAP"/task/*; do grep -E '^(Uid|CapEff|CapPrm|CapAmb)' "$t/status"; done >"$WORK/privs.txt"

head -c 3000000 /dev/urandom >"$WORK/ftp-up.bin"
head -c 2000000 /dev/urandom >"$WORK/http-up.bin"
head -c 300000 /dev/urandom >"$WORK/mail-att.bin"
C curl -sS --ftp-pasv -T "$WORK/ftp-up.bin" "ftp://joe:secret@198.51.100.10/ftp-up.bin"
C curl -sS -o /dev/null -T "$WORK/http-up.bin" "http://198.51.100.10:8080/images/http-up.bin"
C swaks -S --server 198.51.100.10 --port 2525 --from vm@example.net --to lea@example.org \
    --header "Subject: live" --attach "@$WORK/mail-att.bin"
(cd "$WORK" && sha256sum ftp-up.bin http-up.bin mail-att.bin) >"$WORK/sent.sha256"
sleep 1
S curl -sS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt" || true
# What the link itself saw (drops before any tap, offloads in force), for a failure to explain.
{ S ip -s link show "$VS"; C ip -s link show "$VC"; S ethtool -k "$VS" 2>&1 | grep -E 'offload|segmentation'; } \
    >"$WORK/link.txt" 2>&1 || true
kill -INT "$TCPD"; wait "$TCPD" || true
kill -TERM "$TAP"; wait "$TAP"
echo "live run done"
