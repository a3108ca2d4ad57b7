import { describe, expect, it } from 'vitest';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import { parseIcmp } from '../../../src/wire/icmp.ts';
import { parseIpv4 } from '../../../src/wire/ipv4.ts';
import { readTcpMss } from '../../../src/wire/tcp.ts';
import { LAN, LEASE_FIRST, ROUTER, buildOuter, buildTcp, rig } from './forwarder-rig.ts';
import {
  ESP,
  ICMP,
  SERVER,
  SHARED,
  addr,
  checksumsVerify,
  get16,
  icmpError,
  icmpQuery,
  ipv4,
  tcp,
  udp,
} from './packets.ts';

const SYN = 0x02;
const SYN_ACK = 0x12;
const ACK = 0x10;

describe('HostForwarder outbound (Method 170)', () => {
  it('translates the source port and encapsulates, byte for byte as built by hand', () => {
    const r = rig();
    const payload = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
    const original = buildTcp({
      src: SHARED,
      sport: 1234,
      dst: SERVER,
      dport: 80,
      flags: SYN,
      payload,
      tos: 0x28,
    });
    const [sent, ...rest] = r.send(original);
    expect(rest).toEqual([]);
    // Table 8: the inner packet with the first leased port, its checksum as if computed anew ...
    const inner = buildTcp({
      src: SHARED,
      sport: LEASE_FIRST,
      dst: SERVER,
      dport: 80,
      flags: SYN,
      payload,
      tos: 0x28,
    });
    // ... behind an outer header host LAN -> router LAN, protocol 4, TOS and DF copied (RFC 2003 3.1).
    const id = get16(sent!, 4); // fresh per datagram; everything else is fixed
    const expected = buildOuter(LAN, ROUTER, inner, id, true);
    expect(Buffer.from(sent!).toString('hex')).toBe(Buffer.from(expected).toString('hex'));
    expect(r.table.rows()).toMatchObject([{ localPort: 1234, leasedPort: LEASE_FIRST, protocol: 6 }]);
    expect(r.fwd.events.get('outbound')).toBe(1);
  });

  it('keeps DF clear in the outer header when the inner packet has it clear', () => {
    const r = rig();
    const [sent] = r.send(udp(SHARED, 5353, SERVER, 53, new Uint8Array(10)));
    expect(sent![6]! & 0x40).toBe(0);
    expect(checksumsVerify(sent!.subarray(20))).toBe(true);
  });

  it('drops everything while no lease is held', () => {
    const r = rig({ held: 0 });
    expect(r.send(udp(SHARED, 5353, SERVER, 53), udp(SHARED, 5354, SERVER, 53))).toEqual([]);
    expect(r.fwd.outboundDrops.get('no-lease')).toBe(2);
    expect(r.table.size).toBe(0);
  });

  it("while no lease is held lets out only a service port's UDP (IKE's Delete after a withdrawal), untranslated", () => {
    const ike = new Set([1020]);
    for (const mode of ['translate', 'native'] as const) {
      const r = rig({ held: 0, mode, servicePorts: ike });
      const sent = r.send(
        udp(SHARED, 1020, SERVER, 500),
        udp(SHARED, 5353, SERVER, 53),
        tcp(SHARED, 1020, SERVER, 500, SYN),
        udp(SHARED, 1021, SERVER, 500),
      );
      expect(sent.map((s) => (s[20 + 20]! << 8) | s[20 + 21]!)).toEqual([1020]);
      expect(r.fwd.outboundDrops.get('no-lease')).toBe(3);
      expect(r.table.size).toBe(0);
    }
  });

  it('drops a packet from another source address, and IPv6', () => {
    const r = rig();
    const v6 = new Uint8Array(48);
    v6[0] = 0x60;
    expect(r.send(udp(addr('10.0.0.1'), 5353, SERVER, 53), v6)).toEqual([]);
    expect(r.fwd.outboundDrops.get('wrong-source')).toBe(1);
    expect(r.fwd.outboundDrops.get('not-ipv4')).toBe(1);
  });

  it('counts new flows beyond the leased ports as no-free-port', () => {
    const r = rig();
    const packets = Array.from({ length: 40 }, (_, i) => udp(SHARED, 40000 + i, SERVER, 53));
    expect(r.send(...packets)).toHaveLength(32);
    expect(r.fwd.outboundDrops.get('no-free-port')).toBe(8);
  });

  it('passes ESP unchanged (IPsec comes later)', () => {
    const r = rig();
    const esp = ipv4(SHARED, SERVER, ESP, new Uint8Array([0, 0, 1, 0, 0, 0, 0, 1, 9, 9, 9, 9]));
    const [sent] = r.send(esp);
    expect(sent!.subarray(20)).toEqual(esp);
    expect(r.fwd.events.get('ipsec-passthrough-outbound')).toBe(1);
  });
});

