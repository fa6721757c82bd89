#!/usr/bin/env bash
# Makes the large fixture at test time (it is never committed):
#
#   sudo bash pcaps/tools/make-big-upload.sh OUT_DIR [MB]     # MB defaults to 80
#   sudo LEAN=1 bash pcaps/tools/make-big-upload.sh OUT_DIR   # what tests/big_upload.rs runs
#
# An MB-megabyte random file is uploaded by the target 198.51.100.7 to 203.0.113.10 twice: over
# FTP in passive mode (curl --disable-epsv: PASV, to pyftpdlib) and over HTTP (curl -T: PUT, to
# tools/http_app_server.py), while nftables on the bridge between them (bridge family, forward
# hook) drops ~1% of the target's data segments. tcpdump on the server's interface (after the
# drop point) writes OUT_DIR/big.pcap; OUT_DIR/big.expect.json (same format as pcaps/app/*)
# and OUT_DIR/warrants.toml (same LIIDs, windows around today) are written next to it, and
# tools/check_app_expect.py re-checks the result. Takes about 1-2 minutes on 2 cores.
#
# Needs root, tcpdump, tshark, capinfos, curl, nft, tcpflow, ethtool and python3 with
# pyftpdlib. Namespaces are named tbg<pid>-*, so two runs never collide; they, their links and
# processes are removed on any exit. Exit 0 only when both uploads arrived intact and every
# check passed.
#
# LEAN=1 writes big.expect.json from the file sent alone (sha256sum, md5sum, its size), the
# capture's first and last packet times (capinfos) and one tshark pass counting the
# retransmissions, instead of the full make_app_expect.py/check_app_expect.py passes (each
# file also followed out of the capture by tshark): about 10 s instead of 45 s here. The
# test needs no more: tapir must give the digest of the file sent, which it can only do if
# the capture holds every byte.
set -euo pipefail

OUTD=${1:?usage: make-big-upload.sh OUT_DIR [MB]}
MB=${2:-80}
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HERE=$(dirname "$TOOLS")
NSP="tbg$$-"
WORK=$(mktemp -d /tmp/tapir-big.XXXXXX)
# shellcheck source=nslib.sh
source "$TOOLS/nslib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, tcpdump)"
for t in ip tcpdump tshark capinfos curl nft tcpflow ethtool ss sha256sum python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
python3 -c 'import pyftpdlib' 2>/dev/null || die "python3 needs pyftpdlib (pip install pyftpdlib)"
on_exit() { ns_cleanup; rm -rf "$WORK"; }
trap on_exit EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUTD"
OUTD=$(cd "$OUTD" && pwd)
rm -f "$OUTD/big.pcap" "$OUTD/big.expect.json"
CUR=big
: >"$WORK/big.cmds"; : >"$WORK/big.rec.jsonl"; : >"$WORK/big.counts"
T0=$SECONDS

lan_up
x sw nft add table bridge lossy
x sw nft add chain bridge lossy wire "{ type filter hook forward priority 0; }"
# data segments only (IP length > 500): handshakes and FTP commands are never dropped, so no
# multi-second SYN or control retransmission timeouts
x sw nft add rule bridge lossy wire ip saddr 198.51.100.7 ip daddr 203.0.113.10 ip length \
    gt 500 numgen random mod 100 "<" 1 counter drop

mkdir -p "$WORK/files" "$WORK/ftp-root" "$WORK/http-store"
chmod 755 "$WORK" "$WORK/ftp-root"
log "head -c ${MB}M /dev/urandom > \$WORK/files/big.bin"
head -c "${MB}M" /dev/urandom >"$WORK/files/big.bin"
bgx srv "$WORK/ftp.log" python3 -m pyftpdlib -i 203.0.113.10 -p 21 -w -d "$WORK/ftp-root" \
    -u joe -P secret -r 60000-60009
bgx srv "$WORK/http.log" python3 "$TOOLS/http_app_server.py" --bind 203.0.113.10 --port 80 \
    --dir "$WORK/http-store"
