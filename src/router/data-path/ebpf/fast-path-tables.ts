/**
 * The fast path's copy of FIG. 8 and FIG. 21, programmed from lease events:
 * the lease listener's counterpart of RouterTables for the BPF maps of
 * native-setup/bpf/router.bpf.c.
 *
 * | map          | key                             | value                          |
 * |--------------|---------------------------------|--------------------------------|
 * | port_owner   | slot (array of 65536 / address) | owner, network order; 0 = none |
 * | spi_blocks   | spi >> spiShift (granule)       | owner of the whole granule     |
 * | spi_exact    | spi                             | owner (granules owned in part) |
 * | holders      | host                            | 1 while it holds any block     |
 * | last_seen    | (index * 3 + plane) * 65536 + p | ns of last use (FIG. 12)       |
 *
 * Port blocks come as slots (address index * 65536 + port, util/block.ts),
 * as the lease table and the slow path's index name them; the size of
 * port_owner says how many shared addresses the maps serve.
 *
 * A leased SPI block costs one entry per granule it covers whole and one per
 * SPI at ragged ends, so 1M SPIs in blocks of 64 take 16384 entries.
 *
 * No window in which an ended block still forwards: every method changes
 * the maps before it returns, with system calls that take effect at once,
 * and the lease table calls its listeners before it tells anyone the block
 * has ended (a withdraw's reply, a PAP answer, the CRL). Within one change,
 * entries that stop routing go first and entries that start routing last,
 * so a value that changes form (granule <-> per SPI) is briefly unknown
 * (the packet goes to the slow path, which still has it) but never routed
 * to a host that no longer owns it.
 *
 * It mirrors LeaseOwnership, value by value and with its rules: an add
 * that finds a value of another host changes nothing ('overlap'), one whose
 * values are all the host's already is 'exists', a removal takes only the
 * host's own values. RouterTables feeds it in the order that keeps the
 * no-window rule: a block enters here only after the slow path's index
 * accepted it, and leaves here before it leaves that index, so while both
 * change the fast path never knows an owner the slow path does not. A
 * failed system call throws BpfError: the caller must then stop the fast
 * path (RouterFastPath does), since the maps may be behind.
 */
import type { BpfMap } from '../../../io/bpf.ts';
import { lastSeenKey, PLANES, PORTS } from './layout.ts';
import { RangeOwners } from './range-owners.ts';

export interface FastPathMaps {
  readonly portOwner: BpfMap;
  readonly spiBlocks: BpfMap;
  readonly spiExact: BpfMap;
  readonly holders: BpfMap;
  /** Mapped writable: the stamps of a port that leaves a host are cleared. */
  readonly lastSeen: BpfMap;
}

export interface LeaseBlockEvent {
  readonly host: number;
  readonly kind: 'port' | 'spi';
  readonly first: number;
  readonly count: number;
}

export type FastPathAdd = 'added' | 'exists' | 'overlap' | 'out-of-range';
export type FastPathRemove = 'removed' | 'not-owned' | 'out-of-range';

const SPI_SPACE = 0x1_0000_0000;

/** A usable owner: a non-zero unsigned 32-bit integer (0 means "no owner" in every map). */
const isHost = (host: number): boolean => Number.isInteger(host) && host > 0 && host <= 0xffffffff;

export class FastPathTables {
  readonly spiShift: number;
  /** Shared addresses whose ports the maps hold. */
  readonly addresses: number;
  readonly #maps: FastPathMaps;
  /** The port_owner map as last written, by slot. */
  readonly #ports: Uint32Array;
  readonly #spis = new RangeOwners();
  /** Granules in spi_blocks, with their owner. */
  readonly #granules = new Map<number, number>();
  /** Granules with entries in spi_exact. */
  readonly #exactIn = new Set<number>();
  /** Ports plus SPIs per host: holds() while non-zero. */
  readonly #units = new Map<number, number>();
  readonly #stamps: Uint32Array;
  // Reused batch buffers: keys in host order, owners in network order.
  readonly #keys = new Uint8Array(PORTS * 4);
  readonly #values = new Uint8Array(PORTS * 4);
  readonly #keyView = new DataView(this.#keys.buffer);
  readonly #valueView = new DataView(this.#values.buffer);
  readonly #one = new Uint8Array(4);

