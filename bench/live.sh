#!/usr/bin/env bash
# Live capture rate: tcpreplay a generated capture into a veth pair at increasing rates and count
# what tapir's AF_PACKET TPACKET_V3 capture (examples/live_rate.rs, 1 and 2 fanout workers) and
# `tcpdump -w /dev/null` (libpcap, also TPACKET_V3) see of it, with the kernel's drop counters.
#
#   sudo bash bench/live.sh [MEGABYTES] [RATES]    defaults: 100, "200 500 1000 2000 top"
#   PROFILE=dev sudo -E bash bench/live.sh         build without --release (quicker to build)
#   BENCH_DIR=/dev/shm sudo -E bash bench/live.sh  capture and cases on tmpfs (the disk out of it)
#   TOOLS="run-1w run-2w run-1w2p run0-1w run0-1w2p tcpdump" sudo -E bash bench/live.sh
#       the whole daemon (`tapir run`; run-*: every packet targeted, run0-*: none; Nw: N capture
#       rings in a fanout group, Mp: M pipeline workers) next to tcpdump; its drops are the
#       kernel's (a pipeline that falls behind leaves the backlog in the ring, so the ring's
#       drops are the only ones)
#   SNAP=64 sudo -E bash bench/live.sh 100 top     every frame cut to 64 bytes (editcap -s)
#   RING_MB=256 TOOLS=run-2w ...                    the daemon's ring per capture worker, in 1 MiB
#       blocks: 64 unless set; 256 is what `tapir run` takes by default (64 x 4 MiB)
#   TOOLS="tapir-2w tapir-2w-hash" ...              the rings' fanout: by inner address pair (the
#       classic BPF program, the default) or by the kernel's flow hash (-hash)
#   VXLAN=1 sudo -E bash bench/live.sh             the capture wrapped in VXLAN (tcprewrite can't:
#       bench/vxlan_wrap.py), so the inner-pair program walks the overlay
#
# RATES are tcpreplay --mbps values, "top" = --topspeed. Runs as root in its own network namespace
# (tpafp-bench-PID, removed on exit). Suricata's AF_PACKET mode would be the other natural peer but
# it is not installable on this machine, so it is not in the table.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-100}
RATES=${2:-"200 500 1000 2000 top"}
PROFILE=${PROFILE:-release}
[[ $(id -u) -eq 0 ]] || { echo "live.sh: needs root (network namespace, AF_PACKET)" >&2; exit 1; }

