import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ResourceKind } from '../../../src/util/block.ts';
import type { Lease, LeaseAnswer, LeaseEndReason, LeaseListener } from '../../../src/pap/lease.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import type { LeaseTableOptions, RequestParams } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { overlapsIn, stateOf } from './lease-helpers.ts';

const HOSTS = ['10.0.0.1', '10.0.0.3', '10.0.0.4', '10.0.0.5'];
const KINDS: ResourceKind[] = ['port', 'spi'];
// Small spaces so that blocks run out, get reused and straddle the 10000 line.
const OPTIONS: Omit<LeaseTableOptions, 'clock' | 'store'> = {
  portRange: { min: 9950, max: 10069 },
  spiRange: { min: 256, max: 399 },
  maxPerHost: { port: 64, spi: 64 },
  compactEvery: 7,
  quarantineSeconds: 120,
};
const SIZE = { port: 120, spi: 144 };

const op = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('request' as const),
      host: fc.nat(HOSTS.length - 1),
      kind: fc.constantFrom(...KINDS),
      count: fc.integer({ min: 1, max: 40 }),
      high: fc.boolean(),
      lease: fc.constantFrom(0, 30, 200),
      withTxid: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('renew' as const), pick: fc.nat(), wrongHost: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat(), offset: fc.nat(40) }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('withdraw' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('retransmit' as const), back: fc.nat(4) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 130_000 }), fc.integer({ min: 0, max: 400_000 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('crash' as const), cut: fc.integer({ min: 1, max: 300 }) }),
  },
);

describe('LeaseTable under random operations', () => {
  let repeats = 0;
  it('never has two live leases (or a lease and a quarantined block) share a value, and never re-issues within 120 s', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const clock = new FakeClock();
        let files = new MemoryFiles();
        // When each value last left a lease: it may not be granted again for 120 s.
        const endedAt = { port: new Map<number, number>(), spi: new Map<number, number>() };
        const watcher: LeaseListener = {
          onLeaseAdded(l: Lease) {
            for (let v = l.lowest; v < l.lowest + l.count; v++) {
              const ended = endedAt[l.kind].get(v);
              if (ended !== undefined) expect(clock.now() - ended).toBeGreaterThanOrEqual(120_000);
            }
          },
          onLeaseRemoved(l: Lease, why: LeaseEndReason) {
            const at = why === 'expired' ? l.expiresAt : clock.now();
            for (let v = l.lowest; v < l.lowest + l.count; v++) endedAt[l.kind].set(v, at);
          },
        };
        const start = (): LeaseTable => {
          const t = new LeaseTable({ clock, store: new LeaseStore(files), ...OPTIONS });
          t.addListener(watcher, false);
          return t;
        };
        let t = start();
        const epoch = t.epoch;
        // Requests sent with a transaction id, newest first, to retransmit.
        const sent: Array<{
          host: string;
          kind: ResourceKind;
          params: RequestParams;
          answer: LeaseAnswer;
          at: number;
          restarts: number;
        }> = [];
        let nextTxid = 1;
        let restarts = 0;

        for (const o of ops) {
          const leases = t.leases();
          const pick = <T>(arr: T[], i: number): T | undefined =>
            arr.length ? arr[i % arr.length] : undefined;
          switch (o.t) {
            case 'request': {
              const params = {
                count: o.count,
                preference: o.high ? ('high' as const) : ('low' as const),
                leaseSeconds: o.lease,
                txid: o.withTxid ? nextTxid++ : undefined,
              };
              const a = t.request(HOSTS[o.host]!, o.kind, params);
              if (params.txid !== undefined) {
                sent.unshift({
                  host: HOSTS[o.host]!,
                  kind: o.kind,
                  params,
                  answer: a,
                  at: clock.now(),
                  restarts,
                });
              }
              if (a.status === 'ok') {
                expect(a.count).toBeGreaterThan(0);
                expect(t.ownerOf(o.kind, a.lowest)).toBe(HOSTS[o.host]);
              }
              expect(t.held(HOSTS[o.host]!, o.kind)).toBeLessThanOrEqual(64);
              break;
            }
            case 'retransmit': {
              const r = sent[o.back];
              if (r === undefined) break;
              const before = t.leases().length;
              const a = t.request(r.host, r.kind, r.params);
              // Within the answer cache's minute the same answer comes back and
              // nothing is allocated; failures are not kept across a restart.
              if (clock.now() - r.at <= 60_000 && (r.answer.status === 'ok' || r.restarts === restarts)) {
                repeats++;
                expect(a).toEqual(r.answer);
                expect(t.leases().length).toBe(before);
              }
              break;
            }
            case 'renew': {
              const l = pick(leases, o.pick);
              if (l === undefined) break;
              const host = o.wrongHost ? HOSTS[(HOSTS.indexOf(l.host) + 1) % HOSTS.length]! : l.host;
              const a = t.renew(host, l.kind, l.lowest, l.count);
              expect(a.status).toBe(o.wrongHost ? 'unknown-lease' : 'ok');
              break;
            }
            case 'release': {
              const l = pick(leases, o.pick);
              if (l === undefined) break;
              const a = t.release(l.host, l.kind, l.lowest + (o.offset % l.count));
              expect(a).toMatchObject({ status: 'ok', lowest: l.lowest, count: l.count });
              expect(t.find(l.kind, l.lowest)).toBeUndefined();
              break;
            }
            case 'withdraw': {
              const l = pick(leases, o.pick);
              if (l !== undefined) expect(t.withdraw(l.kind, l.lowest)).toBeDefined();
              break;
            }
            case 'advance':
              clock.advance(o.ms);
              break;
            case 'restart': {
              const s = stateOf(t);
              t.close();
              files = MemoryFiles.copyOf(files);
              t = start();
              restarts++;
              expect(t.recoveryNotes).toEqual([]);
              expect(stateOf(t)).toEqual(s);
              break;
            }
            case 'crash': {
              // Power loss during an append: the journal ends in part of a record.
              t.close();
              files = MemoryFiles.copyOf(files);
              files.appendJournal(new TextEncoder().encode('{"seq":'.padEnd(o.cut, 'x')));
              t = start();
              restarts++;
              break;
            }
          }
          const s = stateOf(t);
          expect(t.epoch).toBe(epoch);
          expect(overlapsIn(s)).toEqual([]);
          for (const kind of KINDS) {
            const leased = s.leases.filter((l) => l.kind === kind).reduce((n, l) => n + l.count, 0);
            const quarantined = s.quarantine.filter((q) => q.kind === kind).reduce((n, q) => n + q.count, 0);
            expect(t.free(kind) + leased + quarantined).toBe(SIZE[kind]);
          }
          for (const l of s.leases) expect(l.expiresAt).toBeGreaterThan(clock.now());
          for (const q of s.quarantine) expect(q.until).toBeGreaterThan(clock.now());
        }
      }),
      { seed: 6888, numRuns: 150 },
    );
    // The retransmission branch really ran.
    expect(repeats).toBeGreaterThan(10);
  });
});
