#!/usr/bin/python3
"""Writes the malformed-packet corpus of `npm run fuzz` as pcap files.

    corpus.py SPEC.json

SPEC names the seed and, for each stream, its file, packet count, kind and
addresses (scripts/fuzz/run.ts writes it). Kinds:

  wan     Ethernet frames to the router's WAN interface, for the shared address
  tunnel  Ethernet frames carrying IP-in-IP (outer SRC -> DST, protocol 4)
  tun     bare IPv4 (LINKTYPE_RAW) for a TUN device: what its kernel side would send

Every packet starts from a datagram scapy builds (UDP, TCP, ICMP queries and
errors, ESP, AH, IP-in-IP, PAP, fragments, options) or from scapy's fuzz()
of such a shape, and most are then damaged: truncated, bit-flipped, fields
overwritten, junk appended.

What the receiving kernel checks before distnat sees a packet is kept
countable. From the WAN the datagram itself is that header: its addresses
are fixed, source-route options are taken out (a kernel with
accept_source_route off drops them without a counter) and it is at most the
TUN's MTU (no kernel fragments it on the way), so the kernel either passes
it on or drops it with a counter of /proc/net/snmp (checksum, version,
header and total length, TTL, options). IP-in-IP always has a sound outer
header, so every such packet reaches distnat's raw socket: the inner
datagram is what is damaged. Nothing checks what is written into a TUN.

scapy builds the shapes; the mutations work on bytes, so a million packets
take seconds rather than the hour scapy's own layers would.
"""

import json
import random
import struct
import sys

from scapy.all import ICMP, IP, TCP, UDP, Raw, fuzz, raw
from scapy.layers.inet import IPOption_NOP, IPOption_RR
from scapy.layers.ipsec import AH, ESP

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
IP_MAX = 1480  # the TUN's MTU: nothing bigger, so no kernel fragments one on its way
PAP_PORT = 7032
FUZZ_POOL = 800  # distinct fuzz() packets per stream (scapy takes ~3 ms each); each is damaged again when used


def ip_sum(header):
    if len(header) % 2:
        header += b"\0"
    s = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def fix_ip_sum(b):
    """Recomputes the IPv4 header checksum of bytearray b in place, when it has a header."""
    if len(b) < 20:
        return
    ihl = (b[0] & 0x0F) * 4
    if ihl < 20 or ihl > len(b):
        ihl = 20
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", ip_sum(bytes(b[:ihl])))


