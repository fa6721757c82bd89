#!/usr/bin/env python3
"""Independent TLS truth for tests/analyze_tls.rs.

Parses a capture with tshark (`-T json --no-duplicate-keys`), and for every TCP stream whose
first client payload byte starts a ClientHello prints one JSON object with: the flow, SNI, ALPN
offered/selected, negotiated version, cipher suite, JA4 and JA4S computed here from tshark's
fields following FoxIO's JA4.md (written from the spec, not from tapir's code), and the server
leaf certificate's facts as `openssl x509` reads them from the DER bytes tshark reassembled.

Usage: tshark_tls.py CAPTURE  ->  JSON list on stdout.
"""
import datetime
import hashlib
import json
import subprocess
import sys

GREASE = {(i << 12) | 0x0A00 | (i << 4) | 0x0A for i in range(16)}
VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def num(s):
    return int(s, 16) if str(s).startswith("0x") else int(s)


def walk(node, key):
    """Every dict under node that has key."""
    if isinstance(node, dict):
        if key in node:
            yield node
        for v in node.values():
            yield from walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)


def extensions(hs):
    """(type, node) for each extension of a handshake message, in wire order."""
    out = []
    for k, v in hs.items():
        if k.startswith("Extension: "):
            for e in as_list(v):
                out.append((num(e["tls.handshake.extension.type"]), e))
    return out


def first(node, key):
    for d in walk(node, key):
        return d[key]
    return None


def h12(s):
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def alpn_chars(a):
    if not a:
        return "00"
    if a[0].isascii() and a[0].isalnum() and a[-1].isascii() and a[-1].isalnum():
        return a[0] + a[-1]
    b = a.encode()
    return "%x%x" % (b[0] >> 4, b[-1] & 0xF)


def ja4(hs):
    ciphers = [c for c in map(num, as_list(first(hs, "tls.handshake.ciphersuite"))) if c not in GREASE]
    exts = extensions(hs)
    types = [t for t, _ in exts if t not in GREASE]
    sv = [num(v) for t, e in exts if t == 43 for v in as_list(first(e, "tls.handshake.extensions.supported_version"))]
    sv = [v for v in sv if v not in GREASE]
    version = max(sv) if sv else num(hs["tls.handshake.version"])
    alpn = [a for t, e in exts if t == 16 for a in as_list(first(e, "tls.handshake.extensions_alpn_str"))]
    sigs = [num(v) for t, e in exts if t == 13 for v in as_list(first(e, "tls.handshake.sig_hash_alg"))]
    sigs = [s for s in sigs if s not in GREASE]
    a = "t%s%s%02d%02d%s" % (
        VERSIONS.get(version, "00"),
        "d" if 0 in types else "i",
        min(len(ciphers), 99),
        min(len(types), 99),
        alpn_chars(alpn[0] if alpn else ""),
    )
    b = ",".join("%04x" % c for c in sorted(ciphers))
    c = ",".join("%04x" % t for t in sorted(t for t in types if t not in (0, 16)))
    if sigs:
        c += "_" + ",".join("%04x" % s for s in sigs)
    return "%s_%s_%s" % (a, h12(b) if ciphers else "0" * 12, h12(c) if c else "0" * 12)


def server_facts(hs):
    exts = extensions(hs)
    sv = [num(first(e, "tls.handshake.extensions.supported_version")) for t, e in exts if t == 43]
    version = sv[0] if sv else num(hs["tls.handshake.version"])
    cipher = num(first(hs, "tls.handshake.ciphersuite"))
    alpn = [a for t, e in exts if t == 16 for a in as_list(first(e, "tls.handshake.extensions_alpn_str"))]
    types = [t for t, _ in exts]
    ja4s = "t%s%02d%s_%04x_%s" % (
        VERSIONS.get(version, "00"),
        min(len(types), 99),
        alpn_chars(alpn[0] if alpn else ""),
        cipher,
        h12(",".join("%04x" % t for t in types)) if types else "0" * 12,
    )
    return {
        "version": NAMES.get(version, "0x%04x" % version),
        "cipher_suite_id": "0x%04x" % cipher,
        "alpn_selected": alpn[0] if alpn else None,
        "ja4s": ja4s,
    }


