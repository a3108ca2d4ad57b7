/**
 * The fast path's maps with several shared addresses: the config record
 * names every address in order, port_owner and last_seen are keyed by slot
 * (address index * 65536 + port, util/block.ts) exactly where router.bpf.c
 * looks (port_owner_of, stamp), the same port on two addresses is two
 * owners, and the first address's entries are where a one-address router
 * keeps them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BpfMapType, BPF_F_MMAPABLE } from '../../../src/io/bpf.ts';
import { MemoryBpfObject } from '../../../src/io/bpf-memory.ts';
import { FastPathLastSeen } from '../../../src/router/data-path/ebpf/fast-path-last-seen.ts';
import type { IapttSink } from '../../../src/router/data-path/ebpf/fast-path-last-seen.ts';
import { FastPathTables } from '../../../src/router/data-path/ebpf/fast-path-tables.ts';
import {
  CONFIG_BYTES,
  CONFIG_OFFSETS,
  encodeConfig,
  lastSeenKey,
  MAX_SHARED,
} from '../../../src/router/data-path/ebpf/layout.ts';
import type { FastPathConfig } from '../../../src/router/data-path/ebpf/layout.ts';
import { LeaseOwnership } from '../../../src/router/data-path/tables/lease-ownership.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';
import { portSlot } from '../../../src/util/block.ts';

const ip = (d: number) => ((10 << 24) | d) >>> 0;
const H1 = ip(1);
const H2 = ip(3);
const A = 0xc633641e; // 198.51.100.30
const B = 0xc633641f; // 198.51.100.31

/** The maps of router.bpf.c as RouterFastPath sizes them for `addresses` shared addresses. */
function routerMaps(addresses: number): MemoryBpfObject {
  const hash = { type: BpfMapType.Hash, keySize: 4, valueSize: 4, maxEntries: 4096 };
  return new MemoryBpfObject({
    port_owner: { type: BpfMapType.Array, keySize: 4, valueSize: 4, maxEntries: 65536 * addresses },
    spi_blocks: hash,
    spi_exact: hash,
    holders: hash,
    last_seen: {
      type: BpfMapType.Array,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3 * 65536 * addresses,
      flags: BPF_F_MMAPABLE,
    },
  });
}

function tablesOn(o: MemoryBpfObject): FastPathTables {
  return new FastPathTables({
    portOwner: o.map('port_owner'),
    spiBlocks: o.map('spi_blocks'),
    spiExact: o.map('spi_exact'),
    holders: o.map('holders'),
    lastSeen: o.map('last_seen'),
  });
}

/** port_owner as the program reads it: key index * 65536 + port, owner in network order. */
function programOwner(o: MemoryBpfObject, index: number, port: number): number {
  const key = new Uint8Array(4);
  const value = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index * 65536 + port, true);
  if (!o.map('port_owner').lookup(key, value)) return -1;
  return new DataView(value.buffer).getUint32(0, false);
}

/** holders as the program reads it: keyed by the host in network order. */
function programHolds(o: MemoryBpfObject, host: number): boolean {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, host, false);
  return o.map('holders').lookup(key, new Uint8Array(4));
}

const config = (shared: number[]): FastPathConfig => ({
  aliveUntilNs: 5n,
  sharedAddresses: shared,
  lanAddress: 0x0a000007,
  lanIfindex: 2,
  wanIfindex: 3,
  tunIfindex: 4,
  spiShift: 6,
  tunMtu: 1480,
  lanMtu: 1500,
});

