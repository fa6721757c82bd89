#!/usr/bin/env bash
# `tapir report` on a large case: 10 000 sessions and 1 000 objects (a synthetic case of the
# shapes the case writer makes: session begin/end with counters, HTTP events, objects), timed,
# then the page opened in headless Chromium, timed: to its first screenshot (load, scripts,
# layout, paint: what an analyst waits for) and to its DOM dumped (plus serialising 13 MB).
#   bash bench/report.sh [SESSIONS] [OBJECTS]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-10000}; O=${2:-1000}
cargo build --release --quiet --bin tapir
w=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-report.XXXXXX"); trap 'rm -rf "$w"' EXIT
python3 - "$w/case" "$S" "$O" <<'PY'
import json, os, sys, hashlib
case, S, O = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = os.path.join(case, "LIID-BENCH"); os.makedirs(os.path.join(d, "objects"))
open(os.path.join(case, "MANIFEST.json"), "w").write("{}")
t = lambda s: "2026-11-22T%02d:%02d:%02d.%06dZ" % (8 + s // 3600 % 12, s // 60 % 60, s % 60, s * 7919 % 1000000)
prov = {"selector": "ipv4:198.51.100.7", "target": "subscriber:joe", "chain": ["2026-11-22T08:00:00Z access.start subscriber=joe ip=198.51.100.7"]}
with open(os.path.join(d, "iri.jsonl"), "w") as iri, open(os.path.join(d, "objects.jsonl"), "w") as objs:
    iri.write(json.dumps({"seq": 0, "liid": "LIID-BENCH", "ts": t(0), "event": "association", "what": "access.start", "detail": {"ip": "198.51.100.7", "subscriber": "joe"}, "selectors_added": ["ipv4:198.51.100.7"], "provenance": prov}) + "\n")
    for i in range(1, S + 1):
        flow = {"orig": "198.51.100.7:%d" % (10000 + i % 50000), "proto": "tcp", "resp": "203.0.113.%d:80" % (i % 250)}
        iri.write(json.dumps({"seq": 0, "liid": "LIID-BENCH", "cin": i, "ts": t(i), "event": "session-begin", "flow": flow, "provenance": prov}) + "\n")
        iri.write(json.dumps({"seq": 1, "liid": "LIID-BENCH", "cin": i, "ts": t(i), "event": "http", "method": "GET", "uri": "/f/%d" % i, "status": 200, "provenance": prov}) + "\n")
        iri.write(json.dumps({"seq": 2, "liid": "LIID-BENCH", "cin": i, "ts": t(i + 1), "event": "session-end", "flow": flow, "reason": "fin", "counters": {"packets": [10, 12], "bytes": [900, 14000], "payload": [300, 13000]}, "provenance": prov}) + "\n")
        if i <= O:
            body = ("object %d " % i).encode() * 50
            sha = hashlib.sha256(body).hexdigest()
            open(os.path.join(d, "objects", sha), "wb").write(body)
            objs.write(json.dumps({"id": i, "cin": i, "name": "file-%d.bin" % i, "kind": "file", "size": len(body), "sha256": sha, "md5": hashlib.md5(body).hexdigest(), "path": "objects/" + sha, "first_seen": t(i), "format": {"format": "data", "reason": "no signature"}, "provenance": prov}) + "\n")
PY
echo "case: $S sessions, $O objects, $(du -sh "$w/case" | cut -f1)"
/usr/bin/time -f '%e s, %M KB peak RSS' -o "$w/t" ./target/release/tapir report "$w/case" --out "$w/r.html" > /dev/null
echo "tapir report: $(cat "$w/t"), page $(stat -c %s "$w/r.html") bytes"
/usr/bin/time -f '%e s, %M KB peak RSS' -o "$w/o" chromium --headless --no-sandbox --disable-gpu --window-size=1280,900 --screenshot="$w/s.png" "file://$w/r.html" > /dev/null 2>&1
echo "chromium --headless --screenshot (load, scripts, layout, paint): $(cat "$w/o")"
/usr/bin/time -f '%e s, %M KB peak RSS' -o "$w/c" chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$w/r.html" > "$w/dom.html" 2> /dev/null
echo "chromium --headless --dump-dom (load, layout, scripts): $(cat "$w/c"), DOM $(stat -c %s "$w/dom.html") bytes"
