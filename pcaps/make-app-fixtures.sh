#!/usr/bin/env bash
# Regenerates the protocol-analyzer fixtures in pcaps/app/ with real clients and servers
# (swaks, postfix, aiosmtpd, curl, wget, pyftpdlib, lftp, openssl, OpenSSH, python3 clients) in
# network namespaces named tap-*.
#
#   sudo bash pcaps/make-app-fixtures.sh             # all: smtp http ftp tls ssh
#   sudo bash pcaps/make-app-fixtures.sh smtp tls    # only some
#
# Same conventions as make-fixtures.sh (helpers in tools/nslib.sh): nothing is added to the root
# namespace, documentation addresses only, everything removed on any exit. Each fixture gets
# app/<name>.expect.json from tools/make_app_expect.py (tshark, capinfos, sha256sum & co.,
# python's email parser, openssl x509), never from tapir. Payloads are random on every run:
# commit the pcaps, the expect files and app/warrants.toml together.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$HERE/tools
OUT=$HERE/app
ALL_FIXTURES=(smtp http ftp tls ssh vmi)
NSP=tap-
WORK=$(mktemp -d /tmp/tapir-app-fixtures.XXXXXX)
# postfix's own processes run as user postfix and must reach their queue under $WORK
chmod 755 "$WORK"
# shellcheck source=tools/nslib.sh
source "$TOOLS/nslib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, tcpdump)"
for t in ip tcpdump tshark capinfos curl wget lftp swaks postfix openssl qemu-img qemu-io \
         ethtool ss sha256sum md5sum sha512sum gzip python3 ssh ssh-keygen /usr/sbin/sshd; do
    command -v "$t" >/dev/null || die "missing tool: $t (run .ci/install-deps.sh --fixture-tools)"
done
python3 -c 'import aiosmtpd, pyftpdlib, OpenSSL' 2>/dev/null ||
    die "python3 needs aiosmtpd, pyftpdlib and pyOpenSSL (run .ci/install-deps.sh --fixture-tools)"

on_exit() { ns_cleanup; rm -rf "$WORK"; }
trap on_exit EXIT
trap 'exit 130' INT TERM
ns_cleanup # leftovers of an interrupted earlier run: idempotent
mkdir -p "$OUT" "$WORK/files" "$WORK/tls"

# rec KEY=VALUE...: one record per file sent/received (values starting with [ or { are JSON)
rec() {
    python3 - "$WORK/$CUR.rec.jsonl" "$@" <<'PY'
import json, sys
d = {}
for a in sys.argv[2:]:
    k, v = a.split("=", 1)
    d[k] = json.loads(v) if v[:1] in "[{" else v
open(sys.argv[1], "a").write(json.dumps(d) + "\n")
PY
}
count() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/$CUR.counts"; }
mkfile() { # NAME BYTES -> $WORK/files/NAME
    head -c "$2" /dev/urandom >"$WORK/files/$1"
    log "head -c $2 /dev/urandom > \$WORK/files/$1"
}
same_file() { cmp -s "$1" "$2" || die "$CUR: $2 differs from $1"; }
begin() {
    CUR=$1
    rm -f "$WORK/$CUR".{cmds,rec.jsonl,counts}
    touch "$WORK/$CUR".{cmds,rec.jsonl,counts}
    echo "== $CUR"
}
# selfsigned NAME SUBJECT SAN: $WORK/tls/NAME.{key,crt}, RSA 2048, 365 days
selfsigned() {
    x_root openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 -set_serial "$4" \
        -keyout "$WORK/tls/$1.key" -out "$WORK/tls/$1.crt" -subj "$2" -addext "subjectAltName=$3"
}
x_root() { log "$(q "$@")"; "$@" 2>/dev/null; }

expect() { # NAME DESCRIPTION [extra JSON for the meta file]
    python3 - "$WORK/$1.meta.json" "$2" "$WORK/$1.cmds" "$WORK/$1.rec.jsonl" \
        "$WORK/$1.counts" "${3:-{\}}" <<'PY'
import json, sys
out, desc, cmds, recs, counts, extra = sys.argv[1:7]
rd = lambda p: [l.rstrip("\n") for l in open(p)]
m = {"description": desc, "commands": rd(cmds), "records": [json.loads(l) for l in rd(recs)],
     "counts": dict(l.split("\t", 1) for l in rd(counts))}
m.update(json.loads(extra))
json.dump(m, open(out, "w"))
PY
    python3 "$TOOLS/make_app_expect.py" "$WORK/$1.meta.json" "$OUT/$1.pcap" "$OUT/$1.expect.json" \
        "$WORK" "$HERE"
    echo "  -> app/$1.pcap ($(stat -c %s "$OUT/$1.pcap") bytes), app/$1.expect.json"
}
keep() { cp "$1" "$OUT/$2"; chmod 644 "$OUT/$2"; }

