/**
 * The lease table on etcd, against a real etcd on loopback: two routers'
 * tables (each with its own client) granting at once never hand out
 * overlapping blocks, as etcd's own keys show afterwards; each sees the
 * other's leases; expiry needs no granting router; a lost member of three
 * stops nothing; keys it cannot read are skipped and counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { Etcd3 as Client } from 'etcd3';
import { SharedLeaseTable } from '../../../src/pap/shared-lease-table.ts';
import type { SharedLeaseTableOptions } from '../../../src/pap/shared-lease-table.ts';
import { parseBlock, parseKey } from '../../../src/pap/shared-lease-layout.ts';
import type { Lease, LeaseEndReason, LeaseListener } from '../../../src/pap/lease.ts';
import { SystemClock } from '../../../src/util/clock.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import { PAP_MESSAGE_LENGTH, PapStatus, emitPap, parsePap } from '../../../src/wire/pap.ts';
import { ipv4FromString } from '../../../src/wire/ipv4.ts';
import { waitUntil } from '../../helpers/process.ts';
import type { EtcdCluster } from '../../helpers/etcd.ts';
import { freePort, startEtcd } from '../../helpers/etcd.ts';

let etcd: EtcdCluster;
let n = 0;
const prefix = () => `/distnat-test/${process.pid}/${++n}/`;
const clock = new SystemClock({ unref: true });

beforeAll(async () => {
  etcd = await startEtcd(1);
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});

function open(
  client: Etcd3,
  p: string,
  extra: Partial<SharedLeaseTableOptions> = {},
): Promise<SharedLeaseTable> {
  return SharedLeaseTable.open({
    client,
    prefix: p,
    clock,
    portRange: { min: 1024, max: 65535 },
    spiRange: { min: 256, max: 0xffffffff },
    ...extra,
  });
}

interface StoredBlock {
  kind: string;
  lowest: number;
  count: number;
  state: string;
  host: string;
}

/** Every block under the prefix as etcd holds it now, read with a client of its own. */
async function storedBlocks(p: string): Promise<StoredBlock[]> {
  const c = new Client({ hosts: etcd.endpoints });
  try {
    const all = await c.getAll().prefix(p).exec();
    const out: StoredBlock[] = [];
    for (const kv of all.kvs) {
      const k = parseKey(p, kv.key.toString());
      if (k.what !== 'block') continue;
      const b = parseBlock(k.kind, k.lowest, kv.value);
      if (!b.ok) continue;
      out.push({
        kind: k.kind,
        lowest: k.lowest,
        count: b.block.count,
        state: b.block.state,
        host: b.block.host,
      });
    }
    return out;
  } finally {
    c.close();
  }
}

function overlaps(blocks: StoredBlock[]): string[] {
  const sorted = [...blocks].sort((a, b) =>
    a.kind === b.kind ? a.lowest - b.lowest : a.kind < b.kind ? -1 : 1,
  );
  const out: string[] = [];
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (a.kind === b.kind && a.lowest + a.count > b.lowest)
      out.push(`${a.kind} ${a.lowest}+${a.count} (${a.host}) overlaps ${b.lowest}+${b.count} (${b.host})`);
  }
  return out;
}

function recorder(): LeaseListener & { added: Lease[]; removed: [Lease, LeaseEndReason][] } {
  const added: Lease[] = [];
  const removed: [Lease, LeaseEndReason][] = [];
  return {
    added,
    removed,
    onLeaseAdded: (l) => added.push(l),
    onLeaseRemoved: (l, r) => removed.push([l, r]),
  };
}

