#!/usr/bin/env python3
"""A TLS front for the plain-TCP LEMF: accepts TLS 1.3 on LISTEN with CERT/KEY, requires a client
certificate chaining to CLIENT_CA, and relays bytes both ways to 127.0.0.1:UPSTREAM.
Each accepted client's certificate subject is printed on stdout ("client: ..."), each failed
handshake as "handshake-failed: ...".

usage: tls_proxy.py LISTEN CERT KEY CLIENT_CA UPSTREAM
"""
import select, socket, ssl, sys, threading

listen, cert, key, ca, upstream = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED


def relay(c, u):
    # One thread per connection: an SSL object must not be used by two threads at once.
    try:
        while True:
            ready = [c] if c.pending() else select.select([c, u], [], [])[0]
            for s in ready:
                d = s.recv(65536)
                if not d:
                    return
                (u if s is c else c).sendall(d)
    except OSError:
        pass
    finally:
        c.close()
        u.close()


def client(raw):
    try:
        c = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print('handshake-failed:', e, flush=True)
        raw.close()
        return
    print('client:', dict(x[0] for x in c.getpeercert()['subject']), c.version(), flush=True)
    u = socket.create_connection(('127.0.0.1', upstream))
    relay(c, u)


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', listen))
s.listen(8)
print('listening', flush=True)
while True:
    raw, _ = s.accept()
    threading.Thread(target=client, args=(raw,), daemon=True).start()