NS=tpafp-bench-$$
work=$(mktemp -d "${BENCH_DIR:-/tmp}/tpafp-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --profile "$PROFILE" --example live_rate --example gen_capture --bin tapir
dir=target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")/examples
"$dir/gen_capture" "$work/bench.pcap" "$MB"
if [[ -n ${VXLAN:-} ]]; then
    python3 bench/vxlan_wrap.py "$work/bench.pcap" "$work/vx.pcap" && mv "$work/vx.pcap" "$work/bench.pcap"
fi
if [[ -n ${SNAP:-} ]]; then
    editcap -s "$SNAP" "$work/bench.pcap" "$work/snap.pcap" && mv "$work/snap.pcap" "$work/bench.pcap"
fi
packets=$(capinfos -c -M "$work/bench.pcap" | awk '/Number of packets/ {print $NF}')

ip netns add "$NS"
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$NS" link add name cap0 mtu 1600 type veth peer name inj0 mtu 1600
ip -n "$NS" link set cap0 up
ip -n "$NS" link set inj0 up
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

replay() { # rate -> prints "pps mbps seconds" achieved by tcpreplay
    local opt=(--mbps "$1")
    [[ $1 == top ]] && opt=(--topspeed)
    in_ns tcpreplay -K "${opt[@]}" -i inj0 "$work/bench.pcap" >"$work/replay.out" 2>&1
    awk '/^Actual:/ {secs = $(NF-1)} /^Rated:/ {gsub(",", ""); print $(NF-1), $(NF-3), secs}' "$work/replay.out"
}

wait_for() { # file pattern
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "live.sh: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

printf '# %s frames (%s MB) per run; veth in a netns; build profile %s; %s cores\n' \
    "$packets" "$MB" "$PROFILE" "$(nproc)"
printf '%-6s %-16s %10s %9s %10s %10s %9s\n' rate tool sent_pps sent_Mb/s captured kern_drops capt_pps
for rate in $RATES; do
    for tool in ${TOOLS:-tapir-1w tapir-2w tcpdump tapir-1w-4M tcpdump-4M}; do
        rm -f "$work/tool.err" "$work/tool.out"
        case $tool in
            tapir-*)
                # 64 x 1 MiB blocks, or 16 x 256 KiB for the -4M variant.
                ring=(1024 64)
                [[ $tool == *-4M ]] && ring=(256 16)
                # Not through in_ns: $! must be the tool's own pid (ip netns exec execs it).
                fanout=inner-pair
                [[ $tool == *-hash ]] && fanout=flow-hash
                FANOUT=$fanout ip netns exec "$NS" "$dir/live_rate" cap0 "${tool:6:1}" 800 "${ring[@]}" 2>"$work/tool.err" >"$work/tool.out" &
                pid=$!; pids+=("$pid")
                wait_for "$work/tool.err" ready ;;
            run-*|run0-*)
                # The whole daemon: `tapir run` with every packet a target's (CC written,
                # flows reassembled), 1 or 2 capture workers, RING_MB x 1 MiB ring each. Its kernel
                # drops come from its closing line (/metrics has them too, a second late).
                mport=$((30000 + $$ % 20000))
                rm -rf "$work/case" "$work/spool"; mkdir -p "$work/case" "$work/spool"
                # run0-*: a warrant on an address not in the traffic (capture, decode and
                # selection only, the common case on a tap port).
                targets='"cidr:0.0.0.0/0", "cidr:::/0"'
                [[ $tool == run0-* ]] && targets='"ipv4:192.0.2.254"'
                printf '[[warrant]]\nliid = "ALL"\nstart = "2000-01-01T00:00:00Z"\nend = "2100-01-01T00:00:00Z"\nscope = "iri+cc"\ntargets = [%s]\n' "$targets" >"$work/w.toml"
                [[ $tool =~ -([0-9]+)w(([0-9]+)p)?(-hash)?$ ]] || { echo "live.sh: bad tool $tool" >&2; exit 1; }
                fanout=inner-pair
                [[ -n ${BASH_REMATCH[4]} ]] && fanout=flow-hash
                printf '[capture]\ninterfaces = ["cap0"]\nworkers = %s\npipelines = %s\nfanout = "%s"\nring = { block_size = 1048576, block_count = %s, frame_size = 2048, block_timeout_ms = 10 }\n[paths]\nwarrants = "%s"\ncase_dir = "%s"\nspool_dir = "%s"\n[metrics]\nlisten = "127.0.0.1:%s"\n' \
                    "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]:-1}" "$fanout" "${RING_MB:-64}" "$work/w.toml" "$work/case" "$work/spool" "$mport" >"$work/run.toml"
                ip netns exec "$NS" "$dir/../tapir" run --config "$work/run.toml" 2>"$work/tool.err" &
                pid=$!; pids+=("$pid")
                wait_for "$work/tool.err" "tapir running" ;;
            tcpdump*)
                # Same buffer as live_rate's ring: 64 MiB, or 4 MiB.
                buf=65536
                [[ $tool == *-4M ]] && buf=4096
                ip netns exec "$NS" tcpdump -i cap0 -n -s 0 -B "$buf" -w /dev/null >/dev/null 2>"$work/tool.err" &
                pid=$!; pids+=("$pid")
                wait_for "$work/tool.err" "listening on" ;;
        esac
        read -r pps mbps secs < <(replay "$rate")
        if [[ $tool == run* ]]; then
            # The pipeline may still be working through the backlog the ring holds: wait until
            # its matched-packet count stops moving, then stop.
            last=-1
            for _ in $(seq 600); do
                now=$(in_ns curl -s "http://127.0.0.1:$mport/metrics" | awk '/^tapir_matched_packets_total/ {s+=$2} END {print s+0}')
                [[ $now == "$last" ]] && break
                last=$now; sleep 1
            done
            kill -TERM "$pid"; wait "$pid" || true
            captured=$(sed -n 's/.*tapir stopped frames=\([0-9]*\).*/\1/p' "$work/tool.err")
            drops=$(sed -n 's/.*tapir stopped.* dropped=\([0-9]*\).*/\1/p' "$work/tool.err")
        elif [[ $tool == tcpdump* ]]; then
            sleep 1.2   # libpcap hands a block over after its 1 s timeout
            kill -TERM "$pid"; wait "$pid" || true   # (SIGINT is ignored by background jobs)
            captured=$(awk '/packets captured/ {print $1}' "$work/tool.err")
            drops=$(awk '/dropped by kernel/ {print $1}' "$work/tool.err")
        else
            wait "$pid"
            captured=$(sed -n 's/.*frames=\([0-9]*\).*/\1/p' "$work/tool.out")
            drops=$(sed -n 's/.*drops=\([0-9]*\).*/\1/p' "$work/tool.out")
        fi
        # Frames captured per second of tcpreplay's sending time.
        cpps=$(awk -v c="$captured" -v s="$secs" 'BEGIN {printf "%.0f", c / s}')
        printf '%-6s %-16s %10.0f %9.0f %10s %10s %9s\n' "$rate" "$tool" "$pps" "$mbps" "$captured" "$drops" "$cpps"
    done
done
