#!/usr/bin/python3
"""The far end of distnat's manually keyed ESP and AH, on scapy's IPsec layer.

scapy.layers.ipsec shares no code with distnat's engine (src/ipsec/), so a
host agent that talks to this program has met a second implementation of
RFC 4302 and RFC 4303 with plain ESP (IP protocol 50) and AH (51), no UDP.

Run with Debian's python3 (the one with scapy), as root in the namespace of
the addresses the hosts' policies name as remote:

    /usr/bin/python3 test/oracles/ipsec_responder.py --mirror h1.yaml --mirror h2.yaml \
        [--udp-port 7007]
    /usr/bin/python3 test/oracles/ipsec_responder.py --mirror h1.yaml ... --check-pcap wan.pcapng

It reads the hosts' own manual keying files (docs/ipsec.md) and takes the
other side of every SA that names a policy: a host's outbound SA is one this
program opens, the host's inbound SA of the same policy is the one it answers
with. Transport mode only; anything else in the files is refused at start.

Responder mode answers ICMP echo requests and UDP datagrams to --udp-port
that arrive inside ESP or AH, with the same payload, inside the paired SA.
One JSON object per line on stdout:

    {"event": "ready", ...}                     raw sockets open, SAs built
    {"event": "in", "ok": true, ...}            opened/verified, inner packet described
    {"event": "in", "ok": false, "error": ...}  ICV or decryption failed, unknown SPI, ...
    {"event": "out", ...}                       the answer sent, protected

Check mode opens or verifies every ESP/AH packet of a capture, in both
directions, with the same SAs and prints one "in"-style object per packet.

Why raw sockets and not a sniffer: the namespace's kernel has no ESP or AH
module. A datagram of a protocol nobody handles makes the kernel answer
"protocol unreachable" in the clear unless a raw socket of that protocol took
it (ip_local_deliver_finish). Holding raw sockets for 50 and 51 is what keeps
the kernel silent; since it cannot open ESP or AH, it never sees the ICMP or
UDP inside and so never answers them either. Answers leave through an
IPPROTO_RAW socket with the header built here, so the AH ICV covers exactly
what is sent (the kernel fills in only the total length and checksum, both
already right).
"""

import argparse
import json
import os
import select
import socket
import sys
import warnings

warnings.filterwarnings("ignore")

import yaml  # noqa: E402
from scapy.layers.inet import ICMP, IP, UDP  # noqa: E402
from scapy.layers.ipsec import AH, ESP, SecurityAssociation  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import PcapNgReader, PcapReader  # noqa: E402

# distnat's algorithm names (src/ipsec/manual-config.ts) -> scapy's.
ENCRYPTION = {"aes-gcm-16": "AES-GCM", "aes-cbc": "AES-CBC", "null": "NULL"}
INTEGRITY = {
    "hmac-sha256-128": "SHA2-256-128",
    "hmac-sha384-192": "SHA2-384-192",
    "hmac-sha512-256": "SHA2-512-256",
    "hmac-sha1-96": "HMAC-SHA1-96",
}
PROTOCOLS = {"any": 0, "icmp": 1, "tcp": 6, "udp": 17, "esp": 50, "ah": 51}


def key_bytes(text):
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def spi_of(value):
    return int(value, 16) if isinstance(value, str) else int(value)


def port_range(value):
    if value in (None, "any"):
        return None
    if isinstance(value, int):
        return (value, value)
    first, _, last = value.partition("-")
    return (int(first), int(last or first))


def address_of(value):
    """The one address a transport-mode policy end must name here."""
    if value in (None, "any") or "/" in value or "-" in value:
        raise SystemExit("policy ends must be single addresses, got %r" % value)
    return value


class Sa:
    """One side of a distnat SA, as scapy sees it."""

    def __init__(self, source, entry, policy):
        self.source = source
        self.name = entry.get("name", "")
        self.policy = policy["name"]
        self.proto = entry["protocol"]
        self.spi = spi_of(entry["spi"])
        self.host_direction = entry["direction"]
        if entry.get("mode", "transport") != "transport":
            raise SystemExit("%s: SA %s: only transport mode is answered here" % (source, self.name))
        if entry.get("encap") is not None or entry.get("esn"):
            raise SystemExit("%s: SA %s: no ESP-in-UDP or ESN here" % (source, self.name))
        integrity = entry.get("integrity")
        auth = {}
        if integrity is not None:
            auth = {"auth_algo": INTEGRITY[integrity["algorithm"]], "auth_key": key_bytes(integrity["key"])}
        if self.proto == "esp":
            enc = entry["encryption"]
            algorithm = "null" if enc["algorithm"] is None else enc["algorithm"]
            self.sa = SecurityAssociation(
                ESP,
                spi=self.spi,
                crypt_algo=ENCRYPTION[algorithm],
                crypt_key=key_bytes(enc.get("key", "")) or None,
                **auth,
            )
        else:
            self.sa = SecurityAssociation(AH, spi=self.spi, **auth)
        # The policy as the host wrote it: local is the host's (shared) address.
        self.host_addr = address_of(policy.get("local"))
        self.peer_addr = address_of(policy.get("remote"))
        self.inner_protocol = PROTOCOLS.get(policy.get("protocol", "any"), policy.get("protocol"))
        self.peer_ports = port_range(policy.get("remotePort"))

    def describe(self):
        return {"file": os.path.basename(self.source), "policy": self.policy, "proto": self.proto, "spi": self.spi}


