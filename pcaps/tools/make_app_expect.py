#!/usr/bin/env python3
"""Writes app/<fixture>.expect.json for the protocol-analyzer fixtures, in the format of
make_expect.py (same keys: fixture, capinfos, tcp_conversations, tcp_streams, files,
selections, counts) plus per-protocol details. Every value comes from independent tools:
tshark (streams, fields), capinfos, sha256sum/md5sum/sha512sum, python's email package (message
ids, attachments), openssl x509 (certificates), and what the clients recorded (endpoints,
commands). Nothing here shares code with tapir.

Usage: make_app_expect.py META.json FIXTURE OUT.json [WORK HERE [--fast]]
META.json (written by make-app-fixtures.sh / make-big-upload.sh): {"description", "commands",
"records": [one per file a client sent or received, or per TLS session], "counts": {label:
filter}, "smtp_servers": {...}}. WORK/HERE are replaced by $WORK/pcaps in paths it prints.

Each record is located in the capture and checked, and the script exits non-zero when a
record is not found exactly once or disagrees with the capture:
- http: the request (method, uri) whose body (de-chunked) is the file's bytes as sent
  (wire_path: e.g. the gzip bytes), or whose multipart body holds them (part=); GET: the
  response body in the server->client direction
- ftp: the data connection (by the endpoints the client recorded, else by content) and the
  control connection (by endpoints, else by "CMD name" in it)
- smtp: the DATA (dot-stuffing undone) or BDAT chunks of one transaction equal the .eml,
  with the envelope the client used; attachments decoded by python email
- tls: TLS streams in time order; SNI, ALPN, version and certificate cross-checked with tshark
"""
import datetime
import email
import email.policy
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_expect as me  # noqa: E402
import pcapread  # noqa: E402

# LIIDs of pcaps/warrants.toml (and app/warrants.toml). These fixtures have no VXLAN and no
# seed events, so LIID-JOE-0001 is the plain IP selector.
WARRANTS = [
    {"liid": "LIID-JOE-0001", "filter": "ip.addr==198.51.100.7 || ipv6.addr==2001:db8::7",
     "note": "ipv4/ipv6 targets of the warrant", "delivered": True},
    {"liid": "LIID-VM-0002", "filter": "vxlan.vni==5001 && ip.addr==10.0.0.5",
     "note": "no VXLAN in these captures: selects nothing", "delivered": True},
    {"liid": "LIID-OLD-0003", "filter": "ip.addr==198.51.100.8",
     "note": "warrant window over; the host is absent anyway", "delivered": False},
]

SUBS = []
# --fast (the big capture): no TCP reassembly and no HTTP/FTP dissection in tshark. With them,
# tshark 4.0 needs minutes per pass over 80 MB bodies; without, seconds. Stream bytes still come
# from tshark's follow (its own reassembly), selections and counts from display filters on
# IP/TCP fields, which need neither.
FAST = ["-o", "tcp.desegment_tcp_streams:FALSE", "--disable-protocol", "http,ftp,ftp-data"]
OPTS = []


def tshark_fields(pcap, dfilter, fields, two_pass=False):
    args = ["tshark", "-n"] + OPTS + ["-r", pcap]
    if two_pass and not OPTS:
        args.append("-2")
    if dfilter:
        args += ["-Y", dfilter]
    args += ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        args += ["-e", f]
    out = me.run(args).decode()
    return [line.split("\t") for line in out.splitlines() if line]


def follow_raw(pcap, stream):
    """(node0, node1, bytes node0->node1, bytes node1->node0), as make_expect.follow_raw."""
    out = me.run(["tshark", "-n"] + OPTS + ["-r", pcap, "-q", "-z",
                                          "follow,tcp,raw,%d" % stream]).decode()
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


def short(p):
    for a, b in SUBS:
        p = p.replace(a, b)
    return p


def fail(msg):
    raise SystemExit("make_app_expect: " + msg)


def digests(data):
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(), "sha512": hashlib.sha512(data).hexdigest()}


def file_digests(path):
    """sha256sum/md5sum/sha512sum of the file, as make_expect.py does."""
    d = {"size": os.path.getsize(path)}
    d.update(me.file_digests(path))
    return d


def read(path):
    with open(path, "rb") as f:
        return f.read()


def epstr(e):
    ip, port = e[0], e[1]
    return "[%s]:%s" % (ip, port) if ":" in ip else "%s:%s" % (ip, port)


