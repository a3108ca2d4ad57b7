import { describe, expect, it } from 'vitest';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import type { HostLeasesOptions } from '../../../src/pap/host-leases.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import type { PapClientOptions, PapOutcome } from '../../../src/pap/pap-client.ts';
import { PapClient } from '../../../src/pap/pap-client.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import type { PapTransport } from '../../../src/pap/transport.ts';
import { MemoryNetwork } from '../../../src/pap/transport.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { parsePap } from '../../../src/wire/pap.ts';

const ROUTER = { address: '10.0.0.7', port: 7032 };
const H1 = { address: '10.0.0.1', port: 40001 };
const H2 = { address: '10.0.0.3', port: 40003 };

const decode = (b: Uint8Array): PapMessage => {
  const p = parsePap(b, 0, b.length);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
};

/** A router and hosts on one in-memory LAN. */
function lan(tableOptions: Partial<LeaseTableOptions> = {}) {
  const clock = new FakeClock(0);
  const net = new MemoryNetwork(clock);
  let files = new MemoryFiles();
  let epochs = 0xe0000001;
  const routerEnd: PapTransport = net.endpoint(ROUTER);
  let table = new LeaseTable({
    clock,
    store: new LeaseStore(files),
    randomEpoch: () => epochs++,
    ...tableOptions,
  });
  let server = new PapServer(table);
  // One router endpoint; the current server answers (a restart swaps it).
  routerEnd.onMessage((bytes, peer) => {
    const reply = server.receive(bytes, peer, routerEnd);
    if (reply !== undefined) routerEnd.send(reply, peer);
  });
  const host = (
    peer: typeof H1,
    leaseOptions: Partial<HostLeasesOptions> = {},
    clientOptions: Partial<PapClientOptions> = {},
  ) => {
    const leases = new HostLeases({ clock, ...leaseOptions });
    const client = new PapClient({
      transport: net.endpoint(peer),
      router: ROUTER,
      clock,
      leases,
      random: () => 0.5, // no jitter
      ...clientOptions,
    });
    return { leases, client };
  };
  const restartRouter = (keepState: boolean, restartOptions: Partial<LeaseTableOptions> = {}) => {
    table.close();
    files = keepState ? MemoryFiles.copyOf(files) : new MemoryFiles();
    table = new LeaseTable({
      clock,
      store: new LeaseStore(files),
      randomEpoch: () => epochs++,
      ...tableOptions,
      ...restartOptions,
    });
    server = new PapServer(table);
  };
  const sentBy = (address: string) =>
    net.log.filter((m) => m.from.address === address).map((m) => decode(m.bytes));
  return { clock, net, host, table: () => table, restartRouter, sentBy };
}

