/**
 * The fast path's counters, read on demand from its per-CPU map and summed
 * over CPUs: traffic and drops under the slow path's names (so status and
 * Prometheus can add the two), and why packets were passed on to the slow
 * path, per direction.
 */
import type { BpfMap } from '../../../io/bpf.ts';
import type { FastDrop, FastPass, FastTraffic } from './layout.ts';
import { COUNTER_SLOTS, FAST_DIRECTIONS, FAST_DROPS, FAST_PASSES, FAST_TRAFFIC } from './layout.ts';

export interface FastPathCounts {
  readonly traffic: Record<FastTraffic, number>;
  readonly drops: Record<FastDrop, number>;
  readonly pass: { readonly lan: Record<FastPass, number>; readonly wan: Record<FastPass, number> };
}

export class FastPathCounters {
  readonly #map: BpfMap;
  readonly #key = new Uint8Array(4);
  readonly #value: Uint8Array;
  readonly #view: DataView;
  readonly #stride: number;
  readonly #sums = new Float64Array(COUNTER_SLOTS);

  constructor(map: BpfMap) {
    this.#map = map;
    this.#value = new Uint8Array(map.valueBytes);
    this.#view = new DataView(this.#value.buffer);
    this.#stride = Math.ceil(map.info.valueSize / 8) * 8;
  }

  /** Every counter summed over CPUs, as numbers (exact up to 2^53). */
  read(): FastPathCounts {
    const sums = this.#sums;
    sums.fill(0);
    if (this.#map.lookup(this.#key, this.#value)) {
      const cpus = this.#value.length / this.#stride;
      for (let cpu = 0; cpu < cpus; cpu++) {
        const base = cpu * this.#stride;
        for (let i = 0; i < COUNTER_SLOTS; i++) {
          const at = base + i * 8;
          sums[i]! += this.#view.getUint32(at, true) + this.#view.getUint32(at + 4, true) * 2 ** 32;
        }
      }
    }
    let i = 0;
    const take = <N extends string>(names: readonly N[]): Record<N, number> => {
      const out = {} as Record<N, number>;
      for (const n of names) out[n] = sums[i++]!;
      return out;
    };
    const traffic = take(FAST_TRAFFIC);
    const drops = take(FAST_DROPS);
    const lan = take(FAST_PASSES);
    const wan = take(FAST_PASSES);
    return { traffic, drops, pass: { lan, wan } };
  }

  /**
   * Flat names for `distnat status`: `traffic.<name>` and `drop.<name>` as
   * the slow path spells them (to be added to its own), and
   * `fastpath.pass.<lan|wan>.<reason>`.
   */
  flat(): Record<string, number> {
    const c = this.read();
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(c.traffic)) out[`traffic.${k}`] = v;
    for (const [k, v] of Object.entries(c.drops)) out[`drop.${k}`] = v;
    for (const dir of FAST_DIRECTIONS)
      for (const [k, v] of Object.entries(c.pass[dir])) out[`fastpath.pass.${dir}.${k}`] = v;
    return out;
  }
}
