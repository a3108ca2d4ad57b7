/**
 * FIG. 12 (IAPTT), status, metrics and log lines of a router with two shared
 * addresses: the same port in use on both addresses is two rows, each naming
 * its address; the Prometheus port gauges have one series per address; a
 * block's log fields name its address and port rather than its slot. With
 * one address everything reads as before there could be several.
 */
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../../src/io/memory.ts';
import { SlotBuffer } from '../../../src/io/slots.ts';
import { newRegistry } from '../../../src/metrics/server.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import type { PapServer } from '../../../src/pap/pap-server.ts';
import { blockFields } from '../../../src/router/daemon/log.ts';
import { registerRouterMetrics } from '../../../src/router/daemon/metrics.ts';
import { routerStatus } from '../../../src/router/daemon/status.ts';
import { RouterForwarder } from '../../../src/router/data-path/forwarder.ts';
import { Iaptt } from '../../../src/router/data-path/tables/iaptt.ts';
import { LeaseOwnership } from '../../../src/router/data-path/tables/lease-ownership.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';
import { portSlot } from '../../../src/util/block.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { H1, H2, LAN, SERVER, a, echo, tunnel, udp } from './forwarder-packets.ts';

const A = '198.51.100.30';
const B = '198.51.100.31';
const RANGE = { min: 1024, max: 1024 + 8 * 32 - 1 };
const PAP = {
  counters: { answered: {}, dropped: {}, refused: {}, staleEpoch: 0, reclaimed: 0, withdrawn: 0 },
} as unknown as PapServer;

/** A router's lease table and data path over `addresses`; H1 and H2 each lease 1024-1055, H1 on the first, H2 on the last. */
function router(addresses: string[]) {
  const clock = new FakeClock();
  const table = new LeaseTable({ clock, addresses, portRange: RANGE, leaseSeconds: 300 });
  const tables = new RouterTables({
    clock,
    ownership: new LeaseOwnership(undefined, undefined, addresses.length),
  });
  table.addListener({
    onLeaseAdded: (l) => void tables.onLeaseAdded(l),
    onLeaseRemoved: (l, reason) => void tables.onLeaseRemoved(l, reason === 'withdrawn'),
    onLeaseRenewed: () => {},
  });
  const fwd = new RouterForwarder({
    sharedAddress: a(addresses[0]!),
    sharedAddresses: addresses.map(a),
    lanAddress: LAN,
    tables,
    tun: new MemoryDevice({ name: 'tun', record: true }),
    lan: new MemoryDevice({ name: 'lan', record: true }),
    clock,
  });
  const h1 = table.request('10.0.0.1', 'port', { count: 32 });
  const h2 = table.request('10.0.0.3', 'port', { count: 32, address: addresses.length - 1 });
  expect([h1.status, h2.status]).toEqual(['ok', 'ok']);
  const slots = new SlotBuffer(8);
  const fromLan = (...packets: Uint8Array[]) => {
    packets.forEach((p, i) => slots.put(i, p));
    fwd.fromLan(slots, packets.length);
  };
  const status = () =>
    routerStatus({
      summary: {},
      clock,
      startedAt: 0,
      forwarder: fwd,
      leases: table,
      pap: PAP,
      transports: {},
      devices: {},
      sharedAddresses: addresses,
    });
  const scrape = async () => {
    const registry = newRegistry();
    registerRouterMetrics(registry, {
      forwarder: fwd,
      leases: table,
      pap: PAP,
      devices: {},
      sharedAddresses: addresses,
    });
    return registry.metrics();
  };
  return { clock, table, tables, fwd, fromLan, status, scrape };
}

const fig12 = (s: ReturnType<typeof routerStatus>) => s.tables.find((t) => t.title.startsWith('FIG. 12'))!;