class Shapes:
    """Valid datagrams of every shape distnat demultiplexes, and fuzz() of them."""

    def __init__(self, rng, src, dst, own_ports, other_dst):
        self.rng = rng
        self.src = src
        self.dst = dst
        self.own = own_ports  # ports (and ICMP ids) that some host leases
        self.other_dst = other_dst

    def port(self):
        r = self.rng
        return r.choice(self.own) if r.random() < 0.5 else r.randrange(0, 65536)

    def payload(self):
        r = self.rng
        return r.randbytes(r.choice((0, 1, 4, 8, 16, 64, 200)))

    def shape(self, i):
        """The i-th valid datagram (round robin over the shapes)."""
        r = self.rng
        p = self.port
        dst = self.dst if r.random() < 0.95 else self.other_dst
        ip = IP(src=self.src, dst=dst, id=r.randrange(65536), ttl=r.choice((64, 64, 64, 2, 1)))
        kind = i % 14
        if kind == 0:
            return ip / UDP(sport=p(), dport=p()) / Raw(self.payload())
        if kind == 1:
            flags = r.choice(("S", "SA", "A", "PA", "FA", "R", ""))
            return ip / TCP(sport=p(), dport=p(), flags=flags, seq=r.getrandbits(32)) / Raw(self.payload())
        if kind == 2:
            return ip / ICMP(type=r.choice((0, 8, 13, 14)), id=p(), seq=r.randrange(65536)) / Raw(self.payload())
        if kind == 3:
            quoted = IP(src=self.dst, dst=self.src, ttl=1) / UDP(sport=p(), dport=p())
            return ip / ICMP(type=r.choice((3, 11, 12)), code=r.randrange(5)) / raw(quoted)[: r.choice((8, 20, 28))]
        if kind == 4:
            quoted = IP(src=self.dst, dst=self.src, proto=50) / ESP(spi=r.getrandbits(32), seq=1)
            return ip / ICMP(type=3, code=r.choice((1, 3, 4))) / raw(quoted)[:28]
        if kind == 5:
            return ip / ESP(spi=r.choice((r.randrange(256), r.getrandbits(32))), seq=r.getrandbits(32)) / Raw(self.payload())
        if kind == 6:
            return ip / AH(spi=r.choice((r.randrange(256), r.getrandbits(32))), seq=r.getrandbits(32), nh=r.choice((6, 17, 4))) / Raw(self.payload())
        if kind == 7:
            return ip / IP(src=self.src, dst=self.dst) / UDP(sport=p(), dport=p()) / Raw(self.payload())
        if kind == 8:
            # PAP: a request to the router's port, and PAP over ICMP (types 32, 33)
            body = struct.pack("!BBHI", 1, r.randrange(8), r.randrange(65536), r.getrandbits(32)) + self.payload()
            if r.random() < 0.5:
                return ip / UDP(sport=p(), dport=PAP_PORT) / Raw(body)
            return ip / ICMP(type=r.choice((32, 33))) / Raw(body)
        if kind == 9:
            # a first fragment
            ip.flags = "MF"
            return ip / UDP(sport=p(), dport=p()) / Raw(self.payload())
        if kind == 10:
            # a later fragment, 8-byte offset (RFC 1858 3.2) included
            ip.frag = r.choice((1, 2, 3, 100))
            ip.flags = r.choice(("", "MF"))
            ip.proto = r.choice((6, 17, 1, 50))
            return ip / Raw(self.payload() or b"x" * 8)
        if kind == 11:
            ip.options = [IPOption_NOP(), IPOption_RR(routers=["0.0.0.0"])]
            return ip / UDP(sport=p(), dport=p()) / Raw(self.payload())
        if kind == 12:
            ip.proto = r.choice((0, 2, 47, 58, 132, 255))
            return ip / Raw(self.payload())
        return ip / UDP(sport=p(), dport=p(), len=r.choice((0, 7, 9, 65535))) / Raw(self.payload())

    def fuzzed(self, i):
        """scapy's fuzz() of a shape: every field not set at random."""
        r = self.rng
        ip = IP(src=self.src, dst=self.dst)
        kind = i % 7
        if kind == 0:
            return fuzz(ip / UDP())
        if kind == 1:
            return fuzz(ip / TCP())
        if kind == 2:
            return fuzz(ip / ICMP())
        if kind == 3:
            return fuzz(ip / ESP())
        if kind == 4:
            return fuzz(ip / AH())
        if kind == 5:
            return fuzz(ip / IP(src=self.src, dst=self.dst) / UDP())
        return fuzz(ip / UDP(dport=PAP_PORT) / Raw(r.randbytes(12)))


def damage(rng, b):
    """One mutation of datagram bytes b (bytearray), by kind; returns the new bytes."""
    k = rng.random()
    n = len(b)
    if k < 0.10 or n == 0:
        return b  # left whole: the valid share
    if k < 0.32:
        cut = rng.randrange(0, n)
        b = b[:cut]
        if cut >= 20 and rng.random() < 0.6:
            # the header says so: truncated transport, not a lying length
            b[2:4] = struct.pack("!H", cut)
            fix_ip_sum(b)
        return b
    if k < 0.60:
        for _ in range(rng.randrange(1, 9)):
            at = rng.randrange(n)
            b[at] ^= 1 << rng.randrange(8)
        if rng.random() < 0.5:
            fix_ip_sum(b)
        return b
    if k < 0.72:
        at = rng.randrange(min(n, 60))
        for j in range(at, min(n, at + rng.randrange(1, 5))):
            b[j] = rng.choice((0, 0xFF, rng.getrandbits(8)))
        if rng.random() < 0.7:
            fix_ip_sum(b)
        return b
    if k < 0.80:
        b += rng.randbytes(rng.randrange(1, 64))
        return b
    if k < 0.90 and n >= 20:
        # one IPv4 header field at an edge value, the checksum right
        f = rng.randrange(6)
        if f == 0:
            b[0] = (b[0] & 0xF0) | rng.choice((0, 4, 6, 15))
        elif f == 1:
            b[2:4] = struct.pack("!H", rng.choice((0, 19, 20, n + 1, 65535)))
        elif f == 2:
            b[6:8] = struct.pack("!H", rng.choice((0x2000, 0x1FFF, 0x0001, 0x3FFF, 0x4000)))
        elif f == 3:
            b[8] = rng.choice((0, 1, 255))
        elif f == 4:
            b[9] = rng.randrange(256)
        else:
            b[0] = (b[0] & 0xF0) | rng.randrange(5, 16)
        fix_ip_sum(b)
        return b
    return bytearray(rng.randbytes(rng.randrange(1, 80)))


