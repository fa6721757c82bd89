#!/usr/bin/env bash
# Regenerates tapir's capture fixtures with real clients and servers in network namespaces.
#
#   sudo bash pcaps/make-fixtures.sh            # all fixtures
#   sudo bash pcaps/make-fixtures.sh http-put   # only some (see FIXTURES below)
#
# Every namespace it makes is named tfx-*, every link lives inside those namespaces (nothing is
# added to the root namespace), and everything is removed on exit, whatever the exit. Addresses
# are documentation ranges only (RFC 5737 / RFC 3849) plus 10.0.0.0/24 *inside* the overlay.
# Each fixture gets <name>.expect.json computed by tools/make_expect.py from tshark, capinfos,
# sha256sum and tools/pcapread.py, never from tapir. Random payloads differ on every run, so a
# regeneration rewrites the expect files too; commit them together.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$HERE/tools
ALL_FIXTURES=(http-put ftp-upload ncat-ipv6 lossy vxlan sll derived)
WORK=$(mktemp -d /tmp/tapir-fixtures.XXXXXX)
CAP_PID=
BG_PIDS=()

die() { echo "make-fixtures: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, tcpdump)"
for t in ip tcpdump tshark capinfos editcap tcprewrite curl lftp ncat nft ping ethtool ss \
         sha256sum md5sum sha512sum gzip python3; do
    command -v "$t" >/dev/null || die "missing tool: $t (run .ci/install-deps.sh --fixture-tools)"
done

# --- cleanup: our own processes by pid, then our own namespaces (which takes their links) ---
cleanup() {
    set +e
    [[ -n $CAP_PID ]] && kill -INT "$CAP_PID" 2>/dev/null
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tfx-'); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup_namespaces() {
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tfx-'); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
        ip netns del "$ns"
    done
}
cleanup_namespaces   # leftovers of an interrupted earlier run: idempotent

# --- pyftpdlib: needed only here, never by the tests ---
PY=python3
if ! "$PY" -c 'import pyftpdlib' 2>/dev/null; then
    "$PY" -m pip install -q pyftpdlib 2>/dev/null ||
        "$PY" -m pip install -q --break-system-packages pyftpdlib 2>/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pyftpdlib </dev/null ||
        die "cannot install pyftpdlib"
    "$PY" -c 'import pyftpdlib' || die "pyftpdlib still not importable by $PY"
fi

# --- command log: what each fixture's expect file says about how it was made ---
CUR=
log() {
    local s="$*"
    s=${s//$WORK/\$WORK}
    s=${s//$HERE/pcaps}
    echo "$s" >>"$WORK/$CUR.cmds"
    echo "  + $s"
}
# q ARGS...: the arguments as one shell-quoted line, for the log
q() {
    local out=() a
    for a in "$@"; do
        if [[ -z $a || $a =~ [^A-Za-z0-9_./:=@,+%-] ]]; then
            out+=("'${a//\'/\'\\\'\'}'")
        else
            out+=("$a")
        fi
    done
    printf '%s' "${out[*]}"
}
# x NS CMD...: run CMD in namespace NS and record it
x() { local ns=$1; shift; log "[$ns] $(q "$@")"; ip netns exec "$ns" "$@"; }
# xin NS FILE CMD...: same, stdin from FILE
xin() {
    local ns=$1 in=$2; shift 2
    log "[$ns] $(q "$@") < $in"
    ip netns exec "$ns" "$@" <"$in"
}
# bgx NS LOGFILE CMD...: start a server in NS; its pid goes to BG_PIDS and $LAST_PID
bgx() {
    local ns=$1 out=$2; shift 2
    log "[$ns] $(q "$@") &"
    ip netns exec "$ns" "$@" >"$out" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() { # NS PORT
    for _ in $(seq 100); do
        [[ -n $(ip netns exec "$1" ss -Hltn "sport = :$2") ]] && return 0
        sleep 0.1
    done
    die "nothing listens on port $2 in $1"
}
mkfile() { # NAME BYTES -> $WORK/files/NAME
    mkdir -p "$WORK/files"
    head -c "$2" /dev/urandom >"$WORK/files/$1"
    log "head -c $2 /dev/urandom > \$WORK/files/$1"
}
sent() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$WORK/files/$2" "${3:-}" >>"$WORK/$CUR.files"; }
count() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/$CUR.counts"; }
same_file() { cmp -s "$1" "$2" || die "$CUR: server stored $2 but it differs from $1"; }

begin() {
    CUR=$1
    rm -f "$WORK/$CUR".{cmds,files,counts}
    touch "$WORK/$CUR".{cmds,files,counts}
    echo "== $CUR"
}

# --- capture: tcpdump -U in a namespace, stopped with SIGINT so the file is complete ---
cap_start() { # NS IFACE OUTFILE [tcpdump args...]
    local ns=$1 ifc=$2 out=$3; shift 3
    log "[$ns] tcpdump -i $ifc -s 0 -U -n -Z root -w $(basename "$out") $* &"
    ip netns exec "$ns" tcpdump -i "$ifc" -s 0 -U -n -Z root -w "$out" "$@" 2>"$out.log" &
    CAP_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$out.log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "tcpdump did not start: $(cat "$out.log")"
}
cap_stop() {
    sleep 1 # let -U flush the last packets
    log "kill -INT <tcpdump>"
    kill -INT "$CAP_PID"
    wait "$CAP_PID" || true
    CAP_PID=
}

# --- namespaces and links ---
ns_add() { # NS [v6]
    ip netns add "$1"
    ip -n "$1" link set lo up
    if [[ ${2:-} == v6 ]]; then
        # no DAD wait, no router solicitations: fewer stray packets in the captures
        ip netns exec "$1" sysctl -qw net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.accept_ra=0
    else
        ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
            net.ipv6.conf.default.disable_ipv6=1
    fi
}
# Offloads off so that frames on the wire are what a real NIC would send: checksums computed
# in software (veth would otherwise leave them partial) and no 64 KB GSO/GRO super-frames.
no_offload() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true; }

# LAN: target 198.51.100.7 / 2001:db8::7, other (non-target) 198.51.100.8 / 2001:db8::8 and
# server 203.0.113.10 / 2001:db8::10 on one bridge (in tfx-sw); on-link routes between the
# two IPv4 documentation prefixes so no router is needed.
lan_port() { # NS SWPORT MAC
    ip -n tfx-sw link add "$2" type veth peer name eth0 netns "$1"
    ip -n tfx-sw link set "$2" master br0 up
    ip -n "$1" link set eth0 address "$3" up
    no_offload tfx-sw "$2"
    no_offload "$1" eth0
}
lan_up() {
    ns_add tfx-sw
    ip -n tfx-sw link add br0 type bridge stp_state 0 mcast_snooping 0
    ip -n tfx-sw link set br0 up
    ns_add tfx-srv v6; ns_add tfx-tgt v6; ns_add tfx-oth v6
    lan_port tfx-srv p-srv 02:00:cb:00:71:0a
    lan_port tfx-tgt p-tgt 02:00:c6:33:64:07
    lan_port tfx-oth p-oth 02:00:c6:33:64:08
    ip -n tfx-srv addr add 203.0.113.10/24 dev eth0
    ip -n tfx-srv addr add 2001:db8::10/64 dev eth0 nodad
    ip -n tfx-srv route add 198.51.100.0/24 dev eth0
    ip -n tfx-tgt addr add 198.51.100.7/24 dev eth0
    ip -n tfx-tgt addr add 2001:db8::7/64 dev eth0 nodad
    ip -n tfx-tgt route add 203.0.113.0/24 dev eth0
    ip -n tfx-oth addr add 198.51.100.8/24 dev eth0
    ip -n tfx-oth addr add 2001:db8::8/64 dev eth0 nodad
    ip -n tfx-oth route add 203.0.113.0/24 dev eth0
    sleep 3 # MLD reports sent at link-up are over before any capture starts
}
lan_down() { cleanup_namespaces; }

expect() { # NAME FIXTURE DESCRIPTION [DERIVED_FROM]
    python3 - "$WORK/$1.meta.json" "$3" "${4:-}" "$WORK/$1.cmds" "$WORK/$1.files" \
        "$WORK/$1.counts" <<'PY'
import json, os, sys
out, desc, der, cmds, files, counts = sys.argv[1:7]
rd = lambda p: [l.rstrip("\n") for l in open(p)] if os.path.exists(p) else []
m = {"description": desc, "commands": rd(cmds)}
if der:
    m["derived_from"] = der
m["files"] = [dict(zip(("kind", "name", "path", "note"), l.split("\t"))) for l in rd(files)]
for f in m["files"]:
    if not f.get("note"):
        f.pop("note", None)
m["counts"] = dict(l.split("\t", 1) for l in rd(counts))
json.dump(m, open(out, "w"))
PY
    python3 "$TOOLS/make_expect.py" "$WORK/$1.meta.json" "$HERE/$2" "$HERE/$1.expect.json"
    echo "  -> $2 ($(stat -c %s "$HERE/$2") bytes), $1.expect.json"
}
keep() { # WORKFILE FIXTURE: move a finished capture into pcaps/
    cp "$1" "$HERE/$2"
    chmod 644 "$HERE/$2"
}

# ---------------------------------------------------------------------------------------------
fx_http_put() {
    begin http-put
    lan_up
    mkfile joe-disk.img 200000
    mkfile joe-report.bin 210000
    mkfile joe-notes.bin 60000
    mkdir -p "$WORK/http-srv"
    bgx tfx-srv "$WORK/http-srv.log" python3 "$TOOLS/http_upload_server.py" --bind 0.0.0.0 \
        --port 80 --dir "$WORK/http-srv"
    local srv=$LAST_PID
    wait_port tfx-srv 80
    cap_start tfx-srv eth0 "$WORK/http-put.pcap"
    x tfx-tgt curl -sS --fail -o /dev/null -T "$WORK/files/joe-disk.img" \
        http://203.0.113.10/upload/joe-disk.img
    x tfx-tgt curl -sS --fail -o /dev/null -F "file=@$WORK/files/joe-report.bin" \
        http://203.0.113.10/upload
    xin tfx-tgt "$WORK/files/joe-notes.bin" curl -sS --fail -o /dev/null -T - \
        http://203.0.113.10/upload/joe-notes.bin
    x tfx-oth curl -sS --fail -o /dev/null http://203.0.113.10/index.html
    cap_stop
    stop_pid "$srv"
    for f in joe-disk.img joe-report.bin joe-notes.bin; do
        same_file "$WORK/files/$f" "$WORK/http-srv/$f"
    done
    sent http joe-disk.img "curl -T: PUT with Content-Length and Expect: 100-continue"
    sent http joe-report.bin "curl -F: POST multipart/form-data, part filename joe-report.bin"
    sent http joe-notes.bin "curl -T - from stdin: PUT with Transfer-Encoding: chunked"
    count http_requests 'http.request'
    count non_target_host 'ip.addr==198.51.100.8'
    keep "$WORK/http-put.pcap" http-put.pcap
    expect http-put http-put.pcap "Target 198.51.100.7 uploads three files with curl to a \
python3 HTTP/1.1 server at 203.0.113.10:80 (tools/http_upload_server.py, replies 201): PUT, \
multipart POST, chunked PUT; then the non-target 198.51.100.8 does one GET. Captured on the \
server's interface."
    lan_down
}

fx_ftp_upload() {
    begin ftp-upload
    lan_up
    mkfile up-passive.bin 300000
    mkfile up-active.bin 300000
    mkfile up-epsv.bin 100000
    mkdir -p "$WORK/ftp-root"
    bgx tfx-srv "$WORK/ftp-srv.log" "$PY" -m pyftpdlib -i 203.0.113.10 -p 21 -w \
        -d "$WORK/ftp-root" -u joe -P secret -r 60000-60009
    local srv=$LAST_PID
    wait_port tfx-srv 21
    cap_start tfx-srv eth0 "$WORK/ftp-upload.pcap"
    local base="set ftp:ssl-allow no; set net:max-retries 2; set net:timeout 10"
    x tfx-tgt lftp -c "$base; set ftp:passive-mode true; open -u joe,secret ftp://203.0.113.10; put $WORK/files/up-passive.bin"
    x tfx-tgt lftp -c "$base; set ftp:passive-mode false; open -u joe,secret ftp://203.0.113.10; put $WORK/files/up-active.bin"
    x tfx-tgt curl -sS --fail -T "$WORK/files/up-epsv.bin" ftp://joe:secret@203.0.113.10/
    cap_stop
    stop_pid "$srv"
    for f in up-passive.bin up-active.bin up-epsv.bin; do
        same_file "$WORK/files/$f" "$WORK/ftp-root/$f"
    done
    sent ftp up-passive.bin "lftp passive mode (PASV), data connection opened by the client"
    sent ftp up-active.bin "lftp active mode (PORT), data connection opened by the server"
    sent ftp up-epsv.bin "curl -T ftp:// (EPSV), data connection opened by the client"
    count ftp_commands 'ftp.request'
    count ftp_data_packets 'ftp-data'
    keep "$WORK/ftp-upload.pcap" ftp-upload.pcap
    expect ftp-upload ftp-upload.pcap "Target 198.51.100.7 uploads three files to pyftpdlib at \
203.0.113.10:21 (user joe): lftp passive (PASV), lftp active (PORT), curl (EPSV). Captured \
on the server's interface."
    lan_down
}

fx_ncat_ipv6() {
    begin ncat-ipv6
    lan_up
    mkfile v6-send.bin 150000
    bgx tfx-srv "$WORK/ncat-v6.log" sh -c "exec ncat -6 -l --recv-only 2001:db8::10 5000 > $WORK/ncat-v6.out"
    local srv=$LAST_PID
    wait_port tfx-srv 5000
    cap_start tfx-srv eth0 "$WORK/ncat-ipv6.pcap"
    xin tfx-tgt "$WORK/files/v6-send.bin" ncat -6 --send-only 2001:db8::10 5000
    wait "$srv" || true
    x tfx-tgt ping -n -q -c 3 -i 0.2 203.0.113.10
    x tfx-tgt ping -n -q -c 2 -i 0.2 -s 3000 203.0.113.10
    x tfx-tgt ping -6 -n -q -c 2 -i 0.2 -s 3000 2001:db8::10
    cap_stop
    same_file "$WORK/files/v6-send.bin" "$WORK/ncat-v6.out"
    sent raw v6-send.bin "ncat -6 --send-only: the client->server byte stream is exactly the file"
    count ipv4_icmp_echo_request 'icmp.type==8'
    count ipv4_fragments 'ip.flags.mf==1 || ip.frag_offset>0'
    count ipv4_reassembled_echo 'icmp.type==8 && ip.flags.mf==0 && ip.frag_offset>0'
    count ipv6_fragments 'ipv6.fraghdr'
    count ipv6_echo_request 'icmpv6.type==128'
    keep "$WORK/ncat-ipv6.pcap" ncat-ipv6.pcap
    expect ncat-ipv6 ncat-ipv6.pcap "Target 2001:db8::7 sends a file with ncat over IPv6 to \
[2001:db8::10]:5000; then the target (198.51.100.7) pings 203.0.113.10 three times, twice \
with 3000-byte payloads (IPv4 fragments), and 2001:db8::10 twice with 3000 bytes (IPv6 \
fragment headers). Captured on the server's interface."
    lan_down
}

fx_lossy() {
    begin lossy
    lan_up
    mkfile lossy.bin 2000000
    # Drop ~3% of the target's segments to the server on the way, in the switch's namespace
    # (nft bridge family, forward hook), and capture on the server's interface, i.e. after the
    # drop point: the capture lacks the dropped copies but has every retransmission, so the
    # whole stream is recoverable from it. (A drop in the sender's own output hook is useless:
    # TCP sees the local error and simply sends the segment again later, in order, so the wire
    # shows no loss at all.)
    x tfx-sw nft add table bridge lossy
    x tfx-sw nft add chain bridge lossy wire "{ type filter hook forward priority 0; }"
    x tfx-sw nft add rule bridge lossy wire ip daddr 203.0.113.10 tcp dport 5001 \
        numgen random mod 100 "<" 3 counter drop
    bgx tfx-srv "$WORK/ncat-lossy.log" sh -c "exec ncat -l --recv-only 203.0.113.10 5001 > $WORK/lossy.out"
    local srv=$LAST_PID
    wait_port tfx-srv 5001
    cap_start tfx-srv eth0 "$WORK/lossy.pcap"
    xin tfx-tgt "$WORK/files/lossy.bin" ncat --send-only 203.0.113.10 5001
    wait "$srv" || true
    cap_stop
    local dropped
    dropped=$(ip netns exec tfx-sw nft list chain bridge lossy wire | grep -o 'packets [0-9]*' | awk '{print $2}')
    log "# nft counter: $dropped segments dropped before the wire"
    same_file "$WORK/files/lossy.bin" "$WORK/lossy.out"
    sent raw lossy.bin "ncat --send-only through a 3% random drop; $dropped segments dropped"
    count retransmissions 'tcp.analysis.retransmission || tcp.analysis.fast_retransmission'
    count lost_segment_before 'tcp.analysis.lost_segment'
    count out_of_order 'tcp.analysis.out_of_order'
    count sack 'tcp.options.sack_le'
    keep "$WORK/lossy.pcap" lossy.pcap
    local n
    n=$(tshark -n -r "$HERE/lossy.pcap" -2 -Y 'tcp.analysis.retransmission || tcp.analysis.fast_retransmission' 2>/dev/null | wc -l)
    [[ $n -gt 0 ]] || die "lossy: no retransmission in the capture"
    expect lossy lossy.pcap "Target 198.51.100.7 sends 2,000,000 random bytes with ncat to \
203.0.113.10:5001 while nftables on the bridge between them (forward hook, namespace \
tfx-sw) drops ~3% of those segments (numgen random mod 100 < 3). Captured on the server's interface, i.e. after the drop: \
retransmissions are present and the stream is complete."
    lan_down
}

fx_sll() {
    begin sll
    lan_up
    mkfile sll-put.bin 20000
    mkdir -p "$WORK/http-sll"
    bgx tfx-srv "$WORK/http-sll.log" python3 "$TOOLS/http_upload_server.py" --bind 0.0.0.0 \
        --port 80 --dir "$WORK/http-sll"
    local srv=$LAST_PID
    wait_port tfx-srv 80
    # two captures of the same traffic: SLL (v1) forced, SLL2 (tcpdump's default for "any")
    cap_start tfx-tgt any "$WORK/sll.pcap" -y LINUX_SLL
    local cap1=$CAP_PID
    cap_start tfx-tgt any "$WORK/sll2.pcap"
    local cap2=$CAP_PID
    x tfx-tgt curl -sS --fail -o /dev/null -T "$WORK/files/sll-put.bin" \
        http://203.0.113.10/upload/sll-put.bin
    x tfx-tgt ping -n -q -c 2 -i 0.2 203.0.113.10
    sleep 1
    kill -INT "$cap1" "$cap2"
    wait "$cap1" "$cap2" || true
    CAP_PID=
    stop_pid "$srv"
    same_file "$WORK/files/sll-put.bin" "$WORK/http-sll/sll-put.bin"
    sent http sll-put.bin "curl -T: PUT with Content-Length"
    count icmp_echo_request 'icmp.type==8'
    keep "$WORK/sll.pcap" sll.pcap
    keep "$WORK/sll2.pcap" sll2.pcap
    cp "$WORK/sll.cmds" "$WORK/sll2.cmds"; cp "$WORK/sll.files" "$WORK/sll2.files"
    cp "$WORK/sll.counts" "$WORK/sll2.counts"
    expect sll sll.pcap "tcpdump -i any -y LINUX_SLL (Linux cooked v1, linktype 113) in the \
target's namespace while the target PUTs a 20,000-byte file to 203.0.113.10:80 and pings it \
twice."
    expect sll2 sll2.pcap "Same traffic as sll.pcap, captured at the same time by a second \
tcpdump -i any with its default link type LINUX_SLL2 (linktype 276)."
    lan_down
}

# VXLAN: hypervisors tfx-hv1 (192.0.2.1) and tfx-hv2 (192.0.2.2) joined by an underlay veth;
# each VM is a namespace holding one VXLAN device created in its hypervisor's namespace (so the
# UDP socket stays on the underlay) and moved into the VM.
vx_vm() { # HV VM VNI LOCAL REMOTE UNDERDEV MAC IP
    ns_add "$2"
    ip -n "$1" link add "vx$3" type vxlan id "$3" dstport 4789 local "$4" remote "$5" dev "$6"
    ip -n "$1" link set "vx$3" netns "$2"
    ip -n "$2" link set "vx$3" name eth0
    ip -n "$2" link set eth0 address "$7"
    ip -n "$2" addr add "$8/24" dev eth0
    ip -n "$2" link set eth0 up
    no_offload "$2" eth0
}
fx_vxlan() {
    begin vxlan
    ns_add tfx-hv1; ns_add tfx-hv2
    ip -n tfx-hv1 link add u1 type veth peer name u2 netns tfx-hv2
    ip -n tfx-hv1 link set u1 address 02:00:c0:00:02:01 up
    ip -n tfx-hv2 link set u2 address 02:00:c0:00:02:02 up
    no_offload tfx-hv1 u1; no_offload tfx-hv2 u2
    ip -n tfx-hv1 addr add 192.0.2.1/24 dev u1
    ip -n tfx-hv2 addr add 192.0.2.2/24 dev u2
    # VNI 5001: vm-42 (the target, 10.0.0.5) and vm-b (10.0.0.6)
    vx_vm tfx-hv1 tfx-vm42 5001 192.0.2.1 192.0.2.2 u1 fa:16:3e:00:00:01 10.0.0.5
    vx_vm tfx-hv2 tfx-vmb 5001 192.0.2.2 192.0.2.1 u2 fa:16:3e:00:00:02 10.0.0.6
    # VNI 5002: another tenant reusing the same addresses; NOT a target
    vx_vm tfx-hv1 tfx-vm77 5002 192.0.2.1 192.0.2.2 u1 fa:16:3e:00:00:03 10.0.0.5
    vx_vm tfx-hv2 tfx-vmd 5002 192.0.2.2 192.0.2.1 u2 fa:16:3e:00:00:04 10.0.0.6
    log "# topology: tfx-hv1 u1 192.0.2.1 <-> tfx-hv2 u2 192.0.2.2; vxlan dstport 4789; VNI 5001: vm42 fa:16:3e:00:00:01 10.0.0.5, vmb fa:16:3e:00:00:02 10.0.0.6; VNI 5002: vm77 fa:16:3e:00:00:03 10.0.0.5, vmd fa:16:3e:00:00:04 10.0.0.6"
    sleep 1
    mkfile vm42-upload.bin 150000
    mkfile vm42-raw.bin 100000
    mkfile vm77-upload.bin 120000
    mkfile vm77-raw.bin 100000
    local pids=() vm
    for vm in tfx-vmb tfx-vmd; do
        mkdir -p "$WORK/http-$vm"
        bgx "$vm" "$WORK/http-$vm.log" python3 "$TOOLS/http_upload_server.py" --bind 10.0.0.6 \
            --port 80 --dir "$WORK/http-$vm"
        pids+=("$LAST_PID")
        bgx "$vm" "$WORK/ncat-$vm.log" sh -c "exec ncat -l --recv-only 10.0.0.6 5000 > $WORK/ncat-$vm.out"
        pids+=("$LAST_PID")
        wait_port "$vm" 80
        wait_port "$vm" 5000
    done
    cap_start tfx-hv2 u2 "$WORK/vxlan.pcap"
    x tfx-vm42 curl -sS --fail -o /dev/null -T "$WORK/files/vm42-upload.bin" \
        http://10.0.0.6/upload/vm42-upload.bin
    xin tfx-vm42 "$WORK/files/vm42-raw.bin" ncat --send-only 10.0.0.6 5000
    x tfx-vm77 curl -sS --fail -o /dev/null -T "$WORK/files/vm77-upload.bin" \
        http://10.0.0.6/upload/vm77-upload.bin
    xin tfx-vm77 "$WORK/files/vm77-raw.bin" ncat --send-only 10.0.0.6 5000
    cap_stop
    for p in "${pids[@]}"; do stop_pid "$p"; done
    same_file "$WORK/files/vm42-upload.bin" "$WORK/http-tfx-vmb/vm42-upload.bin"
    same_file "$WORK/files/vm77-upload.bin" "$WORK/http-tfx-vmd/vm77-upload.bin"
    same_file "$WORK/files/vm42-raw.bin" "$WORK/ncat-tfx-vmb.out"
    same_file "$WORK/files/vm77-raw.bin" "$WORK/ncat-tfx-vmd.out"
    sent http vm42-upload.bin "VNI 5001, from the target VM vm-42 (10.0.0.5): curl PUT"
    sent raw vm42-raw.bin "VNI 5001, from the target VM vm-42 (10.0.0.5): ncat --send-only"
    sent http vm77-upload.bin "VNI 5002, NOT a target (10.0.0.5 of another tenant): curl PUT"
    sent raw vm77-raw.bin "VNI 5002, NOT a target (10.0.0.5 of another tenant): ncat"
    count vni_5001 'vxlan.vni==5001'
    count vni_5002 'vxlan.vni==5002'
    count vni_5002_same_ip_not_target 'vxlan.vni==5002 && ip.addr==10.0.0.5'
    count target_mac_frames 'eth.addr==fa:16:3e:00:00:01'
    count target_mac_non_ip 'eth.addr==fa:16:3e:00:00:01 && !ip.addr==10.0.0.5'
    keep "$WORK/vxlan.pcap" vxlan.pcap
    expect vxlan vxlan.pcap "Two VXLAN tenants over one underlay (192.0.2.1 <-> 192.0.2.2, UDP \
4789). VNI 5001: target VM vm-42 (10.0.0.5, fa:16:3e:00:00:01) PUTs a file with curl and \
sends one with ncat to 10.0.0.6. VNI 5002: another tenant's VM with the same 10.0.0.5 does \
the same (not a target). Captured on the underlay veth of tfx-hv2: every frame is \
VXLAN-encapsulated."
    cleanup_namespaces
}

# same_frames_but_tag ORIG TAGGED OFFSET LEN: every tagged frame is the original one with LEN
# bytes inserted at OFFSET, nothing lost (guards against tcprewrite's silent truncation)
same_frames_but_tag() {
    python3 - "$TOOLS" "$@" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import pcapread
orig, tagged, off, n = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
a = [f for _, _, f in pcapread.iter_frames(orig)]
b = [f for _, _, f in pcapread.iter_frames(tagged)]
assert len(a) == len(b), (len(a), len(b))
for i, (x, y) in enumerate(zip(a, b), 1):
    assert len(y) == len(x) + n and y[:off] + y[off + n:] == x, "frame %d differs" % i
PY
}

# Rewritten / re-encoded copies: same packets, other link-layer or file formats.
fx_derived() {
    # the files the clients sent live in this run's $WORK only, so derived copies are made in
    # the same run as their sources
    [[ -f $WORK/ncat-ipv6.files && -f $WORK/http-put.files && -f $WORK/ftp-upload.files ]] ||
        die "'derived' must run in the same invocation as ncat-ipv6, http-put and ftp-upload"
    begin vlan
    # --enet-vlan-cfi/-pri must be given: without them tcprewrite 4.4.3 inserts the tag but
    # keeps the old length, silently cutting 4 bytes off every frame (appneta/tcpreplay#990).
    # The source is IPv4-only on purpose: on IPv6 frames tcprewrite 4.4.3 also rewrites both
    # MAC addresses to 33:33:xx multicast ones (seen on ncat-ipv6.pcap), so no IPv6 here.
    log "tcprewrite --enet-vlan=add --enet-vlan-tag=100 --enet-vlan-cfi=0 --enet-vlan-pri=0 --infile=http-put.pcap --outfile=vlan.pcap"
    tcprewrite --enet-vlan=add --enet-vlan-tag=100 --enet-vlan-cfi=0 --enet-vlan-pri=0 \
        --infile="$HERE/http-put.pcap" --outfile="$HERE/vlan.pcap"
    same_frames_but_tag "$HERE/http-put.pcap" "$HERE/vlan.pcap" 12 4
    cp "$WORK/http-put.files" "$WORK/vlan.files"; cp "$WORK/http-put.counts" "$WORK/vlan.counts"
    count vlan_100 'vlan.id==100'
    expect vlan vlan.pcap "http-put.pcap with an 802.1Q tag (VID 100) inserted after the MAC \
addresses of every frame by tcprewrite (checked: each frame is the original plus 4 bytes at \
offset 12)." http-put.pcap

    begin qinq
    log "tcprewrite --enet-vlan=add --enet-vlan-tag=200 --enet-vlan-cfi=0 --enet-vlan-pri=0 --enet-vlan-proto=802.1ad --infile=vlan.pcap --outfile=qinq.pcap"
    tcprewrite --enet-vlan=add --enet-vlan-tag=200 --enet-vlan-cfi=0 --enet-vlan-pri=0 \
        --enet-vlan-proto=802.1ad --infile="$HERE/vlan.pcap" --outfile="$HERE/qinq.pcap"
    same_frames_but_tag "$HERE/vlan.pcap" "$HERE/qinq.pcap" 12 4
    cp "$WORK/http-put.files" "$WORK/qinq.files"; cp "$WORK/http-put.counts" "$WORK/qinq.counts"
    count outer_8021ad_200 'ieee8021ad.id==200'
    count inner_8021q_100 'vlan.id==100'
    expect qinq qinq.pcap "vlan.pcap with an outer 802.1ad S-tag (TPID 0x88a8, VID 200) added \
by tcprewrite: QinQ, S-tag 200 then C-tag 100 then the original EtherType." http-put.pcap

    begin mixed
    log "editcap -F pcapng ncat-ipv6.pcap mixed.pcapng"
    editcap -F pcapng "$HERE/ncat-ipv6.pcap" "$HERE/mixed.pcapng"
    cp "$WORK/ncat-ipv6.files" "$WORK/mixed.files"; cp "$WORK/ncat-ipv6.counts" "$WORK/mixed.counts"
    expect mixed mixed.pcapng "ncat-ipv6.pcap converted to pcapng (SHB, IDB, EPBs) by editcap: \
same frames, same expected results." ncat-ipv6.pcap

    begin ftp-upload.pcap.gz
    log "gzip -9 -n -c ftp-upload.pcap > ftp-upload.pcap.gz"
    gzip -9 -n -c "$HERE/ftp-upload.pcap" >"$HERE/ftp-upload.pcap.gz"
    cp "$WORK/ftp-upload.files" "$WORK/ftp-upload.pcap.gz.files"
    cp "$WORK/ftp-upload.counts" "$WORK/ftp-upload.pcap.gz.counts"
    expect ftp-upload.pcap.gz ftp-upload.pcap.gz "gzip copy of ftp-upload.pcap (tshark and \
capinfos read it directly)." ftp-upload.pcap
}

# ---------------------------------------------------------------------------------------------
# Warrants and identity-association events, dated from the captures' own first packets.
write_defaults() {
    python3 - "$HERE" <<'PY'
import datetime as dt, json, os, sys
here = sys.argv[1]
def first(name):
    p = os.path.join(here, name + ".expect.json")
    if not os.path.exists(p):
        return None
    s = json.load(open(p))["capinfos"]["first_packet_time"]
    return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
def last(name):
    p = os.path.join(here, name + ".expect.json")
    s = json.load(open(p))["capinfos"]["last_packet_time"]
    return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
names = [n[:-12] for n in os.listdir(here) if n.endswith(".expect.json")]
firsts = [first(n) for n in names]
lasts = [last(n) for n in names]
z = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
day = lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0)
start = day(min(firsts))
end = day(max(lasts)) + dt.timedelta(days=1)
w = f'''# Default warrants for the fixtures in this folder (written by make-fixtures.sh).
# Windows are whole UTC days around the capture times; LIID-OLD-0003 ended the day before the
# first capture, so it must yield nothing even though 198.51.100.8 appears in http-put.pcap.

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
'''
open(os.path.join(here, "warrants.toml"), "w").write(w)

vx = first("vxlan")
joe = json.load(open(os.path.join(here, "http-put.expect.json")))
img = next(f for f in joe["files"] if f["name"] == "joe-disk.img")
ev = [
    {"time": z(min(firsts) - dt.timedelta(seconds=60)), "event": "access.start",
     "subscriber": "joe", "ip": "198.51.100.7"},
    {"time": z(min(firsts) - dt.timedelta(seconds=60)), "event": "access.start",
     "subscriber": "bob", "ip": "198.51.100.8"},
    # img-9 has the digests of joe-disk.img, the file joe PUT in http-put.pcap (earlier in
    # the same run); vm-42 is ann's, started from joe's image: the seed challenge
    {"time": z(vx - dt.timedelta(seconds=20)), "event": "image.create", "image": "img-9",
     "owner": "joe", "name": "joe-disk.img", "sha256": img["sha256"], "md5": img["md5"],
     "sha512": img["sha512"], "from_instance": None},
    {"time": z(vx - dt.timedelta(seconds=19)), "event": "image.create", "image": "img-3",
     "owner": "bob", "name": "bob-base.qcow2", "sha256": "0" * 64, "md5": "0" * 32,
     "sha512": "0" * 128, "from_instance": None},
    {"time": z(vx - dt.timedelta(seconds=10)), "event": "instance.start", "instance": "vm-42",
     "owner": "ann", "image": "img-9",
     "ports": [{"mac": "fa:16:3e:00:00:01", "ips": ["10.0.0.5"], "vni": 5001}]},
    {"time": z(vx - dt.timedelta(seconds=9)), "event": "instance.start", "instance": "vm-b",
     "owner": "ann", "image": "img-3",
     "ports": [{"mac": "fa:16:3e:00:00:02", "ips": ["10.0.0.6"], "vni": 5001}]},
    {"time": z(vx - dt.timedelta(seconds=8)), "event": "instance.start", "instance": "vm-77",
     "owner": "bob", "image": "img-3",
     "ports": [{"mac": "fa:16:3e:00:00:03", "ips": ["10.0.0.5"], "vni": 5002}]},
    {"time": z(vx - dt.timedelta(seconds=7)), "event": "instance.start", "instance": "vm-d",
     "owner": "bob", "image": "img-3",
     "ports": [{"mac": "fa:16:3e:00:00:04", "ips": ["10.0.0.6"], "vni": 5002}]},
]
ev.sort(key=lambda e: e["time"])
with open(os.path.join(here, "seed.events.jsonl"), "w") as f:
    for e in ev:
        f.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
    echo "== warrants.toml, seed.events.jsonl"
}

main() {
    local want=("$@")
    [[ ${#want[@]} -gt 0 ]] || want=("${ALL_FIXTURES[@]}")
    for f in "${want[@]}"; do
        case $f in
            http-put) fx_http_put ;;
            ftp-upload) fx_ftp_upload ;;
            ncat-ipv6) fx_ncat_ipv6 ;;
            lossy) fx_lossy ;;
            vxlan) fx_vxlan ;;
            sll) fx_sll ;;
            derived) fx_derived ;;
            *) die "unknown fixture $f (one of: ${ALL_FIXTURES[*]})" ;;
        esac
    done
    if [[ -f $HERE/vxlan.expect.json && -f $HERE/http-put.expect.json ]]; then
        write_defaults
    fi
    echo "== re-checking every expect file by other routes (tcpdump -xx, tcpflow, export-objects)"
    python3 "$TOOLS/check_expect.py" | grep -v '^  ok '
    shopt -s nullglob
    du -b "$HERE"/*.pcap "$HERE"/*.pcapng "$HERE"/*.gz | sort -n
    du -sb "$HERE"
}

main "$@"
