import type { LeasedPortSource } from './translation/leased-port-source.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import type { HostLeases, HostLeasesListener } from '../../pap/host-leases.ts';

const PORTS = 65536;

/**
 * The host's leased ports as the translation table and the forwarder see
 * them: a LeasedPortSource over HostLeases (patent Table 1) whose calls on
 * the packet path are O(1) and allocate nothing.
 *
 * HostLeases.acquire scans every block for the one whose lease runs longest
 * and then sums the unused values of all blocks for its low-water check, and
 * HostLeases.giveBack finds a value's block by a linear search. Both are
 * O(blocks) per new flow. This pool keeps instead:
 *
 * - an owner index, port -> HeldBlock, filled when a block is granted and
 *   cleared when it is lost, so returnPort and isLeased are one array read;
 * - a preferred block, the one with unused ports whose lease runs longest,
 *   chosen when blocks come and go and on every `refresh` (the agent calls
 *   it once a second), so takePort is HeldBlock.take, which is O(1). Only
 *   when the preferred block runs dry does takePort look at the others; with
 *   every port in use that costs O(blocks) per refused flow, and a host holds
 *   at most maxPortsPerHost / blockSize blocks (32 by default);
 * - a running count of unused ports, so crossing the low-water mark asks
 *   HostLeases (once per crossing) to request another block.
 *
 * The pool must be the only taker of port values from HostLeases: the count
 * of unused ports is kept here, not re-read (refresh re-reads it).
 */
export class LeasedPortPool implements LeasedPortSource {
  readonly #leases: HostLeases;
  readonly #lowWater: number;
  readonly #owner: (HeldBlock | undefined)[] = new Array<HeldBlock | undefined>(PORTS).fill(undefined);
  readonly #blocks: HeldBlock[] = [];
  #preferred: HeldBlock | undefined;
  #unused = 0;
  #held = 0;
  #asked = false;
  readonly #listener: HostLeasesListener = {
    onBlockAdded: (b) => this.#add(b),
    onBlockLost: (b) => this.#remove(b),
  };

  /** Listens to `leases`; blocks it already holds are taken in. `lowWater`: ask for more below this many unused ports. */
  constructor(leases: HostLeases, lowWater: number) {
    this.#leases = leases;
    this.#lowWater = Math.max(1, lowWater);
    for (const b of leases.blocks('port')) this.#add(b);
    leases.addListener(this.#listener);
  }

  /** Ports held in all blocks. */
  get held(): number {
    return this.#held;
  }

  /** Ports not allocated to a flow. */
  get unused(): number {
    return this.#unused;
  }

  /** Port blocks held (a copy, oldest first). */
  blocks(): HeldBlock[] {
    return [...this.#blocks];
  }

  /** True when `port` lies in a block this host holds. */
  isLeased(port: number): boolean {
    return this.#owner[port & 0xffff] !== undefined;
  }

  takePort(): number {
    let b = this.#preferred;
    if (b === undefined || b.unused === 0) {
      b = this.#pick();
      this.#preferred = b;
      if (b === undefined) return -1;
    }
    const port = b.take();
    if (port === undefined) return -1;
    this.#unused--;
    if (this.#unused < this.#lowWater && !this.#asked) {
      this.#asked = true;
      this.#leases.checkWater();
    }
    return port;
  }

  returnPort(port: number): void {
    const b = this.#owner[port & 0xffff];
    if (b === undefined || !b.give(port)) return;
    this.#unused++;
    if (this.#preferred === undefined || this.#preferred.unused === 0) this.#preferred = b;
  }

  /** Re-reads the counts and re-chooses the preferred block (off the packet path, e.g. once a second). */
  refresh(): void {
    let unused = 0;
    for (const b of this.#blocks) unused += b.unused;
    this.#unused = unused;
    if (unused >= this.#lowWater) this.#asked = false;
    this.#preferred = this.#pick();
  }

  /** Stops listening to the leases. */
  close(): void {
    this.#leases.removeListener(this.#listener);
  }

  #pick(): HeldBlock | undefined {
    let best: HeldBlock | undefined;
    for (const b of this.#blocks) {
      if (b.unused > 0 && (best === undefined || b.expiresAt > best.expiresAt)) best = b;
    }
    return best;
  }

  #add(b: HeldBlock): void {
    if (b.kind !== 'port' || this.#blocks.includes(b)) return;
    this.#blocks.push(b);
    const end = Math.min(b.lowest + b.count, PORTS);
    for (let p = b.lowest; p < end; p++) this.#owner[p] = b;
    this.#held += b.count;
    this.refresh();
  }

  #remove(b: HeldBlock): void {
    const i = this.#blocks.indexOf(b);
    if (i < 0) return;
    this.#blocks.splice(i, 1);
    const end = Math.min(b.lowest + b.count, PORTS);
    for (let p = b.lowest; p < end; p++) if (this.#owner[p] === b) this.#owner[p] = undefined;
    this.#held -= b.count;
    this.refresh();
  }
}