# ------------------------------------------------------------------------- streams
def load_streams(pcap):
    syns = {}
    for row in tshark_fields(pcap, "tcp.flags.syn==1 && tcp.flags.ack==0",
                                ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport",
                                 "ip.dst", "ipv6.dst", "tcp.dstport"]):
        s = int(row[0].split(",")[-1])
        syns.setdefault(s, (me.endpoint(row[1], row[2], row[3]),
                            me.endpoint(row[4], row[5], row[6])))
    ids = sorted({int(r[0]) for r in tshark_fields(pcap, "tcp", ["tcp.stream"])})
    streams = []
    for s in ids:
        n0, n1, a, b = follow_raw(pcap, s)
        init, resp = syns.get(s, (n0, n1))
        if n0 != init:
            a, b = b, a
        streams.append({"tcp_stream": s, "initiator": init, "responder": resp,
                        "initiator_to_responder": {"bytes": len(a),
                                                   "sha256": hashlib.sha256(a).hexdigest()},
                        "responder_to_initiator": {"bytes": len(b),
                                                   "sha256": hashlib.sha256(b).hexdigest()},
                        "_a": a, "_b": b})
    return streams


def by_endpoints(streams, client, server=None):
    c = epstr(client)
    hits = [s for s in streams if c in (s["initiator"], s["responder"])
            and (server is None or epstr(server) in (s["initiator"], s["responder"]))]
    if len(hits) != 1:
        fail("%d TCP streams with endpoint %s" % (len(hits), c))
    return hits[0]


def flow(st, sender_is_initiator):
    """As in make_expect.py: client/server = the file's sender/receiver, initiated_by =
    "server" when the receiver opened the connection (FTP active mode, downloads)."""
    a, b = st["initiator"], st["responder"]
    s, r = (a, b) if sender_is_initiator else (b, a)
    return {"client": s, "server": r, "sender": s, "receiver": r, "initiator": a,
            "initiated_by": "client" if sender_is_initiator else "server"}


# ------------------------------------------------------------------------- HTTP
def http_file(r, streams):
    data = read(r["path"])
    wire = read(r["wire_path"]) if r.get("wire_path") else data
    out = {"name": r["name"]}
    out.update(file_digests(r["path"]))
    out["kind"] = "http"
    for k in ("tool", "note", "method", "uri", "direction", "part", "image_id", "disk_format"):
        if k in r:
            out[k] = r[k]
    cands = [by_endpoints(streams, r["client"])] if "client" in r else streams
    hits = []
    for st in cands:
        reqs = me.http_requests(st["_a"])
        if r.get("direction") == "download":
            resps = me.http_requests(st["_b"])
            for i, (m, u, h, body) in enumerate(reqs):
                if m == r["method"] and u == r["uri"]:
                    # responses, 1xx excluded, pair with requests in order
                    final = [x for x in resps if not x[1].startswith("1")]
                    if i < len(final) and final[i][3] == data:
                        hits.append((st, i, h, final[i][2], final[i][3]))
            continue
        for i, (m, u, h, body) in enumerate(reqs):
            if m != r["method"] or u != r["uri"]:
                continue
            if ("part" in r and wire in body) or body == wire:
                hits.append((st, i, h, None, body))
    if len(hits) != 1:
        fail("http %s %s: found %d times" % (r["method"], r["uri"], len(hits)))
    st, i, h, rh, body = hits[0]
    out["request_index"] = i
    out["requests_in_stream"] = len(me.http_requests(st["_a"]))
    out["transfer_encoding"] = (rh or h).get("transfer-encoding", "identity")
    out["content_type"] = (rh or h).get("content-type")
    out["content_encoding"] = (rh or h).get("content-encoding", "identity")
    if r.get("wire_path"):
        out["wire"] = file_digests(r["wire_path"])
        out["wire"]["note"] = "the entity as sent (Content-Encoding applied)"
    if "part" in r:
        out["body_bytes"] = len(body)
    out["tcp_stream"] = st["tcp_stream"]
    out["flow"] = flow(st, r.get("direction") != "download")
    return out


