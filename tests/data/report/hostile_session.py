#!/usr/bin/env python3
"""Hostile wire input for tests/report_html.rs: on loopback, a client uploads a file whose
name is markup (an HTTP multipart POST: a request line cannot hold the name's spaces; hostile
User-Agent) and sends a mail whose subject, sender name and
HTML body are script (SMTP), each to a server of this script's own. The caller captures lo.

Usage: hostile_session.py HTTP_PORT SMTP_PORT
"""
import http.client
import smtplib
import socket
import sys
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer

HTTP_PORT, SMTP_PORT = int(sys.argv[1]), int(sys.argv[2])
NAME = "<img src=x onerror=document.title='PWNED-NAME'>.bin"
AGENT = "<script>document.title='PWNED-AGENT'</script>"
SUBJECT = "<script>document.title='PWNED-SUBJECT'</script>"
SENDER = "<b onmouseover=\"document.title='PWNED-FROM'\">Eve</b>"
HTML = ("<html><body><script>document.title='PWNED-BODY'</script>"
        "<img src=\"http://remote.invalid/track.png\">hello from the HTML body</body></html>")


class Post(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def smtp_server(sock):
    c, _ = sock.accept()
    f = c.makefile("rb")
    c.sendall(b"220 mx.invalid ESMTP\r\n")
    while True:
        line = f.readline()
        if not line:
            break
        cmd = line[:4].upper()
        if cmd in (b"EHLO", b"HELO"):
            c.sendall(b"250 mx.invalid\r\n")
        elif cmd == b"DATA":
            c.sendall(b"354 go on\r\n")
            while f.readline() not in (b".\r\n", b""):
                pass
            c.sendall(b"250 queued\r\n")
        elif cmd == b"QUIT":
            c.sendall(b"221 bye\r\n")
            break
        else:
            c.sendall(b"250 ok\r\n")
    c.close()


httpd = HTTPServer(("127.0.0.1", HTTP_PORT), Post)
threading.Thread(target=httpd.handle_request, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", SMTP_PORT))
s.listen(1)
t = threading.Thread(target=smtp_server, args=(s,), daemon=True)
t.start()

part = b"not really a file\n" * 100
body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"" + NAME.encode() + b"\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + part + b"\r\n--XyZ--\r\n")
conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT)
conn.request("POST", "/upload", body=body, headers={
    "User-Agent": AGENT, "Content-Type": "multipart/form-data; boundary=XyZ"})
assert conn.getresponse().status == 201
conn.close()

m = EmailMessage()
m["From"] = "%s <eve@example.org>" % SENDER
m["To"] = "victim@example.org"
m["Subject"] = SUBJECT
m["Message-ID"] = "<hostile@example.org>"
m.set_content(HTML, subtype="html")
with smtplib.SMTP("127.0.0.1", SMTP_PORT) as c:
    c.send_message(m)
t.join(5)
