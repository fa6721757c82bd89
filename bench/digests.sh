#!/usr/bin/env bash
# What each object digest costs per byte here, next to coreutils on the same bytes (issue 15).
#
#   bash bench/digests.sh [MEGABYTES]        (default 512; the file for coreutils is on /dev/shm)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-512}
cargo build --release --quiet --example digest_cost
grep -o -m1 -w 'sha_ni' /proc/cpuinfo >/dev/null && echo "cpu: SHA-NI" || echo "cpu: no SHA-NI"
echo "tapir's digests (ring SHA-256/SHA-512, md-5 MD5), 64 KiB updates:"
./target/release/examples/digest_cost "$MB" 2>/dev/null
F=$(mktemp /dev/shm/tapir-digests.XXXXXX)
trap 'rm -f "$F"' EXIT
head -c "${MB}M" /dev/urandom > "$F"
echo "coreutils on the same amount (file on tmpfs):"
for t in sha256sum md5sum sha512sum; do
    s=$( { /usr/bin/time -f %e "$t" "$F" > /dev/null; } 2>&1 )
    awk -v t="$t" -v s="$s" -v mb="$MB" 'BEGIN { printf "%-10s %6.2f s %8.0f MB/s\n", t, s, mb * 1.048576 / s }'
done
