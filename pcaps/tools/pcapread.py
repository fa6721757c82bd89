#!/usr/bin/env python3
"""Minimal, standard-library-only reader of pcap, pcapng and their gzip copies.

It is the test oracle's own way of getting at frame bytes by frame number (as tshark numbers
them: 1-based, in file order), so it must not share code with tapir. Usage:

    pcapread.py FILE                 # one line per frame: "N linktype caplen sha256"
    pcapread.py FILE 3 7 9           # only those frames
    tshark -r F -Y X -T fields -e frame.number | pcapread.py FILE -   # numbers from stdin
"""
import gzip
import hashlib
import struct
import sys


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def iter_frames(path):
    """Yields (frame_number, linktype, frame_bytes)."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short")
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng(path, data)
    else:
        yield from _pcap(path, data)


def _pcap(path, data):
    m = data[:4]
    if m in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif m in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a pcap/pcapng file (magic {m.hex()})")
    if len(data) < 24:
        raise ValueError(f"{path}: truncated global header")
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    off, n = 24, 0
    while off + 16 <= len(data):
        _sec, _frac, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            raise ValueError(f"{path}: truncated record {n + 1}")
        n += 1
        yield n, linktype, data[off:off + incl]
        off += incl


def _pcapng(path, data):
    off, n = 0, 0
    e = "<"
    ifaces = []
    while off + 12 <= len(data):
        btype = struct.unpack(e + "I", data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            bom = data[off + 8:off + 12]
            e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(e + "I", data[off + 4:off + 8])[0]
        if blen < 12 or off + blen > len(data):
            raise ValueError(f"{path}: bad block length {blen} at offset {off}")
        body = data[off + 8:off + blen - 4]
        if btype == 1:  # Interface Description Block
            ifaces.append(struct.unpack(e + "H", body[0:2])[0])
        elif btype == 6:  # Enhanced Packet Block
            ifid, _th, _tl, caplen, _olen = struct.unpack(e + "IIIII", body[0:20])
            n += 1
            yield n, ifaces[ifid], body[20:20 + caplen]
        elif btype == 3:  # Simple Packet Block: caplen = min(orig, block room)
            olen = struct.unpack(e + "I", body[0:4])[0]
            n += 1
            yield n, ifaces[0], body[4:4 + min(olen, len(body) - 4)]
        elif btype == 2:  # obsolete Packet Block
            ifid, _drops, _th, _tl, caplen, _olen = struct.unpack(e + "HHIIII", body[0:20])
            n += 1
            yield n, ifaces[ifid], body[20:20 + caplen]
        off += blen


def frame_hashes(path, wanted=None):
    """{frame_number: (linktype, caplen, sha256hex)} for wanted frames (all if None)."""
    want = None if wanted is None else set(wanted)
    out = {}
    for num, lt, frame in iter_frames(path):
        if want is None or num in want:
            out[num] = (lt, len(frame), hashlib.sha256(frame).hexdigest())
    if want is not None:
        missing = want - set(out)
        if missing:
            raise ValueError(f"{path}: frames not found: {sorted(missing)[:5]}")
    return out


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    if argv[2:] == ["-"]:
        nums = [int(x) for x in sys.stdin.read().split()]
    elif argv[2:]:
        nums = [int(x) for x in argv[2:]]
    else:
        nums = None
    hashes = frame_hashes(path, nums)
    for num in (nums if nums is not None else sorted(hashes)):
        lt, caplen, h = hashes[num]
        print(num, lt, caplen, h)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