describe('PapClient exchanges', () => {
  it('leases a block at start and hands its ports out', () => {
    const { clock, host, table } = lan();
    const { leases, client } = host(H1);
    client.start();
    clock.advance(10);
    expect(leases.blocks('port').map((b) => [b.lowest, b.count])).toEqual([[1024, 32]]);
    expect(table().ownerOf('port', 1024)).toBe(H1.address);
    expect(leases.epoch).toBe(table().epoch);
    expect(leases.acquire('port')).toBe(1024);
  });

  it('retransmits the same bytes with exponential back-off until answered', async () => {
    const { clock, net, host, table } = lan();
    const { client } = host(H1);
    const sendTimes: number[] = [];
    net.fate = (_b, from) => {
      if (from.address !== H1.address) return { delayMs: 1 };
      sendTimes.push(clock.now());
      return sendTimes.length <= 3 ? { drop: true } : { delayMs: 1 };
    };
    let outcome: PapOutcome | undefined;
    void client.request('port', 16).then((o) => (outcome = o));
    clock.advance(20_000);
    await Promise.resolve();
    expect(outcome?.status).toBe('ok');
    const requests = net.log.filter((m) => m.from.address === H1.address);
    expect(requests).toHaveLength(4);
    for (const r of requests) expect(r.bytes).toEqual(requests[0]!.bytes);
    expect(sendTimes).toEqual([0, 1000, 3000, 7000]);
    expect(client.counters).toMatchObject({ sent: 4, retransmitted: 3 });
    expect(table().leasesOf(H1.address)).toHaveLength(1);
  });

  it('a lost answer costs a retransmission, not a second block', async () => {
    const { clock, net, host, table } = lan();
    const { leases, client } = host(H1);
    let lost = false;
    net.fate = (_b, from) => {
      if (from.address === ROUTER.address && !lost) {
        lost = true;
        return { drop: true };
      }
      return { delayMs: 1 };
    };
    client.start();
    clock.advance(5_000);
    expect(table().leasesOf(H1.address)).toHaveLength(1);
    expect(leases.blocks('port')).toHaveLength(1);
    expect(client.counters.retransmitted).toBe(1);
  });

  it('ignores duplicated answers and answers from elsewhere', async () => {
    const { clock, net, host } = lan();
    const { leases, client } = host(H1);
    net.fate = () => ({ delayMs: 1, copies: 3 });
    client.start();
    clock.advance(10);
    expect(leases.blocks('port')).toHaveLength(1);
    expect(client.counters.unmatched).toBeGreaterThanOrEqual(2);
    const impostor = net.endpoint({ address: '10.0.0.66', port: 7032 });
    impostor.send(new Uint8Array(28), H1);
    clock.advance(10);
    expect(client.counters.unmatched).toBeGreaterThanOrEqual(3);
  });

  it('gives up after the last attempt and tries again later', async () => {
    const { clock, net, host } = lan();
    const { client } = host(H1, {}, { retryAfterMs: 30_000 });
    net.fate = () => ({ drop: true });
    const outcomes: string[] = [];
    void client.request('port').then((o) => outcomes.push(o.status));
    clock.advance(31_000 - 1);
    await Promise.resolve();
    expect(outcomes).toEqual([]);
    clock.advance(1);
    await Promise.resolve();
    expect(outcomes).toEqual(['timeout']);
    expect(client.counters).toMatchObject({ sent: 5, timeouts: 1 });
    expect(client.pending).toBe(0);
  });
});

