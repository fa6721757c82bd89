#!/usr/bin/env python3
"""A capture of RADIUS accounting churn, as a tap beside a busy BRAS/NAS sees it: SESSIONS
access sessions of distinct subscribers and addresses, each an Accounting-Request Start,
INTERIMS Interim-Updates and a Stop (RFC 2866), one session starting every 10 ms.
Usage: gen_radius_churn.py OUT.pcap SESSIONS [INTERIMS]"""
import struct
import sys

out, sessions = sys.argv[1], int(sys.argv[2])
interims = int(sys.argv[3]) if len(sys.argv) > 3 else 3
T0 = 1_800_000_000


def attr(t, v):
    return struct.pack('!BB', t, len(v) + 2) + v


def radius(ident, status, user, ip, session):
    attrs = (attr(1, user) + attr(8, bytes(ip)) + attr(40, struct.pack('!I', status)) + attr(44, session))
    return struct.pack('!BBH', 4, ident & 0xff, 20 + len(attrs)) + b'\0' * 16 + attrs


def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def frame(payload):
    udp = struct.pack('!HHHH', 40000, 1813, 8 + len(payload), 0) + payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, bytes([192, 0, 2, 10]),
                     bytes([192, 0, 2, 1]))
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    return b'\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00' + ip + udp


records = []
for i in range(sessions):
    user = b'sub%07d' % i
    ip = (100, 64 + (i >> 16) % 64, (i >> 8) & 0xff, i & 0xff)
    sid = b'%08x' % i
    t = i * 10_000  # microseconds
    records.append((t, frame(radius(i, 1, user, ip, sid))))
    for k in range(interims):
        records.append((t + (k + 1) * 1_000_000, frame(radius(i, 3, user, ip, sid))))
    records.append((t + (interims + 1) * 1_000_000, frame(radius(i, 2, user, ip, sid))))
records.sort(key=lambda r: r[0])
with open(out, 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for t, fr in records:
        f.write(struct.pack('<IIII', T0 + t // 1_000_000, t % 1_000_000, len(fr), len(fr)))
        f.write(fr)
