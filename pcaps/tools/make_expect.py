#!/usr/bin/env python3
"""Writes <fixture>.expect.json from independent tools: tshark, capinfos, sha256sum (and
md5sum/sha512sum), and pcapread.py. Nothing here shares code with tapir.

Usage: make_expect.py META.json FIXTURE OUT.json
META.json (written by make-fixtures.sh) describes how the fixture was made and which files
the clients sent: {"description":..., "commands":[...], "derived_from":..., "files":[{"name",
"path", "kind": "http"|"ftp"|"raw", "note"...}], "counts": {"label": "display filter"}}.
"""
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcapread  # noqa: E402

# Must agree with pcaps/warrants.toml. `filter` is the tshark display filter that selects
# exactly the packets the warrant must yield (CC), given pcaps/seed.events.jsonl.
WARRANTS = [
    {
        "liid": "LIID-JOE-0001",
        "filter": "ip.addr==198.51.100.7 || ipv6.addr==2001:db8::7"
                  " || (vxlan.vni==5001 && ip.addr==10.0.0.5)",
        "note": "ipv4/ipv6 targets from the warrant; the vxlan term comes from seed.events.jsonl "
                "(joe created img-9, ann started vm-42 from it with port 10.0.0.5 in VNI 5001)",
        "delivered": True,
    },
    {
        "liid": "LIID-VM-0002",
        "filter": "vxlan.vni==5001 && ip.addr==10.0.0.5",
        "note": "VNI-scoped overlay address: 10.0.0.5 in VNI 5002 is another tenant's VM",
        "delivered": True,
    },
    {
        "liid": "LIID-OLD-0003",
        "filter": "ip.addr==198.51.100.8",
        "note": "warrant window ended before every capture: must yield nothing; 'packets' "
                "counts what it would have matched",
        "delivered": False,
    },
]


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw).stdout


def tshark_fields(pcap, dfilter, fields, two_pass=False):
    args = ["tshark", "-n", "-r", pcap]
    if two_pass:
        args.append("-2")
    if dfilter:
        args += ["-Y", dfilter]
    args += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        args += ["-e", f]
    out = run(args).decode()
    return [line.split("\t") for line in out.splitlines() if line]


def file_digests(path):
    d = {}
    for tool, key in (("sha256sum", "sha256"), ("md5sum", "md5"), ("sha512sum", "sha512")):
        d[key] = run([tool, path]).decode().split()[0]
    return d


