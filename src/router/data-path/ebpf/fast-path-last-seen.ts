/**
 * FIG. 12's timestamps for what the fast path forwards: the programs stamp
 * last_seen[(address index * 3 + plane) * 65536 + port] with the kernel's
 * monotonic clock on every packet (at most once per ~16 ms), and the map is mapped into this
 * process, so reading it costs no system call. feed() carries the stamps
 * into the slow path's IAPTT, a bounded slice per call like its sweep, so
 * `distnat status`, idle expiry and the FIG. 12 table stay true for traffic
 * that never reached the TUN.
 */
import type { BpfMap } from '../../../io/bpf.ts';
import { lastSeenKey, PLANE_OF_PROTOCOL, PLANES, PORTS, PROTOCOL_OF_PLANE } from './layout.ts';

/**
 * What feed() writes into: the IAPTT's touch and lastUse (src/router/tables/iaptt.ts),
 * given the port slot (address index * 65536 + port) as the data path gives it.
 */
export interface IapttSink {
  touch(protocol: number, port: number, host: number, now: number): void;
  lastUse(protocol: number, port: number): number;
}

/**
 * CLOCK_MONOTONIC in nanoseconds: the clock the programs stamp with (its
 * coarse reading, bpf_ktime_get_coarse_ns(), at most a tick behind).
 */
export type MonotonicNs = () => number;
export const monotonicNs: MonotonicNs = () => Number(process.hrtime.bigint());

export class FastPathLastSeen {
  readonly #words: Uint32Array;
  readonly #mono: MonotonicNs;
  #cursor = 0;

  constructor(map: BpfMap, mono: MonotonicNs = monotonicNs) {
    this.#words = new Uint32Array(map.mmap(false));
    this.#mono = mono;
  }

  /** Entries of the map (3 x 65536 per shared address): a full pass of feed(). */
  get entries(): number {
    return this.#words.length / 2;
  }

  /** The kernel's stamp of (protocol, port slot) in ns, 0 when never forwarded. */
  stampNs(protocol: number, slot: number): number {
    const plane = PLANE_OF_PROTOCOL[protocol];
    if (plane === undefined || !(slot >= 0)) return 0;
    const w = lastSeenKey(plane, slot) * 2;
    return w + 1 < this.#words.length ? this.#words[w]! + this.#words[w + 1]! * 2 ** 32 : 0;
  }

  /** Last use of (protocol, port slot) on the caller's clock (`now` is that clock's present), or -1. */
  lastUse(protocol: number, slot: number, now: number): number {
    const ns = this.stampNs(protocol, slot);
    return ns === 0 ? -1 : now - (this.#mono() - ns) / 1e6;
  }

  /**
   * Examines `budget` slots from where the last call stopped and stamps the
   * IAPTT rows whose fast-path use is newer than the IAPTT's own, with the
   * port slot's owner (`ownerOf`, 0 = not leased: skipped). Returns the rows
   * stamped. A full pass over 3 x 65536 entries per address takes
   * entries / budget calls.
   */
  feed(iaptt: IapttSink, ownerOf: (slot: number) => number, now: number, budget = 8192): number {
    const words = this.#words;
    const total = words.length / 2;
    const mono = this.#mono();
    let i = this.#cursor;
    let stamped = 0;
    for (let n = 0; n < budget && n < total; n++) {
      const lo = words[i * 2]!;
      const hi = words[i * 2 + 1]!;
      if (lo !== 0 || hi !== 0) {
        const row = (i / PORTS) | 0; // address index * PLANES + plane
        const slot = ((row / PLANES) | 0) * PORTS + (i % PORTS);
        const owner = ownerOf(slot);
        if (owner !== 0) {
          const protocol = PROTOCOL_OF_PLANE[row % PLANES]!;
          const at = now - (mono - (lo + hi * 2 ** 32)) / 1e6;
          if (at > iaptt.lastUse(protocol, slot)) {
            iaptt.touch(protocol, slot, owner, at);
            stamped++;
          }
        }
      }
      i = i + 1 === total ? 0 : i + 1;
    }
    this.#cursor = i;
    return stamped;
  }
}
