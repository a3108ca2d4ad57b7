/**
 * The fast path's copy of the SPI blocks the router withdrew and has not
 * leased again (WithdrawnSpis, the slow path's record): the withdrawn_spis
 * map of native-setup/bpf/router.bpf.c, which drops ESP in UDP (RFC 3948)
 * on such SPIs as `spi-withdrawn`. ESP in UDP is demultiplexed by the
 * host's port, so without it an SA the router cut would still reach the host.
 *
 * | key                       | value                                      |
 * |---------------------------|--------------------------------------------|
 * | spi >> WITHDRAWN_SHIFT    | u64: bit (spi & 63) set per withdrawn SPI  |
 *
 * `sync()` is given the whole record after every change (withdrawal, a new
 * grant that clears a range, the ring forgetting its oldest) and makes the
 * map hold exactly it, so the two never disagree about which SPIs count as
 * withdrawn: they cannot drift the way two copies of the ring's rules could.
 * The record holds at most a few dozen ranges and changes only with a
 * withdrawal or a grant, so recomputing it whole costs nothing that matters.
 * Each entry is replaced whole (a hash map's update is atomic for a
 * reader), changed and new ones first, gone ones last, a batch each. A failed system call
 * throws BpfError: the caller stops the fast path (RouterFastPath does).
 */
import type { BpfMap } from '../../../io/bpf.ts';
import { WITHDRAWN_SHIFT, WITHDRAWN_VALUE_BYTES } from './layout.ts';

/** A withdrawn range of SPIs, [first, end). */
export interface SpiRange {
  readonly first: number;
  readonly end: number;
}

const PER = 2 ** WITHDRAWN_SHIFT;
const SPI_SPACE = 0x1_0000_0000;
const ALL = (1n << BigInt(PER)) - 1n;

export class FastPathWithdrawn {
  readonly #map: BpfMap;
  /** The map as last written: granule -> bits. */
  readonly #bits = new Map<number, bigint>();

  constructor(map: BpfMap) {
    this.#map = map;
  }

  /** Entries in the map. */
  get granules(): number {
    return this.#bits.size;
  }

  /** Whether the map counts `spi` as withdrawn. */
  has(spi: number): boolean {
    const bits = this.#bits.get(Math.floor(spi / PER));
    return bits !== undefined && ((bits >> BigInt(spi % PER)) & 1n) === 1n;
  }

  /** Makes the map hold exactly `ranges` (overlaps allowed; empty or out-of-range parts ignored). */
  sync(ranges: readonly SpiRange[]): void {
    const want = new Map<number, bigint>();
    for (const r of ranges) {
      const first = Math.max(r.first, 0);
      const end = Math.min(r.end, SPI_SPACE);
      if (!(end > first)) continue;
      const g0 = Math.floor(first / PER);
      const g1 = Math.floor((end - 1) / PER);
      for (let g = g0; g <= g1; g++) {
        const lo = Math.max(first - g * PER, 0);
        const hi = Math.min(end - g * PER, PER);
        const bits = lo === 0 && hi === PER ? ALL : ((1n << BigInt(hi - lo)) - 1n) << BigInt(lo);
        want.set(g, (want.get(g) ?? 0n) | bits);
      }
    }
    const changed = [...want].filter(([g, bits]) => this.#bits.get(g) !== bits);
    const gone = [...this.#bits.keys()].filter((g) => !want.has(g));
    if (changed.length > 0) {
      const keys = new DataView(new ArrayBuffer(changed.length * 4));
      const values = new DataView(new ArrayBuffer(changed.length * WITHDRAWN_VALUE_BYTES));
      changed.forEach(([g, bits], i) => {
        keys.setUint32(i * 4, g, true);
        values.setBigUint64(i * WITHDRAWN_VALUE_BYTES, bits, true);
      });
      this.#map.updateBatch(new Uint8Array(keys.buffer), new Uint8Array(values.buffer), changed.length);
      for (const [g, bits] of changed) this.#bits.set(g, bits);
    }
    if (gone.length > 0) {
      const keys = new DataView(new ArrayBuffer(gone.length * 4));
      gone.forEach((g, i) => keys.setUint32(i * 4, g, true));
      this.#map.deleteKeys(new Uint8Array(keys.buffer), gone.length);
      for (const g of gone) this.#bits.delete(g);
    }
  }
}
