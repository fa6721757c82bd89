#!/usr/bin/env bash
# The filesystems beyond ext4 and the hostile images, through tapir and its peers side by side.
#
#   sudo bash bench/vmi_peers.sh [MEGABYTES]          (XFS/btrfs/NTFS size, default 1024)
#   sudo BENCH_DIR=/dev/shm bash bench/vmi_peers.sh   images on tmpfs
#
# Makes, with the real tools: an XFS (mkfs.xfs -p), a btrfs (mkfs.btrfs -r) and an NTFS
# (mkntfs, filled through ntfs-3g, with a SOFTWARE hive made by Samba's regf code) holding a
# copy of /usr/share plus the use case's outbox, crontab and clip; and the hostile set: a qcow2
# claiming 1 EiB, one whose L1 table lies past the end, one whose L1 entry points at the
# header, a backing chain that loops, a zstd bomb in a compressed cluster, an ext4 whose
# directories are linked below themselves. Each goes through `tapir vmi inspect`,
# dissect.target's target-query (hostname, os, users, cronjobs) and Sleuth Kit's fls -r (raw
# only), with time, peak memory and what each found.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1024}
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-vmi-peers.XXXXXX")
trap 'umount "$WORK/mnt" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
[[ $(id -u) -eq 0 ]] || { echo "run as root (ntfs-3g mount)" >&2; exit 1; }
cargo build --release --quiet --bin tapir
TAPIR=$(pwd)/target/release/tapir

source bench/lib.sh