def load(files):
    """(SAs by (protocol, SPI), answering SA by (file, policy))."""
    by_spi = {}
    answer = {}
    for source in files:
        with open(source, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        policies = {p["name"]: p for p in config.get("policies", [])}
        for entry in config.get("sas", []):
            if entry.get("policy") is None:
                continue
            sa = Sa(source, entry, policies[entry["policy"]])
            key = (sa.proto, sa.spi)
            if key in by_spi:
                raise SystemExit("%s: SPI %d of %s is used twice" % (source, sa.spi, sa.proto))
            by_spi[key] = sa
            if sa.host_direction == "inbound":
                answer[(source, sa.policy)] = sa
    return by_spi, answer


def inner_fields(ip):
    out = {"src": ip.src, "dst": ip.dst, "protocol": ip.proto}
    if ICMP in ip:
        icmp = ip[ICMP]
        out.update(icmpType=icmp.type, icmpId=icmp.id, icmpSeq=icmp.seq, payload=bytes(icmp.payload).hex())
    elif UDP in ip:
        udp = ip[UDP]
        out.update(sport=udp.sport, dport=udp.dport, payload=bytes(udp.payload).hex())
    return out


def open_packet(by_spi, data):
    """(report, SA, inner IP) for one ESP/AH datagram; the SA and inner are None on failure."""
    ip = IP(data)
    report = {"event": "in", "outerSrc": ip.src, "outerDst": ip.dst, "len": len(data)}
    if ESP in ip:
        proto, spi, seq = "esp", ip[ESP].spi, ip[ESP].seq
    elif AH in ip:
        proto, spi, seq = "ah", ip[AH].spi, ip[AH].seq
    else:
        report.update(ok=False, error="neither ESP nor AH (protocol %d)" % ip.proto)
        return report, None, None
    report.update(proto=proto, spi=spi, seq=seq)
    sa = by_spi.get((proto, spi))
    if sa is None:
        report.update(ok=False, error="no SA")
        return report, None, None
    report.update(sa.describe(), hostDirection=sa.host_direction)
    try:
        # Parsed again from bytes: scapy leaves what followed AH undissected.
        inner = IP(bytes(sa.sa.decrypt(ip)))
    except Exception as err:  # scapy raises IPSecIntegrityError, or others for garbage
        report.update(ok=False, error="%s: %s" % (type(err).__name__, err))
        return report, None, None
    report.update(ok=True, inner=inner_fields(inner))
    return report, sa, inner


def selector_holds(sa, inner):
    """The inner packet is what the host's policy protects, seen from this end."""
    if inner.src != sa.host_addr or inner.dst != sa.peer_addr:
        return False
    if sa.inner_protocol not in (0, inner.proto):
        return False
    if sa.peer_ports is not None:
        if UDP not in inner:
            return False
        return sa.peer_ports[0] <= inner[UDP].dport <= sa.peer_ports[1]
    return True


def answer_for(inner, udp_port):
    """The clear answer, or None: echo replies and UDP echo only."""
    if ICMP in inner and inner[ICMP].type == 8:
        q = inner[ICMP]
        return IP(src=inner.dst, dst=inner.src, ttl=64) / ICMP(type=0, id=q.id, seq=q.seq) / Raw(bytes(q.payload))
    if UDP in inner and inner[UDP].dport == udp_port:
        q = inner[UDP]
        return IP(src=inner.dst, dst=inner.src, ttl=64) / UDP(sport=q.dport, dport=q.sport) / Raw(bytes(q.payload))
    return None


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def respond(by_spi, answer, udp_port):
    listeners = [socket.socket(socket.AF_INET, socket.SOCK_RAW, p) for p in (socket.IPPROTO_ESP, socket.IPPROTO_AH)]
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    emit({"event": "ready", "sas": len(by_spi), "udpPort": udp_port, "pid": os.getpid()})
    while True:
        ready, _, _ = select.select(listeners, [], [])
        for s in ready:
            data = s.recv(65535)
            report, sa, inner = open_packet(by_spi, data)
            if sa is not None and sa.host_direction != "outbound":
                report.update(ok=False, error="SA protects the other direction")
                sa = None
            if sa is not None and not selector_holds(sa, inner):
                report.update(ok=False, error="inner packet outside the policy's selector")
                sa = None
            emit(report)
            if sa is None:
                continue
            reply = answer_for(inner, udp_port)
            back = answer.get((sa.source, sa.policy))
            if reply is None or back is None:
                continue
            reply = IP(bytes(reply))  # lengths and checksums computed before protecting
            protected = back.sa.encrypt(reply)
            wire = bytes(protected)
            sender.sendto(wire, (reply.dst, 0))
            out = {"event": "out", "len": len(wire), "seq": back.sa.seq_num - 1}
            out.update(back.describe(), inner=inner_fields(reply))
            emit(out)


def check(by_spi, path):
    with open(path, "rb") as f:
        magic = f.read(4)
    reader = PcapNgReader(path) if magic == b"\x0a\x0d\x0d\x0a" else PcapReader(path)
    for frame in reader:
        if IP not in frame or frame[IP].proto not in (50, 51):
            continue
        report, _, _ = open_packet(by_spi, bytes(frame[IP]))
        emit(report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", action="append", required=True, help="a host's manual keying file")
    parser.add_argument("--udp-port", type=int, default=7007, help="UDP port answered (echo)")
    parser.add_argument("--check-pcap", help="open every ESP/AH packet of this capture instead of answering")
    args = parser.parse_args()
    by_spi, answer = load(args.mirror)
    if args.check_pcap:
        check(by_spi, args.check_pcap)
    else:
        respond(by_spi, answer, args.udp_port)


if __name__ == "__main__":
    sys.exit(main())
