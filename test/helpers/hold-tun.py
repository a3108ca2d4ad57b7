#!/usr/bin/python3
"""Holds a persistent TUN device open until killed: `hold-tun.py dn0`.

A persistent TUN has carrier exactly while a process has it open, which is
what BIRD's link check on a router follows. The namespace tests of the
routing side use this where a `distnat router` cannot run yet (a second
router on the LAN needs the leases shared on etcd first).
"""
import fcntl
import os
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

# Explicitly: a process started in the background may inherit SIGTERM ignored.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", sys.argv[1].encode(), IFF_TUN | IFF_NO_PI))
print(f"holding {sys.argv[1]}", flush=True)
signal.pause()