describe('HostForwarder inbound (Method 184)', () => {
  it('restores the original: the reply reaches the local port, byte for byte', () => {
    const r = rig();
    r.send(buildTcp({ src: SHARED, sport: 1234, dst: SERVER, dport: 80, flags: SYN }));
    const reply = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: LEASE_FIRST, flags: SYN_ACK });
    const [delivered, ...rest] = r.receive(buildOuter(ROUTER, LAN, reply));
    expect(rest).toEqual([]);
    expect(delivered).toEqual(buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: 1234, flags: SYN_ACK }));
    expect(r.fwd.events.get('inbound')).toBe(1);
  });

  it('drops a tunnel packet whose outer source is not the router', () => {
    const r = rig();
    r.send(buildTcp({ src: SHARED, sport: 1234, dst: SERVER, dport: 80, flags: SYN }));
    const reply = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: LEASE_FIRST, flags: SYN_ACK });
    expect(r.receive(buildOuter(addr('10.0.0.3'), LAN, reply))).toEqual([]);
    expect(r.fwd.inboundDrops.get('not-from-router')).toBe(1);
  });

  it('drops packets for a leased port nobody uses, and for other addresses', () => {
    const r = rig();
    const stray = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: LEASE_FIRST + 5, flags: ACK });
    const other = buildTcp({
      src: SERVER,
      sport: 80,
      dst: addr('198.51.100.31'),
      dport: LEASE_FIRST,
      flags: ACK,
    });
    expect(r.receive(buildOuter(ROUTER, LAN, stray), buildOuter(ROUTER, LAN, other))).toEqual([]);
    expect(r.fwd.inboundDrops.get('no-mapping')).toBe(1);
    expect(r.fwd.inboundDrops.get('not-for-us')).toBe(1);
  });

  it('translates an ICMP error back to the quoted local port, end to end', () => {
    const r = rig();
    const original = udp(SHARED, 40000, SERVER, 9, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const [sent] = r.send(original.slice());
    const onTheWire = sent!.subarray(20);
    expect(get16(onTheWire, 20)).toBe(LEASE_FIRST);
    // The server answers port unreachable, quoting what it received ...
    const error = icmpError(SERVER, SHARED, 3, 3, onTheWire);
    const [delivered] = r.receive(buildOuter(ROUTER, LAN, error));
    // ... and the stack gets the error as if quoting what it sent, every checksum consistent.
    expect(delivered).toEqual(icmpError(SERVER, SHARED, 3, 3, original));
    expect(checksumsVerify(delivered!)).toBe(true);
  });

  it('translates echo identifiers both ways', () => {
    const r = rig();
    const [sent] = r.send(icmpQuery(SHARED, SERVER, 8, 0x4d2, 7, new Uint8Array(16)));
    expect(get16(sent!, 44)).toBe(LEASE_FIRST);
    const [delivered] = r.receive(
      buildOuter(ROUTER, LAN, icmpQuery(SERVER, SHARED, 0, LEASE_FIRST, 7, new Uint8Array(16))),
    );
    expect(delivered).toEqual(icmpQuery(SERVER, SHARED, 0, 0x4d2, 7, new Uint8Array(16)));
  });

  it('passes ESP unchanged', () => {
    const r = rig();
    const esp = ipv4(SERVER, SHARED, ESP, new Uint8Array(24).fill(7));
    expect(r.receive(buildOuter(ROUTER, LAN, esp))).toEqual([esp]);
    expect(r.fwd.events.get('ipsec-passthrough-inbound')).toBe(1);
  });
});

