#!/usr/bin/env python3
"""Tiny HTTP/1.1 upload server used only to make capture fixtures (standard library only).

PUT /any/path/NAME   -> body (Content-Length or chunked) saved as DIR/NAME, 201
POST (multipart/form-data) -> every part with a filename saved as DIR/<filename>, 201
GET                  -> 200 with a short text body

Each 201 reply carries the size and SHA-256 of what was stored, so the fixture script can
check that the server received exactly the file the client sent.

Usage: http_upload_server.py --bind 0.0.0.0 --port 80 --dir /tmp/x
"""
import argparse
import hashlib
import json
import os
import re
from http.server import BaseHTTPRequestHandler, HTTPServer

STORE = "."


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as curl expects
    server_version = "fixture-upload/1"

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(16)
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def _reply(self, code, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _store(self, name, data):
        name = os.path.basename(name) or "unnamed"
        with open(os.path.join(STORE, name), "wb") as f:
            f.write(data)
        return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def do_PUT(self):
        body = self._body()
        self._reply(201, {"stored": [self._store(self.path.split("?")[0], body)]})

    def do_POST(self):
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        stored = []
        if m:
            delim = b"--" + m.group(1).encode()
            for part in body.split(delim)[1:]:
                if part.startswith(b"--"):
                    break
                head, _, content = part.partition(b"\r\n\r\n")
                fn = re.search(rb'filename="([^"]*)"', head)
                if fn:
                    # the part ends with the CRLF that precedes the next delimiter
                    stored.append(self._store(fn.group(1).decode(), content[:-2]))
        else:
            stored.append(self._store("post-body.bin", body))
        self._reply(201, {"stored": stored})

    def do_GET(self):
        data = b"hello from the fixture server\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


def main():
    global STORE
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    STORE = a.dir
    os.makedirs(STORE, exist_ok=True)
    HTTPServer((a.bind, a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