def http_object(r, streams):
    out = {"name": r["name"]}
    out.update(file_digests(r["path"]))
    out["kind"] = "http-object"
    for k in ("tool", "note", "method", "uri", "upload_id", "parts"):
        out[k] = r[k]
    st = by_endpoints(streams, r["client"])
    reqs = [(m, u) for m, u, _, _ in me.http_requests(st["_a"])]
    if (r["method"], r["uri"]) not in reqs:
        fail("S3 complete request %s not in stream %d" % (r["uri"], st["tcp_stream"]))
    out["tcp_stream"] = st["tcp_stream"]
    out["flow"] = flow(st, True)
    return out


# ------------------------------------------------------------------------- FTP
def ftp_file(r, streams):
    data = read(r["path"])
    out = {"name": r["name"]}
    out.update(file_digests(r["path"]))
    out["kind"] = "ftp"
    for k in ("direction", "command", "data_mode", "type", "rest", "tool", "note", "encrypted"):
        if k in r:
            out[k] = r[k]
    if r.get("local_path"):
        out["local_file"] = file_digests(r["local_path"])
        out["local_file"]["note"] = "the file on the client (LF line ends)"
    if r.get("full_path"):
        out["full_file"] = file_digests(r["full_path"])
    if r.get("server_path"):
        out["server_file"] = file_digests(r["server_path"])
    if r.get("encrypted"):
        ctl = [s for s in streams if b"AUTH TLS\r\n" in s["_a"]]
        if len(ctl) != 1:
            fail("ftp %s: %d control streams with AUTH TLS" % (r["name"], len(ctl)))
        out["control"] = {"client": ctl[0]["initiator"], "server": ctl[0]["responder"],
                          "tcp_stream": ctl[0]["tcp_stream"]}
        out["visible"] = False
        return out
    if r.get("data"):
        st = by_endpoints(streams, r["data"]["client"], r["data"]["server"])
        client_ep = epstr(r["data"]["client"])
        client_is_init = st["initiator"] == client_ep
        up = r["direction"] == "upload"
        sender_is_init = client_is_init == up
        payload = st["_a"] if sender_is_init else st["_b"]
        if payload != data:
            fail("ftp %s: data stream %d does not carry the file" % (r["name"], st["tcp_stream"]))
    else:
        hits = [(s, d) for s in streams for d in ("_a", "_b") if s[d] == data]
        if len(hits) != 1:
            fail("ftp %s: file found in %d stream directions" % (r["name"], len(hits)))
        st, d = hits[0]
        sender_is_init = d == "_a"
    if r.get("control"):
        ctl = by_endpoints(streams, r["control"]["client"], r["control"]["server"])
    else:
        needle = ("%s %s\r\n" % (r["command"], r["name"])).encode()
        c = [s for s in streams if needle in s["_a"]]
        if len(c) != 1:
            fail("ftp %s: %d control streams with %r" % (r["name"], len(c), needle))
        ctl = c[0]
    out["tcp_stream"] = st["tcp_stream"]
    out["flow"] = flow(st, sender_is_init)
    out["stream_sha256"] = (st["initiator_to_responder"] if sender_is_init
                            else st["responder_to_initiator"])["sha256"]
    out["control"] = {"client": ctl["initiator"], "server": ctl["responder"],
                      "tcp_stream": ctl["tcp_stream"]}
    out["visible"] = True
    return out


# ------------------------------------------------------------------------- SMTP
def smtp_transactions(stream):
    """Client->server SMTP bytes -> [(mail_from, [rcpts], command, content, [chunk sizes])].
    DATA content has the dot-stuffing undone (RFC 5321 4.5.2) and includes the CRLF that
    ends its last line; BDAT chunks (RFC 3030) are concatenated. Stops at STARTTLS."""
    out, off = [], 0
    mail, rcpts = None, []
    while off < len(stream):
        eol = stream.find(b"\r\n", off)
        if eol < 0:
            break
        line = stream[off:eol].decode("latin-1")
        off = eol + 2
        verb = line.split(" ")[0].upper()
        if verb == "STARTTLS":
            break
        if line.upper().startswith("MAIL FROM:"):
            mail, rcpts = re.search(r"<([^>]*)>", line).group(1), []
        elif line.upper().startswith("RCPT TO:"):
            rcpts.append(re.search(r"<([^>]*)>", line).group(1))
        elif verb == "DATA":
            content = bytearray()
            while True:
                eol = stream.find(b"\r\n", off)
                if eol < 0:
                    fail("unterminated DATA")
                ln = stream[off:eol + 2]
                off = eol + 2
                if ln == b".\r\n":
                    break
                content += ln[1:] if ln.startswith(b".") else ln
            out.append((mail, rcpts, "DATA", bytes(content), None))
        elif verb == "BDAT":
            parts = line.split()
            content, sizes = bytearray(), []
            while True:
                n = int(parts[1])
                content += stream[off:off + n]
                sizes.append(n)
                off += n
                if len(parts) > 2 and parts[2].upper() == "LAST":
                    break
                eol = stream.find(b"\r\n", off)
                parts = stream[off:eol].decode("latin-1").split()
                off = eol + 2
            out.append((mail, rcpts, "BDAT", bytes(content), sizes))
    return out