describe('HostForwarder and the MTU', () => {
  it('clamps an inbound SYN-ACK MSS to the TUN MTU - 40, checksum kept valid', () => {
    const r = rig();
    r.send(
      buildTcp({
        src: SHARED,
        sport: 1234,
        dst: SERVER,
        dport: 80,
        flags: SYN,
        options: [{ kind: 'mss', mss: 1440 }],
      }),
    );
    const reply = buildTcp({
      src: SERVER,
      sport: 80,
      dst: SHARED,
      dport: LEASE_FIRST,
      flags: SYN_ACK,
      options: [
        { kind: 'nop' },
        { kind: 'mss', mss: 1460 },
        { kind: 'nop' },
        { kind: 'nop' },
        { kind: 'sack-permitted' },
      ],
    });
    const [delivered] = r.receive(buildOuter(ROUTER, LAN, reply));
    expect(readTcpMss(delivered!, 20)).toBe(1440);
    expect(checksumsVerify(delivered!)).toBe(true);
    expect(r.fwd.events.get('mss-clamped-inbound')).toBe(1);
    // An MSS already below the limit is left alone.
    const small = buildTcp({
      src: SERVER,
      sport: 80,
      dst: SHARED,
      dport: LEASE_FIRST,
      flags: SYN_ACK,
      options: [{ kind: 'mss', mss: 1200 }],
    });
    expect(readTcpMss(r.receive(buildOuter(ROUTER, LAN, small))[0]!, 20)).toBe(1200);
  });

  it('clamps an outbound SYN to what fits the LAN after the tunnel header', () => {
    const r = rig({ lanMtu: 1400 });
    const [sent] = r.send(
      buildTcp({
        src: SHARED,
        sport: 1234,
        dst: SERVER,
        dport: 80,
        flags: SYN,
        options: [{ kind: 'mss', mss: 1460 }],
      }),
    );
    expect(readTcpMss(sent!, 40)).toBe(1400 - 20 - 40);
    expect(checksumsVerify(sent!.subarray(20))).toBe(true);
  });

  it('answers an oversized DF packet with fragmentation needed (RFC 1191) into the TUN', () => {
    const r = rig({ lanMtu: 1400 });
    const big = buildTcp({
      src: SHARED,
      sport: 1234,
      dst: SERVER,
      dport: 80,
      flags: ACK,
      payload: new Uint8Array(1440).fill(3),
    });
    expect(big.length).toBe(1480);
    expect(r.send(big.slice())).toEqual([]);
    expect(r.fwd.outboundDrops.get('too-big')).toBe(1);
    expect(r.table.size).toBe(0); // no flow was created for a packet that never left
    const [icmp] = r.tun.sent;
    const ip = parseIpv4(icmp!, 0, icmp!.length);
    expect(ip.ok && ip.value).toMatchObject({
      src: ROUTER,
      dst: SHARED,
      protocol: ICMP,
      payloadLength: 8 + 548,
    });
    const m = parseIcmp(icmp!, 20, icmp!.length - 20);
    expect(m.ok && m.value).toMatchObject({ kind: 'destination-unreachable', code: 4, nextHopMtu: 1380 });
    // It quotes the packet as the stack sent it: local port 1234, not a leased one.
    expect(icmp!.subarray(28)).toEqual(big.subarray(0, 548));
    expect(r.fwd.events.get('fragmentation-needed')).toBe(1);
  });

  it('answers a burst to one destination once per batch, and each destination', () => {
    const r = rig({ lanMtu: 1400 });
    const big = (dst: number, sport: number) =>
      buildTcp({ src: SHARED, sport, dst, dport: 80, flags: ACK, payload: new Uint8Array(1440) });
    const other = addr('203.0.113.9');
    expect(r.send(big(SERVER, 1234), big(SERVER, 1234), big(SERVER, 1235), big(other, 1236))).toEqual([]);
    expect(r.fwd.outboundDrops.get('too-big')).toBe(4);
    // The quoted datagram's destination (ICMP error at 20, quote at 28, its destination at 28 + 16).
    const quotedDst = (p: Uint8Array) => get16(p, 44) * 0x10000 + get16(p, 46);
    expect(r.tun.sent.map(quotedDst)).toEqual([SERVER, other]);
    expect(r.fwd.events.get('fragmentation-needed')).toBe(2);
  });

  it('fragments an oversized datagram without DF before encapsulating it', () => {
    const r = rig({ lanMtu: 1000 });
    const payload = Uint8Array.from({ length: 1400 }, (_, i) => i & 0xff);
    const original = udp(SHARED, 40000, SERVER, 9, payload, { id: 0x7777 });
    const sent = r.send(original.slice());
    expect(sent.length).toBe(2);
    const datagram = new Uint8Array(original.length - 20);
    let covered = 0;
    for (const s of sent) {
      expect(s.length).toBeLessThanOrEqual(1000);
      expect(get16(s, 6) & 0x3fff).toBe(0); // the outer header is never a fragment
      const inner = s.subarray(20);
      const h = parseIpv4(inner, 0, inner.length);
      if (!h.ok) throw new Error(h.reason);
      expect(h.value.identification).toBe(0x7777);
      datagram.set(inner.subarray(20), h.value.fragmentOffset * 8);
      covered += h.value.payloadLength;
    }
    expect(covered).toBe(datagram.length);
    expect(get16(datagram, 0)).toBe(LEASE_FIRST);
    // Reassembled, it is the translated datagram: translate a copy of the original the same way to compare.
    const translated = original.slice();
    translated.set([LEASE_FIRST >> 8, LEASE_FIRST & 0xff], 20);
    translated.set(datagram.subarray(6, 8), 26); // checksum as patched
    expect(checksumsVerify(translated)).toBe(true);
    expect(datagram).toEqual(translated.subarray(20));
    expect(r.fwd.events.get('fragments')).toBe(2);
  });
});