describe('the config record with several shared addresses', () => {
  it('holds the count and every address in order, in network order', () => {
    const out = new Uint8Array(CONFIG_BYTES).fill(0xee);
    encodeConfig(config([A, B]), out);
    const v = new DataView(out.buffer);
    expect(v.getUint32(CONFIG_OFFSETS.shared_count, true)).toBe(2);
    expect(Array.from(out.subarray(CONFIG_OFFSETS.shared, CONFIG_OFFSETS.shared + 8))).toEqual([
      198, 51, 100, 30, 198, 51, 100, 31,
    ]);
    // The unused places are zero (an address no datagram carries as a shared one).
    expect(out.subarray(CONFIG_OFFSETS.shared + 8).every((b) => b === 0)).toBe(true);
    expect(v.getUint32(CONFIG_OFFSETS.lan_addr, false)).toBe(0x0a000007);
  });

  it('takes one address as one, and refuses none or more than the programs look at', () => {
    const out = new Uint8Array(CONFIG_BYTES);
    encodeConfig(config([A]), out);
    expect(new DataView(out.buffer).getUint32(CONFIG_OFFSETS.shared_count, true)).toBe(1);
    expect(new DataView(out.buffer).getUint32(CONFIG_OFFSETS.shared, false)).toBe(A);
    expect(() => encodeConfig(config([]), out)).toThrow(RangeError);
    const many = Array.from({ length: MAX_SHARED + 1 }, (_, i) => A + i);
    expect(() => encodeConfig(config(many), out)).toThrow(RangeError);
    encodeConfig(config(many.slice(0, MAX_SHARED)), out);
    expect(new DataView(out.buffer).getUint32(CONFIG_OFFSETS.shared + 4 * (MAX_SHARED - 1), false)).toBe(
      A + MAX_SHARED - 1,
    );
  });
});

