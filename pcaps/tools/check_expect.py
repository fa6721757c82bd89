#!/usr/bin/env python3
"""Re-checks every *.expect.json in pcaps/ by other routes than make_expect.py took:

- frame bytes: tcpdump -xx hex dumps (not pcapread.py) -> sha256 of each selected frame
- packet counts: `tshark -Y FILTER` line counts, capinfos -c
- files: tshark --export-objects (ftp-data, http) and tcpflow's per-direction stream files
  must hold a file whose sha256 is the expected one (tcpflow: plain Ethernet captures only)

Usage: check_expect.py [pcaps/X.expect.json ...]   (default: all). Exit 1 on any mismatch.
"""
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
failures = 0


def check(ok, what):
    global failures
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        failures += 1


def sh(args, stdin=None):
    return subprocess.run(args, check=True, capture_output=True, input=stdin).stdout


def raw_pcap(path):
    """tcpdump cannot read gzip: hand it the decompressed bytes on stdin."""
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def tcpdump_frames(path):
    # one or more text lines per packet (vxlan: outer and inner), then its hex lines
    out = sh(["tcpdump", "-n", "-xx", "-r", "-"], stdin=raw_pcap(path)).decode()
    frames, cur = [], bytearray()
    for line in out.splitlines():
        m = re.match(r"^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4}\s?)+)", line)
        if m:
            cur += bytes.fromhex(m.group(1).replace(" ", ""))
        elif cur:
            frames.append(bytes(cur))
            cur = bytearray()
    if cur:
        frames.append(bytes(cur))
    return frames


def blobs(d):
    out = []
    for root, _, names in os.walk(d):
        for n in names:
            with open(os.path.join(root, n), "rb") as f:
                out.append(f.read())
    return out


def note(what):
    print("  note " + what)


def main(paths):
    for ep in paths:
        e = json.load(open(ep))
        pcap = os.path.join(os.path.dirname(ep), e["fixture"])
        print(e["fixture"])
        n = int(re.search(r"Number of packets:\s*(\d+)", sh(["capinfos", "-c", pcap]).decode())
                .group(1))
        check(n == e["capinfos"]["packets"], "capinfos -c = %d" % n)
        frames = tcpdump_frames(pcap)
        check(len(frames) == n, "tcpdump -xx frames = %d" % len(frames))
        conv = sh(["tshark", "-n", "-r", pcap, "-q", "-z", "conv,tcp"]).decode()
        c = sum(1 for line in conv.splitlines() if "<->" in line)
        check(c == e["tcp_conversations"], "tcp conversations = %d" % c)
        for s in e["selections"]:
            nums = [int(x) for x in sh(["tshark", "-n", "-r", pcap, "-Y", s["filter"], "-T",
                                        "fields", "-e", "frame.number"]).split()]
            check(len(nums) == s["packets"], "%s: %d packets" % (s["liid"], len(nums)))
            if "frame_sha256" in s:
                got = [hashlib.sha256(frames[i - 1]).hexdigest() for i in nums]
                check(got == s["frame_sha256"] and nums == s["frame_numbers"],
                      "%s: frame numbers and sha256 of %d frames (tcpdump -xx)"
                      % (s["liid"], len(nums)))
        with tempfile.TemporaryDirectory() as tmp:
            exported = {}
            for proto in ("ftp-data", "http"):
                d = os.path.join(tmp, proto)
                os.makedirs(d)
                sh(["tshark", "-n", "-r", pcap, "-q", "--export-objects", "%s,%s" % (proto, d)])
                exported[proto] = blobs(d)
            flows = []
            if e["capinfos"]["encapsulation"] == "ether" and "vxlan" not in e["fixture"]:
                d = os.path.join(tmp, "tcpflow")
                os.makedirs(d)
                sh(["tcpflow", "-r", "-", "-o", d], stdin=raw_pcap(pcap))
                flows = blobs(d)
            shas = lambda bs: {hashlib.sha256(b).hexdigest() for b in bs}
            for f in e["files"]:
                if f["kind"] == "http" and f.get("method") == "PUT":
                    check(f["sha256"] in shas(exported["http"]),
                          "%s: tshark --export-objects http has it (sha256 %s)"
                          % (f["name"], f["sha256"][:16]))
                if f["kind"] == "http" and f.get("method") == "POST":
                    # the object is the whole multipart body: the file's bytes must be in one
                    hit = [b for b in exported["http"] if len(b) == f["body_bytes"]]
                    check(len(hit) == 1, "%s: tshark --export-objects http has a %d-byte "
                          "multipart body" % (f["name"], f["body_bytes"]))
                if f["kind"] == "ftp":
                    ok = f["sha256"] in shas(exported["ftp-data"])
                    what = "%s: tshark --export-objects ftp-data has it" % f["name"]
                    if "PASV" in f.get("note", ""):
                        check(ok, what)
                    else:  # tshark 4.0 does not export PORT or EPSV uploads; tcpflow checks them
                        note(what + (": yes" if ok else ": no (tshark limitation)"))
                if f["kind"] in ("raw", "ftp") and flows:
                    check(f["sha256"] in shas(flows),
                          "%s: a tcpflow stream file has sha256 %s" % (f["name"], f["sha256"][:16]))
                if "stream_sha256" in f:
                    check(f["stream_sha256"] == f["sha256"], "%s: stream sha256 = file sha256"
                          % f["name"])
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, "*.expect.json")))))