describe('HostForwarder native mode (Method 130)', () => {
  it('passes TCP and UDP from leased ports untranslated and drops the rest', () => {
    const r = rig({ mode: 'native' });
    const leased = buildTcp({ src: SHARED, sport: LEASE_FIRST + 3, dst: SERVER, dport: 80, flags: SYN });
    const [sent] = r.send(leased.slice());
    expect(sent!.subarray(20)).toEqual(leased);
    expect(r.send(udp(SHARED, 50000, SERVER, 53))).toEqual([]);
    expect(r.fwd.outboundDrops.get('unleased-port')).toBe(1);
    expect(r.table.size).toBe(0);
    const reply = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: LEASE_FIRST + 3, flags: SYN_ACK });
    expect(r.receive(buildOuter(ROUTER, LAN, reply))).toEqual([reply]);
  });

  it('still translates echo identifiers, which ping sockets do not take from the port range', () => {
    const r = rig({ mode: 'native' });
    const [sent] = r.send(icmpQuery(SHARED, SERVER, 8, 0x1234, 1));
    expect(get16(sent!, 44)).toBe(LEASE_FIRST);
    const [back] = r.receive(buildOuter(ROUTER, LAN, icmpQuery(SERVER, SHARED, 0, LEASE_FIRST, 1)));
    expect(back).toEqual(icmpQuery(SERVER, SHARED, 0, 0x1234, 1));
    // An error quoting UDP passes unchanged; the port in it was never translated.
    const original = udp(SHARED, LEASE_FIRST + 1, SERVER, 9);
    const error = icmpError(SERVER, SHARED, 3, 3, original);
    expect(r.receive(buildOuter(ROUTER, LAN, error))).toEqual([error]);
  });
});