def smtp_message(r, streams, servers):
    data = read(r["path"])
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out = {"name": r["name"]}
    out.update(file_digests(r["path"]))
    out["kind"] = "smtp"
    out["message_id"] = str(msg["Message-ID"]).strip()
    out["subject"] = str(msg["Subject"])
    for k in ("command", "mail_from", "rcpt_to", "auth_mechanism", "auth_user", "tool", "server",
              "note", "encrypted", "bdat_chunks"):
        if k in r:
            out[k] = r[k]
    atts = []
    for part in msg.iter_attachments():
        payload = part.get_payload(decode=True)
        a = {"filename": part.get_filename(), "content_type": part.get_content_type(),
             "content_transfer_encoding": str(part.get("Content-Transfer-Encoding", "7bit"))}
        a.update(digests(payload))
        atts.append(a)
    out["attachments"] = atts
    # the server's own copy, by Message-ID
    srv_dir = servers.get(r["server"])
    if srv_dir:
        mid = out["message_id"].encode()
        copies = []
        for root, _, names in os.walk(srv_dir):
            for n in names:
                b = read(os.path.join(root, n))
                if mid in b and not n.endswith(".json"):
                    copies.append(b)
        if len(copies) != 1:
            fail("smtp %s: %d server copies" % (r["name"], len(copies)))
        if r["server"] == "postfix":
            ok = copies[0].endswith(data.replace(b"\r\n", b"\n"))
            how = "postfix's Maildir file ends with the message (LF line ends) after its trace headers"
        else:
            ok = copies[0] == data
            how = "identical to aiosmtpd's original_content"
        if not ok:
            fail("smtp %s: server copy differs" % r["name"])
        out["server_received"] = how
    if r.get("encrypted"):
        c = [s for s in streams if b"\r\nSTARTTLS\r\n" in s["_a"]]
        if len(c) != 1:
            fail("smtp %s: %d STARTTLS streams" % (r["name"], len(c)))
        out["tcp_stream"] = c[0]["tcp_stream"]
        out["flow"] = flow(c[0], True)
        out["visible"] = False
        return out
    cands = [by_endpoints(streams, r["client"])] if "client" in r else streams
    hits = []
    for st in cands:
        for i, (mail, rcpts, cmd, content, sizes) in enumerate(smtp_transactions(st["_a"])):
            if content == data:
                hits.append((st, i, mail, rcpts, cmd, sizes))
    if len(hits) != 1:
        fail("smtp %s: message found %d times" % (r["name"], len(hits)))
    st, i, mail, rcpts, cmd, sizes = hits[0]
    if mail != r["mail_from"] or rcpts != r["rcpt_to"] or cmd != r["command"]:
        fail("smtp %s: envelope %s %s %s in capture" % (r["name"], mail, rcpts, cmd))
    if sizes and sizes != r.get("bdat_chunks"):
        fail("smtp %s: BDAT chunks %s" % (r["name"], sizes))
    if "auth_mechanism" in r and ("AUTH " + r["auth_mechanism"]).encode() not in st["_a"]:
        fail("smtp %s: no AUTH %s" % (r["name"], r["auth_mechanism"]))
    out["transaction_index"] = i
    out["tcp_stream"] = st["tcp_stream"]
    out["flow"] = flow(st, True)
    out["visible"] = True
    return out