describe('SharedLeaseTable on etcd', () => {
  it('two routers granting 240 requests at once, one stopped in the middle: no two blocks overlap in etcd', async () => {
    const p = prefix();
    const clientA = etcd.client();
    const clientB = etcd.client();
    const a = await open(clientA, p, { maxPerHost: { port: 1024, spi: 1024 } });
    const b = await open(clientB, p, { maxPerHost: { port: 1024, spi: 1024 } });
    expect(a.epoch).toBe(b.epoch);
    const hosts = Array.from({ length: 60 }, (_, i) => `10.0.${i >> 8}.${(i & 255) + 1}`);
    type Outcome = { via: string; host: string; status: string; kind: string; lowest: number; count: number };
    const jobs: Promise<Outcome>[] = [];
    let answeredA = 0;
    for (let i = 0; i < 240; i++) {
      const host = hosts[i % hosts.length]!;
      const via = i % 2 === 0 ? 'a' : 'b';
      const t = via === 'a' ? a : b;
      const kind = i % 3 === 0 ? 'spi' : 'port';
      // Sizes differ so that blocks of both routers interleave and neighbour each other.
      const count = kind === 'port' ? 8 + (i % 5) * 8 : 16 + (i % 7);
      const job = t
        .request(host, kind, { count, txid: i + 1 })
        .then((ans) => ({ via, host, status: ans.status, kind, lowest: ans.lowest, count: ans.count }))
        .catch(() => ({ via, host, status: 'error', kind, lowest: 0, count: 0 }));
      if (via === 'a')
        void job.then(() => {
          // Router A goes away in the middle, its transactions still in flight.
          if (++answeredA === 40) {
            void a.close();
            clientA.close();
          }
        });
      jobs.push(job);
    }
    const results = await Promise.all(jobs);
    const ok = results.filter((r) => r.status === 'ok');
    // A answered until it was stopped; after that, try-later (etcd gone from under it), never an error.
    expect(ok.filter((r) => r.via === 'a').length).toBeGreaterThanOrEqual(30);
    expect(results.filter((r) => r.status !== 'ok' && r.status !== 'try-later')).toEqual([]);
    expect(ok.length).toBeGreaterThanOrEqual(150);
    expect(results.filter((r) => r.via === 'b' && r.status !== 'ok')).toEqual([]);

    const stored = await storedBlocks(p);
    expect(overlaps(stored)).toEqual([]);
    // Every grant answered ok is in etcd, as answered, leased to the host that asked.
    for (const r of ok)
      expect(stored).toContainEqual({
        kind: r.kind,
        lowest: r.lowest,
        count: r.count,
        state: 'leased',
        host: r.host,
      });
    // And B's view is etcd's.
    await waitUntil('B has seen every grant', () => b.leases().length === stored.length);
    expect(overlaps(b.leases().map((l) => ({ ...l, state: 'leased' })))).toEqual([]);
    await b.close();
  }, 60_000);

  it('a renewal of a lease with most of its time left is answered without a transaction; one past a quarter is written', async () => {
    const p = prefix();
    const a = await open(etcd.client(), p);
    const ans = await a.request('10.0.0.2', 'port', { count: 32, leaseSeconds: 300 });
    expect(ans.status).toBe('ok');
    const before = (await storedBlocks(p)).length;
    const c = etcd.client();
    const rev = async (): Promise<string> => (await c.get(`${p}\u0000never`).exec()).header.revision;
    const r0 = await rev();
    // A failover probe a moment later: the same expiry, no write.
    const probe = await a.renew('10.0.0.2', 'port', ans.lowest, 32, { leaseSeconds: 300 });
    expect(probe).toMatchObject({ status: 'ok', lowest: ans.lowest, expiresAt: ans.expiresAt });
    expect(probe.leaseSeconds).toBeLessThanOrEqual(300);
    expect(probe.leaseSeconds).toBeGreaterThanOrEqual(298);
    expect(await rev()).toBe(r0);
    expect(a.stats().etcd_unwritten_renewals).toBe(1);
    // Asking for a lifetime the lease has less than three quarters of left: written.
    const longer = await a.renew('10.0.0.2', 'port', ans.lowest, 32, { leaseSeconds: 600 });
    expect(longer).toMatchObject({ status: 'ok', leaseSeconds: 600 });
    expect(longer.expiresAt).toBeGreaterThan(ans.expiresAt!);
    expect(await rev()).not.toBe(r0);
    expect(a.stats().etcd_unwritten_renewals).toBe(1);
    expect((await storedBlocks(p)).length).toBe(before);
    c.close();
    await a.close();
  });

  it("a lease granted through A is in B's view, and B's withdrawal removes it from A's", async () => {
    const p = prefix();
    const a = await open(etcd.client(), p);
    const b = await open(etcd.client(), p);
    const seenA = recorder();
    const seenB = recorder();
    a.addListener(seenA);
    b.addListener(seenB);
    const ans = await a.request('10.0.0.2', 'port', { count: 32 });
    expect(ans.status).toBe('ok');
    await waitUntil('B hears the grant', () => seenB.added.length === 1);
    expect(seenB.added[0]).toMatchObject({ host: '10.0.0.2', kind: 'port', lowest: ans.lowest, count: 32 });
    expect(b.ownerOf('port', ans.lowest + 5)).toBe('10.0.0.2');

    // A renewal through B moves the expiry in A's view.
    const renewed = await b.renew('10.0.0.2', 'port', ans.lowest, 32, { leaseSeconds: 600 });
    expect(renewed.status).toBe('ok');
    await waitUntil('A sees the renewal', () => a.find('port', ans.lowest)?.expiresAt === renewed.expiresAt);

    const gone = await b.withdraw('port', ans.lowest);
    expect(gone).toMatchObject({ host: '10.0.0.2', lowest: ans.lowest });
    await waitUntil('A hears the withdrawal', () => seenA.removed.length === 1);
    expect(seenA.removed[0]![1]).toBe('withdrawn');
    expect(a.find('port', ans.lowest)).toBeUndefined();
    // Quarantined, not free: neither router grants it again for now.
    expect((await storedBlocks(p)).map((s) => s.state)).toEqual(['quarantined']);
    const next = await a.request('10.0.0.3', 'port', { count: 32 });
    expect(next.lowest).not.toBe(ans.lowest);
    // A release through the router that did not grant it, once it has heard of the grant.
    await waitUntil('B hears the second grant', () => b.ownerOf('port', next.lowest) === '10.0.0.3');
    expect((await b.release('10.0.0.3', 'port', next.lowest + 1)).status).toBe('ok');
    await waitUntil('A hears the release', () => seenA.removed.length === 2);
    expect(seenA.removed[1]![1]).toBe('released');
    await a.close();
    await b.close();
  }, 30_000);

  it('a lease expires, and its quarantine ends, with the router that granted it gone', async () => {
    const p = prefix();
    const clientA = etcd.client();
    const config = {
      leaseSeconds: 1,
      minLeaseSeconds: 1,
      quarantineSeconds: 1,
      clockSkewMs: 200,
      sweepMs: 100,
    };
    const a = await open(clientA, p, config);
    const b = await open(etcd.client(), p, config);
    const seenB = recorder();
    b.addListener(seenB);
    const ans = await a.request('10.0.0.9', 'spi', { count: 64 });
    expect(ans.status).toBe('ok');
    await a.close();
    clientA.close();
    await waitUntil('B ends the lease', () => seenB.removed.length === 1, { timeoutMs: 5000 });
    expect(seenB.removed[0]![1]).toBe('expired');
    await waitUntil('the quarantine is in etcd', async () =>
      (await storedBlocks(p)).some((s) => s.state === 'quarantined'),
    );
    await waitUntil('the quarantine is over', async () => (await storedBlocks(p)).length === 0, {
      timeoutMs: 5000,
    });
    await waitUntil('B counts both sweeps', () => b.stats().etcd_swept! >= 2);
    await b.close();
  }, 30_000);

  it('keys it cannot read under the prefix are reported, skipped and counted', async () => {
    const p = prefix();
    const c = etcd.client();
    await c.put(`${p}port/00000400`).value('{not json');
    await c.put(`${p}something-else`).value('x');
    const skipped: string[] = [];
    const t = await open(etcd.client(), p, { onSkip: (key, reason) => skipped.push(`${key} ${reason}`) });
    expect(skipped.sort()).toEqual([`${p}port/00000400 corrupt-value`, `${p}something-else foreign-key`]);
    // Arriving through the watch as well, and a block too long for a PAP count.
    await c.put(`${p}spi/00001000`).value(
      JSON.stringify({
        state: 'leased',
        host: 'h',
        count: 70000,
        grantedAt: 1,
        expiresAt: 2,
        leaseSeconds: 1,
      }),
    );
    await c.put(`${p}port/zz`).value('{}');
    await waitUntil('the watch reports both', () => skipped.length === 4);
    expect(t.stats()).toMatchObject({
      etcd_skipped_corrupt_value: 1,
      etcd_skipped_foreign_key: 2,
      etcd_skipped_out_of_range: 1,
    });
    // The table still grants.
    expect((await t.request('10.0.0.4', 'port')).status).toBe('ok');
    expect(t.leases()).toHaveLength(1);
    await t.close();
  }, 30_000);

  it('an etcd that does not answer: open fails', async () => {
    const nobody = new Client({ hosts: `http://127.0.0.1:${await freePort()}`, dialTimeout: 500 });
    const opening = open(nobody, prefix()).catch((e: Error) => e);
    expect(await opening).toBeInstanceOf(Error);
    nobody.close();
  }, 30_000);

  it('PAP answers a grant once etcd has it; cut off from etcd: try-later, counted, known leases kept', async () => {
    // A member of its own, to be killed.
    const own = await startEtcd(1);
    try {
      const t = await open(own.client(), prefix());
      const server = new PapServer(t);
      const req = new Uint8Array(PAP_MESSAGE_LENGTH);
      const ext = { status: 0, epoch: 0, leaseTime: 0 };
      emitPap(
        { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext, transactionId: 9 },
        req,
        0,
      );
      const reply = await server.receiveAsync(req, { address: '10.0.0.5', port: 40000 });
      const parsed = parsePap(reply!, 0, reply!.length);
      expect(parsed.ok && parsed.value).toMatchObject({
        kind: 'port-response',
        success: true,
        portCount: 32,
      });
      // The synchronous path refuses a table that answers later, rather than answering wrongly.
      expect(() => server.receive(req, { address: '10.0.0.5' })).toThrow(/asynchronously/);

      await own.kill(0);
      const later = await server.answer(
        { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext, transactionId: 10 },
        '10.0.0.6',
      );
      expect(later).toMatchObject({ success: false, status: PapStatus.TryLater });
      expect(t.available).toBe(false);
      expect(t.stats()).toMatchObject({ etcd_available: 0, etcd_unavailable_refusals: 1 });
      // Still forwarded: the lease it knows has not expired.
      expect(t.ownerOf('port', 1024)).toBe('10.0.0.5');
      await t.close();
    } finally {
      await own.stop();
    }
  }, 60_000);
});

