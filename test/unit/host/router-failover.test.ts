/**
 * RouterFailover on an in-memory LAN: two PAP servers over one lease table
 * (as two routers over one etcd prefix), a host listing both. A router that
 * stops answering is left after failover.silentSeconds and not before; the
 * lease is renewed through the next; a router that answers, whatever it
 * answers, is kept; one router alone is never left.
 */
import { describe, expect, it } from 'vitest';
import { routersOf } from '../../../src/config/host-config.ts';
import { RouterFailover } from '../../../src/host/daemon/router-failover.ts';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapClient } from '../../../src/pap/pap-client.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import type { PapPeer } from '../../../src/pap/transport.ts';
import { MemoryNetwork } from '../../../src/pap/transport.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { hostConfig, memoryLogger } from './agent-rig.ts';

const R1 = { address: '10.0.0.7', port: 7032 };
const R2 = { address: '10.0.0.8', port: 7032 };
const H1 = { address: '10.0.0.1', port: 40001 };

function rig(routers: PapPeer[] = [R1, R2]) {
  const clock = new FakeClock(0);
  const net = new MemoryNetwork(clock);
  const table = new LeaseTable({
    clock,
    store: new LeaseStore(new MemoryFiles()),
    randomEpoch: () => 0xe0000001,
  });
  const server = new PapServer(table);
  const dead = new Set<string>();
  for (const r of routers) {
    const end = net.endpoint(r);
    end.onMessage((bytes, peer) => {
      if (dead.has(r.address)) return;
      const reply = server.receive(bytes, peer, end);
      if (reply !== undefined) end.send(reply, peer);
    });
  }
  const leases = new HostLeases({ clock, want: { port: 32 } });
  const client = new PapClient({
    transport: net.endpoint(H1),
    router: routers[0]!,
    clock,
    leases,
    random: () => 0.5,
  });
  const switches: string[] = [];
  const { log, lines } = memoryLogger();
  const failover = new RouterFailover({
    client,
    leases,
    clock,
    log,
    routers,
    probeMs: 1000,
    silentMs: 3000,
    onSwitch: (to) => switches.push(to.address),
  });
  client.start();
  failover.start();
  clock.advance(100);
  return { clock, net, table, leases, client, failover, switches, dead, lines };
}

describe('RouterFailover', () => {
  it('probes a quiet router with a renewal and stays with it while it answers', () => {
    const r = rig();
    expect(r.leases.blocks()).toHaveLength(1);
    const sent = r.client.counters.sent;
    r.clock.advance(10_000);
    expect(r.failover.probes).toBeGreaterThanOrEqual(8);
    expect(r.client.counters.sent).toBeGreaterThan(sent);
    expect(r.switches).toEqual([]);
    expect(r.client.router.address).toBe(R1.address);
  });

  it('moves to the next router after silentSeconds of silence, not before, keeping the block', () => {
    const r = rig();
    const [block] = r.leases.blocks();
    r.dead.add(R1.address);
    // The first probe goes out within a second of quiet; 3 s later the router is left.
    r.clock.advance(3000);
    expect(r.switches).toEqual([]);
    r.clock.advance(1500);
    expect(r.switches).toEqual([R2.address]);
    expect(r.failover.switches).toBe(1);
    expect(r.failover.last?.silentMs).toBeGreaterThanOrEqual(3000);
    expect(r.client.router.address).toBe(R2.address);
    r.clock.advance(10_000);
    // Renewed through router 2 on the shared table: the same block, still the host's.
    expect(r.leases.blocks().map((b) => b.lowest)).toEqual([block!.lowest]);
    expect(r.table.leasesOf(H1.address).filter((l) => l.kind === 'port')).toHaveLength(1);
    expect(r.switches).toEqual([R2.address]);
    expect(r.lines.some((l) => String(l.message).startsWith('router stopped answering PAP'))).toBe(true);
  });

  it('goes round the list when the next one is silent too', () => {
    const r = rig();
    r.dead.add(R1.address);
    r.dead.add(R2.address);
    r.clock.advance(9000);
    expect(r.switches.slice(0, 2)).toEqual([R2.address, R1.address]);
  });

  it('never leaves the only router', () => {
    const r = rig([R1]);
    r.dead.add(R1.address);
    r.clock.advance(20_000);
    expect(r.switches).toEqual([]);
    expect(r.failover.switches).toBe(0);
  });
});

describe('routersOf', () => {
  it('starts with router, then the others in their order', () => {
    expect(
      routersOf(hostConfig({ router: '10.0.0.8', routers: ['10.0.0.7', '10.0.0.8', '10.0.0.9'] })),
    ).toEqual(['10.0.0.8', '10.0.0.9', '10.0.0.7']);
    expect(routersOf(hostConfig())).toEqual(['10.0.0.7']);
  });
});
