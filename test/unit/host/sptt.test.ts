import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SourcePortTranslationTable } from '../../../src/host/data-path/translation/sptt.ts';
import {
  DEFAULT_TRANSLATION_TIMEOUTS,
  resolveTimeouts,
} from '../../../src/host/data-path/translation/timeouts.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { BlockPortSource, ICMP, TCP, UDP } from './packets.ts';

const SYN = 0x02;
const SYN_ACK = 0x12;
const ACK = 0x10;
const FIN_ACK = 0x11;
const RST = 0x04;
const MIN = 60_000;

describe('SourcePortTranslationTable (FIG. 11)', () => {
  it('holds Table 7: TCP 1234 <-> leased 1032, in both directions', () => {
    const source = new BlockPortSource(1032, 1);
    const t = new SourcePortTranslationTable(source);
    expect(t.outbound(TCP, 1234, SYN, 10_023)).toBe(1032);
    expect(t.outbound(TCP, 1234, ACK, 10_030)).toBe(1032);
    expect(t.inbound(TCP, 1032, SYN_ACK, 10_048)).toBe(1234);
    expect(t.inbound(UDP, 1032, 0, 10_048)).toBe(-1); // the row is TCP's
    expect(t.peekLeased(TCP, 1234, 10_048)).toBe(1032);
    expect(t.peekLocal(TCP, 1032, 10_048)).toBe(1234);
    expect(t.size).toBe(1);
    expect(t.rows()).toEqual([
      {
        localPort: 1234,
        leasedPort: 1032,
        protocol: TCP,
        lastUse: 10_048,
        timer: 'tcp-established',
        expiresAt: 10_048 + DEFAULT_TRANSLATION_TIMEOUTS.tcpEstablishedMs,
      },
    ]);
  });

  it('gives each (protocol, local port) its own leased port and counts exhaustion', () => {
    const source = new BlockPortSource(2000, 3);
    const t = new SourcePortTranslationTable(source);
    const a = t.outbound(TCP, 5000, SYN, 0);
    const b = t.outbound(UDP, 5000, 0, 0);
    const c = t.outbound(ICMP, 5000, 0, 0);
    expect(new Set([a, b, c])).toEqual(new Set([2000, 2001, 2002]));
    expect(t.outbound(UDP, 5001, 0, 0)).toBe(-1);
    expect(t.outbound(UDP, 5002, 0, 0)).toBe(-1);
    expect(t.counters.allocationFailed).toBe(2);
    expect(t.outbound(UDP, 5000, 0, 1)).toBe(b); // an existing row needs no new port
    expect(t.outbound(50, 5000, 0, 1)).toBe(-1); // no ports in ESP
    expect(t.remove(b)).toBe(true);
    expect(source.taken.has(b)).toBe(false);
    expect(t.outbound(UDP, 5001, 0, 2)).toBe(b);
    expect(t.counters).toMatchObject({ created: 4, removed: 1, allocationFailed: 2 });
  });

  it('refuses a port the source hands out twice or out of range', () => {
    let next = 3000;
    const t = new SourcePortTranslationTable({ takePort: () => next, returnPort: () => {} });
    expect(t.outbound(UDP, 1, 0, 0)).toBe(3000);
    expect(t.outbound(UDP, 2, 0, 0)).toBe(-1);
    next = 70_000;
    expect(t.outbound(UDP, 3, 0, 0)).toBe(-1);
    expect(t.counters.allocationFailed).toBe(2);
  });

  it('expires UDP after 5 minutes idle, not before (RFC 4787), with a fake clock', () => {
    const clock = new FakeClock();
    const source = new BlockPortSource(4000, 4);
    const t = new SourcePortTranslationTable(source);
    const leased = t.outbound(UDP, 40_000, 0, clock.now());
    clock.advance(5 * MIN);
    expect(t.inbound(UDP, leased, 0, clock.now())).toBe(40_000); // exactly 5 min: still there, and refreshed
    clock.advance(5 * MIN + 1);
    expect(t.peekLocal(UDP, leased, clock.now())).toBe(-1);
    expect(t.inbound(UDP, leased, 0, clock.now())).toBe(-1);
    expect(t.size).toBe(0);
    expect(source.taken.size).toBe(0);
    expect(t.counters.expired).toBe(1);
  });

  it('times TCP by its flags: transitory 4 min, established 2 h 4 min (RFC 5382)', () => {
    const t = new SourcePortTranslationTable(new BlockPortSource(5000, 4));
    let now = 0;
    const leased = t.outbound(TCP, 33_000, SYN, now);
    expect(t.rows()[0]!.timer).toBe('tcp-transitory');
    // Partially open: gone after 4 min.
    expect(t.peekLocal(TCP, leased, now + 4 * MIN)).toBe(33_000);
    expect(t.peekLocal(TCP, leased, now + 4 * MIN + 1)).toBe(-1);

    now += 1000;
    expect(t.inbound(TCP, leased, SYN_ACK, now)).toBe(33_000);
    expect(t.rows()[0]!.timer).toBe('tcp-established');
    expect(t.peekLocal(TCP, leased, now + 124 * MIN)).toBe(33_000);
    expect(t.peekLocal(TCP, leased, now + 124 * MIN + 1)).toBe(-1);

    t.outbound(TCP, 33_000, FIN_ACK, now);
    expect(t.rows()[0]!.timer).toBe('tcp-transitory');
    expect(t.peekLocal(TCP, leased, now + 4 * MIN + 1)).toBe(-1);

    // A new connection from the same local port (bare SYN) starts afresh.
    t.outbound(TCP, 33_000, SYN, now);
    expect(t.rows()[0]!.timer).toBe('tcp-transitory');
    t.inbound(TCP, leased, SYN_ACK, now);
    t.outbound(TCP, 33_000, ACK, now);
    expect(t.rows()[0]!.timer).toBe('tcp-established');
    t.inbound(TCP, leased, RST, now);
    expect(t.rows()[0]!.timer).toBe('tcp-transitory');
  });

  it('expires ICMP query rows after 60 s (RFC 5508)', () => {
    const t = new SourcePortTranslationTable(new BlockPortSource(6000, 1));
    const leased = t.outbound(ICMP, 77, 0, 0);
    expect(t.inbound(ICMP, leased, 0, 60_000)).toBe(77);
    expect(t.inbound(ICMP, leased, 0, 120_001)).toBe(-1);
  });

  it('keeps configured timers at or above the RFC floors', () => {
    expect(resolveTimeouts({ udpMs: 10_000, icmpMs: 1 })).toMatchObject({ udpMs: 2 * MIN, icmpMs: MIN });
    expect(resolveTimeouts({ udpMs: 10 * MIN }).udpMs).toBe(10 * MIN);
    expect(resolveTimeouts({ udpMs: 10 }, true).udpMs).toBe(10);
  });

  it('sweeps a bounded number of rows per call and returns their ports', () => {
    const source = new BlockPortSource(10_000, 200);
    const t = new SourcePortTranslationTable(source);
    for (let i = 0; i < 150; i++) t.outbound(UDP, 20_000 + i, 0, 0);
    for (let i = 0; i < 50; i++) t.outbound(UDP, 30_000 + i, 0, 4 * MIN); // younger
    expect(t.sweep(5 * MIN + 1, 10)).toBeLessThanOrEqual(10);
    let calls = 1;
    while (t.size > 50 && calls < 100) {
      expect(t.sweep(5 * MIN + 1, 10)).toBeLessThanOrEqual(10);
      calls++;
    }
    expect(t.size).toBe(50);
    expect(calls).toBeGreaterThanOrEqual(15);
    expect(source.taken.size).toBe(50);
    expect(t.peekLeased(UDP, 30_049, 5 * MIN + 1)).toBeGreaterThan(0);
    expect(t.counters.expired).toBe(150);

    // With budget for every row, one call removes every expired row, wherever it sits.
    const u = new SourcePortTranslationTable(new BlockPortSource(10_000, 200));
    for (let i = 0; i < 200; i++) u.outbound(UDP, 20_000 + i, 0, i % 3 === 0 ? 4 * MIN : 0);
    expect(u.sweep(5 * MIN + 1, 200)).toBe(133);
    expect(u.rows().every((r) => r.lastUse === 4 * MIN)).toBe(true);
  });

  it('drops the rows of a withdrawn lease without returning its ports', () => {
    const source = new BlockPortSource(7000, 10);
    const t = new SourcePortTranslationTable(source);
    for (let i = 0; i < 10; i++) t.outbound(UDP, 100 + i, 0, 0);
    expect(t.dropLease(7000, 4)).toBe(4);
    expect(t.size).toBe(6);
    expect(source.taken.size).toBe(10);
    expect(t.peekLeased(UDP, 100, 0)).toBe(-1);
    expect(t.inbound(UDP, 7000, 0, 0)).toBe(-1);
    expect(t.peekLeased(UDP, 104, 0)).toBe(7004);
  });

  it('keeps forward and reverse indexes and the lease source in step under random use', () => {
    const op = fc.oneof(
      fc.record({
        k: fc.constant('out' as const),
        p: fc.constantFrom(TCP, UDP, ICMP),
        port: fc.integer({ min: 1, max: 30 }),
        flags: fc.constantFrom(0, SYN, SYN_ACK, ACK, FIN_ACK, RST),
      }),
      fc.record({
        k: fc.constant('in' as const),
        p: fc.constantFrom(TCP, UDP, ICMP),
        port: fc.integer({ min: 900, max: 916 }),
        flags: fc.constantFrom(0, SYN_ACK, ACK, FIN_ACK, RST),
      }),
      fc.record({ k: fc.constant('remove' as const), port: fc.integer({ min: 900, max: 916 }) }),
      fc.record({ k: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 20 }) }),
      fc.record({
        k: fc.constant('drop' as const),
        port: fc.integer({ min: 900, max: 916 }),
        count: fc.integer({ min: 1, max: 4 }),
      }),
      fc.record({ k: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3 * MIN }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const source = new BlockPortSource(900, 16);
        const t = new SourcePortTranslationTable(source);
        const dropped = new Set<number>();
        let now = 0;
        for (const o of ops) {
          if (o.k === 'out') {
            const leased = t.outbound(o.p, o.port, o.flags, now);
            if (leased >= 0) {
              expect(t.peekLocal(o.p, leased, now)).toBe(o.port);
              expect(t.peekLeased(o.p, o.port, now)).toBe(leased);
            }
          } else if (o.k === 'in') {
            const local = t.inbound(o.p, o.port, o.flags, now);
            if (local >= 0) expect(t.peekLeased(o.p, local, now)).toBe(o.port);
          } else if (o.k === 'remove') {
            t.remove(o.port);
          } else if (o.k === 'sweep') {
            t.sweep(now, o.budget);
          } else if (o.k === 'drop') {
            const rows = t.rows().filter((r) => r.leasedPort >= o.port && r.leasedPort < o.port + o.count);
            t.dropLease(o.port, o.count);
            // Those ports stay taken at the source (their lease is gone); keep them apart.
            for (const r of rows) dropped.add(r.leasedPort);
          } else {
            now += o.ms;
          }
          const rows = t.rows();
          expect(rows.length).toBe(t.size);
          // Every row's port is taken at the source; every taken port not dropped has a row.
          const leasedPorts = new Set(rows.map((r) => r.leasedPort));
          expect(new Set([...source.taken].filter((p) => !dropped.has(p)))).toEqual(leasedPorts);
          // One row per (protocol, local port), and the indexes agree.
          expect(new Set(rows.map((r) => `${r.protocol}/${r.localPort}`)).size).toBe(rows.length);
          for (const r of rows) {
            const live = now <= r.expiresAt;
            expect(t.peekLocal(r.protocol, r.leasedPort, now)).toBe(live ? r.localPort : -1);
            expect(t.peekLeased(r.protocol, r.localPort, now)).toBe(live ? r.leasedPort : -1);
          }
        }
      }),
      { seed: 0x5977, numRuns: 200 },
    );
  });

  it('hands a TCP or UDP row used both ways to the observer once, counts its use there, and takes it back before the port is freed', () => {
    const source = new BlockPortSource(4000, 4);
    const events: string[] = [];
    const otherUse = new Map<number, number>();
    const t = new SourcePortTranslationTable(source, {
      observer: {
        established: (p, local, leased) => events.push(`+${p}:${local}:${leased}`),
        removed: (p, local, leased) => {
          // Before the port goes back to the source.
          events.push(`-${p}:${local}:${leased}:${source.taken.has(leased) ? 'held' : 'freed'}`);
        },
        lastUse: (_p, leased) => otherUse.get(leased) ?? -Infinity,
      },
    });
    const udp = t.outbound(UDP, 5000, 0, 0);
    const tcp = t.outbound(TCP, 5001, SYN, 0);
    const icmp = t.outbound(ICMP, 7, 0, 0);
    expect(events).toEqual([]);
    t.inbound(UDP, udp, 0, 10);
    t.inbound(UDP, udp, 0, 11);
    t.inbound(TCP, tcp, SYN_ACK, 12);
    t.inbound(ICMP, icmp, 0, 13); // the fast path carries no ICMP
    expect(events).toEqual([`+${UDP}:5000:${udp}`, `+${TCP}:5001:${tcp}`]);
    // Used on the other path only: not idle.
    otherUse.set(udp, DEFAULT_TRANSLATION_TIMEOUTS.udpMs + 5);
    expect(t.sweep(DEFAULT_TRANSLATION_TIMEOUTS.udpMs + 100)).toBe(1); // the ICMP row only
    expect(t.peekLocal(UDP, udp, DEFAULT_TRANSLATION_TIMEOUTS.udpMs + 100)).toBe(5000);
    // A TCP row ending is still handed; a lost lease takes both back first.
    t.outbound(TCP, 5001, FIN_ACK, 20);
    expect(t.dropLease(4000, 4)).toBe(2);
    expect(events.slice(2).sort()).toEqual([`-${TCP}:5001:${tcp}:held`, `-${UDP}:5000:${udp}:held`].sort());
  });
});
