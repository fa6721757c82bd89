#!/usr/bin/env bash
# Image inspection inside replay: what it costs the packet path, and what peers find.
#
#   sudo bash bench/vmi_upload.sh [MEGABYTES]           (image size, default 1024)
#   sudo BENCH_DIR=/dev/shm bash bench/vmi_upload.sh    capture, image and cases on tmpfs
#
# Makes a MEGABYTES ext4 image with mkfs.ext4 -d (a copy of /usr/share: thousands of files,
# plus the use case's outbox, crontab and video), converts it to a compressed qcow2, uploads it
# with curl over FTP (PASV, to pyftpdlib) between network namespaces while tcpdump captures,
# then times on that capture: tcpdump -r, tshark's FTP-DATA export, tapir replay with and
# without inspection; and on the image: tapir vmi inspect, dissect.target's target-query (if
# installed) and Sleuth Kit fls on the raw disk (it cannot read qcow2).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MB=${1:-1024}
HERE=$(pwd)/pcaps
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-vmi-bench.XXXXXX")
work=$WORK
NSP="tvb$$-"
# shellcheck source=../pcaps/tools/nslib.sh
source pcaps/tools/nslib.sh
trap 'ns_cleanup; rm -rf "$WORK"' EXIT
[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, tcpdump)"
cargo build --release --quiet --bin tapir

# The image.
r=$WORK/root
mkdir -p "$r/etc" "$r/home/joe/Mail/outbox" "$r/home/joe/Videos" "$r/var/spool/cron/crontabs" "$r/usr"
cp -a /usr/share "$r/usr/" 2>/dev/null || true
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n' > "$r/etc/os-release"
echo joe-vm > "$r/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/bash\njoe:x:1000:1000::/home/joe:/bin/bash\n' > "$r/etc/passwd"
printf '@reboot sleep 3600 && mailclient --flush-outbox\n' > "$r/var/spool/cron/crontabs/joe"
printf 'From: joe@example.org\r\nTo: bob@example.net\r\nSubject: later\r\n\r\nhi\r\n' > "$r/home/joe/Mail/outbox/1.eml"
{ printf '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2'; head -c 20000000 /dev/urandom; } > "$r/home/joe/Videos/clip.mp4"
files=$(find "$r" -type f | wc -l)
mkfs.ext4 -q -F -d "$r" "$WORK/joe.raw" "${MB}M"
rm -rf "$r"
qemu-img convert -c -f raw -O qcow2 "$WORK/joe.raw" "$WORK/joe.qcow2"
echo "image: ${MB} MiB ext4 with $files files; qcow2 (compressed) $(stat -c %s "$WORK/joe.qcow2") bytes"

# The upload, captured.
lan_up
mkdir -p "$WORK/ftp" "$WORK/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ftp -keyout "$WORK/tls/k" -out "$WORK/tls/c" 2>/dev/null
bgx srv "$WORK/ftp.log" python3 pcaps/tools/ftp_app_server.py --bind 203.0.113.10 --dir "$WORK/ftp" \
    --cert "$WORK/tls/c" --key "$WORK/tls/k"
wait_port srv 21
cap_start srv eth0 "$WORK/up.pcap" -B 262144
x tgt curl -sS --limit-rate 40M --disable-epsv -T "$WORK/joe.qcow2" ftp://joe:secret@203.0.113.10/joe.qcow2
cap_stop "$WORK/up.pcap"
cmp -s "$WORK/joe.qcow2" "$WORK/ftp/joe.qcow2" || die "upload differs"
rm -f "$WORK/ftp/joe.qcow2"
ns_cleanup
cap=$WORK/up.pcap
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null
echo "capture: $packets packets, $bytes bytes ($(nproc) cores; outputs under ${BENCH_DIR:-/tmp})"
bench_warrant "$WORK/w.toml" BENCH-VMI ipv4:198.51.100.7

bench_run "tcpdump -r -w /dev/null" tcpdump -r "$cap" -w /dev/null
mkdir -p "$WORK/tshark"
bench_run "tshark --export-objects ftp-data" tshark -r "$cap" -q --export-objects "ftp-data,$WORK/tshark"
rm -rf "$WORK/tshark"
bench_run "tapir replay --no-inspect" ./target/release/tapir replay -q "$cap" --warrants "$WORK/w.toml" --out "$WORK/case-off" --no-inspect
rm -rf "$WORK/case-off"
bench_run "tapir replay (inspecting)" ./target/release/tapir replay -q "$cap" --warrants "$WORK/w.toml" --out "$WORK/case-on"
grep '^images:' "$work/out.txt"
python3 - "$WORK/case-on/BENCH-VMI/iri.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["event"] == "vmi":
        print("  vmi: %s, hostname %s, %d artifacts" % (r["outcome"], r.get("hostname"), len(r.get("artifacts", []))))
PY
rm -rf "$WORK/case-on"

# The image itself, through each reader.
bench_run "tapir vmi inspect (qcow2)" ./target/release/tapir vmi inspect "$WORK/joe.qcow2"
bench_run "tapir vmi inspect (raw)" ./target/release/tapir vmi inspect "$WORK/joe.raw"
if command -v target-query >/dev/null; then
    bench_run "dissect target-query (qcow2)" target-query -f hostname,users,os "$WORK/joe.qcow2"
fi
if command -v fls >/dev/null; then
    bench_run "sleuthkit fls -r (raw)" fls -r "$WORK/joe.raw"
fi