# ------------------------------------------------------------------------- TLS
def x509(cert):
    def o(*a):
        return subprocess.run(["openssl", "x509", "-in", cert, "-noout"] + list(a), check=True,
                              capture_output=True).stdout.decode()
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    text = o("-text")
    san = re.search(r"X509v3 Subject Alternative Name:.*?\n\s+(.*)\n", text)
    dates = dict(ln.split("=", 1) for ln in o("-dates").splitlines())
    iso = lambda t: datetime.datetime.strptime(t, "%b %d %H:%M:%S %Y GMT").strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    cn = re.search(r"CN ?= ?([^,/]+)", o("-subject"))
    return {"subject": o("-subject", "-nameopt", "RFC2253").split("=", 1)[1].strip(),
            "issuer": o("-issuer", "-nameopt", "RFC2253").split("=", 1)[1].strip(),
            "serial": o("-serial").split("=", 1)[1].strip().lower(),
            "subject_alt_names": [s.strip() for s in san.group(1).split(",")] if san else [],
            "subject_cn": cn.group(1).strip() if cn else None,
            "not_before": dates["notBefore"], "not_after": dates["notAfter"],
            "not_before_rfc3339": iso(dates["notBefore"]),
            "not_after_rfc3339": iso(dates["notAfter"]),
            "der_bytes": len(der), "der_sha256": hashlib.sha256(der).hexdigest(),
            "source": "openssl x509 -text/-subject/-issuer/-serial/-dates of the server's cert"}


def tls_sessions(recs, streams, pcap):
    rows = tshark_fields(pcap, "tls.handshake", [
        "tcp.stream", "tls.handshake.type", "tls.handshake.extensions_server_name",
        "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version",
        "tls.handshake.version", "tls.handshake.certificate"])
    per = {}
    for row in rows:
        s = int(row[0])
        d = per.setdefault(s, {"types": set(), "sni": None, "alpn": [], "certs": []})
        types = row[1].split(",")
        d["types"].update(types)
        if "1" in types:
            d["sni"] = row[2] or None
            d["alpn_offered"] = row[3].split(",") if row[3] else []
        if "2" in types:
            d["server_alpn"] = row[3] or None
            sv = row[4].split(",")[-1] if row[4] else row[5].split(",")[types.index("2")]
            d["server_version"] = sv
        if row[6]:
            d["certs"] += row[6].split(",")
    order = sorted(s for s, d in per.items() if "1" in d["types"])
    if len(order) != len(recs):
        fail("%d TLS streams, %d sessions recorded" % (len(order), len(recs)))
    out = []
    names = {"0x0303": "TLSv1.2", "0x0304": "TLSv1.3"}
    for r, s in zip(recs, order):
        d = per[s]
        st = next(x for x in streams if x["tcp_stream"] == s)
        cert = x509(r["cert"])
        v12 = r["version"] == "TLSv1.2"
        if d["sni"] != r["sni"] or d["alpn_offered"] != r["alpn_offered"]:
            fail("tls stream %d: tshark SNI %s ALPN %s" % (s, d["sni"], d["alpn_offered"]))
        if names.get(d.get("server_version")) != r["version"]:
            fail("tls stream %d: tshark version %s" % (s, d.get("server_version")))
        if v12:
            if d.get("server_alpn") != r["alpn_selected"] or not d["certs"]:
                fail("tls stream %d: tshark ALPN %s" % (s, d.get("server_alpn")))
            if hashlib.sha256(bytes.fromhex(d["certs"][0].replace(":", ""))).hexdigest() \
                    != cert["der_sha256"]:
                fail("tls stream %d: certificate in the capture is not %s" % (s, r["cert"]))
        elif d["certs"]:
            fail("tls stream %d: TLS 1.3 certificate in clear?" % s)
        out.append({
            "tcp_stream": s, "flow": flow(st, True), "tool": r["tool"],
            "client_cmd": r["client_cmd"], "server": r["server"],
            "version": r["version"], "cipher": r["cipher"], "sni": r["sni"],
            "alpn_offered": r["alpn_offered"], "alpn_selected": r["alpn_selected"],
            "certificate": cert,
            "visible_in_clear": {"sni": True, "alpn_offered": True, "version": True,
                                 "alpn_selected": v12, "certificate": v12},
            "note": ("TLS 1.2: ServerHello (ALPN) and Certificate in clear" if v12 else
                     "TLS 1.3: ALPN choice (EncryptedExtensions) and Certificate are "
                     "encrypted; version from ServerHello supported_versions"),
        })
    return out


