#!/usr/bin/env bash
# X2/X3 throughput: one POI sending every record of a generated capture (all targeted) to an
# MDF on loopback, the MDF delivering HI2/HI3 to `tapir lemf`, next to the all-in-one
# (`tapir replay --deliver`) into the same LEMF and tcpdump reading the capture, same run.
#   bash bench/x2x3.sh [MEGABYTES]          (default 300)
#   BENCH_DIR=/dev/shm bash bench/x2x3.sh   capture, spools and cases on tmpfs
#   TLS=1 bash bench/x2x3.sh                mutual TLS 1.3 between POI and MDF
#   JOURNAL=0 bash bench/x2x3.sh            the MDF without its intake journal
#   RECOVER=1 bash bench/x2x3.sh            the MDF killed (SIGKILL) once the POI is done, then
#                                           started again: how long its recovery takes
# Prints time, packets/s, capture MB/s and peak RSS for each; for X2/X3 also PDUs/s and the
# MB/s of PDU octets the POI spooled (the wire's payload).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MB=${1:-300}
work=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-x2x3.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cargo build --release --quiet --bin tapir --example gen_capture
T=./target/release/tapir
cap="$work/bench.pcap"
./target/release/examples/gen_capture "$cap" "$MB"
packets=$(capinfos -c -M "$cap" | awk '/Number of packets/ {print $NF}')
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hi2=$(port); hi3=$(port); x2x3=$(port)
cat > "$work/w.toml" <<EOF
[[warrant]]
liid = "BENCH-ALL"
start = "2000-01-01T00:00:00Z"
end = "2100-01-01T00:00:00Z"
scope = "iri+cc"
targets = ["cidr:10.0.0.0/8"]
lea = "lea"
[[lea]]
name = "lea"
hi2 = "127.0.0.1:$hi2"
hi3 = "127.0.0.1:$hi3"
operator_id = "OPER"
network_element_id = "bench"
keepalive = 5
spool = { max_bytes = 8589934592 }
EOF
tls_mdf="" tls_poi=""
if [[ ${TLS:-0} == 1 ]]; then
  (cd "$work" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=ca -days 2 2>/dev/null
   for n in mdf poi; do
     printf 'subjectAltName=IP:127.0.0.1\n' > $n.ext
     openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null
     openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 2 -extfile $n.ext 2>/dev/null
   done)
  tls_mdf="tls_ca = \"$work/ca.pem\"
tls_cert = \"$work/mdf.pem\"
tls_key = \"$work/mdf.key\""
  tls_poi="tls_ca = \"$work/ca.pem\"