describe('HostForwarder on malformed input', () => {
  it('never throws, and counts every packet as forwarded or dropped', async () => {
    const fc = (await import('fast-check')).default;
    const r = rig();
    // A few live flows, so that mutated replies sometimes find a row.
    r.send(
      udp(SHARED, 40000, SERVER, 53),
      buildTcp({ src: SHARED, sport: 1234, dst: SERVER, dport: 80, flags: SYN }),
    );
    const seeds = [
      udp(SHARED, 40001, SERVER, 53, new Uint8Array(12)),
      buildTcp({
        src: SHARED,
        sport: 1234,
        dst: SERVER,
        dport: 80,
        flags: SYN,
        options: [{ kind: 'mss', mss: 1460 }],
      }),
      icmpQuery(SHARED, SERVER, 8, 99, 1),
      icmpError(SHARED, SERVER, 3, 3, udp(SERVER, 53, SHARED, 40000)),
      ipv4(SHARED, SERVER, ESP, new Uint8Array(16)),
    ];
    const replies = [
      buildOuter(ROUTER, LAN, udp(SERVER, 53, SHARED, LEASE_FIRST, new Uint8Array(12))),
      buildOuter(
        ROUTER,
        LAN,
        buildTcp({
          src: SERVER,
          sport: 80,
          dst: SHARED,
          dport: LEASE_FIRST + 1,
          flags: SYN_ACK,
          options: [{ kind: 'mss', mss: 1460 }],
        }),
      ),
      buildOuter(ROUTER, LAN, icmpError(SERVER, SHARED, 3, 3, udp(SHARED, LEASE_FIRST, SERVER, 53))),
      buildOuter(ROUTER, LAN, icmpQuery(SERVER, SHARED, 0, LEASE_FIRST, 1)),
    ];
    // Fixes a header's total length and checksum after the mutation, so that
    // the checks behind the IPv4 header (transport, quoted datagrams) see it.
    const repairAt = (p: Uint8Array, at: number, length: number): void => {
      const hl = (p[at]! & 0x0f) * 4;
      if (length < 20 || p[at]! >> 4 !== 4 || hl < 20 || hl > length) return;
      p[at + 2] = length >> 8;
      p[at + 3] = length & 0xff;
      p[at + 10] = 0;
      p[at + 11] = 0;
      const ck = internetChecksum(p, at, at + hl);
      p[at + 10] = ck >> 8;
      p[at + 11] = ck & 0xff;
    };
    const mutate = (
      base: Uint8Array,
      flips: { at: number; value: number }[],
      cut: number,
      repair: boolean,
    ): Uint8Array => {
      const p = base.slice(0, Math.max(0, base.length - cut));
      for (const f of flips) if (p.length > 0) p[f.at % p.length] = f.value;
      if (repair) {
        const outer = p.length >= 20 && p[9] === 4;
        if (outer) repairAt(p, 20, p.length - 20);
        repairAt(p, 0, p.length);
      }
      return p;
    };
    const packet = (bases: Uint8Array[]) =>
      fc.oneof(
        fc.uint8Array({ minLength: 0, maxLength: 120 }),
        fc
          .tuple(
            fc.constantFrom(...bases),
            fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
              minLength: 1,
              maxLength: 4,
            }),
            fc.integer({ min: 0, max: 30 }),
            fc.boolean(),
          )
          .map(([b, flips, cut, repair]) => mutate(b, flips, cut, repair)),
      );
    const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
    let packets = 0;
    fc.assert(
      fc.property(
        fc.array(packet(seeds), { maxLength: 8 }),
        fc.array(packet(replies), { maxLength: 8 }),
        (outs, ins) => {
          const c0 = r.fwd.counters();
          const nonEmptyOut = outs.filter((p) => p.length > 0);
          const nonEmptyIn = ins.filter((p) => p.length > 0);
          r.send(...nonEmptyOut);
          r.receive(...nonEmptyIn);
          packets += nonEmptyOut.length + nonEmptyIn.length;
          const c1 = r.fwd.counters();
          const out =
            c1.events.outbound - c0.events.outbound + total(c1.outboundDrops) - total(c0.outboundDrops);
          const inn = c1.events.inbound - c0.events.inbound + total(c1.inboundDrops) - total(c0.inboundDrops);
          // A fragmented datagram counts once as dropped-or-sent, but its fragments count as sent packets.
          const extra =
            c1.events.fragments - c0.events.fragments - (c1.events.fragmented - c0.events.fragmented);
          expect(out - extra).toBe(nonEmptyOut.length);
          expect(inn).toBe(nonEmptyIn.length);
        },
      ),
      { seed: 0x1624, numRuns: 500 },
    );
    expect(packets).toBeGreaterThan(3000);
    const drops = r.fwd.counters();
    expect(drops.outboundDrops.malformed + drops.inboundDrops.malformed).toBeGreaterThan(100);
    // The repaired ones reach translation and get through or fail there.
    expect(drops.outboundDrops['not-translatable'] + drops.inboundDrops['not-translatable']).toBeGreaterThan(
      20,
    );
    expect(drops.events.outbound + drops.events.inbound).toBeGreaterThan(100);
    // Whatever went through still carries valid checksums on its inner header.
    for (const p of r.tunnelOut.sent) expect(parseIpv4(p, 0, p.length).ok).toBe(true);
  });
});