wait_port srv 21
wait_port srv 80
# a large kernel buffer: the uploads run at hundreds of MB/s and tcpdump must not drop
cap_start srv eth0 "$WORK/big.pcap" -B 131072
x tgt curl -sS --fail --disable-epsv -T "$WORK/files/big.bin" ftp://joe:secret@203.0.113.10/big.bin
x tgt curl -sS --fail -o /dev/null -T "$WORK/files/big.bin" http://203.0.113.10/upload/big.bin
cap_stop "$WORK/big.pcap"
dropped=$(ip netns exec "${NSP}sw" nft list table bridge lossy | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
log "# nft counter: $dropped segments dropped on the bridge"
cmp -s "$WORK/files/big.bin" "$WORK/ftp-root/big.bin" || die "FTP upload differs"
cmp -s "$WORK/files/big.bin" "$WORK/http-store/big.bin" || die "HTTP upload differs"
[[ ${dropped:-0} -gt 0 ]] || die "nftables dropped nothing"
ns_cleanup
echo "capture done after $((SECONDS - T0)) s ($dropped segments dropped)"

python3 - "$WORK/big.rec.jsonl" "$WORK/files/big.bin" <<'PY'
import json, sys
rec, path = sys.argv[1:3]
with open(rec, "a") as f:
    f.write(json.dumps({"kind": "ftp", "direction": "upload", "command": "STOR",
                        "name": "big.bin", "path": path, "data_mode": "PASV", "tool": "curl",
                        "note": "curl --disable-epsv -T: PASV upload through ~1% loss"}) + "\n")
    f.write(json.dumps({"kind": "http", "name": "big.bin", "path": path, "method": "PUT",
                        "uri": "/upload/big.bin", "tool": "curl",
                        "note": "curl -T: PUT with Content-Length through ~1% loss"}) + "\n")
PY
if [[ ${LEAN:-0} == 1 ]]; then
    cp "$WORK/big.pcap" "$OUTD/big.pcap"
    retrans=$(tshark -n -o tcp.desegment_tcp_streams:FALSE --disable-protocol http,ftp,ftp-data \
        -r "$OUTD/big.pcap" -Y 'tcp.analysis.retransmission || tcp.analysis.fast_retransmission' \
        -T fields -e frame.number | wc -l)
    python3 - "$OUTD" "$WORK/files/big.bin" "$retrans" "$dropped" "$MB" <<'PY'
import datetime as dt, json, os, subprocess, sys
out, path, retrans, dropped, mb = sys.argv[1:6]
digest = lambda tool: subprocess.run([tool, path], capture_output=True, check=True).stdout.split()[0].decode()
cap = subprocess.run(["capinfos", "-a", "-e", "-T", "-r", "-S", os.path.join(out, "big.pcap")],
                     capture_output=True, check=True, text=True).stdout.split("\t")
first, last = (dt.datetime.fromtimestamp(float(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
               for t in (cap[1], cap[2]))
f = {"name": "big.bin", "size": os.path.getsize(path), "sha256": digest("sha256sum"), "md5": digest("md5sum")}
json.dump({"description": "Lean expectation (LEAN=1): %s MiB uploaded over FTP and HTTP through "
           "~1%% loss (%s segments dropped)" % (mb, dropped),
           "capinfos": {"first_packet_time": first, "last_packet_time": last},
           "files": [dict(f, kind="ftp"), dict(f, kind="http")],
           "counts": {"retransmissions": {"packets": int(retrans)}}},
          open(os.path.join(out, "big.expect.json"), "w"))
PY
else
printf '%s\t%s\n' retransmissions 'tcp.analysis.retransmission || tcp.analysis.fast_retransmission' \
    lost_segment 'tcp.analysis.lost_segment' out_of_order 'tcp.analysis.out_of_order' \
    >>"$WORK/big.counts"
cp "$WORK/big.pcap" "$OUTD/big.pcap"
python3 - "$WORK/big.meta.json" "$WORK/big.cmds" "$WORK/big.rec.jsonl" "$WORK/big.counts" \
    "$MB" "$dropped" <<'PY'
import json, sys
out, cmds, recs, counts, mb, dropped = sys.argv[1:7]
rd = lambda p: [l.rstrip("\n") for l in open(p)]
json.dump({"description": "Target 198.51.100.7 uploads one %s MiB random file to 203.0.113.10 "
           "twice, over FTP passive (PASV, pyftpdlib) and over HTTP PUT (python3 server), while "
           "nftables on the bridge drops ~1%% of its data segments (%s dropped in this run). "
           "Captured on the server's interface, after the drop point: retransmissions present, "
           "both transfers complete. Made at test time by tools/make-big-upload.sh." % (mb, dropped),
           "commands": rd(cmds), "records": [json.loads(l) for l in rd(recs)],
           "counts": dict(l.split("\t", 1) for l in rd(counts))}, open(out, "w"))
PY
python3 "$TOOLS/make_app_expect.py" "$WORK/big.meta.json" "$OUTD/big.pcap" \
    "$OUTD/big.expect.json" "$WORK" "$HERE" --fast
echo "expect done after $((SECONDS - T0)) s"
fi
python3 - "$OUTD" <<'PY'
import datetime as dt, json, os, sys
out = sys.argv[1]
c = json.load(open(os.path.join(out, "big.expect.json")))["capinfos"]
t = dt.datetime.strptime(c["first_packet_time"][:10], "%Y-%m-%d")
t2 = dt.datetime.strptime(c["last_packet_time"][:10], "%Y-%m-%d") + dt.timedelta(days=1)
z = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
w = ""
for liid, s, e, tg in (
        ("LIID-JOE-0001", t, t2, '"subscriber:joe", "ipv4:198.51.100.7", "ipv6:2001:db8::7"'),
        ("LIID-VM-0002", t, t2, '"vni:5001/10.0.0.5"'),
        ("LIID-OLD-0003", t - dt.timedelta(days=30), t - dt.timedelta(days=1),
         '"ipv4:198.51.100.8"')):
    w += ('[[warrant]]\nliid = "%s"\nstart = "%s"\nend   = "%s"\nscope = "iri+cc"\n'
          'targets = [%s]\n\n' % (liid, z(s), z(e), tg))
open(os.path.join(out, "warrants.toml"), "w").write(
    "# Written by make-big-upload.sh: the LIIDs of pcaps/warrants.toml, windows around this run.\n\n" + w)
PY
if [[ ${LEAN:-0} != 1 ]]; then
    python3 "$TOOLS/check_app_expect.py" --fast "$OUTD/big.expect.json" >"$WORK/check.log" ||
        { cat "$WORK/check.log"; die "check_app_expect.py failed"; }
    grep -v '^  ok ' "$WORK/check.log"
fi
echo "big.pcap: $(stat -c %s "$OUTD/big.pcap") bytes, $((SECONDS - T0)) s in all"