def sanitize_kernel_header(rng, b, src, dst):
    """Keeps an IPv4 header the receiving kernel checks within what it counts (see the module doc)."""
    if len(b) < 20:
        b += bytes(20 - len(b))
    if len(b) > IP_MAX:
        del b[IP_MAX:]
    b[12:16] = src
    b[16:20] = dst
    ihl = (b[0] & 0x0F) * 4
    # Source-route options are dropped by a kernel with accept_source_route off, uncounted.
    for j in range(20, min(ihl, len(b))):
        if b[j] in (0x83, 0x89):
            b[j] = 0x01
    if rng.random() < 0.93:
        fix_ip_sum(b)
    return b


def outer_header(rng, src, dst, inner_len):
    """A sound outer header, protocol 4: the receiving kernel delivers it to distnat whatever the inner holds."""
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + inner_len, rng.randrange(65536),
                              rng.choice((0, 0x4000)), 64, 4, 0, src, dst))
    h[10:12] = struct.pack("!H", ip_sum(bytes(h)))
    return h


def aton(a):
    return bytes(int(x) for x in a.split("."))


def mac(m):
    return bytes(int(x, 16) for x in m.split(":"))


def write_stream(stream, seed):
    rng = random.Random("%s/%s" % (seed, stream["name"]))
    random.seed(rng.getrandbits(64))  # scapy's fuzz() draws from the module's generator
    kind = stream["kind"]
    count = stream["count"]
    own = list(stream["ownPorts"])
    shapes = Shapes(rng, stream["innerSrc"], stream["innerDst"], own, stream["otherDst"])
    base = [bytearray(raw(shapes.shape(i))) for i in range(256)]
    pool = [bytearray(raw(shapes.fuzzed(i))) for i in range(min(FUZZ_POOL, max(1, count // 5)))]
    outer_src = aton(stream.get("outerSrc", "0.0.0.0"))
    outer_dst = aton(stream.get("outerDst", "0.0.0.0"))
    wan_src = aton(stream["innerSrc"])
    wan_dst = aton(stream["innerDst"])
    eth = b""
    if kind != "tun":
        eth = mac(stream["dstMac"]) + mac(stream["srcMac"]) + b"\x08\x00"
    linktype = LINKTYPE_RAW if kind == "tun" else LINKTYPE_ETHERNET
    with open(stream["file"], "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i in range(count):
            src = pool if rng.random() < 0.2 else base
            pkt = damage(rng, bytearray(src[rng.randrange(len(src))]))
            if kind == "wan":
                pkt = sanitize_kernel_header(rng, pkt, wan_src, wan_dst)
            elif kind == "tunnel":
                del pkt[IP_MAX:]
                pkt = outer_header(rng, outer_src, outer_dst, len(pkt)) + pkt
            else:
                del pkt[IP_MAX:]
                if not pkt:
                    pkt = bytearray(b"\x45")
            frame = eth + pkt
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(frame), len(frame)))
            f.write(frame)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    for stream in spec["streams"]:
        write_stream(stream, spec["seed"])


if __name__ == "__main__":
    main()