# ---------------------------------------------------------------------------------------------
# postfix in the server namespace: its own config and queue under $WORK (no /etc/postfix/main.cf
# needed), accepts mail from the target's prefix for example.net and delivers it to one Maildir.
postfix_conf() {
    local d=$WORK/postfix
    mkdir -p "$d/conf" "$d/queue" "$d/data" "$d/mail"
    chown postfix "$d/data"
    chown nobody:nogroup "$d/mail"
    cat >"$d/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx2.example.net
mydomain = example.net
myorigin = example.net
inet_interfaces = 203.0.113.10
inet_protocols = ipv4
mydestination =
mynetworks = 198.51.100.0/24
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = example.net
virtual_mailbox_base = $d/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_banner = \$myhostname ESMTP
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
maillog_file = $d/maillog
maillog_file_prefixes = $d
EOF
    # no chroot: the queue is not a chroot jail here
    cat >"$d/conf/master.cf" <<'EOF'
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

# a message as swaks must be given it: swaks appends CRLF "." itself, so the file it reads must
# not end with the last CRLF (else the submitted message gets an extra empty line)
swaks_data() { head -c -2 "$1" >"$1.swaks"; }

fx_smtp() {
    begin smtp
    lan_up
    local p=$WORK/files sw=(swaks --server 203.0.113.10:25 --ehlo joe-pc.example.org
                            -f joe@example.org --timeout 20)
    selfsigned mx "/CN=mx.example.net" "DNS:mx.example.net" 0x5e01
    mkfile attach.bin 3000
    python3 -c 'import sys; sys.stdout.write("".join("notes line %d: the quick brown fox\n" % i for i in range(40)))' >"$p/notes-attach.txt"
    log "python3 -c (40 text lines) > \$WORK/files/notes-attach.txt"
    local c=$TOOLS/app_clients.py
    x_root python3 "$c" eml-dots "$p/dots.eml" dots.1@joe-pc.example.org
    x_root python3 "$c" eml-attach "$p/attach.eml" attach.2@joe-pc.example.org "$p/attach.bin" "$p/notes-attach.txt"
    x_root python3 "$c" eml-simple "$p/auth-plain.eml" auth-plain.3@joe-pc.example.org "AUTH PLAIN"
    x_root python3 "$c" eml-simple "$p/auth-login.eml" auth-login.4@joe-pc.example.org "AUTH LOGIN"
    x_root python3 "$c" eml-simple "$p/two-1.eml" two-1.5@joe-pc.example.org "first of two"
    x_root python3 "$c" eml-simple "$p/two-2.eml" two-2.6@joe-pc.example.org "second of two"
    x_root python3 "$c" eml-simple "$p/starttls.eml" starttls.7@joe-pc.example.org "over STARTTLS"
    x_root python3 "$c" eml-simple "$p/pipelining.eml" pipelining.8@joe-pc.example.org "PIPELINING"
    x_root python3 "$c" eml-attach "$p/bdat.eml" bdat.9@joe-pc.example.org "$p/attach.bin" "$p/notes-attach.txt"
    for m in dots attach auth-plain auth-login starttls pipelining; do swaks_data "$p/$m.eml"; done
    log "head -c -2 X.eml > X.eml.swaks   # swaks adds the final CRLF.CRLF itself"

    mkdir -p "$WORK/smtp-store"
    bgx srv "$WORK/aiosmtpd.log" python3 "$TOOLS/smtp_app_server.py" --bind 203.0.113.10 \
        --port 25 --dir "$WORK/smtp-store" --cert "$WORK/tls/mx.crt" --key "$WORK/tls/mx.key" \
        --password secret
    local srv=$LAST_PID
    wait_port srv 25
    cap_start srv eth0 "$WORK/smtp.pcap"
    x tgt "${sw[@]}" -t bob@example.net --data "@$p/dots.eml.swaks" >"$WORK/swaks-dots.log"
    rec kind=smtp path="$p/dots.eml" name=dots.eml command=DATA mail_from=joe@example.org \
        rcpt_to='["bob@example.net"]' tool=swaks server=aiosmtpd \
        note="body lines starting with '.', '..', '.', '. ', '...': dot-stuffed on the wire"
    x tgt "${sw[@]}" -t bob@example.net,carol@example.net --data "@$p/attach.eml.swaks" >"$WORK/swaks-attach.log"
    rec kind=smtp path="$p/attach.eml" name=attach.eml command=DATA mail_from=joe@example.org \
        rcpt_to='["bob@example.net","carol@example.net"]' tool=swaks server=aiosmtpd \
        note="multipart/mixed: text body + attach.bin (application/octet-stream, base64) + notes-attach.txt (text/plain, base64); two RCPT TO"
    x tgt "${sw[@]}" -t bob@example.net --auth PLAIN --auth-user joe --auth-password secret \
        --data "@$p/auth-plain.eml.swaks" >"$WORK/swaks-plain.log"
    rec kind=smtp path="$p/auth-plain.eml" name=auth-plain.eml command=DATA \
        mail_from=joe@example.org rcpt_to='["bob@example.net"]' tool=swaks server=aiosmtpd \
        auth_mechanism=PLAIN auth_user=joe note="AUTH PLAIN (initial response) in clear"
    x tgt "${sw[@]}" -t bob@example.net --auth LOGIN --auth-user joe --auth-password secret \
        --data "@$p/auth-login.eml.swaks" >"$WORK/swaks-login.log"
    rec kind=smtp path="$p/auth-login.eml" name=auth-login.eml command=DATA \
        mail_from=joe@example.org rcpt_to='["bob@example.net"]' tool=swaks server=aiosmtpd \
        auth_mechanism=LOGIN auth_user=joe note="AUTH LOGIN (user and password each base64 after a 334) in clear"
    x tgt python3 "$c" smtp-two 203.0.113.10 25 "$WORK/smtp.rec.jsonl" "$p/two-1.eml" "$p/two-2.eml"
    x tgt "${sw[@]}" -t bob@example.net -tls --data "@$p/starttls.eml.swaks" >"$WORK/swaks-tls.log"
    rec kind=smtp path="$p/starttls.eml" name=starttls.eml command=DATA \
        mail_from=joe@example.org rcpt_to='["bob@example.net"]' tool=swaks server=aiosmtpd \
        encrypted=STARTTLS note="STARTTLS, then EHLO/MAIL/RCPT/DATA inside TLS: nothing of the message is visible"
    stop_pid "$srv"
    # the server's copies (aiosmtpd original_content) must be the client's bytes exactly
    [[ $(ls "$WORK/smtp-store"/*.eml | wc -l) -eq 7 ]] || die "aiosmtpd stored $(ls "$WORK/smtp-store" | wc -l) files, want 7"
    local i=1 m
    for m in dots attach auth-plain auth-login two-1 two-2 starttls; do
        same_file "$p/$m.eml" "$WORK/smtp-store/$(printf %03d $i).eml"
        i=$((i + 1))
    done

    postfix_conf
    bgx srv "$WORK/postfix.log" postfix -c "$WORK/postfix/conf" start-fg
    local pf=$LAST_PID
    wait_port srv 25
    x tgt "${sw[@]}" -t bob@example.net --pipeline --data "@$p/pipelining.eml.swaks" >"$WORK/swaks-pipe.log"
    grep -q '^ -> RCPT' "$WORK/swaks-pipe.log" || die "swaks --pipeline: no RCPT"
    rec kind=smtp path="$p/pipelining.eml" name=pipelining.eml command=DATA \
        mail_from=joe@example.org rcpt_to='["bob@example.net"]' tool=swaks server=postfix \
        note="PIPELINING: MAIL FROM, RCPT TO and DATA sent in one write, replies read after"
    x tgt python3 "$c" smtp-bdat 203.0.113.10 25 "$WORK/smtp.rec.jsonl" "$p/bdat.eml" 2048
    for _ in $(seq 50); do
        [[ $(find "$WORK/postfix/mail" -type f -path '*/new/*' | wc -l) -ge 2 ]] && break
        sleep 0.2
    done
    cap_stop "$WORK/smtp.pcap"
    x srv postfix -c "$WORK/postfix/conf" stop >/dev/null 2>&1 || true
    stop_pid "$pf"
    [[ $(find "$WORK/postfix/mail" -type f -path '*/new/*' | wc -l) -eq 2 ]] ||
        die "postfix delivered $(find "$WORK/postfix/mail" -type f | wc -l) messages, want 2"
    count smtp_commands 'smtp.req'
    count smtp_data_fragments 'imf'
    count tls_handshakes 'tls.handshake.type==1'
    keep "$WORK/smtp.pcap" smtp.pcap
    expect smtp "Target 198.51.100.7 submits 9 messages to 203.0.113.10:25. To aiosmtpd \
(tools/smtp_app_server.py, advertises STARTTLS and AUTH PLAIN/LOGIN without TLS): swaks DATA \
with dot-stuffed lines, swaks with two attachments (two recipients), swaks AUTH PLAIN, swaks AUTH \
LOGIN, python smtplib two messages on one connection, swaks STARTTLS. Then to postfix 3.7 \
(PIPELINING, CHUNKING): swaks --pipeline, python BDAT in 2048-byte chunks. Captured on the \
server's interface." \
        "{\"smtp_servers\": {\"aiosmtpd\": \"$WORK/smtp-store\", \"postfix\": \"$WORK/postfix/mail\"}}"
    ns_cleanup
}

fx_http() {
    begin http
    lan_up
    local p=$WORK/files u=http://203.0.113.10 cu=(curl -sS --fail -o /dev/null)
    mkdir -p "$WORK/http-store" "$WORK/http-serve"
    mkfile chunked.bin 120000
    mkfile form-a.bin 50000
    mkfile form-b.bin 40000
    # compressible: gzip makes it much smaller, so "decoded" and "wire" sizes differ clearly
    python3 -c 'import sys; sys.stdout.write("".join("log line %06d: GET /index.html 200\n" % i for i in range(6000)))' >"$p/gz-log.txt"
    log "python3 -c (6000 log lines) > \$WORK/files/gz-log.txt"
    x_root gzip -9 -n -k "$p/gz-log.txt"
    mkfile ka-1.bin 30000
    mkfile ka-2.bin 31000
    mkfile ka-3.bin 32000
    mkfile pl-1.bin 20000
    mkfile pl-2.bin 21000
    # qcow2 image as an OpenStack user would upload it: 16 MiB virtual, a few clusters written
    x_root qemu-img create -f qcow2 -o preallocation=off "$p/joe-vm.qcow2" 16M
    x_root qemu-io -c "write -P 0xab 0 64k" -c "write -P 0x5a 8M 4k" "$p/joe-vm.qcow2"
    local uuid=8c1f5a3e-4b2d-4e6f-9a0b-1c2d3e4f5a6b
    mkfile s3-part1.bin 150000
    mkfile s3-part2.bin 90000
    mkfile v6-put.bin 80000
    mkfile wget-put.bin 25000
    mkfile download.bin 70000
    cp "$p/download.bin" "$WORK/http-serve/download.bin"
    bgx srv "$WORK/http-srv.log" python3 "$TOOLS/http_app_server.py" --bind 203.0.113.10 \
        --bind 2001:db8::10 --port 80 --dir "$WORK/http-store" --serve "$WORK/http-serve"
    local srv=$LAST_PID
    wait_port srv 80
    cap_start srv eth0 "$WORK/http.pcap"
    xin tgt "$p/chunked.bin" "${cu[@]}" -T - "$u/upload/chunked.bin"
    rec kind=http path="$p/chunked.bin" name=chunked.bin method=PUT uri=/upload/chunked.bin \
        tool=curl note="curl -T - (stdin): Transfer-Encoding: chunked"
    x tgt "${cu[@]}" -F "a=@$p/form-a.bin" -F "b=@$p/form-b.bin" "$u/upload"
    rec kind=http path="$p/form-a.bin" name=form-a.bin method=POST uri=/upload part=a tool=curl \
        note="curl -F a=@form-a.bin -F b=@form-b.bin: multipart/form-data with two file parts"
    rec kind=http path="$p/form-b.bin" name=form-b.bin method=POST uri=/upload part=b tool=curl \
        note="second part of the same multipart body"
    x tgt "${cu[@]}" --data-binary "@$p/gz-log.txt.gz" -H 'Content-Encoding: gzip' \
        -H 'Content-Type: text/plain' "$u/upload/gz-log.txt"
    rec kind=http path="$p/gz-log.txt" wire_path="$p/gz-log.txt.gz" name=gz-log.txt method=POST \
        uri=/upload/gz-log.txt content_encoding=gzip tool=curl \
        note="curl --data-binary @gz-log.txt.gz -H 'Content-Encoding: gzip': sha256 is of the decoded text, wire.sha256 of the gzip bytes"
    x tgt python3 "$TOOLS/app_clients.py" http-keepalive 203.0.113.10 "$WORK/http.rec.jsonl" "$p" \
        "$p/ka-1.bin" "$p/ka-2.bin" "$p/ka-3.bin"
    x tgt python3 "$TOOLS/app_clients.py" http-pipeline 203.0.113.10 "$WORK/http.rec.jsonl" "$p" \
        "$p/pl-1.bin" "$p/pl-2.bin"
    x tgt "${cu[@]}" -T "$p/joe-vm.qcow2" -H 'Content-Type: application/octet-stream' \
        "$u/v2/images/$uuid/file"
    rec kind=http path="$p/joe-vm.qcow2" name=joe-vm.qcow2 method=PUT uri="/v2/images/$uuid/file" \
        tool=curl image_id="$uuid" disk_format=qcow2 \
        note="OpenStack image upload (glance v2 image data PUT, 204): qcow2, 16 MiB virtual, 64 KiB of 0xab at 0 and 4 KiB of 0x5a at 8 MiB"
    x tgt python3 "$TOOLS/app_clients.py" http-s3 203.0.113.10 "$WORK/http.rec.jsonl" "$p" \
        joe-bucket backup.tar "$p/s3-part1.bin" "$p/s3-part2.bin"
    x tgt "${cu[@]}" -g -T "$p/v6-put.bin" "http://[2001:db8::10]/upload/v6-put.bin"
    rec kind=http path="$p/v6-put.bin" name=v6-put.bin method=PUT uri=/upload/v6-put.bin tool=curl \
        note="curl -g over IPv6 to [2001:db8::10]"
    x tgt wget -q -O /dev/null --method=PUT --body-file="$p/wget-put.bin" "$u/upload/wget-put.bin"
    rec kind=http path="$p/wget-put.bin" name=wget-put.bin method=PUT uri=/upload/wget-put.bin \
        tool=wget note="wget --method=PUT --body-file"
    x tgt wget -q -O "$WORK/wget-download.bin" "$u/files/download.bin"
    rec kind=http direction=download path="$p/download.bin" name=download.bin method=GET \
        uri=/files/download.bin tool=wget note="GET download: the file is the response body"
    cap_stop "$WORK/http.pcap"
    stop_pid "$srv"
    local f
    for f in chunked.bin form-a.bin form-b.bin gz-log.txt ka-1.bin ka-2.bin ka-3.bin pl-1.bin \
             pl-2.bin v6-put.bin wget-put.bin; do
        same_file "$p/$f" "$WORK/http-store/$f"
    done
    same_file "$p/joe-vm.qcow2" "$WORK/http-store/$uuid.image"
    same_file "$p/download.bin" "$WORK/wget-download.bin"
    cat "$p/s3-part1.bin" "$p/s3-part2.bin" | cmp -s - "$WORK/http-store/backup.tar" ||
        die "S3 object differs"
    count http_requests 'http.request'
    count http_responses 'http.response'
    count ipv6_packets 'ipv6'
    keep "$WORK/http.pcap" http.pcap
    expect http "Target 198.51.100.7 / 2001:db8::7 talks HTTP/1.1 to a python3 server at \
203.0.113.10:80 and [2001:db8::10]:80 (tools/http_app_server.py): curl chunked PUT, curl \
multipart POST with two files, curl POST with Content-Encoding: gzip, python keep-alive (3 PUTs \
on one connection), python pipelining (2 PUTs in one write), curl PUT of a qcow2 image to \
/v2/images/<uuid>/file, python S3-style multipart upload (initiate, 2 parts, complete), curl \
PUT over IPv6, wget PUT, wget GET download. Captured on the server's interface."
    ns_cleanup
}

fx_ftp() {
    begin ftp
    lan_up
    local p=$WORK/files root=$WORK/ftp-root
    mkdir -p "$root"
    selfsigned ftp "/CN=ftp.example" "DNS:ftp.example" 0x5e02
    mkfile stou.bin 60000
    mkfile appe-part1.bin 50000
    mkfile appe-part2.bin 30000
    mkfile resume.bin 150000
    python3 -c 'import sys; sys.stdout.write("".join("ascii line %d\n" % i for i in range(500)))' >"$p/notes.txt"
    log "python3 -c (500 lines, LF) > \$WORK/files/notes.txt"
    mkfile download.bin 90000
    mkfile scratch.bin 1000
    mkfile v6-active.bin 70000
    mkfile lftp-tls.bin 40000
    mkfile curl-get.bin 45000
    cp "$p/download.bin" "$p/curl-get.bin" "$root/"
    chmod 755 "$root"
    bgx srv "$WORK/ftp-srv.log" python3 "$TOOLS/ftp_app_server.py" --bind 203.0.113.10 \
        --bind 2001:db8::10 --dir "$root" --cert "$WORK/tls/ftp.crt" --key "$WORK/tls/ftp.key"
    local srv=$LAST_PID
    wait_port srv 21
    cap_start srv eth0 "$WORK/ftp.pcap"
    x tgt python3 "$TOOLS/app_clients.py" ftp-session 203.0.113.10 2001:db8::10 \
        "$WORK/ftp.rec.jsonl" "$p" "$root"
    x tgt curl -sS --fail -o "$WORK/curl-get.out" ftp://joe:secret@203.0.113.10/curl-get.bin
    rec kind=ftp direction=download command=RETR name=curl-get.bin path="$p/curl-get.bin" \
        server_path="$root/curl-get.bin" data_mode=EPSV tool=curl note="curl ftp:// download (EPSV, RETR)"
    x tgt lftp -c "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; set net:max-retries 2; set net:timeout 10; open -u joe,secret ftp://203.0.113.10; put $p/lftp-tls.bin"
    rec kind=ftp direction=upload command=STOR name=lftp-tls.bin path="$p/lftp-tls.bin" \
        server_path="$root/lftp-tls.bin" tool=lftp encrypted="AUTH TLS" \
        note="lftp ftp:ssl-force: AUTH TLS, then USER/PASS/STOR and the data (PROT P) inside TLS"
    cap_stop "$WORK/ftp.pcap"
    stop_pid "$srv"
    same_file "$p/curl-get.bin" "$WORK/curl-get.out"
    same_file "$p/lftp-tls.bin" "$root/lftp-tls.bin"
    cat "$p/appe-part1.bin" "$p/appe-part2.bin" | cmp -s - "$root/joe-dir/appe.bin" || die "APPE"
    same_file "$p/resume.bin" "$root/joe-dir/resume.bin"
    [[ ! -e $root/joe-dir/scratch.bin && -e $root/joe-dir/notes-renamed.txt ]] || die "DELE/RNTO"
    count ftp_commands 'ftp.request.command'
    count ftp_data_packets 'ftp-data'
    count ipv6_packets 'ipv6'
    count tls_handshakes 'tls.handshake.type==1'
    keep "$WORK/ftp.pcap" ftp.pcap
    expect ftp "Target 198.51.100.7 / 2001:db8::7 uses FTP against pyftpdlib at 203.0.113.10:21 \
and [2001:db8::10]:21 (tools/ftp_app_server.py, user joe, AUTH TLS offered, not required). \
python ftplib over IPv4 (PASV): MKD, STOU, STOR + APPE, STOR + REST/STOR, TYPE A storlines, \
0-byte STOR, RETR, RNFR/RNTO, STOR + DELE; python ftplib over IPv6 in active mode (EPRT); curl \
RETR (EPSV); lftp with AUTH TLS and PROT P (encrypted). Captured on the server's interface."
    ns_cleanup
}

fx_tls() {
    begin tls
    lan_up
    selfsigned tls "/C=XX/O=Tapir Fixtures/CN=tls.example" \
        "DNS:tls.example,DNS:sni.example,IP:203.0.113.10" 0x7a01
    selfsigned https "/O=Tapir Fixtures/CN=https.example" "DNS:https.example" 0x7a02
    # s_server answers 2 connections, then exits; -www sends a status page for "GET /"
    bgx srv "$WORK/s_server.log" openssl s_server -accept 443 -cert "$WORK/tls/tls.crt" \
        -key "$WORK/tls/tls.key" -alpn http/1.1 -www -naccept 2
    local srv=$LAST_PID
    wait_port srv 443
    cap_start srv eth0 "$WORK/tls.pcap"
    local v
    for v in 1_2 1_3; do
        printf 'GET / HTTP/1.0\r\n\r\n' >"$WORK/get.txt"
        xin tgt "$WORK/get.txt" openssl s_client -connect 203.0.113.10:443 -servername sni.example \
            -alpn h2,http/1.1 "-tls$v" -ign_eof >"$WORK/s_client-$v.log" 2>&1
        local proto alpn cipher
        proto=$(sed -n 's/^ *Protocol *: *//p' "$WORK/s_client-$v.log" | head -1)
        [[ -n $proto ]] || proto=$(sed -n 's/^New, \(TLSv1\.[23]\), Cipher.*/\1/p' "$WORK/s_client-$v.log" | head -1)
        alpn=$(sed -n 's/^ALPN protocol: //p' "$WORK/s_client-$v.log" | head -1)
        cipher=$(sed -n 's/^New, TLSv1\.[23], Cipher is //p' "$WORK/s_client-$v.log" | head -1)
        [[ $proto == "TLSv${v/_/.}" && $alpn == http/1.1 ]] ||
            die "s_client -tls$v: protocol '$proto', ALPN '$alpn'"
        rec kind=tls tool="openssl s_client -tls$v" client_cmd="s_client -connect 203.0.113.10:443 -servername sni.example -alpn h2,http/1.1 -tls$v" \
            server=openssl_s_server sni=sni.example alpn_offered='["h2","http/1.1"]' \
            alpn_selected=http/1.1 version="$proto" cipher="$cipher" cert="$WORK/tls/tls.crt"
    done
    wait "$srv" || true
    bgx srv "$WORK/https.log" python3 "$TOOLS/http_app_server.py" --bind 203.0.113.10 --port 443 \
        --dir "$WORK/https-store" --serve "$WORK/tls" --cert "$WORK/tls/https.crt" \
        --key "$WORK/tls/https.key"
    srv=$LAST_PID
    wait_port srv 443
    x tgt curl -sS -k -v -o /dev/null --resolve https.example:443:203.0.113.10 \
        https://https.example/files/https.crt 2>"$WORK/curl-https.log"
    local cv ca
    cv=$(sed -n 's/^\* SSL connection using \(TLSv1\.[23]\) \/ \(.*\)$/\1/p' "$WORK/curl-https.log")
    ca=$(sed -n 's/^\* ALPN: server accepted \(.*\)$/\1/p; s/^\* ALPN, server accepted to use \(.*\)$/\1/p' "$WORK/curl-https.log")
    [[ -n $cv && $ca == http/1.1 ]] || die "curl https: version '$cv', ALPN '$ca'"
    rec kind=tls tool="curl -k" client_cmd="curl -k --resolve https.example:443:203.0.113.10 https://https.example/files/https.crt" \
        server=python3_ssl sni=https.example alpn_offered='["h2","http/1.1"]' \
        alpn_selected=http/1.1 version="$cv" \
        cipher="$(sed -n 's/^\* SSL connection using TLSv1\.[23] \/ //p' "$WORK/curl-https.log")" \
        cert="$WORK/tls/https.crt"
    cap_stop "$WORK/tls.pcap"
    stop_pid "$srv"
    count client_hello 'tls.handshake.type==1'
    count server_hello 'tls.handshake.type==2'
    count certificate_in_clear 'tls.handshake.type==11'
    keep "$WORK/tls.pcap" tls.pcap
    expect tls "Target 198.51.100.7 opens three TLS sessions to 203.0.113.10:443: openssl \
s_client -tls1_2 and -tls1_3 (SNI sni.example, ALPN h2,http/1.1) to openssl s_server \
(self-signed, CN tls.example, ALPN http/1.1, -www), then curl -k (SNI https.example) to a \
python3 HTTPS server (CN https.example). Captured on the server's interface."
    ns_cleanup
}

# ---------------------------------------------------------------------------------------------
# One OpenSSH login with a command: a protocol tapir has no analyzer for (a raw stream each way),
# encrypted after the clear-text version banners.
fx_ssh() {
    begin ssh
    lan_up
    local d=$WORK/ssh
    mkdir -p "$d"
    x_root ssh-keygen -q -t ed25519 -N '' -C tapir-fixture-host -f "$d/host"
    x_root ssh-keygen -q -t ed25519 -N '' -C tapir-fixture-client -f "$d/client"
    cp "$d/client.pub" "$d/authorized_keys"
    chmod 600 "$d/authorized_keys"
    printf '%s\n' "ListenAddress 203.0.113.10" "Port 22" "HostKey $d/host" \
        "AuthorizedKeysFile $d/authorized_keys" "PermitRootLogin prohibit-password" \
        "PasswordAuthentication no" "KbdInteractiveAuthentication no" "StrictModes no" \
        "UsePAM no" "PidFile $d/sshd.pid" >"$d/sshd_config"
    mkdir -p /run/sshd # the privilege separation directory sshd insists on
    bgx srv "$WORK/sshd.log" /usr/sbin/sshd -D -e -f "$d/sshd_config"
    local srv=$LAST_PID
    wait_port srv 22
    cap_start srv eth0 "$WORK/ssh.pcap"
    x tgt ssh -i "$d/client" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o BatchMode=yes -o LogLevel=ERROR root@203.0.113.10 'echo tapir-ssh-fixture; uname -s' \
        >"$WORK/ssh-out.txt"
    grep -qx tapir-ssh-fixture "$WORK/ssh-out.txt" || die "ssh: the command's output is missing"
    cap_stop "$WORK/ssh.pcap"
    stop_pid "$srv"
    rec kind=ssh tool="$(ssh -V 2>&1 | sed 's/,.*//')" server=openssh_sshd \
        command="echo tapir-ssh-fixture; uname -s"
    count ssh_banners 'ssh.protocol'
    keep "$WORK/ssh.pcap" ssh.pcap
    expect ssh "Target 198.51.100.7 logs in to 203.0.113.10:22 with OpenSSH (ed25519 key) and \
runs one command. Encrypted after the version banners and the key exchange. Captured on the \
server's interface."
    ns_cleanup
}

# ---------------------------------------------------------------------------------------------
# app/warrants.toml: the LIIDs of pcaps/warrants.toml, windows around these captures' days
# A png of W x H pixels, one colour, by python's zlib: a media file found by content.
png() {
    python3 - "$1" <<'PY'
import struct, sys, zlib
w, h = 64, 48
raw = b"".join(b"\0" + bytes([200, 30, 30]) * w for _ in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
}

# The second use case in small: joe builds a VM image whose outbox holds a message and whose
# crontab flushes it an hour after boot, uploads it over FTP, and later the message goes out
# over SMTP. What is inside the image is read back with debugfs (never tapir) for the expect file.
fx_vmi() {
    begin vmi
    lan_up
    local p=$WORK/files r=$WORK/vmi-root
    mkdir -p "$r/etc" "$r/home/joe/Mail/outbox" "$r/home/joe/.ssh" "$r/home/joe/Videos" \
        "$r/var/spool/cron/crontabs" "$r/root"
    printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' >"$r/etc/os-release"
    echo joe-vm >"$r/etc/hostname"
    printf 'root:x:0:0:root:/root:/bin/bash\njoe:x:1000:1000:Joe:/home/joe:/bin/bash\n' >"$r/etc/passwd"
    # a made-up hash: only whether one is set is ever reported
    printf 'root:*:19000:0:99999:7:::\njoe:$6$salt$notarealhash:19000:0:99999:7:::\n' >"$r/etc/shadow"
    printf 'root:x:0:\nsudo:x:27:joe\njoe:x:1000:\n' >"$r/etc/group"
    printf '@reboot sleep 3600 && mailclient --flush-outbox\n' >"$r/var/spool/cron/crontabs/joe"
    x_root python3 "$TOOLS/app_clients.py" eml-simple "$r/home/joe/Mail/outbox/1.eml" outbox.1@joe-vm.example.org "sent an hour after boot"
    ssh-keygen -q -t ed25519 -N '' -C joe@laptop -f "$WORK/joe-key"
    cp "$WORK/joe-key.pub" "$r/home/joe/.ssh/authorized_keys"
    png "$r/home/joe/Videos/frame.png"
    log "a Debian-like root in \$WORK/vmi-root: os-release, hostname, passwd/shadow/group, joe's crontab, outbox/1.eml, authorized_keys, Videos/frame.png"
    x_root mkfs.ext4 -q -F -L joe-root -d "$r" "$WORK/joe-vm.raw" 16M
    x_root qemu-img convert -c -f raw -O qcow2 "$WORK/joe-vm.raw" "$p/joe-vm.qcow2"
    # an overlay on it, naming it as its backing file (uploaded after it)
    (cd "$p" && x_root qemu-img create -q -f qcow2 -b joe-vm.qcow2 -F qcow2 joe-vm-overlay.qcow2)
    qemu-img info "$p/joe-vm-overlay.qcow2" | grep -q '^backing file: joe-vm.qcow2\b' || die "overlay backing"
    cp "$r/home/joe/Mail/outbox/1.eml" "$p/outbox-1.eml"
    swaks_data "$p/outbox-1.eml"
    # what the image holds, read back by debugfs from the raw disk the qcow2 was made of
    local dbg
    dbg() { debugfs -R "cat $1" "$WORK/joe-vm.raw" 2>/dev/null; }
    [[ $(dbg /home/joe/Mail/outbox/1.eml | sha256sum) == $(sha256sum <"$p/outbox-1.eml") ]] || die "debugfs: outbox differs"
    qemu-img compare -q "$WORK/joe-vm.raw" "$p/joe-vm.qcow2" || die "qemu-img compare"
    (cd "$p" && qemu-img compare -q "$WORK/joe-vm.raw" joe-vm-overlay.qcow2) || die "qemu-img compare overlay"

    local root=$WORK/ftp-root
    mkdir -p "$root" "$WORK/smtp-store"
    chmod 755 "$root"
    selfsigned ftp "/CN=ftp.example" "DNS:ftp.example" 0x5e03
    selfsigned mx "/CN=mx.example.net" "DNS:mx.example.net" 0x5e04
    bgx srv "$WORK/ftp-srv.log" python3 "$TOOLS/ftp_app_server.py" --bind 203.0.113.10 \
        --dir "$root" --cert "$WORK/tls/ftp.crt" --key "$WORK/tls/ftp.key"
    local ftp=$LAST_PID
    bgx srv "$WORK/aiosmtpd.log" python3 "$TOOLS/smtp_app_server.py" --bind 203.0.113.10 \
        --port 25 --dir "$WORK/smtp-store" --cert "$WORK/tls/mx.crt" --key "$WORK/tls/mx.key" \
        --password secret
    local smtp=$LAST_PID
    wait_port srv 21
    wait_port srv 25
    cap_start srv eth0 "$WORK/vmi.pcap"
    x tgt lftp -c "set ftp:ssl-allow false; set net:max-retries 2; set net:timeout 10; open -u joe,secret ftp://203.0.113.10; put $p/joe-vm.qcow2"
    rec kind=ftp direction=upload command=STOR name=joe-vm.qcow2 path="$p/joe-vm.qcow2" \
        server_path="$root/joe-vm.qcow2" tool=lftp note="lftp put of a compressed qcow2 (mkfs.ext4 -d, qemu-img convert -c)"
    x tgt lftp -c "set ftp:ssl-allow false; set net:max-retries 2; set net:timeout 10; open -u joe,secret ftp://203.0.113.10; put $p/joe-vm-overlay.qcow2"
    rec kind=ftp direction=upload command=STOR name=joe-vm-overlay.qcow2 path="$p/joe-vm-overlay.qcow2" \
        server_path="$root/joe-vm-overlay.qcow2" tool=lftp note="lftp put of a qcow2 overlay whose backing file is joe-vm.qcow2"
    sleep 2
    x tgt swaks --server 203.0.113.10:25 --ehlo joe-vm.example.org -f joe@example.org --timeout 20 \
        -t bob@example.net --data "@$p/outbox-1.eml.swaks" >"$WORK/swaks-vmi.log"
    rec kind=smtp path="$p/outbox-1.eml" name=outbox-1.eml command=DATA mail_from=joe@example.org \
        rcpt_to='["bob@example.net"]' tool=swaks server=aiosmtpd \
        note="the message in the image's /home/joe/Mail/outbox/1.eml, sent after the upload"
    cap_stop "$WORK/vmi.pcap"
    stop_pid "$ftp"
    stop_pid "$smtp"
    same_file "$p/joe-vm.qcow2" "$root/joe-vm.qcow2"
    same_file "$p/joe-vm-overlay.qcow2" "$root/joe-vm-overlay.qcow2"
    same_file "$p/outbox-1.eml" "$WORK/smtp-store/001.eml"
    count ftp_commands 'ftp.request.command'
    count smtp_commands 'smtp.req'
    keep "$WORK/vmi.pcap" vmi.pcap
    local fp
    fp=$(ssh-keygen -l -f "$WORK/joe-key.pub" | awk '{print $2}')
    expect vmi "Target 198.51.100.7 uploads joe-vm.qcow2 (a 16 MiB ext4 disk, compressed qcow2) \
with lftp to pyftpdlib at 203.0.113.10:21, then sends the message of the image's outbox with \
swaks to aiosmtpd at 203.0.113.10:25. Captured on the server's interface." \
        "$(python3 - "$p" "$fp" "$r" <<'PY'
import hashlib, json, sys
p, fp, r = sys.argv[1:4]
sha = lambda f: hashlib.sha256(open(f, "rb").read()).hexdigest()
print(json.dumps({"vmi": {
    "image": "joe-vm.qcow2", "image_sha256": sha(p + "/joe-vm.qcow2"),
    "overlay": {"name": "joe-vm-overlay.qcow2", "sha256": sha(p + "/joe-vm-overlay.qcow2"), "backing_file": "joe-vm.qcow2"},
    "os_pretty_name": "Debian GNU/Linux 12 (bookworm)", "hostname": "joe-vm",
    "users": ["root", "joe"], "crontab_line": "@reboot sleep 3600 && mailclient --flush-outbox",
    "crontab_sha256": sha(r + "/var/spool/cron/crontabs/joe"),
    "outbox": {"path": "/home/joe/Mail/outbox/1.eml", "sha256": sha(p + "/outbox-1.eml")},
    "authorized_keys_sha256": sha(r + "/home/joe/.ssh/authorized_keys"), "ssh_fingerprint": fp,
    "media": {"path": "/home/joe/Videos/frame.png", "sha256": sha(r + "/home/joe/Videos/frame.png")},
    "read_back_with": "debugfs -R 'cat PATH' on the raw disk; qemu-img compare raw vs qcow2 and vs the overlay; qemu-img info for the backing file",
}}))
PY
)"
    ns_cleanup
}

write_warrants() {
    python3 - "$OUT" <<'PY'
import datetime as dt, glob, json, os, sys
out = sys.argv[1]
ts = []
for p in glob.glob(os.path.join(out, "*.expect.json")):
    c = json.load(open(p))["capinfos"]
    for k in ("first_packet_time", "last_packet_time"):
        ts.append(dt.datetime.strptime(c[k][:19], "%Y-%m-%dT%H:%M:%S"))
day = lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0)
start, end = day(min(ts)), day(max(ts)) + dt.timedelta(days=1)
z = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
open(os.path.join(out, "warrants.toml"), "w").write(f'''# Warrants for the fixtures in this folder (written by make-app-fixtures.sh): the LIIDs of
# pcaps/warrants.toml, windows = whole UTC days around these captures. Only LIID-JOE-0001
# selects anything here; LIID-OLD-0003 ended the day before the first capture.

[[warrant]]
liid = "LIID-JOE-0001"
start = "{z(start)}"
end   = "{z(end)}"
scope = "iri+cc"
targets = ["subscriber:joe", "ipv4:198.51.100.7", "ipv6:2001:db8::7"]

[[warrant]]
liid = "LIID-VM-0002"
start = "{z(start)}"
end   = "{z(end)}"
scope = "iri+cc"
targets = ["vni:5001/10.0.0.5"]

[[warrant]]
liid = "LIID-OLD-0003"
start = "{z(start - dt.timedelta(days=30))}"
end   = "{z(start - dt.timedelta(days=1))}"
scope = "iri+cc"
targets = ["ipv4:198.51.100.8"]
''')
PY
    echo "== app/warrants.toml"
}

main() {
    local want=("$@")
    [[ ${#want[@]} -gt 0 ]] || want=("${ALL_FIXTURES[@]}")
    for f in "${want[@]}"; do
        case $f in
            smtp) fx_smtp ;;
            http) fx_http ;;
            ftp) fx_ftp ;;
            tls) fx_tls ;;
            ssh) fx_ssh ;;
            vmi) fx_vmi ;;
            *) die "unknown fixture $f (one of: ${ALL_FIXTURES[*]})" ;;
        esac
    done
    write_warrants
    echo "== re-checking every app expect file by other routes"
    python3 "$TOOLS/check_app_expect.py" | grep -v '^  ok '
    du -b "$OUT"/*.pcap | sort -n
}

main "$@"
