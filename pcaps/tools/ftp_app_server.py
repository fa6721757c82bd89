#!/usr/bin/env python3
"""FTP server for the app fixtures only: pyftpdlib with explicit TLS available (AUTH TLS,
self-signed cert) but not required, so plain and TLS sessions share one server. User joe
(all permissions) rooted at --dir; passive ports 60000-60019; one listener per --bind address
(IPv4 and IPv6), so EPSV/EPRT over IPv6 and PASV/PORT over IPv4 each use their own family.

Usage: ftp_app_server.py --bind 203.0.113.10 --bind 2001:db8::10 --dir D --cert C --key K
"""
import argparse
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", action="append", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--password", default="secret")
    a = p.parse_args()
    auth = DummyAuthorizer()
    auth.add_user("joe", a.password, a.dir, perm="elradfmwMT")

    class Handler(TLS_FTPHandler):
        pass

    Handler.authorizer = auth
    Handler.certfile = a.cert
    Handler.keyfile = a.key
    Handler.tls_control_required = False
    Handler.tls_data_required = False
    Handler.passive_ports = range(60000, 60020)
    Handler.banner = "fixture FTP server ready."
    # every FTPServer registers with the same IOLoop singleton: one loop serves them all
    servers = [FTPServer((b, a.port), Handler) for b in a.bind]
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
