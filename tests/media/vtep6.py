#!/usr/bin/env python3
"""A VXLAN tunnel endpoint in user space over IPv6, as a userspace datapath (Open vSwitch's,
a DPDK VTEP) is: frames read from a TAP device are sent in VXLAN (RFC 7348, VNI given) over a
UDP socket to the remote VTEP, and what comes back is written to the TAP. The UDP socket is an
ordinary one, so a datagram larger than the path MTU is fragmented by the host's IPv6 stack,
which a kernel VXLAN device over IPv6 never does (it drops the packet and lowers the overlay's
path MTU instead).

usage: vtep6.py TAP LOCAL REMOTE VNI    (root; runs until killed; prints "ready" once up)
"""
import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
PORT = 4789


def main() -> None:
    tap_name, local, remote, vni = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tap = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", tap_name.encode(), IFF_TAP | IFF_NO_PI))
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind((local, PORT))
    header = struct.pack("!II", 0x08000000, vni << 8)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([tap, udp], [], [])
        if tap in ready:
            udp.sendto(header + os.read(tap, 65536), (remote, PORT))
        if udp in ready:
            packet = udp.recv(65536)
            flags, got = struct.unpack("!II", packet[:8])
            if flags & 0x08000000 and got >> 8 == vni:
                os.write(tap, packet[8:])


if __name__ == "__main__":
    main()
