/**
 * The SAs hosts send on, as the fast path saw them go out: (remote, ESP or
 * AH, SPI) -> host and when (an LRU map the programs fill). An ICMP error
 * about such a packet quotes the remote's SPI, which FIG. 21 does not know;
 * the slow path asks here when its own table (OutboundSaTable, which only
 * sees what it forwards) has no answer. One system call per question:
 * ICMP errors are rare.
 */
import type { BpfMap } from '../../../io/bpf.ts';
import type { MonotonicNs } from './fast-path-last-seen.ts';
import { monotonicNs } from './fast-path-last-seen.ts';
import { SA_KEY_BYTES, SA_VALUE_BYTES } from './layout.ts';

/** As long as the slow path keeps what it learns (OutboundSaTable). */
export const DEFAULT_SA_MAX_AGE_MS = 600_000;

export class FastPathSas {
  readonly #map: BpfMap;
  readonly #mono: MonotonicNs;
  readonly #key = new Uint8Array(SA_KEY_BYTES);
  readonly #value = new Uint8Array(SA_VALUE_BYTES);
  readonly #k = new DataView(this.#key.buffer);
  readonly #v = new DataView(this.#value.buffer);

  constructor(map: BpfMap, mono: MonotonicNs = monotonicNs) {
    this.#map = map;
    this.#mono = mono;
  }

  /** The host that last sent on (remote, protocol, spi) within maxAgeMs, or 0. */
  ownerOf(remote: number, protocol: number, spi: number, maxAgeMs = DEFAULT_SA_MAX_AGE_MS): number {
    this.#k.setUint32(0, remote >>> 0, false);
    this.#k.setUint32(4, spi >>> 0, true);
    this.#k.setUint32(8, protocol, true);
    if (!this.#map.lookup(this.#key, this.#value)) return 0;
    const host = this.#v.getUint32(0, false);
    const lastNs = this.#v.getUint32(8, true) + this.#v.getUint32(12, true) * 2 ** 32;
    return (this.#mono() - lastNs) / 1e6 <= maxAgeMs ? host : 0;
  }
}
