#!/usr/bin/env python3
"""Re-checks app/*.expect.json (and big.expect.json) by other routes than make_app_expect.py:

- frame bytes of LIID-JOE-0001: tcpdump -xx hex dumps, not pcapread.py
- packet and conversation counts: capinfos, tshark -z conv,tcp
- SMTP: tshark --export-objects imf; each exported message is matched to an expected one and
  its attachments are decoded again (python email) from tshark's copy. tshark 4.0 exports the
  DATA section still dot-stuffed and does not export BDAT messages: both are reported as notes
- HTTP: tshark --export-objects http holds every uploaded/downloaded entity (gzip decoded)
- FTP: tcpflow's per-direction stream files hold each visible transfer's bytes
- TLS: SNI per ClientHello and the certificate bytes from tshark

With --fast (the big capture): tshark without TCP reassembly or HTTP/FTP dissection, frame
bytes re-checked for the first 2000 frames only, HTTP bodies from tcpflow's stream files (the
bytes after the request head) instead of --export-objects (minutes per pass on 80 MB bodies).

Usage: check_app_expect.py [--fast] [X.expect.json ...]   (default: pcaps/app/*.expect.json)
"""
import email
import email.policy
import glob
import hashlib
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_expect import blobs, check, note, sh, tcpdump_frames  # noqa: E402
import check_expect  # noqa: E402

FAST_OPTS = ["-o", "tcp.desegment_tcp_streams:FALSE", "--disable-protocol", "http,ftp,ftp-data"]
OPTS = []
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sha = lambda b: hashlib.sha256(b).hexdigest()


def unstuffed(data):
    # RFC 5321 4.5.2: the receiver drops the first "." of every line that starts with one
    return re.sub(rb"(^|\r\n)\.", rb"\1", data)


def tcpdump_frames_first(path, count):
    """check_expect.tcpdump_frames for the first COUNT frames only."""
    out = sh(["tcpdump", "-n", "-xx", "-c", str(count), "-r", path]).decode()
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


def export(pcap, proto, tmp):
    d = os.path.join(tmp, proto)
    os.makedirs(d, exist_ok=True)
    sh(["tshark", "-n", "-r", pcap, "-q", "--export-objects", "%s,%s" % (proto, d)])
    return blobs(d)


def check_smtp(e, pcap, tmp):
    exported = export(pcap, "imf", tmp)
    for f in (f for f in e["files"] if f["kind"] == "smtp"):
        copies = [b for b in exported if f["message_id"].encode() in b]
        if not f["visible"]:
            check(not copies, "%s: encrypted (STARTTLS), nothing exported" % f["name"])
            continue
        if not copies:
            note("%s: tshark --export-objects imf has no copy (%s)" % (f["name"], f["command"]))
            continue
        if len(copies) != 1:
            check(False, "%s: %d exported copies" % (f["name"], len(copies)))
            continue
        b = copies[0]
        if sha(b) == f["sha256"]:
            check(True, "%s: tshark imf export has sha256 %s" % (f["name"], f["sha256"][:16]))
        else:
            b = unstuffed(b)
            check(sha(b) == f["sha256"], "%s: tshark imf export, dot-stuffing undone, has "
                  "sha256 %s (tshark 4.0 exports the stuffed lines)" % (f["name"], f["sha256"][:16]))
        msg = email.message_from_bytes(b, policy=email.policy.default)
        got = [(p.get_filename(), sha(p.get_payload(decode=True)))
               for p in msg.iter_attachments()]
        want = [(a["filename"], a["sha256"]) for a in f["attachments"]]
        check(got == want, "%s: %d attachments decoded from tshark's copy" % (f["name"], len(want)))


def check_http(e, pcap, tmp):
    exported = export(pcap, "http", tmp)
    shas = {sha(b) for b in exported}
    for f in e["files"]:
        if f["kind"] != "http":
            continue
        if "part" in f:
            # the object is the whole multipart body
            ok = any(len(b) == f["body_bytes"] for b in exported)
            check(ok, "%s: tshark exports the %d-byte multipart body" % (f["name"], f["body_bytes"]))
            continue
        check(f["sha256"] in shas, "%s (%s %s): tshark --export-objects http has it"
              % (f["name"], f["method"], f["uri"][:40]))


def tcpflow_blobs(pcap, tmp):
    d = os.path.join(tmp, "tcpflow")
    if not os.path.isdir(d):
        os.makedirs(d)
        sh(["tcpflow", "-r", pcap, "-o", d])
    return [b for b in blobs(d) if not b.startswith(b"<?xml")]


def check_http_tcpflow(e, pcap, tmp):
    bodies = {sha(b.split(b"\r\n\r\n", 1)[-1]) for b in tcpflow_blobs(pcap, tmp)}
    for f in e["files"]:
        if f["kind"] == "http":
            check(f["sha256"] in bodies, "%s (%s %s): a tcpflow stream, after the request "
                  "head, has sha256 %s" % (f["name"], f["method"], f["uri"], f["sha256"][:16]))