  constructor(maps: FastPathMaps, options: { spiShift?: number } = {}) {
    this.#maps = maps;
    this.spiShift = options.spiShift ?? 6;
    if (!Number.isInteger(this.spiShift) || this.spiShift < 0 || this.spiShift > 16)
      throw new RangeError('spiShift must be 0..16');
    this.addresses = Math.floor(maps.portOwner.info.maxEntries / PORTS);
    if (this.addresses < 1 || maps.lastSeen.info.maxEntries < PLANES * PORTS * this.addresses)
      throw new RangeError(
        'port_owner needs 65536 entries per shared address, last_seen three times as many',
      );
    this.#ports = new Uint32Array(PORTS * this.addresses);
    this.#stamps = new Uint32Array(maps.lastSeen.mmap(true));
    new DataView(this.#one.buffer).setUint32(0, 1, true);
  }

  /** Owner of a port slot (address index * 65536 + port) as the maps say, or 0. */
  portOwner(slot: number): number {
    return slot >= 0 && slot < this.#ports.length ? this.#ports[slot]! : 0;
  }

  /** Owner of a SPI as the maps say, or 0. */
  spiOwner(spi: number): number {
    return this.#spis.ownerOf(spi);
  }

  /** Whether the fast path lets `host` send what carries no port of its own. */
  holds(host: number): boolean {
    return this.#units.has(host);
  }

  /** SPI map entries in use: [granules, per-SPI entries]. */
  spiEntries(): { granules: number; exact: number } {
    let exact = 0;
    const per = 1 << this.spiShift;
    for (const g of this.#exactIn) {
      const base = g * per;
      for (let s = base; s < base + per; s++) if (this.#spis.ownerOf(s) !== 0) exact++;
    }
    return { granules: this.#granules.size, exact };
  }

  onLeaseAdded(lease: LeaseBlockEvent): FastPathAdd {
    const { host, first, count } = lease;
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count) || count < 1 || first < 1)
      return 'out-of-range';
    return lease.kind === 'port' ? this.#addPorts(host, first, count) : this.#addSpis(host, first, count);
  }

  onLeaseRemoved(lease: LeaseBlockEvent): FastPathRemove {
    const { host, first, count } = lease;
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count) || count < 1 || first < 1)
      return 'out-of-range';
    return lease.kind === 'port'
      ? this.#removePorts(host, first, count)
      : this.#removeSpis(host, first, count);
  }

  /** Takes every block of `host` out of the maps. */
  removeHost(host: number): void {
    const slots = this.#ports.length;
    for (let p = 1; p < slots; p++)
      if (this.#ports[p] === host) {
        // A run never crosses into the next address: blocks never straddle two.
        let end = p;
        const limit = (Math.floor(p / PORTS) + 1) * PORTS;
        while (end < limit && this.#ports[end] === host) end++;
        this.#removePorts(host, p, end - p);
        p = end;
      }
    for (const r of this.#spis.rangesOf(host)) this.#removeSpis(host, r.first, r.end - r.first);
  }

  #addPorts(host: number, first: number, count: number): FastPathAdd {
    const end = first + count;
    // One address's ports at a time (a lease's block is), and never its port 0.
    if (
      end > this.#ports.length ||
      first % PORTS === 0 ||
      Math.floor((end - 1) / PORTS) !== Math.floor(first / PORTS)
    )
      return 'out-of-range';
    let n = 0;
    for (let p = first; p < end; p++) {
      const o = this.#ports[p]!;
      if (o === host) continue;
      if (o !== 0) return 'overlap';
      this.#keyView.setUint32(n * 4, p, true);
      this.#valueView.setUint32(n * 4, host, false);
      n++;
    }
    if (n === 0) return 'exists';
    this.#maps.portOwner.updateBatch(this.#keys, this.#values, n);
    this.#ports.fill(host, first, end);
    this.#gain(host, n);
    return 'added';
  }

  #removePorts(host: number, first: number, count: number): FastPathRemove {
    const end = Math.min(first + count, this.#ports.length);
    if (first >= this.#ports.length) return 'out-of-range';
    let removed = 0;
    // A batch at a time: a range may cover more than one address's ports.
    for (let from = first; from < end; from += PORTS)
      removed += this.#removePortBatch(host, from, Math.min(end, from + PORTS));
    if (removed === 0) return 'not-owned';
    this.#lose(host, removed);
    return 'removed';
  }

  #removePortBatch(host: number, first: number, end: number): number {
    let n = 0;
    for (let p = first; p < end; p++) {
      if (this.#ports[p] !== host) continue;
      this.#keyView.setUint32(n * 4, p, true);
      this.#valueView.setUint32(n * 4, 0, false);
      n++;
    }
    if (n === 0) return 0;
    this.#maps.portOwner.updateBatch(this.#keys, this.#values, n);
    for (let i = 0; i < n; i++) {
      const p = this.#keyView.getUint32(i * 4, true);
      this.#ports[p] = 0;
      // FIG. 12 loses the rows with the lease (RouterTables.onLeaseRemoved does the same).
      for (let plane = 0; plane < PLANES; plane++) {
        const w = lastSeenKey(plane, p) * 2;
        this.#stamps[w] = 0;
        this.#stamps[w + 1] = 0;
      }
    }
    return n;
  }

  #addSpis(host: number, first: number, count: number): FastPathAdd {
    const end = first + count;
    if (end > SPI_SPACE) return 'out-of-range';
    const gaps = this.#spis.gapsFor(host, first, end);
    if (gaps === undefined) return 'overlap';
    if (gaps.length === 0) return 'exists';
    let n = 0;
    for (const g of gaps) {
      this.#spis.add(host, g.first, g.end);
      n += g.end - g.first;
    }
    this.#gain(host, n);
    this.#syncGranules(gaps);
    return 'added';
  }

  #removeSpis(host: number, first: number, count: number): FastPathRemove {
    const end = Math.min(first + count, SPI_SPACE);
    const pieces = this.#spis.remove(host, first, end);
    if (pieces.length === 0) return 'not-owned';
    let n = 0;
    for (const p of pieces) n += p.end - p.first;
    this.#syncGranules(pieces);
    this.#lose(host, n);
    return 'removed';
  }

  /**
   * Brings the entries of every granule that touches `spans` in line with
   * the ranges: whole granules of one owner in spi_blocks, the rest per SPI
   * in spi_exact. Removals first, additions after.
   */
  #syncGranules(spans: readonly { first: number; end: number }[]): void {
    const shift = this.spiShift;
    const per = 2 ** shift;
    const dropGranules: number[] = [];
    const dropExact: number[] = [];
    const addExact: [number, number][] = [];
    const addGranules: [number, number][] = [];
    let lastDone = -1;
    for (const span of spans) {
      const g0 = Math.max(Math.floor(span.first / per), lastDone + 1);
      const g1 = Math.floor((span.end - 1) / per);
      for (let g = g0; g <= g1; g++) {
        const base = g * per;
        const owner = this.#spis.ownerOf(base);
        const whole = owner !== 0 && this.#spis.ownedWholeBy(owner, base, base + per);
        const had = this.#granules.get(g);
        if (whole) {
          if (had !== owner) {
            if (had !== undefined) dropGranules.push(g);
            addGranules.push([g, owner]);
          }
          if (this.#exactIn.has(g)) {
            for (let s = base; s < base + per; s++) dropExact.push(s);
            this.#exactIn.delete(g);
          }
          continue;
        }
        if (had !== undefined) dropGranules.push(g);
        let any = false;
        for (let s = base; s < base + per; s++) {
          const o = this.#spis.ownerOf(s);
          if (o !== 0) {
            addExact.push([s, o]);
            any = true;
          } else if (this.#exactIn.has(g)) dropExact.push(s);
        }
        if (any) this.#exactIn.add(g);
        else this.#exactIn.delete(g);
      }
      lastDone = g1;
    }
    this.#deleteKeys(this.#maps.spiBlocks, dropGranules);
    for (const g of dropGranules) this.#granules.delete(g);
    this.#deleteKeys(this.#maps.spiExact, dropExact);
    this.#updatePairs(this.#maps.spiExact, addExact);
    this.#updatePairs(this.#maps.spiBlocks, addGranules);
    for (const [g, o] of addGranules) this.#granules.set(g, o);
  }

  #deleteKeys(map: BpfMap, keys: readonly number[]): void {
    for (let at = 0; at < keys.length; at += PORTS) {
      const n = Math.min(PORTS, keys.length - at);
      for (let i = 0; i < n; i++) this.#keyView.setUint32(i * 4, keys[at + i]!, true);
      map.deleteKeys(this.#keys, n);
    }
  }

  #updatePairs(map: BpfMap, pairs: readonly [number, number][]): void {
    for (let at = 0; at < pairs.length; at += PORTS) {
      const n = Math.min(PORTS, pairs.length - at);
      for (let i = 0; i < n; i++) {
        const [k, owner] = pairs[at + i]!;
        this.#keyView.setUint32(i * 4, k, true);
        this.#valueView.setUint32(i * 4, owner, false);
      }
      map.updateBatch(this.#keys, this.#values, n);
    }
  }

  #gain(host: number, units: number): void {
    const before = this.#units.get(host) ?? 0;
    if (before === 0) this.#maps.holders.update(this.#hostKey(host), this.#one);
    this.#units.set(host, before + units);
  }

  #lose(host: number, units: number): void {
    const left = (this.#units.get(host) ?? 0) - units;
    if (left > 0) {
      this.#units.set(host, left);
      return;
    }
    this.#units.delete(host);
    this.#maps.holders.delete(this.#hostKey(host));
  }

  #hostKey(host: number): Uint8Array {
    const k = new Uint8Array(4);
    new DataView(k.buffer).setUint32(0, host, false);
    return k;
  }
}
