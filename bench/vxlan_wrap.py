#!/usr/bin/env python3
"""Wraps every Ethernet frame of a pcap in VXLAN (VNI 5001) between two VTEPs, 192.0.2.1 and
192.0.2.2, the direction chosen by the inner IPv4 source's parity, the outer UDP source port by
the inner frame (as RFC 7348 says a VTEP picks it): a tap-port overlay for bench/live.sh.

usage: vxlan_wrap.py IN.pcap OUT.pcap   (classic pcap, Ethernet, either byte order)
"""
import struct
import sys
import zlib

def main(src, dst):
    data = open(src, "rb").read()
    magic = data[:4]
    e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = [data[:24]]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        fwd = len(frame) >= 30 and frame[29] % 2 == 0
        s, d = ((192, 0, 2, 1), (192, 0, 2, 2)) if fwd else ((192, 0, 2, 2), (192, 0, 2, 1))
        sport = 49152 + zlib.crc32(frame[:64]) % 16384
        vx = struct.pack("!BBHI", 0x08, 0, 0, 5001 << 8) + frame
        udp = struct.pack("!HHHH", sport, 4789, 8 + len(vx), 0) + vx
        ip = struct.pack("!BBHHHBBH4B4B", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, *s, *d) + udp
        eth = bytes((2, 0, 0, 0, 0, d[3], 2, 0, 0, 0, 0, s[3])) + b"\x08\x00" + ip
        out.append(struct.pack(e + "IIII", sec, frac, len(eth), orig + len(eth) - len(frame)) + eth)
    open(dst, "wb").write(b"".join(out))

if __name__ == "__main__":
    main(*sys.argv[1:3])