def check_ftp(e, pcap, tmp):
    shas = {sha(b) for b in tcpflow_blobs(pcap, tmp)}
    exported = set() if OPTS else {sha(b) for b in export(pcap, "ftp-data", tmp)}
    for f in e["files"]:
        if f["kind"] != "ftp" or not f["visible"]:
            continue
        if f["size"] == 0:
            note("%s: 0 bytes, tcpflow writes no file for an empty direction" % f["name"])
            continue
        check(f["sha256"] in shas, "%s (%s): a tcpflow stream file has sha256 %s"
              % (f["name"], f["command"], f["sha256"][:16]))
        if not OPTS:
            note("%s: tshark --export-objects ftp-data %s" % (
                f["name"], "has it" if f["sha256"] in exported else "does not have it"))


def check_tls(e, pcap):
    out = sh(["tshark", "-n", "-r", pcap, "-Y", "tls.handshake.type==1", "-T", "fields",
              "-e", "tls.handshake.extensions_server_name"]).decode().split()
    check(out == [s["sni"] for s in e["tls_sessions"]], "SNI per ClientHello: %s" % out)
    certs = sh(["tshark", "-n", "-r", pcap, "-Y", "tls.handshake.type==11", "-T", "fields",
                "-e", "tcp.stream", "-e", "tls.handshake.certificate"]).decode().split()
    seen = {int(certs[i]): sha(bytes.fromhex(certs[i + 1].split(",")[0].replace(":", "")))
            for i in range(0, len(certs), 2)}
    for s in e["tls_sessions"]:
        if s["visible_in_clear"]["certificate"]:
            check(seen.get(s["tcp_stream"]) == s["certificate"]["der_sha256"],
                  "stream %d: certificate in clear = %s" % (s["tcp_stream"],
                                                            s["certificate"]["subject_cn"]))
        else:
            check(s["tcp_stream"] not in seen, "stream %d: no certificate in clear (%s)"
                  % (s["tcp_stream"], s["version"]))


def main(args):
    if args[:1] == ["--fast"]:
        OPTS.extend(FAST_OPTS)
        args = args[1:]
    paths = args or sorted(glob.glob(os.path.join(HERE, "app", "*.expect.json")))
    for ep in paths:
        e = json.load(open(ep))
        pcap = os.path.join(os.path.dirname(ep), e["fixture"])
        print(e["fixture"])
        n = int(re.search(r"Number of packets:\s*(\d+)",
                          sh(["capinfos", "-M", "-c", pcap]).decode()).group(1))
        check(n == e["capinfos"]["packets"], "capinfos -c = %d" % n)
        conv = sh(["tshark", "-n"] + OPTS + ["-r", pcap, "-q", "-z", "conv,tcp"]).decode()
        c = sum(1 for line in conv.splitlines() if "<->" in line)
        check(c == e["tcp_conversations"], "tcp conversations = %d" % c)
        if OPTS:
            frames = tcpdump_frames_first(pcap, 2000)
        else:
            frames = tcpdump_frames(pcap)
            check(len(frames) == n, "tcpdump -xx frames = %d" % len(frames))
        for s in e["selections"]:
            nums = [int(x) for x in sh(["tshark", "-n"] + OPTS + ["-r", pcap, "-Y", s["filter"],
                                        "-T", "fields", "-e", "frame.number"]).split()]
            check(len(nums) == s["packets"], "%s: %d packets" % (s["liid"], len(nums)))
            if "frame_sha256" in s and OPTS:
                k = [j for j, i in enumerate(nums) if i <= len(frames)]
                got = [sha(frames[nums[j] - 1]) for j in k]
                check(got == [s["frame_sha256"][j] for j in k] and nums == s["frame_numbers"],
                      "%s: frame numbers; sha256 of the %d selected among the first %d frames "
                      "(tcpdump -xx -c)" % (s["liid"], len(k), len(frames)))
            elif "frame_sha256" in s:
                got = [sha(frames[i - 1]) for i in nums]
                check(got == s["frame_sha256"] and nums == s["frame_numbers"],
                      "%s: frame numbers and sha256 of %d frames (tcpdump -xx)"
                      % (s["liid"], len(nums)))
        kinds = {f["kind"] for f in e["files"]}
        with tempfile.TemporaryDirectory() as tmp:
            if "smtp" in kinds:
                check_smtp(e, pcap, tmp)
            if "http" in kinds:
                (check_http_tcpflow if OPTS else check_http)(e, pcap, tmp)
            if "ftp" in kinds:
                check_ftp(e, pcap, tmp)
        if e.get("tls_sessions"):
            check_tls(e, pcap)
    print("%d failed" % check_expect.failures)
    return 1 if check_expect.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
