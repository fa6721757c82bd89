#!/usr/bin/env bash
# Extraction throughput on a capture that is all target uploads: tapir next to tcpflow and
# Suricata (file-store) on the same capture, in the same run.
#   sudo bash bench/extract.sh [CAPTURE WARRANTS]     (BENCH_DIR=/dev/shm: work files on tmpfs)
# Without arguments, makes the 80 MiB FTP + HTTP upload through 1% loss with
# pcaps/tools/make-big-upload.sh (root: network namespaces). Prints seconds, MB/s, peak RSS and
# how many of the sent files (by sha256) each tool stored.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-extract.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [[ $# -ge 2 ]]; then
  cap=$1; warrants=$2; expect=${3:-}
else
  bash pcaps/tools/make-big-upload.sh "$work/gen" > "$work/gen.log" 2>&1
  cap=$work/gen/big.pcap; warrants=$work/gen/warrants.toml; expect=$work/gen/big.expect.json
fi
cargo build --release --quiet --bin tapir
bytes=$(stat -c %s "$cap")
cat "$cap" > /dev/null
wanted() { [[ -n $expect ]] && python3 -c "import json,sys; print(' '.join(sorted({f['sha256'] for f in json.load(open(sys.argv[1]))['files']})))" "$expect"; }
found() { # dir: how many wanted sha256s are among the files below dir
  local n=0 all; all=$(find "$1" -type f -exec sha256sum {} + 2>/dev/null | awk '{print $1}' | sort -u)
  for h in $(wanted); do grep -q "$h" <<< "$all" && n=$((n+1)); done; echo "$n/$(wanted | wc -w)"
}
run() { # name outdir command...
  local name=$1 dir=$2; shift 2
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" > "$work/out.txt" 2>&1 || { echo "$name failed:"; tail -5 "$work/out.txt"; return 0; }
  t1=$(date +%s.%N)
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v b="$bytes" -v r="$(cat "$work/rss")" -v f="$(found "$dir")" \
    'BEGIN { s = t1 - t0; printf "%-34s %7.2f s %8.1f MB/s %8.1f MB peak RSS   files found %s\n", n, s, b / s / 1e6, r / 1024, f }'
}
echo "capture: $bytes bytes"
mkdir -p "$work/tcpflow"
run "tcpflow -e http" "$work/tcpflow" tcpflow -r "$cap" -e http -o "$work/tcpflow"
if command -v suricata > /dev/null; then
  mkdir -p "$work/suricata"
  run "suricata 7 file-store (autofp)" "$work/suricata" suricata -r "$cap" -k none -l "$work/suricata" \
    -c ../shared/pcaps/truth/peer-conf/suricata-filestore.yaml -S ../shared/pcaps/truth/peer-conf/empty.rules
  rm -rf "$work/suricata"; mkdir -p "$work/suricata"
  run "suricata 7 file-store (single)" "$work/suricata" suricata -r "$cap" -k none --runmode single -l "$work/suricata" \
    -c ../shared/pcaps/truth/peer-conf/suricata-filestore.yaml -S ../shared/pcaps/truth/peer-conf/empty.rules
fi
run "tapir replay" "$work/case" ./target/release/tapir replay -q "$cap" --warrants "$warrants" --out "$work/case"