TAPIR_SUM='python3 -c "import json,sys; r=json.load(sys.stdin); fs=r[\"filesystems\"]
for f in fs:
    l=f.get(\"linux\") or f.get(\"data\") or {}
    print(f[\"kind\"], (l.get(\"os\") or {}).get(\"pretty_name\"), \"users\", len(l.get(\"users\",[])), \"cron\", len(l.get(\"crontabs\",[])), \"mail\", len(l.get(\"mail\",[])), \"media\", len(l.get(\"media\",[])), f.get(\"error\") or \"\")
print(\"notes:\", \"; \".join(r[\"notes\"] + [n for f in fs for n in ((f.get(\"linux\") or f.get(\"data\") or {}).get(\"notes\") or [])][:2])[:90])"'
DISSECT_SUM='cut -d" " -f2-'
DISSECT_RECORDS='grep -o "^<[a-z/]*" | sort | uniq -c | tr -s " "'
FLS_SUM='wc -l | sed "s/$/ entries/"'

all() {
  local img=$1 raw=${2:-}
  echo "$(basename "$img") ($(stat -c %s "$img") bytes)"
  bench_peer "tapir vmi inspect" "$TAPIR_SUM" "$TAPIR" vmi inspect --json "$img"
  if command -v target-query >/dev/null; then
    bench_peer "dissect hostname,os" "$DISSECT_SUM" target-query -f hostname,os "$img"
    bench_peer "dissect users,cronjobs" "$DISSECT_RECORDS" target-query -s -f users,cronjobs "$img"
  fi
  if [[ -n $raw ]]; then
    bench_peer "fls -r (raw)" "$FLS_SUM" fls -r "$raw"
  fi
}

# The tree every filesystem gets.
r=$WORK/root
mkdir -p "$r/etc" "$r/home/joe/Mail/outbox" "$r/home/joe/Videos" "$r/var/spool/cron" "$r/usr"
cp -a /usr/share "$r/usr/" 2>/dev/null || true
printf 'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\nID=rocky\nVERSION_ID=9.4\n' > "$r/etc/os-release"
echo joe-vm > "$r/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/bash\njoe:x:1000:1000::/home/joe:/bin/bash\n' > "$r/etc/passwd"
printf 'root:!!:19000::::::\njoe:$6$s$h:19000:0:99999:7:::\n' > "$r/etc/shadow"
printf '@reboot sleep 3600 && mailclient --flush-outbox\n' > "$r/var/spool/cron/joe"
printf 'From: joe@example.org\r\nTo: bob@example.net\r\nSubject: later\r\n\r\nhi\r\n' > "$r/home/joe/Mail/outbox/1.eml"
{ printf '\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2'; head -c 20000000 /dev/urandom; } > "$r/home/joe/Videos/clip.mp4"
files=$(find "$r" -type f | wc -l)
echo "tree: $files files; images of ${MB} MiB; $(nproc) cores; under ${BENCH_DIR:-/tmp}"

# XFS: a protofile of the tree (mkfs.xfs -p copies it in, no mount).
python3 - "$r" > "$WORK/proto" <<'PY'
import os, stat, sys
root = sys.argv[1]
print("x\n0 0\nd--755 0 0")
def walk(d, ind):
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if any(c in n for c in " \t\n$:") or not n.isprintable():
            continue
        st = os.lstat(p)
        if stat.S_ISDIR(st.st_mode):
            print(f"{ind}{n} d--755 0 0"); walk(p, ind + " "); print(f"{ind}$")
        elif stat.S_ISREG(st.st_mode):
            print(f"{ind}{n} ---644 0 0 {p}")
        elif stat.S_ISLNK(st.st_mode) and " " not in os.readlink(p):
            print(f"{ind}{n} l--777 0 0 {os.readlink(p)}")
walk(root, " ")
print("$")
PY
truncate -s "${MB}M" "$WORK/xfs.raw"
mkfs.xfs -q -p "$WORK/proto" "$WORK/xfs.raw"
all "$WORK/xfs.raw" "$WORK/xfs.raw"

truncate -s "${MB}M" "$WORK/btrfs.raw"
mkfs.btrfs -q -r "$r" "$WORK/btrfs.raw"
all "$WORK/btrfs.raw" "$WORK/btrfs.raw"

# NTFS: Windows's layout, the tree under Users/joe, the SOFTWARE hive.
python3 -c 'import sys; s=open("tests/data/registry/README.md").read(); open(sys.argv[1],"w").write(s.split("```python\n")[1].split("```")[0])' "$WORK/make-hive.py"
python3 "$WORK/make-hive.py" "$WORK/SOFTWARE" 'Microsoft\Windows NT\CurrentVersion' \
    'ProductName=sz:Windows 10 Pro' 'DisplayVersion=sz:22H2' 'CurrentBuild=sz:19045'
truncate -s "${MB}M" "$WORK/ntfs.raw"
mkntfs -q -F -f -L Windows "$WORK/ntfs.raw" 2>/dev/null
mkdir -p "$WORK/mnt"
ntfs-3g "$WORK/ntfs.raw" "$WORK/mnt"
mkdir -p "$WORK/mnt/Windows/System32/config" "$WORK/mnt/Users"
cp "$WORK/SOFTWARE" "$WORK/mnt/Windows/System32/config/"
cp -r "$r/home/joe" "$WORK/mnt/Users/" && cp -r "$r/usr/share" "$WORK/mnt/Users/joe/share" 2>/dev/null || true
umount "$WORK/mnt"
all "$WORK/ntfs.raw" "$WORK/ntfs.raw"
rm -f "$WORK"/*.raw

echo "--- hostile images"
h=$WORK/hostile
mkdir -p "$h"
(
  cd "$h"
  qemu-img create -q -f qcow2 small.qcow2 16M
  python3 - <<'PY'
import struct
good = open('small.qcow2', 'rb').read()
def put(name, edit):
    v = bytearray(good); edit(v); open(name, 'wb').write(v)
put('eib.qcow2', lambda v: v.__setitem__(slice(24, 32), struct.pack('>Q', 1 << 60)))
put('l1-past-end.qcow2', lambda v: v.__setitem__(slice(40, 48), struct.pack('>Q', 1 << 40)))
def self_ref(v):
    l1 = struct.unpack('>Q', v[40:48])[0]
    v[l1:l1 + 8] = struct.pack('>Q', 0x8000000000000000 | 0x10000)
put('l1-self.qcow2', self_ref)
PY
  qemu-img create -q -f qcow2 a.qcow2 16M
  qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
  qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2
  head -c 1M < <(yes 'hello from the guest') > text.raw
  qemu-img convert -q -c -O qcow2 -o compression_type=zstd text.raw bomb.qcow2
  zstd -q -3 -c < <(head -c 256M /dev/zero) > bomb.zst
  python3 - <<'PY'
import struct
f = open('bomb.qcow2', 'r+b'); img = bytearray(f.read())
bits = struct.unpack('>I', img[20:24])[0]
l1 = struct.unpack('>Q', img[40:48])[0]
l2 = struct.unpack('>Q', img[l1:l1 + 8])[0] & 0x00fffffffffffe00
bomb = open('bomb.zst', 'rb').read()
host = (len(img) + 511) // 512 * 512
img += b'\0' * (host - len(img)) + bomb
x = 62 - (bits - 8)
img[l2:l2 + 8] = struct.pack('>Q', (1 << 62) | (((len(bomb) + 511) // 512 - 1) << x) | host)
f.seek(0); f.write(img); f.close()
PY
  mkdir -p cyc/etc cyc/home/joe/Mail/outbox
  printf 'root:x:0:0:root:/root:/bin/bash\n' > cyc/etc/passwd
  printf 'From: joe@example.org\nTo: p@example.net\nSubject: once\n\nx\n' > cyc/home/joe/Mail/outbox/1.eml
  mkfs.ext4 -q -F -d cyc cycle.raw 16M > /dev/null
  debugfs -w -R 'link /home/joe /home/joe/again' cycle.raw 2>/dev/null
  debugfs -w -R 'link /home /home/joe/up' cycle.raw 2>/dev/null
)
for img in eib.qcow2 l1-past-end.qcow2 l1-self.qcow2 a.qcow2 bomb.qcow2; do
  echo "$img"
  bench_peer "tapir vmi inspect" "$TAPIR_SUM" "$TAPIR" vmi inspect --json "$h/$img"
  bench_peer "qemu-img check" "head -3" qemu-img check "$h/$img"
  if command -v target-query >/dev/null; then
    bench_peer "dissect hostname,os" "$DISSECT_SUM" target-query -f hostname,os "$h/$img"
  fi
done
all "$h/cycle.raw" "$h/cycle.raw"