describe('SharedLeaseTable with several shared addresses', () => {
  const FIRST = '198.51.100.30';
  const SECOND = '198.51.100.31';
  /** Both addresses' prefixes under one test prefix, and options naming them. */
  function twoAddresses(p: string): Partial<SharedLeaseTableOptions> & { prefix: string } {
    return {
      prefix: `${p}${FIRST}/`,
      prefixes: [`${p}${FIRST}/`, `${p}${SECOND}/`],
      addresses: [FIRST, SECOND],
      // Two blocks of 32 per address: the hosts compete for the same ports on each.
      portRange: { min: 40000, max: 40063 },
    };
  }

  it('the same port on both addresses to different hosts, never twice on one; a watching router sees both', async () => {
    const p = prefix();
    const o = twoAddresses(p);
    const a = await open(etcd.client(), o.prefix, o);
    const b = await open(etcd.client(), o.prefix, o);
    const watcher = await open(etcd.client(), o.prefix, o);
    const seen = recorder();
    watcher.addListener(seen);
    // Eight hosts, four on each address, half through each router, all at once: two fit on each.
    const asks = Array.from({ length: 8 }, (_, i) => ({
      host: `10.0.0.${i + 1}`,
      address: i % 2,
      via: i % 4 < 2 ? a : b,
    }));
    const answers = await Promise.all(
      asks.map((q, i) =>
        q.via.request(q.host, 'port', { count: 32, txid: i + 1, ...(q.address ? { address: 1 } : {}) }),
      ),
    );
    const ok = answers.map((ans, i) => ({ ...asks[i]!, ans })).filter((r) => r.ans.status === 'ok');
    expect(answers.filter((x) => x.status !== 'ok' && x.status !== 'pool-exhausted')).toEqual([]);
    // Both blocks of each address granted, each once: to two hosts per address, four hosts in all.
    for (const address of [0, 1]) {
      const on = ok.filter((r) => r.address === address);
      expect(on.map((r) => r.ans.lowest).sort()).toEqual([40000, 40032]);
      expect(on.map((r) => r.ans.address)).toEqual(address === 0 ? [undefined, undefined] : [SECOND, SECOND]);
    }
    expect(new Set(ok.map((r) => r.host)).size).toBe(4);

    // etcd's own data: each address's blocks under its own prefix, none overlapping there.
    const first = await storedBlocks(`${p}${FIRST}/`);
    const second = await storedBlocks(`${p}${SECOND}/`);
    for (const stored of [first, second]) {
      expect(stored.map((x) => x.lowest).sort()).toEqual([40000, 40032]);
      expect(overlaps(stored)).toEqual([]);
    }
    // Port 40000 is two leases, one on each address, of two hosts.
    const owners = [first, second].map((st) => st.find((x) => x.lowest === 40000)!.host);
    expect(owners[0]).not.toBe(owners[1]);

    // The router that granted nothing sees all four, by slot: address index x 65536 + port.
    await waitUntil('the watcher sees every lease', () => seen.added.length === 4);
    expect(watcher.leases().map((l) => l.lowest)).toEqual([40000, 40032, 65536 + 40000, 65536 + 40032]);
    expect(watcher.ownerOf('port', 65536 + 40005)).toBe(owners[1]);
    expect(watcher.ownerOf('port', 40005)).toBe(owners[0]);

    // Renewal, release and withdrawal of a second-address lease through a router that did not grant it.
    const onSecond = ok.filter((r) => r.address === 1);
    const [x, y] = onSecond as [(typeof ok)[number], (typeof ok)[number]];
    const other = x.via === a ? b : a;
    await waitUntil(
      'the other router knows the lease',
      () => other.ownerOf('port', 65536 + x.ans.lowest) === x.host,
    );
    const renewed = await other.renew(x.host, 'port', 65536 + x.ans.lowest, 32, { leaseSeconds: 600 });
    expect(renewed).toMatchObject({ status: 'ok', address: SECOND, lowest: x.ans.lowest });
    await waitUntil(
      'the watcher sees the renewal',
      () => watcher.find('port', 65536 + x.ans.lowest)?.expiresAt === renewed.expiresAt,
    );
    expect((await other.release(x.host, 'port', 65536 + x.ans.lowest + 3)).status).toBe('ok');
    expect(await watcher.withdraw('port', 65536 + y.ans.lowest)).toMatchObject({ host: y.host });
    await waitUntil('both ends reach the watcher', () => seen.removed.length === 2);
    expect(seen.removed.map(([l, r]) => `${l.lowest} ${r}`).sort()).toEqual(
      [`${65536 + x.ans.lowest} released`, `${65536 + y.ans.lowest} withdrawn`].sort(),
    );
    // Quarantined on the second address only; the first address's leases untouched.
    expect((await storedBlocks(`${p}${SECOND}/`)).map((z) => z.state)).toEqual([
      'quarantined',
      'quarantined',
    ]);
    expect((await storedBlocks(`${p}${FIRST}/`)).map((z) => z.state)).toEqual(['leased', 'leased']);
    expect(
      watcher
        .quarantined()
        .map((q) => q.lowest)
        .sort(),
    ).toEqual([65536 + 40000, 65536 + 40032]);
    for (const t of [a, b, watcher]) await t.close();
  }, 60_000);

  it('PAP names the address: a request for the second is granted there, an unserved one refused', async () => {
    const p = prefix();
    const o = twoAddresses(p);
    const t = await open(etcd.client(), o.prefix, o);
    const server = new PapServer(
      t,
      [FIRST, SECOND].map((x) => ipv4FromString(x)!),
    );
    const ext = { status: 0, epoch: 0, leaseTime: 0, highPorts: false, portsRequested: 32 };
    const second = await server.answer(
      { kind: 'port-request', ...ext, transactionId: 1, address: ipv4FromString(SECOND)! },
      '10.0.0.5',
    );
    expect(second).toMatchObject({ success: true, lowestPort: 40000, address: ipv4FromString(SECOND) });
    const first = await server.answer({ kind: 'port-request', ...ext, transactionId: 2 }, '10.0.0.6');
    expect(first).toMatchObject({ success: true, lowestPort: 40000 });
    const unserved = await server.answer(
      { kind: 'port-request', ...ext, transactionId: 3, address: ipv4FromString('198.51.100.99')! },
      '10.0.0.7',
    );
    expect(unserved).toMatchObject({ success: false, status: PapStatus.UnknownAddress });
    expect((await storedBlocks(`${p}${SECOND}/`)).map((z) => z.host)).toEqual(['10.0.0.5']);
    expect((await storedBlocks(`${p}${FIRST}/`)).map((z) => z.host)).toEqual(['10.0.0.6']);
    // SPIs are one space, under the first address's prefix; an SPI key under the second is no block.
    expect((await t.request('10.0.0.5', 'spi')).status).toBe('ok');
    expect((await storedBlocks(`${p}${FIRST}/`)).map((z) => z.kind).sort()).toEqual(['port', 'spi']);
    const c = etcd.client();
    await c
      .put(`${p}${SECOND}/spi/00010000`)
      .value(
        JSON.stringify({ state: 'leased', host: 'h', count: 1, grantedAt: 1, expiresAt: 2, leaseSeconds: 1 }),
      );
    await waitUntil('the stray SPI key is skipped', () => t.stats().etcd_skipped_foreign_key === 1);
    expect(t.ownerOf('spi', 0x10000)).toBeUndefined();
    // A corrupt block under the second address, on its last port: skipped and counted, and that port
    // kept off there only (the next grant there is one short; the first address keeps all its ports).
    await c.put(`${p}${SECOND}/port/00009c7f`).value('{not json');
    await waitUntil('the corrupt key is skipped', () => t.stats().etcd_skipped_corrupt_value === 1);
    const next = await t.request('10.0.0.8', 'port', { count: 32, address: 1 });
    expect(next).toMatchObject({ status: 'ok', address: SECOND, lowest: 40032, count: 31 });
    expect((await t.request('10.0.0.9', 'port', { count: 32, address: 1 })).status).toBe('pool-exhausted');
    expect(await t.request('10.0.0.9', 'port', { count: 32 })).toMatchObject({ lowest: 40032, count: 32 });
    await t.close();
  }, 30_000);
});

