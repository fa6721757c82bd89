#!/usr/bin/env bash
# An FTP upload whose data connection goes to another address than its control connection:
# pyftpdlib at 198.51.100.10:21 announces 198.51.100.12 in its 227 replies (`--nat-address`, as
# a server behind a NAT does), the server's namespace forwards that address's passive ports to
# the server (nftables DNAT), and lftp (passive mode, PASV) stores WORK/upload.bin by the
# announced address. tcpdump on the server's end of the veth sees the data connection as the
# client sees it: between 198.51.100.7 and 198.51.100.12.
#
# usage: ftp-nat-pasv.sh WORK     (root; WORK/upload.bin is the file sent)
# writes WORK/cap.pcap, WORK/ftp-root/upload.bin, WORK/ftp.log, WORK/lftp.log, WORK/tcpdump.log
set -euo pipefail
WORK=$1
source "$(dirname "$0")/netns.sh" fn
S() { ip netns exec "${NSP}s" "$@"; }
S ip addr add 198.51.100.12/24 dev "$VS"
S nft add table ip nat
S nft add chain ip nat pre '{ type nat hook prerouting priority -100; }'
S nft add rule ip nat pre ip daddr 198.51.100.12 tcp dport 60000-60009 dnat to 198.51.100.10

mkdir -p "$WORK/ftp-root"
ip netns exec "${NSP}s" tcpdump -i "$VS" --immediate-mode -w "$WORK/cap.pcap" -U tcp >"$WORK/tcpdump.log" 2>&1 &
TCPD=$!
for _ in $(seq 100); do grep -qs "listening on" "$WORK/tcpdump.log" && break; sleep 0.05; done
grep -qs "listening on" "$WORK/tcpdump.log"
ip netns exec "${NSP}s" python3 -m pyftpdlib -i 198.51.100.10 -p 21 -w -d "$WORK/ftp-root" -u joe -P secret -n 198.51.100.12 \
    -r 60000-60009 >"$WORK/ftp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do S ss -ltn | grep -q '198.51.100.10:21 ' && break; sleep 0.05; done
S ss -ltn | grep -q '198.51.100.10:21 ' || { echo "pyftpdlib never listened" >&2; cat "$WORK/ftp.log" >&2; exit 1; }
(cd "$WORK" && ip netns exec "${NSP}c" lftp -u joe,secret \
    -e "set ftp:passive-mode on; set ftp:prefer-epsv no; set ftp:ignore-pasv-address no; put upload.bin; bye" \
    198.51.100.10 >"$WORK/lftp.log" 2>&1)
sleep 0.3
kill -INT "$TCPD"; wait "$TCPD" || true
echo "ftp upload done"
