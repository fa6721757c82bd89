#!/usr/bin/env python3
"""A scripted LEA end for keep-alive behaviour, encoding and decoding with asn1tools.

usage: ka_peer.py PORT MODE
  ask:    on the first connection, send one keep-alive PS-PDU (LIID "KA-LIID", CIN 5, seq 42),
          then print every PDU received as "<payload kind> liid=<LIID> cin=<CIN> seq=<seq>"
          until a keep-aliveResponse arrives, and exit.
  silent: accept connections and read, never answer; print "conn" per connection; exit after
          the third connection.
"""
import os, socket, sys

import asn1tools

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'shared',
                      'schemas', 'etsi', 'derived', 'LI-PS-PDU-IPAccess-subset.asn')
SPEC = asn1tools.compile_files(os.environ.get('LEMF_SCHEMA', SCHEMA), 'ber')


def tlv_len(b):
    if len(b) < 2:
        return None
    first = b[1]
    if first < 0x80:
        n, i = first, 2
    else:
        k = first & 0x7f
        if len(b) < 2 + k:
            return None
        n, i = int.from_bytes(b[2:2 + k], 'big'), 2 + k
    return i + n if len(b) >= i + n else None


port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port))
s.listen(8)
print('listening', flush=True)
if mode == 'silent':
    conns = []
    for _ in range(3):
        c, _ = s.accept()
        conns.append(c)
        print('conn', flush=True)
    sys.exit(0)

c, _ = s.accept()
ka = {
    'pSHeader': {
        'li-psDomainId': '0.4.0.2.2.5.1.43',
        'lawfulInterceptionIdentifier': b'KA-LIID',
        'communicationIdentifier': {'networkIdentifier': {'operatorIdentifier': b'lea'},
                                    'communicationIdentityNumber': 5},
        'sequenceNumber': 42,
    },
    'payload': ('tRIPayload', ('keep-alive', None)),
}
c.sendall(SPEC.encode('PS-PDU', ka))
buf = b''
while True:
    d = c.recv(65536)
    if not d:
        sys.exit(1)
    buf += d
    while (n := tlv_len(buf)) is not None:
        pdu, buf = buf[:n], buf[n:]
        v = SPEC.decode('PS-PDU', pdu)
        h = v['pSHeader']
        kind = v['payload'][0]
        if kind == 'tRIPayload':
            kind = v['payload'][1][0]
        cin = h['communicationIdentifier'].get('communicationIdentityNumber')
        print(f"{kind} liid={h['lawfulInterceptionIdentifier'].decode()} cin={cin} seq={h['sequenceNumber']}", flush=True)
        if kind == 'keep-aliveResponse':
            sys.exit(0)