def openssl_cert(der):
    out = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-dates", "-ext", "subjectAltName",
         "-subject", "-issuer", "-nameopt", "multiline,utf8,-esc_msb"],
        input=der, capture_output=True, check=True,
    ).stdout.decode()
    facts = {"sha256": hashlib.sha256(der).hexdigest(), "dns_sans": [], "subject_cn": [], "issuer_cn": []}
    section = None
    for line in out.splitlines():
        s = line.strip()
        if line.startswith("serial="):
            facts["serial"] = s.split("=", 1)[1].lower()
        elif line.startswith("notBefore=") or line.startswith("notAfter="):
            k, v = s.split("=", 1)
            t = datetime.datetime.strptime(v, "%b %d %H:%M:%S %Y GMT")
            facts["not_before" if k == "notBefore" else "not_after"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif line.startswith("subject="):
            section = "subject_cn"
        elif line.startswith("issuer="):
            section = "issuer_cn"
        elif s.startswith("DNS:"):
            facts["dns_sans"] = [p.strip()[4:] for p in s.split(",") if p.strip().startswith("DNS:")]
        elif section and s.startswith("commonName"):
            facts[section].append(s.split("=", 1)[1].strip())
    return facts


def main(path):
    # One tshark pass over every frame with TCP payload (a second pass, for the handshakes
    # alone, cost as much again in tshark's start-up).
    raw = subprocess.run(
        ["tshark", "-r", path, "-Y", "tcp.len > 0", "-T", "json", "--no-duplicate-keys", "-J", "ip ipv6 tcp tls"],
        capture_output=True, check=True,
    ).stdout
    frames = json.loads(raw or b"[]")
    # Streams that are TLS from their first client byte (not STARTTLS, not a CONNECT tunnel):
    # the first payload the ClientHello's sender put in the stream starts a handshake record
    # holding a ClientHello.
    firsts = {}
    sessions = {}
    for f in frames:
        layers = f["_source"]["layers"]
        tcp = as_list(layers.get("tcp"))[-1]
        stream = tcp["tcp.stream"]
        payload = tcp.get("tcp.payload", "").replace(":", "")
        firsts.setdefault((stream, tcp["tcp.srcport"]), payload.startswith("1603") and payload[10:12] == "01")
        net = as_list(layers.get("ipv6") or layers.get("ip"))[-1]
        if "ipv6.src" in net:
            src, dst = "[%s]:%s" % (net["ipv6.src"], tcp["tcp.srcport"]), "[%s]:%s" % (net["ipv6.dst"], tcp["tcp.dstport"])
        else:
            src, dst = "%s:%s" % (net["ip.src"], tcp["tcp.srcport"]), "%s:%s" % (net["ip.dst"], tcp["tcp.dstport"])
        for hs in walk(layers.get("tls"), "tls.handshake.type"):
            ty = num(hs["tls.handshake.type"])
            s = sessions.setdefault(stream, {})
            if ty == 1 and "client" not in s:
                s.update(client=src, server=dst, tls_from_start=firsts.get((stream, tcp["tcp.srcport"]), False))
                exts = extensions(hs)
                sni = [first(e, "tls.handshake.extensions_server_name") for t, e in exts if t == 0]
                s["sni"] = sni[0] if sni else None
                s["alpn_offered"] = [a for t, e in exts if t == 16 for a in as_list(first(e, "tls.handshake.extensions_alpn_str"))]
                s["ja4"] = ja4(hs)
            elif ty == 2 and "version" not in s:
                facts = server_facts(hs)
                if facts is not None:
                    s.update(facts)
            elif ty == 11 and "cert" not in s and s.get("version") not in (None, "TLS 1.3"):
                certs = as_list(first(hs, "tls.handshake.certificate"))
                if certs:
                    s["cert"] = openssl_cert(bytes.fromhex(certs[0].replace(":", "")))
    out = [dict(stream=k, **v) for k, v in sorted(sessions.items(), key=lambda kv: int(kv[0])) if "client" in v]
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
