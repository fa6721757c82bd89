#!/usr/bin/env python3
"""HTTP/1.1 server for the app fixtures only (standard library): stores what clients upload.

PUT  /upload/NAME, /v2/images/<id>/file, any path  -> body saved as DIR/<last path segment>
     (Content-Length or chunked; Content-Encoding: gzip is decoded before saving); 201
     (204 for the OpenStack image path, as glance answers)
PUT  /bucket/key?partNumber=N&uploadId=U           -> S3-style part, ETag = md5 of the part
POST /bucket/key?uploads                           -> InitiateMultipartUpload, new UploadId
POST /bucket/key?uploadId=U                        -> CompleteMultipartUpload: parts joined
POST multipart/form-data                           -> every part with a filename saved
POST other                                         -> body saved as DIR/<last path segment>
GET  /files/NAME                                   -> DIR/../serve/NAME (--serve)

Serves on every --bind address (IPv4 and IPv6) at once. Keep-alive and pipelining work
because BaseHTTPRequestHandler reads requests one after the other from one buffered stream.

With --cert/--key it speaks HTTPS instead (ALPN: http/1.1 only).

Usage: http_app_server.py --bind 203.0.113.10 --bind 2001:db8::10 --port 80 --dir D --serve S
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import socket
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STORE, SERVE = ".", "."
PARTS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fixture-app/1"

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline(16)
            body = bytes(out)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _reply(self, code, data=b"", ctype="application/json", extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        if code != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if code != 204:
            self.wfile.write(data)

    def _store(self, name, data):
        name = os.path.basename(name) or "unnamed"
        with open(os.path.join(STORE, name), "wb") as f:
            f.write(data)
        return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def _json(self, code, obj, extra=()):
        self._reply(code, (json.dumps(obj) + "\n").encode(), extra=extra)

    def do_PUT(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        body = self._body()
        if "uploadId" in q and "partNumber" in q:
            PARTS.setdefault(q["uploadId"][0], {})[int(q["partNumber"][0])] = body
            self._reply(200, b"", extra=[("ETag", '"%s"' % hashlib.md5(body).hexdigest())])
            return
        if re.fullmatch(r"/v2/images/[0-9a-f-]+/file", u.path):
            self._store(u.path.split("/")[3] + ".image", body)
            self._reply(204)
            return
        self._json(201, {"stored": [self._store(u.path, body)]})

    def do_POST(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query, keep_blank_values=True)
        body = self._body()
        key = u.path.split("/")[-1]
        if "uploads" in q:
            uid = uuid.uuid4().hex
            PARTS[uid] = {}
            xml = ("<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key>"
                   "<UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                   % (u.path.split("/")[1], key, uid))
            self._reply(200, xml.encode(), "application/xml")
            return
        if "uploadId" in q:
            parts = PARTS.pop(q["uploadId"][0])
            nums = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
            st = self._store(key, b"".join(parts[n] for n in nums))
            xml = ("<CompleteMultipartUploadResult><Key>%s</Key><ETag>\"%s-%d\"</ETag>"
                   "</CompleteMultipartUploadResult>" % (key, st["sha256"][:32], len(nums)))
            self._reply(200, xml.encode(), "application/xml")
            return
        m = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        stored = []
        if m:
            delim = b"--" + m.group(1).encode()
            for part in body.split(delim)[1:]:
                if part.startswith(b"--"):
                    break
                head, _, content = part.partition(b"\r\n\r\n")
                fn = re.search(rb'filename="([^"]*)"', head)
                if fn:
                    stored.append(self._store(fn.group(1).decode(), content[:-2]))
        else:
            stored.append(self._store(u.path, body))
        self._json(201, {"stored": stored})

    def do_GET(self):
        name = os.path.basename(urlsplit(self.path).path)
        p = os.path.join(SERVE, name)
        if not os.path.isfile(p):
            self._reply(404, b"not found\n", "text/plain")
            return
        with open(p, "rb") as f:
            self._reply(200, f.read(), "application/octet-stream")

    def log_message(self, fmt, *args):
        pass


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def main():
    global STORE, SERVE
    p = argparse.ArgumentParser()
    p.add_argument("--bind", action="append", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--dir", required=True)
    p.add_argument("--serve", default=".")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    STORE, SERVE = a.dir, a.serve
    os.makedirs(STORE, exist_ok=True)
    servers = [(V6Server if ":" in b else ThreadingHTTPServer)((b, a.port), Handler)
               for b in a.bind]
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        for s in servers:
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