describe('FastPathTables with two shared addresses', () => {
  it('owns the same port on each address separately, by slot', () => {
    const o = routerMaps(2);
    const t = tablesOn(o);
    expect(t.addresses).toBe(2);
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(0, 1024), count: 32 })).toBe('added');
    expect(t.onLeaseAdded({ host: H2, kind: 'port', first: portSlot(1, 1024), count: 32 })).toBe('added');
    expect([programOwner(o, 0, 1030), programOwner(o, 1, 1030)]).toEqual([H1, H2]);
    expect([t.portOwner(portSlot(0, 1030)), t.portOwner(portSlot(1, 1030))]).toEqual([H1, H2]);
    // Neither lease reaches past its block on either address.
    expect([programOwner(o, 0, 1056), programOwner(o, 1, 1023)]).toEqual([0, 0]);
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(1, 1040), count: 32 })).toBe('overlap');
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: portSlot(1, 1024), count: 32 })).toBe(
      'not-owned',
    );
    expect(t.onLeaseRemoved({ host: H2, kind: 'port', first: portSlot(1, 1024), count: 32 })).toBe('removed');
    expect([programOwner(o, 0, 1030), programOwner(o, 1, 1030)]).toEqual([H1, 0]);
  });

  it('refuses a block that straddles two addresses, port 0 of one, or an address it does not serve', () => {
    const t = tablesOn(routerMaps(2));
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: 65530, count: 12 })).toBe('out-of-range');
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(1, 0), count: 4 })).toBe('out-of-range');
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(2, 1024), count: 4 })).toBe(
      'out-of-range',
    );
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(1, 65532), count: 4 })).toBe('added');
  });

  it('keeps a host a holder while it holds ports on either address, and removeHost clears both', () => {
    const o = routerMaps(2);
    const t = tablesOn(o);
    t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(0, 65504), count: 32 });
    t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(1, 1), count: 32 });
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: portSlot(0, 65504), count: 32 })).toBe(
      'removed',
    );
    expect(t.holds(H1)).toBe(true);
    t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(0, 65504), count: 32 });
    t.removeHost(H1);
    expect(t.holds(H1)).toBe(false);
    expect([programOwner(o, 0, 65535), programOwner(o, 1, 1), programOwner(o, 1, 32)]).toEqual([0, 0, 0]);
  });

  it('clears the FIG. 12 stamps of the address the block was on, and only those', () => {
    const o = routerMaps(2);
    const t = tablesOn(o);
    const stamps = new BigUint64Array(o.map('last_seen').mmap());
    t.onLeaseAdded({ host: H1, kind: 'port', first: portSlot(0, 2000), count: 4 });
    t.onLeaseAdded({ host: H2, kind: 'port', first: portSlot(1, 2000), count: 4 });
    // Where router.bpf.c's stamp() writes: (index * 3 + plane) * 65536 + port.
    const key = (index: number, plane: number, port: number) => (index * 3 + plane) * 65536 + port;
    expect(lastSeenKey(1, portSlot(1, 2002))).toBe(key(1, 1, 2002));
    stamps[key(0, 0, 2001)] = 5n;
    stamps[key(1, 0, 2001)] = 6n;
    stamps[key(1, 1, 2002)] = 7n;
    stamps[key(1, 2, 2003)] = 8n;
    t.onLeaseRemoved({ host: H2, kind: 'port', first: portSlot(1, 2000), count: 4 });
    expect([
      stamps[key(0, 0, 2001)],
      stamps[key(1, 0, 2001)],
      stamps[key(1, 1, 2002)],
      stamps[key(1, 2, 2003)],
    ]).toEqual([5n, 0n, 0n, 0n]);
  });

  it('fed by RouterTables over a two-address index, agrees with it slot by slot after any lease events', () => {
    const hosts = [H1, H2, ip(5)];
    const event = fc.record({
      add: fc.boolean(),
      host: fc.constantFrom(...hosts),
      index: fc.integer({ min: 0, max: 1 }),
      block: fc.integer({ min: 0, max: 4 }),
    });
    // Values the events touch, on both addresses.
    const watched = [0, 1].flatMap((i) => Array.from({ length: 200 }, (_, p) => portSlot(i, p)));
    fc.assert(
      fc.property(fc.array(event, { maxLength: 20 }), (events) => {
        const o = routerMaps(2);
        const tables = new RouterTables({ ownership: new LeaseOwnership(4096, undefined, 2) });
        const slow = tables.ownership;
        tables.setMirror(tablesOn(o));
        for (const e of events) {
          const b = {
            host: `10.0.0.${e.host & 0xff}`,
            kind: 'port' as const,
            lowest: portSlot(e.index, 1 + e.block * 32),
            count: 32,
          };
          if (e.add) tables.onLeaseAdded(b);
          else tables.onLeaseRemoved(b);
          for (const s of watched) {
            const fast = programOwner(o, Math.floor(s / 65536), s % 65536);
            if (fast !== slow.portOwner(s))
              throw new Error(`slot ${s}: fast ${fast}, slow ${slow.portOwner(s)}`);
          }
          for (const h of hosts) expect(programHolds(o, h)).toBe(slow.holds(h));
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('FastPathLastSeen with two shared addresses', () => {
  it('carries each address’s stamps into the IAPTT under its slot and its owner', () => {
    const o = routerMaps(2);
    const map = o.map('last_seen');
    const stamps = new BigUint64Array(map.mmap());
    const mono = 50_000_000_000;
    const seen = new FastPathLastSeen(map, () => mono);
    expect(seen.entries).toBe(2 * 3 * 65536);
    stamps[(0 * 3 + 0) * 65536 + 1032] = 49_000_000_000n; // TCP 1032 on the first address
    stamps[(1 * 3 + 0) * 65536 + 1032] = 48_000_000_000n; // TCP 1032 on the second
    stamps[(1 * 3 + 2) * 65536 + 7] = 49_500_000_000n; // ICMP id 7 on the second
    const owners = new Map([
      [portSlot(0, 1032), H1],
      [portSlot(1, 1032), H2],
      [portSlot(1, 7), H2],
    ]);
    const touched: [number, number, number, number][] = [];
    const sink: IapttSink = {
      touch: (protocol, slot, host, at) => touched.push([protocol, slot, host, at]),
      lastUse: () => -1,
    };
    const now = 1_700_000_000_000;
    expect(seen.feed(sink, (slot) => owners.get(slot) ?? 0, now, seen.entries)).toBe(3);
    expect(touched).toEqual([
      [6, portSlot(0, 1032), H1, now - 1000],
      [6, portSlot(1, 1032), H2, now - 2000],
      [1, portSlot(1, 7), H2, now - 500],
    ]);
    expect(seen.stampNs(6, portSlot(1, 1032))).toBe(48_000_000_000);
    expect(seen.stampNs(6, portSlot(2, 1032))).toBe(0); // no third address
    expect(seen.lastUse(1, portSlot(1, 7), now)).toBe(now - 500);
  });
});