def rfc3339(epoch_str):
    sec, _, frac = epoch_str.partition(".")
    t = datetime.datetime.fromtimestamp(int(sec), datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "." + (frac + "000000000")[:9] + "Z"


def endpoint(ip4, ip6, port):
    # innermost address: vxlan frames carry the outer and the inner IP header
    if ip6:
        return "[%s]:%s" % (ip6.split(",")[-1], port.split(",")[-1])
    return "%s:%s" % (ip4.split(",")[-1], port.split(",")[-1])


def follow_raw(pcap, stream):
    """(node0, node1, bytes node0->node1, bytes node1->node0) from tshark's follow."""
    out = run(["tshark", "-n", "-r", pcap, "-q", "-z", "follow,tcp,raw,%d" % stream]).decode()
    nodes, a, b = {}, bytearray(), bytearray()
    body = False
    for line in out.splitlines():
        m = re.match(r"^Node ([01]): (.*)$", line)
        if m:
            nodes[int(m.group(1))] = m.group(2).strip()
            body = len(nodes) == 2
            continue
        if line.startswith("====="):
            if body:
                break
            continue
        if not body or not line.strip():
            continue
        if line.startswith("\t"):
            b += bytes.fromhex(line.strip())
        else:
            a += bytes.fromhex(line.strip())
    return nodes.get(0), nodes.get(1), bytes(a), bytes(b)


def http_requests(stream):
    """Splits a client->server byte stream into (method, uri, headers, body) tuples."""
    out, off = [], 0
    while off < len(stream):
        end = stream.find(b"\r\n\r\n", off)
        if end < 0:
            break
        head = stream[off:end].decode("latin-1").split("\r\n")
        method, uri = head[0].split(" ")[0:2]
        hdrs = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        off = end + 4
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                eol = stream.index(b"\r\n", off)
                size = int(stream[off:eol].split(b";")[0], 16)
                off = eol + 2
                if size == 0:
                    off = stream.index(b"\r\n\r\n", off - 2) + 4
                    break
                body += stream[off:off + size]
                off += size + 2
            body = bytes(body)
        else:
            n = int(hdrs.get("content-length", "0"))
            body = stream[off:off + n]
            off += n
        out.append((method, uri, hdrs, body))
    return out


def main(meta_path, pcap, out_path):
    with open(meta_path) as f:
        meta = json.load(f)
    res = {"fixture": os.path.basename(pcap)}
    for k in ("description", "derived_from", "commands"):
        if k in meta:
            res[k] = meta[k]
    res["fixture_sha256"] = run(["sha256sum", pcap]).decode().split()[0]
    res["fixture_bytes"] = os.path.getsize(pcap)

    frames = list(pcapread.iter_frames(pcap))
    cap = run(["capinfos", "-M", "-c", "-E", pcap]).decode()
    packets = int(re.search(r"Number of packets:\s*(\d+)", cap).group(1))
    assert packets == len(frames), (packets, len(frames))
    times = tshark_fields(pcap, None, ["frame.time_epoch"])
    res["capinfos"] = {
        "packets": packets,
        "encapsulation": re.search(r"File encapsulation:\s*(.*)", cap).group(1).strip(),
        "linktypes": sorted({lt for _, lt, _ in frames}),
        "first_packet_time": rfc3339(times[0][0]),
        "last_packet_time": rfc3339(times[-1][0]),
    }

    conv = run(["tshark", "-n", "-r", pcap, "-q", "-z", "conv,tcp"]).decode()
    res["tcp_conversations"] = sum(1 for line in conv.splitlines() if "<->" in line)

    # TCP streams: initiator from the first SYN, bytes per direction from tshark's follow
    syns = {}
    for row in tshark_fields(pcap, "tcp.flags.syn==1 && tcp.flags.ack==0",
                             ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport",
                              "ip.dst", "ipv6.dst", "tcp.dstport"]):
        s = int(row[0].split(",")[-1])
        syns.setdefault(s, (endpoint(row[1], row[2], row[3]), endpoint(row[4], row[5], row[6])))
    nstreams = len({r[0] for r in tshark_fields(pcap, "tcp", ["tcp.stream"])})
    streams = []
    for s in range(nstreams):
        n0, n1, a, b = follow_raw(pcap, s)
        init, resp = syns.get(s, (n0, n1))
        if n0 != init:  # orient so that "a" is initiator -> responder
            a, b = b, a
        streams.append({"tcp_stream": s, "initiator": init, "responder": resp,
                        "initiator_to_responder": {"bytes": len(a),
                                                   "sha256": hashlib.sha256(a).hexdigest()},
                        "responder_to_initiator": {"bytes": len(b),
                                                   "sha256": hashlib.sha256(b).hexdigest()},
                        "_a": a, "_b": b})

    files = []
    for fm in meta.get("files", []):
        with open(fm["path"], "rb") as f:
            data = f.read()
        rec = {"name": fm["name"], "size": len(data)}
        rec.update(file_digests(fm["path"]))
        rec["kind"] = fm["kind"]
        for k in ("note", "mode", "method"):
            if k in fm:
                rec[k] = fm[k]
        found, hits = None, 0
        for st in streams:
            for direction, payload in (("initiator_to_responder", st["_a"]),
                                       ("responder_to_initiator", st["_b"])):
                if fm["kind"] in ("raw", "ftp") and payload == data:
                    found, hits = (st, direction), hits + 1
                elif fm["kind"] == "http" and direction == "initiator_to_responder":
                    for method, uri, hdrs, body in http_requests(payload):
                        if body == data or (method == "POST" and data in body):
                            found, hits = (st, direction), hits + 1
                            rec["method"], rec["uri"] = method, uri
                            rec["transfer_encoding"] = hdrs.get("transfer-encoding", "identity")
                            rec["content_type"] = hdrs.get("content-type")
                            if method == "POST":
                                rec["body_bytes"] = len(body)
        if hits != 1:
            raise SystemExit("%s: file %s found in %d TCP streams, want 1" % (pcap, fm["name"], hits))
        st, direction = found
        sender, receiver = ((st["initiator"], st["responder"])
                            if direction == "initiator_to_responder"
                            else (st["responder"], st["initiator"]))
        rec["flow"] = {"client": sender, "server": receiver,
                       "initiated_by": "client" if sender == st["initiator"] else "server"}
        rec["tcp_stream"] = st["tcp_stream"]
        if fm["kind"] in ("raw", "ftp"):
            rec["stream_sha256"] = st[direction]["sha256"]
        if fm["kind"] == "ftp":
            needle = ("STOR " + fm["name"]).encode()
            ctl = [c for c in streams if needle in c["_a"]]
            if len(ctl) != 1:
                raise SystemExit("%s: control connection for %s not unique" % (pcap, fm["name"]))
            rec["control"] = {"client": ctl[0]["initiator"], "server": ctl[0]["responder"],
                              "tcp_stream": ctl[0]["tcp_stream"]}
        files.append(rec)
    res["files"] = files
    for st in streams:
        del st["_a"], st["_b"]
    res["tcp_streams"] = streams

    sels = []
    for w in WARRANTS:
        nums = [int(r[0]) for r in tshark_fields(pcap, w["filter"], ["frame.number"])]
        hashes = pcapread.frame_hashes(pcap, nums)
        sel = {"liid": w["liid"], "filter": w["filter"], "note": w["note"],
               "packets": len(nums)}
        if w["delivered"]:
            sel["frame_numbers"] = nums
            sel["frame_sha256"] = [hashes[n][2] for n in nums]
        else:
            sel["delivered_packets"] = 0
        sels.append(sel)
    res["selections"] = sels
    counts = {}
    for label, dfilter in meta.get("counts", {}).items():
        counts[label] = {"filter": dfilter,
                         "packets": len(tshark_fields(pcap, dfilter, ["frame.number"],
                                                      two_pass=True))}
    res["counts"] = counts
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
