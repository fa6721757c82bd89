#!/usr/bin/env python3
"""SMTP server for the app fixtures only (aiosmtpd): accepts every message and stores it.

Advertises STARTTLS (self-signed cert) and AUTH PLAIN/LOGIN without TLS (user joe, password
given), so both can be seen in clear in a capture. Each accepted message is stored as
DIR/NNN.eml (aiosmtpd's `original_content`: the message as the client submitted it, after
undoing dot-stuffing) and DIR/NNN.json (envelope: mail_from, rcpt_tos, auth login, peer).

Usage: smtp_app_server.py --bind 203.0.113.10 --port 25 --dir D --cert C --key K --password P
"""
import argparse
import json
import os
import signal
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Store:
    def __init__(self, d):
        self.dir, self.n = d, 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        base = os.path.join(self.dir, "%03d" % self.n)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        login = session.auth_data
        if isinstance(login, (bytes, bytearray)):
            login = login.decode()
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "auth_login": login, "peer": list(session.peer)[:2],
                "tls": session.ssl is not None}
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        return "250 OK stored %03d" % self.n


class Auth:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, data):
        ok = (isinstance(data, LoginPassword) and data.login == self.user
              and data.password == self.password)
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


class TlsController(Controller):
    def __init__(self, handler, ctx, auth, **kw):
        self.ctx, self.auth = ctx, auth
        super().__init__(handler, **kw)

    def factory(self):
        return SMTP(self.handler, hostname="mx.example.net", tls_context=self.ctx,
                    require_starttls=False, auth_require_tls=False, authenticator=self.auth,
                    decode_data=False)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=25)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", default="joe")
    p.add_argument("--password", required=True)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    c = TlsController(Store(a.dir), ctx, Auth(a.user, a.password), hostname=a.bind,
                      port=a.port)
    c.start()
    signal.pause()  # the controller serves in its own thread until SIGTERM


if __name__ == "__main__":
    main()
