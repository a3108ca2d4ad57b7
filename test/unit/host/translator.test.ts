import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SourcePortTranslationTable } from '../../../src/host/data-path/translation/sptt.ts';
import { PortTranslator } from '../../../src/host/data-path/translation/translator.ts';
import {
  BlockPortSource,
  ESP,
  ICMP,
  SERVER,
  SHARED,
  TCP,
  UDP,
  checksumsVerify,
  get16,
  icmpQuery,
  ipv4,
  tcp,
  udp,
} from './packets.ts';

const SYN = 0x02;
const SYN_ACK = 0x12;

function setup(first = 1032, count = 32) {
  const source = new BlockPortSource(first, count);
  const table = new SourcePortTranslationTable(source);
  return { source, table, xlat: new PortTranslator(table) };
}

const out = (x: PortTranslator, p: Uint8Array, now = 0) => x.outbound(p, 0, 20, p.length, now);
const inn = (x: PortTranslator, p: Uint8Array, now = 0) => x.inbound(p, 0, 20, p.length, now);

describe('PortTranslator: TCP, UDP and ICMP queries', () => {
  it('walks the patent example: Table 6 -> Table 8 out, Table 11 -> Table 12 in', () => {
    const { xlat } = setup(1032, 1);
    // Table 6: the stack sends from its own ephemeral port 1234.
    const p = tcp(SHARED, 1234, SERVER, 80, SYN, new Uint8Array([1, 2, 3]));
    expect(out(xlat, p)).toBe('translated');
    // Table 8's inner packet: source port 1032, checksum as if computed from scratch.
    expect(p).toEqual(tcp(SHARED, 1032, SERVER, 80, SYN, new Uint8Array([1, 2, 3])));
    // Table 11's inner packet comes back to 1032 and leaves as Table 12, to 1234.
    const r = tcp(SERVER, 80, SHARED, 1032, SYN_ACK, new Uint8Array([9]));
    expect(inn(xlat, r)).toBe('translated');
    expect(r).toEqual(tcp(SERVER, 80, SHARED, 1234, SYN_ACK, new Uint8Array([9])));
    expect(xlat.counters.outbound.translated).toBe(1);
    expect(xlat.counters.inbound.translated).toBe(1);
  });

  it('round-trips any flow byte for byte, checksums equal to a full recomputation', () => {
    const flow = fc.record({
      kind: fc.constantFrom('tcp', 'udp', 'udp-no-checksum', 'echo', 'timestamp'),
      local: fc.integer({ min: 1, max: 65535 }),
      remotePort: fc.integer({ min: 1, max: 65535 }),
      remote: fc.integer({ min: 1, max: 0xffffffff }),
      first: fc.integer({ min: 1024, max: 65535 - 64 }),
      payload: fc.uint8Array({ maxLength: 61 }),
      seq: fc.integer({ min: 0, max: 65535 }),
    });
    fc.assert(
      fc.property(flow, (f) => {
        const { xlat, table } = setup(f.first, 64);
        const send = (sport: number) =>
          f.kind === 'tcp'
            ? tcp(SHARED, sport, f.remote, f.remotePort, SYN, f.payload)
            : f.kind === 'echo' || f.kind === 'timestamp'
              ? icmpQuery(SHARED, f.remote, f.kind === 'echo' ? 8 : 13, sport, f.seq, f.payload)
              : udp(SHARED, sport, f.remote, f.remotePort, f.payload, {
                  noChecksum: f.kind === 'udp-no-checksum',
                });
        const reply = (dport: number) =>
          f.kind === 'tcp'
            ? tcp(f.remote, f.remotePort, SHARED, dport, SYN_ACK, f.payload)
            : f.kind === 'echo' || f.kind === 'timestamp'
              ? icmpQuery(f.remote, SHARED, f.kind === 'echo' ? 0 : 14, dport, f.seq, f.payload)
              : udp(f.remote, f.remotePort, SHARED, dport, f.payload, {
                  noChecksum: f.kind === 'udp-no-checksum',
                });

        const p = send(f.local);
        expect(out(xlat, p)).toBe('translated');
        const protocol = f.kind === 'tcp' ? TCP : f.kind.startsWith('udp') ? UDP : ICMP;
        const leased = table.peekLeased(protocol, f.local, 0);
        expect(leased).toBeGreaterThanOrEqual(f.first);
        expect(p).toEqual(send(leased));
        expect(checksumsVerify(p)).toBe(true);

        const r = reply(leased);
        expect(inn(xlat, r)).toBe('translated');
        expect(r).toEqual(reply(f.local));
        expect(checksumsVerify(r)).toBe(true);
      }),
      { seed: 0x1624, numRuns: 500 },
    );
  });

  it('passes untouched what has nothing to translate', () => {
    const { xlat } = setup();
    const esp = ipv4(SHARED, SERVER, ESP, new Uint8Array([0, 0, 1, 0, 0, 0, 0, 1]));
    const pingFromOutside = icmpQuery(SERVER, SHARED, 8, 4242, 1);
    const ourReplyToIt = icmpQuery(SHARED, SERVER, 0, 4242, 1);
    const later = udp(SERVER, 53, SHARED, 1032, new Uint8Array(16), { fragmentOffset: 3 });
    for (const [p, dir] of [
      [esp, 'out'],
      [pingFromOutside, 'in'],
      [ourReplyToIt, 'out'],
      [later, 'in'],
    ] as const) {
      const before = Uint8Array.from(p);
      expect(dir === 'out' ? out(xlat, p) : inn(xlat, p)).toBe('unchanged');
      expect(p).toEqual(before);
    }
  });

  it('translates the first fragment of a datagram and leaves the rest to follow it', () => {
    const { xlat } = setup(1032, 1);
    const first = udp(SHARED, 5353, SERVER, 53, new Uint8Array(24), { moreFragments: true });
    expect(out(xlat, first)).toBe('translated');
    expect(get16(first, 20)).toBe(1032);
    const tiny = udp(SHARED, 5353, SERVER, 53, new Uint8Array(0), { moreFragments: true });
    expect(out(xlat, tiny.subarray(0, 26), 0)).toBe('not-translatable'); // first fragment shorter than a UDP header
  });

  it('in native mode changes nothing', () => {
    const { xlat, table } = setup();
    table.native = true;
    const p = tcp(SHARED, 1234, SERVER, 80, SYN);
    const before = Uint8Array.from(p);
    expect(out(xlat, p)).toBe('unchanged');
    expect(inn(xlat, p)).toBe('unchanged');
    expect(p).toEqual(before);
    expect(table.size).toBe(0);
  });

  it('reports drops as typed outcomes and never throws', () => {
    const { xlat, table } = setup(1032, 1);
    expect(out(xlat, udp(SHARED, 1111, SERVER, 53))).toBe('translated');
    expect(out(xlat, udp(SHARED, 2222, SERVER, 53))).toBe('no-free-port');
    expect(table.counters.allocationFailed).toBe(1);
    expect(inn(xlat, udp(SERVER, 53, SHARED, 1033))).toBe('no-mapping');
    expect(inn(xlat, icmpQuery(SERVER, SHARED, 0, 1033, 1))).toBe('no-mapping');
    expect(out(xlat, udp(SHARED, 0, SERVER, 53))).toBe('not-translatable');
    const p = tcp(SHARED, 1234, SERVER, 80, SYN);
    expect(xlat.outbound(p, 0, 20, 39, 0)).toBe('not-translatable'); // shorter than a TCP header
    expect(xlat.outbound(p, 0, 10, p.length, 0)).toBe('not-translatable');
    expect(xlat.outbound(p, 0, 20, p.length + 1, 0)).toBe('not-translatable');
    expect(xlat.outbound(new Uint8Array(0), 0, 20, 0, 0)).toBe('not-translatable');
    expect(xlat.counters.outbound['not-translatable']).toBe(5);
    expect(xlat.counters.inbound['no-mapping']).toBe(2);
  });

  it('works at any offset in a larger buffer (headroom for the outer header)', () => {
    const { xlat } = setup(1032, 1);
    const p = udp(SHARED, 40000, SERVER, 53, new Uint8Array([5, 6, 7]));
    const slot = new Uint8Array(64 + p.length + 16).fill(0xee);
    slot.set(p, 64);
    expect(xlat.outbound(slot, 64, 84, 64 + p.length, 0)).toBe('translated');
    expect(slot.subarray(64, 64 + p.length)).toEqual(
      udp(SHARED, 1032, SERVER, 53, new Uint8Array([5, 6, 7])),
    );
    expect(slot.subarray(0, 64).every((b) => b === 0xee)).toBe(true);
    expect(slot.subarray(64 + p.length).every((b) => b === 0xee)).toBe(true);
  });
});
