#!/usr/bin/python3
"""ICMP echo from the namespace it runs in: scripts/testbed ping, the demo and the tests.

    ping.py ADDRESS COUNT INTERVAL WAIT

The testbed's own client, in Debian's python3 (which scripts/setup installs),
so that it does not depend on iputils-ping being present. Prints one line per
reply or error and a summary "N sent, M received[, rtt min/avg/max A/B/C ms]";
exit status 0 if any reply came.
"""

import os, select, socket, struct, sys, time

dst, count, interval, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ECHO_REQUEST, ECHO_REPLY = 8, 0
ERRORS = {3: "destination unreachable", 11: "time exceeded", 12: "parameter problem"}

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
rtts = []
for seq in range(1, count + 1):
    payload = bytes(range(56))
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + payload
    sent = time.monotonic()
    try:
        sock.sendto(packet, (dst, 0))
    except OSError as e:
        print("seq=%d: cannot send: %s" % (seq, e.strerror))
        continue
    while True:
        left = sent + wait - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            print("seq=%d: no reply within %g s" % (seq, wait))
            break
        data, (source, _) = sock.recvfrom(65535)
        icmp = data[(data[0] & 15) * 4 :]
        if len(icmp) < 8:
            continue
        kind, code, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if kind == ECHO_REPLY and source == dst and (rid, rseq) == (ident, seq):
            rtts.append((time.monotonic() - sent) * 1000)
            print("seq=%d: reply from %s in %.3f ms" % (seq, source, rtts[-1]))
            break
        if kind in ERRORS and len(icmp) >= 36:
            quoted = icmp[8 + (icmp[8] & 15) * 4 :]
            if struct.unpack("!HH", quoted[4:8]) == (ident, seq):
                print("seq=%d: %s (code %d) from %s" % (seq, ERRORS[kind], code, source))
                break
    if seq < count:
        time.sleep(max(0.0, sent + interval - time.monotonic()))
summary = "%d sent, %d received" % (count, len(rtts))
if rtts:
    summary += ", rtt min/avg/max %.3f/%.3f/%.3f ms" % (min(rtts), sum(rtts) / len(rtts), max(rtts))
print(summary)
sys.exit(0 if rtts else 1)