tls_cert = \"$work/poi.pem\"
tls_key = \"$work/poi.key\""
fi
cat > "$work/mdf.toml" <<EOF
[node]
role = "mdf"
listen = "127.0.0.1:$x2x3"
journal_max_bytes = $(( ${JOURNAL:-1} == 0 ? 0 : 1 << 36 ))
$tls_mdf
[paths]
warrants = "$work/w.toml"
case_dir = "$work/mdf-case"
spool_dir = "$work/mdf-spool"
[limits]
deliver_wait_secs = 600
inspect_time_limit_secs = 0
EOF
cat > "$work/poi.toml" <<EOF
[node]
role = "poi"
mdf = "127.0.0.1:$x2x3"
name = "poi-bench"
object_range = 1
max_spool_bytes = 8589934592
$tls_poi
[capture]
replay = ["$cap"]
replay_end = "exit"
[paths]
warrants = "$work/w.toml"
case_dir = "$work/poi-case"
spool_dir = "$work/poi-spool"
[limits]
deliver_wait_secs = 600
inspect_time_limit_secs = 0
EOF
lemf() { $T lemf --listen-hi2 "127.0.0.1:$hi2" --listen-hi3 "127.0.0.1:$hi3" --out "$work/$1" > /dev/null 2>&1 & pids+=($!); sleep 0.5; }
# Stops a process started under /usr/bin/time (its child) or directly, and waits for it.
stop() { pkill -TERM -P "$1" 2>/dev/null || kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

echo "capture: $packets packets, $bytes bytes ($(nproc) cores), tls=${TLS:-0}, dir=${BENCH_DIR:-/tmp}"
bench_run "tcpdump -r -w /dev/null" tcpdump -r "$cap" -w /dev/null
lemf lemf-aio; l=${pids[-1]}
bench_run "all-in-one replay --deliver" $T replay -q "$cap" --warrants "$work/w.toml" --out "$work/aio-case" \
  --deliver "$work/aio-spool" --deliver-wait 600 --no-inspect
stop "$l"; rm -rf "$work/aio-case" "$work/aio-spool" "$work/lemf-aio"
lemf lemf-x2x3; l=${pids[-1]}
TAPIR_LOG=info /usr/bin/time -f '%M' -o "$work/mdf.rss" $T run --config "$work/mdf.toml" > /dev/null 2> "$work/mdf.log" & m=$!; pids+=($m)
sleep 0.5
# The POI's run ends when the MDF has acknowledged its last PDU (the spool is drained).
sync
t0=$(date +%s.%N)
TAPIR_LOG=info /usr/bin/time -f '%M' -o "$work/poi.rss" $T run --config "$work/poi.toml" > /dev/null 2> "$work/poi.log"
t_poi=$(date +%s.%N)
if [[ ${RECOVER:-0} == 1 ]]; then
  # Killed with all it took checkpointed, then started again: the recovery takes the whole
  # journal again (HI muted) before it listens.
  jbytes=$(du -sb "$work/mdf-spool/x2x3-journal" | cut -f1)
  kill -KILL "$(pgrep -P "$m")"; wait "$m" 2>/dev/null || true
  TAPIR_LOG=info /usr/bin/time -f '%M' -o "$work/mdf2.rss" $T run --config "$work/mdf.toml" > /dev/null 2> "$work/mdf2.log" & m=$!; pids+=($m)
  until grep -q 'tapir MDF running' "$work/mdf2.log"; do sleep 0.05; done
  echo "  recovery: journal $((jbytes / 1000000)) MB; $(grep 'intake journal:' "$work/mdf2.log" | sed 's/.*INFO //')"
  mv "$work/mdf2.log" "$work/mdf.log"
fi
# Then the MDF stops once the LEMF has confirmed all it delivered: the end of the run.
stop "$m"
t1=$(date +%s.%N)
stop "$l"
line=$(grep 'X2/X3 forwarding' "$work/poi.log")
pdus=$(( $(sed -n 's/.* x2=\([0-9]*\).*/\1/p' <<< "$line") + $(sed -n 's/.* x3=\([0-9]*\).*/\1/p' <<< "$line") ))
# The spool's confirmed offset: every PDU's octets and its 8-octet record header.
off=$(od -An -t u8 -N 8 "$work/poi-spool/x2x3/x2x3.delivered" | tr -d ' ')
awk -v n="POI -> MDF -> LEMF (X2/X3)" -v t0="$t0" -v t1="$t1" -v p="$packets" -v b="$bytes" -v r="$(tail -1 "$work/poi.rss")" \
  -v pdus="$pdus" -v octets="$((off - 8 * pdus))" -v mr="$(tail -1 "$work/mdf.rss")" \
  -v tp="$t_poi" \
  'BEGIN { s = t1 - t0; printf "%-34s %8.2f s %12.0f packets/s %9.1f MB/s %9.1f MB peak RSS (POI), %.1f MB (MDF)\n", n, s, p / s, b / s / 1e6, r / 1024, mr / 1024;
           x = tp - t0; printf "  X2/X3 (POI until the MDF took its last PDU, %.2f s): %d PDUs, %.1f MB of PDUs: %.0f PDUs/s, %.1f MB/s\n", x, pdus, octets / 1e6, pdus / x, octets / x / 1e6 }'
echo "  POI: $(sed 's/.*INFO //' <<< "$line")"
echo "  MDF: $(grep 'X2/X3 intake' "$work/mdf.log" | sed 's/.*INFO //')"
echo "  MDF: $(grep 'delivery stopped' "$work/mdf.log" | sed 's/.*INFO //')"
