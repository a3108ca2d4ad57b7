#!/usr/bin/python3
"""A steady UDP stream and its echo, for bench:routers' failover gap.

    udp-stream.py echo PORT
    udp-stream.py send DST PORT RATE SECONDS

`echo` sends every datagram back to where it came from (the server). `send`
sends RATE datagrams per second for SECONDS, each carrying its sequence
number, paced on the clock so a late wake-up does not lower the rate, and
notes the wall-clock time each echo comes back; it prints one JSON line
{"sent": N, "echoes": [[seq, unix seconds], ...]} after a last second of
listening. A gap in the echoes is a gap in both directions: the stream
goes out through the router the host sends through and comes back
through whichever router the upstream picks.
"""

import json, select, socket, struct, sys, time

mode = sys.argv[1]
if mode == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)

dst, port, rate, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
period = 1.0 / rate
start = time.monotonic()
end = start + seconds
seq = 0
echoes = []
payload = bytearray(64)
while True:
    now = time.monotonic()
    if now >= end + 1.0:
        break
    if now < end and now >= start + seq * period:
        struct.pack_into("!I", payload, 0, seq)
        try:
            s.sendto(payload, (dst, port))
        except OSError:
            pass  # no route for a moment: the datagram counts as lost
        seq += 1
        continue
    wait = max(0.0, min(start + seq * period, end + 1.0) - now) if now < end else end + 1.0 - now
    if select.select([s], [], [], wait)[0]:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            echoes.append([struct.unpack_from("!I", data, 0)[0], time.time()])
print(json.dumps({"sent": seq, "echoes": echoes}), flush=True)