describe('SharedLeaseTable: where each router starts its search', () => {
  /** Two routers, each with its own client, granting `n` port blocks each at once. */
  async function grantSideBySide(
    from: [number, number],
    n: number,
  ): Promise<{ firsts: number[]; conflicts: number; stored: StoredBlock[] }> {
    const p = prefix();
    const tables = [
      await open(etcd.client(), p, { searchFrom: from[0] }),
      await open(etcd.client(), p, { searchFrom: from[1] }),
    ];
    const answers = await Promise.all(
      tables.map((t, r) =>
        Promise.all(
          Array.from({ length: n }, (_, i) =>
            t.request(`10.${r}.0.${i + 1}`, 'port', { count: 32, txid: i + 1 }),
          ),
        ),
      ),
    );
    for (const list of answers) expect(list.map((x) => x.status)).toEqual(list.map(() => 'ok'));
    const conflicts = tables.reduce((sum, t) => sum + t.counters.conflicts, 0);
    for (const t of tables) await t.close();
    return { firsts: answers.map((list) => list[0]!.lowest), conflicts, stored: await storedBlocks(p) };
  }

  it('two routers starting apart grant side by side: different first blocks, no compare failing, no overlap', async () => {
    const apart = await grantSideBySide([0, 0.5], 40);
    // The low ports (code 0) are 1024-9999: the second router starts half way into them.
    expect(apart.firsts).toEqual([1024, 1024 + Math.floor(0.5 * (9999 - 1024 + 1))]);
    expect(overlaps(apart.stored)).toEqual([]);
    expect(apart.stored).toHaveLength(80);
    // Each router's blocks stay in its own stretch, so no grant's compare ever meets the other's keys.
    expect(apart.conflicts).toBe(0);
    // Both starting at the bottom, for comparison: they reach for the same blocks (how often is timing).
    const together = await grantSideBySide([0, 0], 40);
    expect(overlaps(together.stored)).toEqual([]);
    expect(together.stored).toHaveLength(80);
    console.log(
      `compare failures granting 2 x 40 blocks at once: ${together.conflicts} from one start, ${apart.conflicts} from two`,
    );
  }, 60_000);

  it('a router whose stretch is full wraps round to the bottom', async () => {
    const p = prefix();
    const t = await open(etcd.client(), p, { portRange: { min: 40000, max: 40127 }, searchFrom: 0.5 });
    const got = [];
    for (let i = 0; i < 4; i++)
      got.push((await t.request(`10.0.3.${i + 1}`, 'port', { count: 32, preference: 'high' })).lowest);
    expect(got).toEqual([40064, 40096, 40000, 40032]);
    expect((await t.request('10.0.3.9', 'port', { count: 32, preference: 'high' })).status).toBe(
      'pool-exhausted',
    );
    await t.close();
  }, 30_000);
});

describe('SharedLeaseTable on a three-member cluster', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcd(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('grants go on when one member is killed', async () => {
    const p = prefix();
    const a = await open(cluster.client(), p);
    const b = await open(cluster.client(), p);
    for (let i = 0; i < 10; i++) expect((await a.request(`10.0.1.${i + 1}`, 'port')).status).toBe('ok');
    await cluster.kill(0);
    const after: string[] = [];
    for (let i = 0; i < 40; i++) {
      const t = i % 2 === 0 ? a : b;
      after.push((await t.request(`10.0.2.${i + 1}`, 'port', { txid: i + 1 })).status);
    }
    expect(after.filter((s) => s === 'ok').length).toBeGreaterThanOrEqual(36);
    const c = new Client({ hosts: cluster.endpoints.slice(1) });
    const all = await c.getAll().prefix(`${p}port/`).keys();
    c.close();
    expect(all.length).toBe(10 + after.filter((s) => s === 'ok').length);
    await a.close();
    await b.close();
  }, 60_000);
});