describe('two shared addresses', () => {
  it('the same port in use on both addresses is two FIG. 12 rows, each naming its address and host', () => {
    const r = router([A, B]);
    r.fromLan(
      tunnel(H1, udp(a(A), 1030, SERVER, 53)),
      tunnel(H2, udp(a(B), 1030, SERVER, 53)),
      tunnel(H2, echo(a(B), SERVER, 'echo-request', 1040)),
    );
    expect(r.fwd.drops.snapshot()).toSatisfy((d: Record<string, number>) =>
      Object.values(d).every((v) => v === 0),
    );
    const rows = r.tables.iaptt.rows().map(({ port, addressIndex, address, protocol }) => ({
      port,
      addressIndex,
      address,
      protocol,
    }));
    expect(rows).toEqual([
      { port: 1030, addressIndex: 0, address: '10.0.0.1', protocol: 17 },
      { port: 1030, addressIndex: 1, address: '10.0.0.3', protocol: 17 },
      { port: 1040, addressIndex: 1, address: '10.0.0.3', protocol: 1 },
    ]);
    const t = fig12(r.status());
    expect(t.columns).toEqual([
      'SHARED ADDRESS',
      'DESTINATION PORT',
      'INTERNAL DESTINATION IP ADDRESS',
      'PROTOCOL',
      'TIMESTAMP',
      'IDLE',
    ]);
    expect(t.rows.map((row) => row.slice(0, 4))).toEqual([
      [A, 1030, '10.0.0.1', '17 (UDP)'],
      [B, 1030, '10.0.0.3', '17 (UDP)'],
      [B, 1040, '10.0.0.3', '1 (ICMP)'],
    ]);
    // The JSON of `distnat status --json` is the same tables.
    expect(JSON.parse(JSON.stringify(r.status())).tables[2].rows[1].slice(0, 3)).toEqual([
      B,
      1030,
      '10.0.0.3',
    ]);
  });

  it("a block that ends takes its own address's rows only", () => {
    const r = router([A, B]);
    r.fromLan(tunnel(H1, udp(a(A), 1030, SERVER, 53)), tunnel(H2, udp(a(B), 1030, SERVER, 53)));
    expect(r.table.withdraw('port', portSlot(1, 1024))?.host).toBe('10.0.0.3');
    expect(fig12(r.status()).rows.map((row) => row.slice(0, 3))).toEqual([[A, 1030, '10.0.0.1']]);
  });

  it('the port gauges have one series per address; SPIs none', async () => {
    const r = router([A, B]);
    r.table.request('10.0.0.3', 'port', { count: 32, address: 1 });
    r.table.request('10.0.0.3', 'spi', { count: 64 });
    r.fromLan(tunnel(H1, udp(a(A), 1030, SERVER, 53)), tunnel(H2, udp(a(B), 1030, SERVER, 53)));
    r.fromLan(tunnel(H2, udp(a(B), 1031, SERVER, 53)));
    const text = await r.scrape();
    expect(text).toContain(`distnat_router_flows{address="${A}"} 1`);
    expect(text).toContain(`distnat_router_flows{address="${B}"} 2`);
    expect(text).toContain(`distnat_router_leased_blocks{kind="port",address="${A}"} 1`);
    expect(text).toContain(`distnat_router_leased_blocks{kind="port",address="${B}"} 2`);
    expect(text).toContain('distnat_router_leased_blocks{kind="spi"} 1');
    expect(text).toContain(`distnat_router_free_values{kind="port",address="${A}"} ${256 - 32}`);
    expect(text).toContain(`distnat_router_free_values{kind="port",address="${B}"} ${256 - 64}`);
  });

  it("log fields name a port block's address and port, not its slot", () => {
    expect(blockFields({ kind: 'port', lowest: portSlot(1, 1024), count: 32 }, [A, B])).toEqual({
      kind: 'port',
      address: B,
      lowest: 1024,
      count: 32,
    });
    expect(blockFields({ kind: 'spi', lowest: 70_000, count: 64 }, [A, B])).toEqual({
      kind: 'spi',
      lowest: 70_000,
      count: 64,
    });
  });
});

describe('one shared address: as before', () => {
  it('FIG. 12 has no address column, the gauges no address label, log fields no address', async () => {
    const r = router([A]);
    r.fromLan(tunnel(H1, udp(a(A), 1030, SERVER, 53)), tunnel(H2, udp(a(A), 1060, SERVER, 53)));
    const t = fig12(r.status());
    expect(t.columns[0]).toBe('DESTINATION PORT');
    expect(t.rows.map((row) => row.slice(0, 2))).toEqual([
      [1030, '10.0.0.1'],
      [1060, '10.0.0.3'],
    ]);
    const text = await r.scrape();
    expect(text).toMatch(/^distnat_router_flows 2$/m);
    expect(text).toMatch(/^distnat_router_leased_blocks\{kind="port"\} 2$/m);
    expect(text).not.toContain('address=');
    expect(blockFields({ kind: 'port', lowest: 1024, count: 32 }, [A])).toEqual({
      kind: 'port',
      lowest: 1024,
      count: 32,
    });
  });
});

describe('Iaptt over two addresses', () => {
  it('counts rows per address, and ignores a slot past its addresses', () => {
    const t = new Iaptt(undefined, undefined, 2);
    t.touch(6, 80, 1, 0);
    t.touch(6, portSlot(1, 80), 2, 0);
    t.touch(6, portSlot(2, 80), 3, 0);
    expect([t.size, t.sizeOn(0), t.sizeOn(1)]).toEqual([2, 1, 1]);
    expect([t.hostOf(6, 80), t.hostOf(6, portSlot(1, 80))]).toEqual([1, 2]);
    t.clearPorts(portSlot(1, 64), 32);
    expect([t.size, t.sizeOn(0), t.sizeOn(1)]).toEqual([1, 1, 0]);
    // A worker's shared arrays say how many addresses they hold.
    const shared = Iaptt.shared(undefined, 2);
    shared.touch(17, portSlot(1, 53), 9, 5);
    const reader = new Iaptt(undefined, shared.memory);
    expect([reader.addresses, reader.sizeOn(1), reader.rows()[0]?.addressIndex]).toEqual([2, 1, 1]);
  });
});
