/**
 * Reading what the programs write: per-CPU counters summed under the slow
 * path's names, FIG. 12 stamps carried into the IAPTT on the router's clock,
 * and the outbound SAs with their age.
 */
import { describe, expect, it } from 'vitest';
import { BpfMapType, BPF_F_MMAPABLE } from '../../../src/io/bpf.ts';
import { MemoryBpfMap } from '../../../src/io/bpf-memory.ts';
import { FastPathCounters } from '../../../src/router/data-path/ebpf/fast-path-counters.ts';
import { FastPathLastSeen } from '../../../src/router/data-path/ebpf/fast-path-last-seen.ts';
import { FastPathSas } from '../../../src/router/data-path/ebpf/fast-path-sas.ts';
import {
  COUNTERS_BYTES,
  FAST_DROPS,
  FAST_PASSES,
  FAST_TRAFFIC,
} from '../../../src/router/data-path/ebpf/layout.ts';
import { Iaptt } from '../../../src/router/data-path/tables/iaptt.ts';

const H1 = ((10 << 24) | 1) >>> 0;

describe('FastPathCounters', () => {
  it('sums the CPUs and names the slots as router.h orders them', () => {
    const map = new MemoryBpfMap(
      'counters',
      { type: BpfMapType.PercpuArray, keySize: 4, valueSize: COUNTERS_BYTES, maxEntries: 1 },
      2,
    );
    const value = new Uint8Array(map.valueBytes);
    const v = new DataView(value.buffer);
    const slot = (cpu: number, i: number, n: number) =>
      v.setBigUint64(cpu * COUNTERS_BYTES + i * 8, BigInt(n), true);
    const spoofed = FAST_TRAFFIC.length + FAST_DROPS.indexOf('spoofed-port');
    const wanNoOwner =
      FAST_TRAFFIC.length + FAST_DROPS.length + FAST_PASSES.length + FAST_PASSES.indexOf('no-owner');
    slot(0, FAST_TRAFFIC.indexOf('outbound-packets'), 5);
    slot(1, FAST_TRAFFIC.indexOf('outbound-packets'), 7);
    slot(1, spoofed, 3);
    slot(0, wanNoOwner, 2 ** 40);
    map.update(new Uint8Array(4), value);
    const c = new FastPathCounters(map).read();
    expect(c.traffic['outbound-packets']).toBe(12);
    expect(c.drops['spoofed-port']).toBe(3);
    expect(c.pass.wan['no-owner']).toBe(2 ** 40);
    expect(c.pass.lan['no-owner']).toBe(0);
    const flat = new FastPathCounters(map).flat();
    expect(flat['traffic.outbound-packets']).toBe(12);
    expect(flat['drop.spoofed-port']).toBe(3);
    expect(flat['fastpath.pass.wan.no-owner']).toBe(2 ** 40);
    expect(Object.keys(flat)).toHaveLength(FAST_TRAFFIC.length + FAST_DROPS.length + 2 * FAST_PASSES.length);
  });
});

describe('FastPathLastSeen', () => {
  it('stamps IAPTT rows of leased ports on the caller clock, newer uses only', () => {
    const map = new MemoryBpfMap('last_seen', {
      type: BpfMapType.Array,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3 * 65536,
      flags: BPF_F_MMAPABLE,
    });
    const stamps = new BigUint64Array(map.mmap());
    let mono = 50_000_000_000; // the kernel's clock now: 50 s after boot
    const seen = new FastPathLastSeen(map, () => mono);
    stamps[1032] = 49_000_000_000n; // TCP 1032, a second ago
    stamps[65536 + 1033] = 48_000_000_000n; // UDP 1033, two seconds ago
    stamps[2 * 65536 + 1034] = 49_500_000_000n; // ICMP id 1034
    stamps[4000] = 49_000_000_000n; // port not leased: no row
    const iaptt = new Iaptt();
    const now = 1_700_000_000_000;
    const owner = (port: number) => (port >= 1024 && port < 1056 ? H1 : 0);
    expect(seen.feed(iaptt, owner, now, 3 * 65536)).toBe(3);
    expect(iaptt.lastUse(6, 1032)).toBe(now - 1000);
    expect(iaptt.lastUse(17, 1033)).toBe(now - 2000);
    expect(iaptt.lastUse(1, 1034)).toBe(now - 500);
    expect(iaptt.hostOf(6, 1032)).toBe(H1);
    expect(iaptt.lastUse(6, 4000)).toBe(-1);
    expect(seen.lastUse(6, 1032, now)).toBe(now - 1000);
    // Nothing new: nothing stamped; a newer use moves the row.
    expect(seen.feed(iaptt, owner, now, 3 * 65536)).toBe(0);
    mono += 10_000_000_000;
    stamps[1032] = 59_000_000_000n;
    expect(seen.feed(iaptt, owner, now + 10_000, 3 * 65536)).toBe(1);
    expect(iaptt.lastUse(6, 1032)).toBe(now + 9000);
  });

  it('walks a bounded slice per call and wraps', () => {
    const map = new MemoryBpfMap('last_seen', {
      type: BpfMapType.Array,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3 * 65536,
      flags: BPF_F_MMAPABLE,
    });
    const stamps = new BigUint64Array(map.mmap());
    stamps[10] = 1n;
    stamps[3 * 65536 - 1] = 1n;
    const seen = new FastPathLastSeen(map, () => 2);
    const iaptt = new Iaptt();
    const counts: number[] = [];
    for (let i = 0; i < 4; i++) counts.push(seen.feed(iaptt, () => H1, 1000, 65536));
    expect(counts).toEqual([1, 0, 1, 0]);
  });
});

describe('FastPathSas', () => {
  it('answers the host of a recent outbound SA, nobody for an old one', () => {
    const map = new MemoryBpfMap('outbound_sa', {
      type: BpfMapType.LruHash,
      keySize: 12,
      valueSize: 16,
      maxEntries: 8,
    });
    const key = new Uint8Array(12);
    const k = new DataView(key.buffer);
    k.setUint32(0, 0xcb007103, false); // 203.0.113.3
    k.setUint32(4, 0x1234, true);
    k.setUint32(8, 50, true);
    const value = new Uint8Array(16);
    const v = new DataView(value.buffer);
    v.setUint32(0, H1, false);
    v.setBigUint64(8, 1_000_000_000n, true);
    map.update(key, value);
    let mono = 2_000_000_000;
    const sas = new FastPathSas(map, () => mono);
    expect(sas.ownerOf(0xcb007103, 50, 0x1234)).toBe(H1);
    expect(sas.ownerOf(0xcb007103, 51, 0x1234)).toBe(0);
    mono += 601_000_000_000;
    expect(sas.ownerOf(0xcb007103, 50, 0x1234)).toBe(0);
  });
});
