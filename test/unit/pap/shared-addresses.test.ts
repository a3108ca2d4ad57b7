/**
 * Several shared addresses: the port space is addresses x ports. The lease
 * table grants the same port on two addresses to two hosts and never twice
 * on one; its journal names the address of a block off the first address
 * and reads records without one as the first's; the PAP server maps a
 * message's address onto its slots and refuses an address it does not serve;
 * the configuration refuses what it cannot serve, naming the field.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema, sharedAddressesOf } from '../../../src/config/router-config.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import { addressIndexOfSlot, portOfSlot, portSlot } from '../../../src/util/block.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { ipv4FromString } from '../../../src/wire/ipv4.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { PapStatus } from '../../../src/wire/pap.ts';

const A = '198.51.100.30';
const B = '198.51.100.31';
const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const RANGE = { min: 1024, max: 1024 + 4 * 32 - 1 };

const open = (files: MemoryFiles, clock = new FakeClock(), extra: Partial<LeaseTableOptions> = {}) =>
  new LeaseTable({ clock, store: new LeaseStore(files), addresses: [A, B], portRange: RANGE, ...extra });

const journalLines = (files: MemoryFiles): Record<string, unknown>[] =>
  new TextDecoder()
    .decode(files.journal)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l.slice(9)) as Record<string, unknown>);

describe('lease table over two shared addresses', () => {
  it('grants the same port on both addresses to different hosts', () => {
    const t = open(new MemoryFiles());
    const a = t.request(H1, 'port', { count: 32, txid: 1 });
    const b = t.request(H2, 'port', { count: 32, txid: 1, address: 1 });
    expect([a.status, a.lowest, a.address]).toEqual(['ok', 1024, undefined]);
    expect([b.status, b.lowest, b.address]).toEqual(['ok', 1024, B]);
    const [la, lb] = [t.leasesOf(H1)[0]!, t.leasesOf(H2)[0]!];
    expect([addressIndexOfSlot(la.lowest), portOfSlot(la.lowest)]).toEqual([0, 1024]);
    expect([addressIndexOfSlot(lb.lowest), portOfSlot(lb.lowest)]).toEqual([1, 1024]);
    expect(t.ownerOf('port', 1030)).toBe(H1);
    expect(t.ownerOf('port', portSlot(1, 1030))).toBe(H2);
  });

  it('never grants a slot twice, and each address runs out on its own', () => {
    const t = open(new MemoryFiles(), new FakeClock(), { maxPerHost: { port: 10_000 } });
    const granted: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = t.request(H1, 'port', { count: 32 });
      expect(r.status).toBe('ok');
    }
    // The first address is full; the second is untouched.
    expect(t.request(H1, 'port', { count: 32 }).status).toBe('pool-exhausted');
    for (let i = 0; i < 4; i++) expect(t.request(H2, 'port', { count: 32, address: 1 }).status).toBe('ok');
    expect(t.request(H2, 'port', { count: 32, address: 1 }).status).toBe('pool-exhausted');
    // An address the table does not have grants nothing.
    expect(t.request(H2, 'port', { count: 32, address: 2 }).status).toBe('pool-exhausted');
    for (const l of t.leases()) for (let v = l.lowest; v < l.lowest + l.count; v++) granted.push(v);
    expect(new Set(granted).size).toBe(granted.length);
    expect(granted.length).toBe(2 * 4 * 32);
    // No block straddles two addresses.
    for (const l of t.leases())
      expect(addressIndexOfSlot(l.lowest)).toBe(addressIndexOfSlot(l.lowest + l.count - 1));
    expect(t.free('port')).toBe(0);
  });

  it('renews and releases by slot: the same port on the other address is another block', () => {
    const t = open(new MemoryFiles());
    t.request(H1, 'port', { count: 32 });
    t.request(H2, 'port', { count: 32, address: 1 });
    expect(t.release(H2, 'port', 1030).status).toBe('unknown-lease');
    const released = t.release(H2, 'port', portSlot(1, 1030));
    expect([released.status, released.lowest, released.address]).toEqual(['ok', 1024, B]);
    expect(t.ownerOf('port', 1030)).toBe(H1);
  });
});

describe('the journal with several shared addresses', () => {
  it('names the address of a block off the first, and a restart finds every block where it was', () => {
    const files = new MemoryFiles();
    const clock = new FakeClock();
    const t = open(files, clock);
    t.request(H1, 'port', { count: 32 });
    t.request(H2, 'port', { count: 32, address: 1 });
    t.request(H2, 'spi', { count: 64 });
    const grants = journalLines(files).map((e) => e.lease as Record<string, unknown>);
    expect(grants.map((g) => [g.kind, g.address, g.lowest])).toEqual([
      ['port', undefined, 1024],
      ['port', B, 1024],
      ['spi', undefined, 256],
    ]);
    const before = t.leases().map((l) => [l.host, l.kind, l.lowest, l.count]);
    t.close();
    const again = open(MemoryFiles.copyOf(files), clock);
    expect(again.leases().map((l) => [l.host, l.kind, l.lowest, l.count])).toEqual(before);
    // And the pools know it: the second address has exactly three blocks left.
    expect(again.free('port')).toBe(6 * 32);
  });

  it('reads records without an address (a journal of one address) as the first address', () => {
    const files = new MemoryFiles();
    const clock = new FakeClock();
    const old = new LeaseTable({ clock, store: new LeaseStore(files), portRange: RANGE });
    old.request(H1, 'port', { count: 32 });
    old.request(H2, 'port', { count: 32 });
    expect(journalLines(files).every((e) => (e.lease as Record<string, unknown>).address === undefined)).toBe(
      true,
    );
    old.close();
    const t = open(MemoryFiles.copyOf(files), clock);
    expect(t.leases().map((l) => [l.host, l.lowest])).toEqual([
      [H1, 1024],
      [H2, 1056],
    ]);
    expect(t.request(H2, 'port', { count: 32, address: 1 }).lowest).toBe(1024);
  });

  it('drops, with a note, a block of an address the router no longer serves', () => {
    const files = new MemoryFiles();
    const clock = new FakeClock();
    const t = open(files, clock);
    t.request(H1, 'port', { count: 32 });
    t.request(H2, 'port', { count: 32, address: 1 });
    t.close();
    const narrowed = new LeaseTable({
      clock,
      store: new LeaseStore(MemoryFiles.copyOf(files)),
      addresses: [A],
      portRange: RANGE,
    });
    expect(narrowed.leases().map((l) => [l.host, l.lowest])).toEqual([[H1, 1024]]);
    expect(narrowed.recoveryNotes.join('\n')).toContain(`on ${B}, an address not served`);
  });
});

describe('the PAP server with several shared addresses', () => {
  const ext = { status: 0, epoch: 0, leaseTime: 0 };
  const u32 = (a: string) => ipv4FromString(a)!;
  const server = () => {
    const t = open(new MemoryFiles());
    return { t, s: new PapServer(t, [u32(A), u32(B)]) };
  };

  it('grants on the address a request names, and names it in the answer', () => {
    const { t, s } = server();
    const msg: PapMessage = {
      kind: 'port-request',
      highPorts: false,
      portsRequested: 32,
      address: u32(B),
      transactionId: 1,
      ...ext,
    };
    const r = s.handle(msg, H2)!;
    expect(r).toMatchObject({ kind: 'port-response', success: true, lowestPort: 1024, address: u32(B) });
    expect(t.ownerOf('port', portSlot(1, 1024))).toBe(H2);
    // Renewing names the same address; the same port on the first is not the host's.
    const renew = (address?: number) =>
      s.handle(
        {
          kind: 'port-renew',
          lowestPort: 1024,
          portCount: 32,
          transactionId: 2,
          ...ext,
          ...(address ? { address } : {}),
        },
        H2,
      )!;
    expect(renew()).toMatchObject({ success: false, status: PapStatus.UnknownLease });
    expect(renew(u32(B))).toMatchObject({ success: true, lowestPort: 1024, address: u32(B) });
  });

  it('reads address 0 as the first, and refuses an address it does not serve, counted', () => {
    const { s } = server();
    const ask = (address: number | undefined, transactionId: number) =>
      s.handle(
        {
          kind: 'port-request',
          highPorts: false,
          portsRequested: 32,
          transactionId,
          ...ext,
          ...(address === undefined ? {} : { address }),
        },
        H1,
      )!;
    expect(ask(undefined, 1)).toMatchObject({ success: true, lowestPort: 1024 });
    expect(ask(undefined, 1)).not.toHaveProperty('address');
    const refused = ask(u32('198.51.100.99'), 2);
    expect(refused).toMatchObject({
      success: false,
      status: PapStatus.UnknownAddress,
      address: u32('198.51.100.99'),
    });
    expect(s.counters.unknownAddress).toBe(1);
    expect(s.counters.refused['unknown-address']).toBe(1);
  });
});

describe('router configuration of several shared addresses', () => {
  const BASE = { lanAddress: '10.0.0.7', datapath: 'tun' };
  const problems = (data: Record<string, unknown>): string[] =>
    checkConfig(RouterConfigSchema, { ...BASE, ...data }).problems.map(formatProblem);

  it('sharedAddresses is the list, sharedAddress a list of one', () => {
    expect(problems({ sharedAddresses: [A, B] })).toEqual([]);
    expect(sharedAddressesOf({ sharedAddresses: [A, B] })).toEqual([A, B]);
    expect(sharedAddressesOf({ sharedAddress: A })).toEqual([A]);
  });

  it('refuses each mistake with the field it names', () => {
    const one = (data: Record<string, unknown>): string => {
      const p = problems(data);
      expect(p, JSON.stringify(data)).toHaveLength(1);
      return p[0]!;
    };
    expect(one({ sharedAddress: B, sharedAddresses: [A, B] })).toMatch(
      /^field `sharedAddresses`: .*198\.51\.100\.31 first/,
    );
    expect(one({ sharedAddresses: [A, B, A] })).toMatch(/^field `sharedAddresses\.2`: .*once/);
    expect(one({ sharedAddresses: [A, '10.0.0.7'] })).toMatch(/^field `sharedAddresses\.1`: .*lanAddress/);
    expect(one({ sharedAddresses: [] })).toMatch(/^field `sharedAddresses`/);
    // One address is as before, and several are served on either data path and on etcd,
    // each address under its own prefix there.
    expect(problems({ sharedAddresses: [A], datapath: 'ebpf' })).toEqual([]);
    expect(problems({ sharedAddresses: [A, B], datapath: 'ebpf' })).toEqual([]);
    expect(problems({ sharedAddresses: [A, B], etcd: { endpoints: ['http://10.0.0.21:2379'] } })).toEqual([]);
  });
});