describe('PapClient driving HostLeases', () => {
  it('renews at half the lease so the block never lapses on either side', () => {
    const { clock, host, table } = lan();
    const { leases, client } = host(H1);
    const lost: string[] = [];
    leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.lowest} ${why}`) });
    client.start();
    clock.advance(2_000_000);
    expect(lost).toEqual([]);
    expect(table().ownerOf('port', 1024)).toBe(H1.address);
    expect(leases.blocks('port')).toHaveLength(1);
    // One request, then one renewal per 150 s.
    expect(client.counters.sent).toBe(1 + Math.floor(2_000_000 / 150_000));
  });

  it('asks for another block when its ports run low', () => {
    const { clock, host } = lan();
    const { leases, client } = host(H1, { want: { port: 32 }, lowWater: { port: 8 } });
    client.start();
    clock.advance(10);
    for (let i = 0; i < 25; i++) leases.acquire('port');
    clock.advance(10);
    expect(leases.blocks('port').map((b) => b.lowest)).toEqual([1024, 1056]);
  });

  it('after a refusal waits before asking again', () => {
    const { clock, host } = lan({ portRange: { min: 5000, max: 5031 } });
    const a = host(H1);
    const b = host(H2, {}, { retryAfterMs: 60_000 });
    a.client.start();
    clock.advance(10);
    b.client.start();
    clock.advance(10);
    expect(b.leases.blocks()).toEqual([]);
    expect(b.client.counters.sent).toBe(1);
    void a.client.release('port', 5000);
    clock.advance(59_000);
    expect(b.client.counters.sent).toBe(1);
    clock.advance(1_000 + 10);
    // Asked again, but the block is still in quarantine.
    expect(b.client.counters.sent).toBe(2);
    clock.advance(120_000);
    expect(b.leases.blocks('port').map((x) => x.lowest)).toEqual([5000]);
  });

  it('re-leases everything when the router comes back without its state', () => {
    const { clock, host, table, restartRouter } = lan();
    const { leases, client } = host(H1, { want: { port: 32, spi: 64 } });
    const lost: string[] = [];
    leases.addListener({
      onBlockLost: (b, why, inUse) => lost.push(`${b.kind} ${why} [${inUse.join(',')}]`),
    });
    client.start();
    clock.advance(10);
    const oldEpoch = leases.epoch;
    leases.acquire('port');
    restartRouter(false);
    expect(table().epoch).not.toBe(oldEpoch);
    clock.advance(150_000 + 10); // the first renewal finds out
    expect(lost).toEqual(['port epoch-changed [1024]', 'spi epoch-changed []']);
    expect(leases.epoch).toBe(table().epoch);
    expect(
      leases
        .blocks()
        .map((b) => b.kind)
        .sort(),
    ).toEqual(['port', 'spi']);
    expect(table().leasesOf(H1.address)).toHaveLength(2);
  });

  it('keeps its blocks across a router restart that recovers state', () => {
    const { clock, host, table, restartRouter } = lan();
    const { leases, client } = host(H1);
    client.start();
    clock.advance(10);
    const epoch = leases.epoch;
    restartRouter(true);
    clock.advance(1_000_000);
    expect(table().epoch).toBe(epoch);
    expect(leases.blocks('port').map((b) => b.lowest)).toEqual([1024]);
    expect(table().leasesOf(H1.address)).toHaveLength(1);
  });

  it('drops a block the router refuses to renew, then leases afresh', () => {
    const { clock, host, table } = lan();
    const { leases, client } = host(H1, { want: { port: 32 } });
    const lost: string[] = [];
    leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.lowest} ${why}`) });
    client.start();
    clock.advance(10);
    // The router forgets the lease behind the host's back (operator action).
    table().withdraw('port', 1024);
    clock.advance(150_000);
    expect(lost).toEqual(['1024 refused']);
    // Leased afresh; 1024 is out of its quarantine again by now, so first fit gives it back.
    expect(leases.blocks('port').map((b) => [b.lowest, b.leaseStart])).toEqual([[1024, 150_002]]); // after one round trip
    expect(table().ownerOf('port', 1024)).toBe(H1.address);
  });

  it('hears a router withdraw', () => {
    const clock = new FakeClock(0);
    const net = new MemoryNetwork(clock);
    const table = new LeaseTable({ clock });
    const server = new PapServer(table);
    server.attach(net.endpoint(ROUTER));
    const leases = new HostLeases({ clock, want: { port: 0, spi: 16 } });
    const client = new PapClient({
      transport: net.endpoint(H1),
      router: ROUTER,
      clock,
      leases,
      random: () => 0.5,
    });
    const lost: string[] = [];
    leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.kind} ${b.lowest} ${why}`) });
    client.start();
    clock.advance(10);
    expect(server.withdraw('spi', 256)).toBe(true);
    clock.advance(1);
    expect(lost[0]).toBe('spi 256 withdrawn');
    expect(client.counters.withdrawals).toBe(1);
  });

  it('releases a block: the router quarantines it', async () => {
    const { clock, host, table } = lan();
    const { leases, client } = host(H1, { want: { port: 0 } });
    void client.request('port', 8);
    clock.advance(10);
    const p = client.release('port', 1030);
    expect(leases.blocks()).toEqual([]);
    clock.advance(10);
    expect((await p).status).toBe('ok');
    expect(table().leases()).toEqual([]);
    expect(table().quarantined()[0]).toMatchObject({ lowest: 1024, count: 8 });
  });

  it('stop ends pending exchanges and timers', async () => {
    const { clock, net, host } = lan();
    const { client } = host(H1);
    net.fate = () => ({ drop: true });
    const p = client.request('port');
    client.stop();
    expect((await p).status).toBe('stopped');
    clock.advance(100_000);
    expect(client.counters.sent).toBe(1);
    expect((await client.request('spi')).status).toBe('stopped');
  });
});

describe('PapClient after the router lost its state (docs/pap.md 6.3)', () => {
  const LOST = { withoutState: 'state-lost', holdOffSeconds: 270 } as const;
  const H3 = { address: '10.0.0.5', port: 40005 };

  it('reclaims every block at its next exchange and keeps using it, in-use values and all', () => {
    const { clock, host, table, restartRouter, sentBy } = lan();
    const h1 = host(H1, { want: { port: 32, spi: 64 } });
    const h2 = host(H2);
    const lost: string[] = [];
    for (const h of [h1, h2])
      h.leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.lowest} ${why}`) });
    h1.client.start();
    h2.client.start();
    clock.advance(10);
    const before = [...h1.leases.blocks(), ...h2.leases.blocks()].map(
      (b) => `${b.kind} ${b.lowest}+${b.count}`,
    );
    const oldEpoch = h1.leases.epoch;
    const port = h1.leases.acquire('port')!;

    restartRouter(false, LOST);
    const newEpoch = table().epoch;
    expect(newEpoch).not.toBe(oldEpoch);
    clock.advance(150_000 + 10); // the first renewals meet the new router life

    expect(lost).toEqual([]);
    expect(
      [...h1.leases.blocks(), ...h2.leases.blocks()].map((b) => `${b.kind} ${b.lowest}+${b.count}`),
    ).toEqual(before);
    expect([...h1.leases.blocks(), ...h2.leases.blocks()].map((b) => b.epoch)).toEqual([
      newEpoch,
      newEpoch,
      newEpoch,
    ]);
    expect(h1.leases.isAllocated('port', port)).toBe(true);
    expect(
      table()
        .leases()
        .map((l) => `${l.kind} ${l.lowest}+${l.count} ${l.host}`),
    ).toEqual([`port 1024+32 ${H1.address}`, `port 1056+32 ${H2.address}`, `spi 256+64 ${H1.address}`]);
    // The reclaims are renewals carrying the epoch the blocks were granted in.
    const renews = sentBy(H1.address).filter((m) => m.kind === 'port-renew' || m.kind === 'spi-renew');
    expect(renews.map((m) => [m.kind, m.epoch])).toEqual([
      ['port-renew', oldEpoch],
      ['spi-renew', oldEpoch],
    ]);
    // From then on, ordinary renewals in the new epoch keep them.
    clock.advance(1_000_000);
    expect(lost).toEqual([]);
    expect(h1.leases.blocks().map((b) => b.lowest)).toEqual([1024, 256]);
  });

  it('a host asking during the hold-off is told when to come back, and then leases around the reclaimed blocks', () => {
    const { clock, host, table, restartRouter, sentBy } = lan();
    const h1 = host(H1);
    h1.client.start();
    clock.advance(10);
    restartRouter(false, LOST);
    const end = table().holdOffUntil!;
    expect(end).toBe(clock.now() + 270_000);
    clock.advance(20_000);
    const h3 = host(H3);
    h3.client.start();
    clock.advance(10);
    expect(sentBy(H3.address).map((m) => m.kind)).toEqual(['port-request']);
    expect(h3.leases.blocks()).toEqual([]);
    expect(h3.leases.epoch).toBe(table().epoch);
    // h1 reclaims at its T1, 150 s after its lease started.
    clock.advance(140_000);
    expect(table().ownerOf('port', 1024)).toBe(H1.address);
    // Nothing more from h3 until the hold-off is over: the answer said how long (its lease time field).
    clock.advanceTo(end - 1);
    expect(sentBy(H3.address)).toHaveLength(1);
    clock.advance(2_000);
    expect(sentBy(H3.address).map((m) => m.kind)).toEqual(['port-request', 'port-request']);
    expect(h3.leases.blocks('port').map((b) => b.lowest)).toEqual([1056]);
  });

  it('drops the one block another host reclaimed first, keeps the rest', () => {
    const { clock, host, table, restartRouter } = lan();
    const h1 = host(H1, { want: { port: 32, spi: 64 } });
    const lost: string[] = [];
    h1.leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.kind} ${b.lowest} ${why}`) });
    h1.client.start();
    clock.advance(10);
    restartRouter(false, LOST);
    // A liar (or a host of another life) gets there first.
    expect(table().reclaim('10.0.0.99', 'port', 1040, 8).status).toBe('ok');
    clock.advance(150_000 + 10);
    expect(lost).toEqual(['port 1024 refused']);
    expect(h1.leases.blocks('spi').map((b) => b.lowest)).toEqual([256]);
    expect(table().ownerOf('spi', 256)).toBe(H1.address);
  });

  it('forgets the old blocks if the router gives none back (stale-epoch: no hold-off)', () => {
    const { clock, host, table, restartRouter } = lan();
    const h1 = host(H1, { want: { port: 32, spi: 64 } });
    const lost: string[] = [];
    h1.leases.addListener({ onBlockLost: (b, why) => lost.push(`${b.kind} ${why}`) });
    h1.client.start();
    clock.advance(10);
    restartRouter(false, { ...LOST, holdOffSeconds: 100 });
    clock.advance(150_000 + 10); // the hold-off is over before the host first hears of the new epoch
    expect(lost).toEqual(['port epoch-changed', 'spi epoch-changed']);
    expect(h1.leases.blocks().map((b) => [b.kind, b.epoch, b.leaseStart])).toEqual([
      ['port', table().epoch, 150_002],
      ['spi', table().epoch, 150_002],
    ]);
  });
});

describe('PapClient renewal transactions (docs/pap.md 6.2)', () => {
  it('T2 is a transaction of its own: the unanswered T1 is abandoned, not retransmitted alongside', async () => {
    const { clock, net, host, sentBy } = lan({ leaseSeconds: 300 });
    const h1 = host(H1);
    h1.client.start();
    clock.advance(10);
    // Every renewal is lost until shortly after T2 (262.5 s).
    net.fate = (b, from) =>
      from.address === H1.address && decode(b).kind === 'port-renew' && clock.now() < 263_000
        ? { drop: true }
        : { delayMs: 1 };
    clock.advance(300_000 - 20);
    const renews = sentBy(H1.address).filter((m) => m.kind === 'port-renew');
    const txids = [...new Set(renews.map((m) => m.transactionId))];
    expect(txids).toHaveLength(2);
    const t1 = renews.filter((m) => m.transactionId === txids[0]).length;
    const t2 = renews.filter((m) => m.transactionId === txids[1]).length;
    // T1 at 150 s, resent at 151, 153, 157, 165 s (five in all, the last at 165); T2 at 262.5 s, answered on its second send.
    expect([t1, t2]).toEqual([5, 2]);
    // The lease counts from T2's first send (lost), not T1's.
    expect(h1.leases.blocks('port')[0]!.leaseStart).toBe(262_500);
  });

  it('a renewal still unanswered when the block runs out ends with it', async () => {
    const { clock, net, host } = lan({ leaseSeconds: 40, minLeaseSeconds: 10 });
    const h1 = host(H1, {}, { retryAfterMs: 1_000_000 });
    h1.client.start();
    clock.advance(10);
    net.fate = () => ({ drop: true });
    const outcomes: string[] = [];
    const block = h1.leases.blocks('port')[0]!;
    clock.advance(35_000 + 5); // T2 is due at 35 s: its transaction starts, to outlive the lease
    expect(h1.client.pending).toBeGreaterThan(0);
    const pending = h1.client.renew('port', block.lowest, block.count).then((o) => outcomes.push(o.status));
    clock.advance(5_010);
    await pending;
    expect(h1.leases.blocks()).toEqual([]);
    expect(outcomes).toEqual(['abandoned']);
    expect(h1.client.pending).toBe(1); // only the new request for ports
  });
});