# ------------------------------------------------------------------------- main
def commands_of(pcap, proto):
    if proto == "ftp":
        f = ["tcp.stream", "frame.number", "ftp.request.command", "ftp.request.arg"]
        rows = tshark_fields(pcap, "ftp.request.command", f)
    else:
        f = ["tcp.stream", "frame.number", "smtp.req.command", "smtp.req.parameter"]
        rows = tshark_fields(pcap, "smtp.req.command", f)
    return [{"tcp_stream": int(r[0]), "frame": int(r[1]), "command": r[2], "arg": r[3]}
            for r in rows]


def main(meta_path, pcap, out_path, work=None, here=None, fast=None):
    if fast == "--fast":
        OPTS.extend(FAST)
    if work:
        SUBS.append((work, "$WORK"))
    if here:
        SUBS.append((here, "pcaps"))
    meta = json.load(open(meta_path))
    res = {"fixture": os.path.basename(pcap)}
    for k in ("description", "commands", "vmi"):
        if k in meta:
            res[k] = meta[k]
    res["fixture_sha256"] = me.run(["sha256sum", pcap]).decode().split()[0]
    res["fixture_bytes"] = os.path.getsize(pcap)
    frames = list(pcapread.iter_frames(pcap))
    cap = me.run(["capinfos", "-M", "-c", "-E", pcap]).decode()
    packets = int(re.search(r"Number of packets:\s*(\d+)", cap).group(1))
    if packets != len(frames):
        fail("capinfos %d packets, pcapread %d" % (packets, len(frames)))
    times = tshark_fields(pcap, None, ["frame.time_epoch"])
    res["capinfos"] = {
        "packets": packets,
        "encapsulation": re.search(r"File encapsulation:\s*(.*)", cap).group(1).strip(),
        "linktypes": sorted({lt for _, lt, _ in frames}),
        "first_packet_time": me.rfc3339(times[0][0]),
        "last_packet_time": me.rfc3339(times[-1][0]),
    }
    conv = me.run(["tshark", "-n"] + OPTS + ["-r", pcap, "-q", "-z", "conv,tcp"]).decode()
    res["tcp_conversations"] = sum(1 for line in conv.splitlines() if "<->" in line)
    streams = load_streams(pcap)

    files, tls = [], []
    recs = meta.get("records", [])
    for r in recs:
        k = r["kind"]
        if k == "http":
            files.append(http_file(r, streams))
        elif k == "http-object":
            files.append(http_object(r, streams))
        elif k == "ftp":
            files.append(ftp_file(r, streams))
        elif k == "smtp":
            files.append(smtp_message(r, streams, meta.get("smtp_servers", {})))
    tls_recs = [r for r in recs if r["kind"] == "tls"]
    if tls_recs:
        tls = tls_sessions(tls_recs, streams, pcap)
    res["files"] = files
    if tls:
        res["tls_sessions"] = tls
    if any(r["kind"] == "ssh" for r in recs):
        # The clear-text version banners, per stream and sender (tshark's SSH dissector).
        res["ssh_banners"] = [
            {"tcp_stream": int(st), "src": src, "banner": banner}
            for st, src, banner in tshark_fields(pcap, "ssh.protocol", ["tcp.stream", "ip.src", "ssh.protocol"])
        ]
    if any(f["kind"] == "ftp" for f in files):
        res["ftp_commands"] = commands_of(pcap, "ftp")
    if any(f["kind"] == "smtp" for f in files):
        res["smtp_commands"] = commands_of(pcap, "smtp")
    for st in streams:
        del st["_a"], st["_b"]
    res["tcp_streams"] = streams

    sels = []
    for w in WARRANTS:
        nums = [int(r[0]) for r in tshark_fields(pcap, w["filter"], ["frame.number"])]
        sel = {"liid": w["liid"], "filter": w["filter"], "note": w["note"], "packets": len(nums)}
        if w["delivered"]:
            hashes = pcapread.frame_hashes(pcap, nums)
            sel["frame_numbers"] = nums
            sel["frame_sha256"] = [hashes[n][2] for n in nums]
        else:
            sel["delivered_packets"] = 0
        sels.append(sel)
    res["selections"] = sels
    res["counts"] = {label: {"filter": f, "packets": len(tshark_fields(
        pcap, f, ["frame.number"], two_pass=True))} for label, f in meta.get("counts", {}).items()}
    with open(out_path, "w") as f:
        f.write(short(json.dumps(res, indent=1)) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:7])
