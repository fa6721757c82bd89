# shellcheck shell=bash
# Namespace, capture and command-log helpers shared by make-app-fixtures.sh and
# make-big-upload.sh (same patterns as make-fixtures.sh, which keeps its own copy).
#
# The sourcing script sets, before sourcing:
#   NSP   prefix of every namespace it creates (e.g. "tap-"); only those are ever removed
#   WORK  its temp dir; HERE  the folder whose paths are shortened to "pcaps" in the log
# and calls ns_cleanup from its EXIT trap. Nothing is added to the root namespace.

CAP_PID=
BG_PIDS=()
CUR=

die() { echo "${0##*/}: $*" >&2; exit 1; }

# our own processes by pid, then our own namespaces (which takes their links with them)
ns_cleanup() {
    local errexit=0
    [[ $- == *e* ]] && errexit=1
    set +e
    [[ -n $CAP_PID ]] && kill -INT "$CAP_PID" 2>/dev/null && wait "$CAP_PID" 2>/dev/null
    CAP_PID=
    local p ns
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${NSP}"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    BG_PIDS=()
    [[ $errexit -eq 1 ]] && set -e
    return 0
}

# --- command log: what each fixture's expect file says about how it was made ---
log() {
    local s="$*"
    s=${s//$WORK/\$WORK}
    s=${s//$HERE/pcaps}
    [[ -n $CUR ]] && echo "$s" >>"$WORK/$CUR.cmds"
    echo "  + $s" >&2
}
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
# x NS CMD...: run CMD in namespace NS (short name, without the prefix) and record it
x() { local ns=$1; shift; log "[$ns] $(q "$@")"; ip netns exec "$NSP$ns" "$@"; }
# xin NS FILE CMD...: same, stdin from FILE
xin() {
    local ns=$1 in=$2; shift 2
    log "[$ns] $(q "$@") < $in"
    ip netns exec "$NSP$ns" "$@" <"$in"
}
# bgx NS LOGFILE CMD...: start a server in NS; its pid goes to BG_PIDS and $LAST_PID
bgx() {
    local ns=$1 out=$2; shift 2
    log "[$ns] $(q "$@") &"
    ip netns exec "$NSP$ns" "$@" >"$out" 2>&1 &
    LAST_PID=$!
    BG_PIDS+=("$LAST_PID")
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() { # NS PORT
    for _ in $(seq 150); do
        [[ -n $(ip netns exec "$NSP$1" ss -Hltn "sport = :$2") ]] && return 0
        sleep 0.1
    done
    die "nothing listens on port $2 in $NSP$1"
}

# --- capture: tcpdump -U in a namespace, stopped with SIGINT so the file is complete ---
cap_start() { # NS IFACE OUTFILE [tcpdump args...]
    local ns=$1 ifc=$2 out=$3; shift 3
    log "[$ns] tcpdump -i $ifc -s 0 -U -n -Z root -w $(basename "$out") $* &"
    ip netns exec "$NSP$ns" tcpdump -i "$ifc" -s 0 -U -n -Z root -w "$out" "$@" 2>"$out.log" &
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
    grep -E "packets? dropped by kernel" "$1.log" 2>/dev/null | grep -qv '^0 ' &&
        die "tcpdump dropped packets: $(cat "$1.log")"
    return 0
}

ns_add() { # NS(short): IPv6 on, no DAD, no router solicitations (fewer stray packets)
    ip netns add "$NSP$1"
    ip -n "$NSP$1" link set lo up
    ip netns exec "$NSP$1" sysctl -qw net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.accept_ra=0
}
# Offloads off so frames are what a NIC would send: software checksums, no GSO/GRO super-frames
no_offload() { ip netns exec "$NSP$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true; }

# LAN as in make-fixtures.sh, without the non-target host: bridge br0 in "sw", target "tgt"
# (198.51.100.7, 2001:db8::7, 02:00:c6:33:64:07) and server "srv" (203.0.113.10, 2001:db8::10,
# 02:00:cb:00:71:0a), on-link routes between the two IPv4 documentation prefixes.
lan_port() { # NS SWPORT MAC
    ip -n "${NSP}sw" link add "$2" type veth peer name eth0 netns "$NSP$1"
    ip -n "${NSP}sw" link set "$2" master br0 up
    ip -n "$NSP$1" link set eth0 address "$3" up
    no_offload sw "$2"
    no_offload "$1" eth0
}
lan_up() {
    ns_add sw
    ip -n "${NSP}sw" link add br0 type bridge stp_state 0 mcast_snooping 0
    ip -n "${NSP}sw" link set br0 up
    ns_add srv; ns_add tgt
    lan_port srv p-srv 02:00:cb:00:71:0a
    lan_port tgt p-tgt 02:00:c6:33:64:07
    ip -n "${NSP}srv" addr add 203.0.113.10/24 dev eth0
    ip -n "${NSP}srv" addr add 2001:db8::10/64 dev eth0 nodad
    ip -n "${NSP}srv" route add 198.51.100.0/24 dev eth0
    ip -n "${NSP}tgt" addr add 198.51.100.7/24 dev eth0
    ip -n "${NSP}tgt" addr add 2001:db8::7/64 dev eth0 nodad
    ip -n "${NSP}tgt" route add 203.0.113.0/24 dev eth0
    # static neighbours: no ARP/NDP exchange in the middle of a capture
    ip -n "${NSP}tgt" neigh replace 203.0.113.10 lladdr 02:00:cb:00:71:0a dev eth0 nud permanent
    ip -n "${NSP}tgt" neigh replace 2001:db8::10 lladdr 02:00:cb:00:71:0a dev eth0 nud permanent
    ip -n "${NSP}srv" neigh replace 198.51.100.7 lladdr 02:00:c6:33:64:07 dev eth0 nud permanent
    ip -n "${NSP}srv" neigh replace 2001:db8::7 lladdr 02:00:c6:33:64:07 dev eth0 nud permanent
    sleep 3 # MLD reports sent at link-up are over before any capture starts
}
