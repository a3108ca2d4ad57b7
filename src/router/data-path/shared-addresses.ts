import { PORT_SPACE } from '../../util/block.ts';

/**
 * The router's shared addresses on the packet path: which one a datagram is
 * to (inbound) or from (outbound), and where that address's ports start in
 * the ownership index (util/block.ts: slot = index * 65536 + port). A router
 * has few (the configuration allows 16), so a scan of a typed array beats a
 * hash and allocates nothing.
 */
export class SharedAddresses {
  readonly #addresses: Uint32Array;

  constructor(addresses: readonly number[]) {
    if (addresses.length === 0) throw new RangeError('a router needs at least one shared address');
    this.#addresses = Uint32Array.from(addresses, (a) => a >>> 0);
  }

  get count(): number {
    return this.#addresses.length;
  }

  /** The first address: the one a host naming none uses. */
  get first(): number {
    return this.#addresses[0]!;
  }

  /** The index of `address`, or -1 when it is not one of the router's. */
  indexOf(address: number): number {
    const a = this.#addresses;
    for (let i = 0; i < a.length; i++) if (a[i] === address) return i;
    return -1;
  }

  /** The first slot of the address at `index` in the ownership index; -1 for an address not the router's. */
  baseOf(address: number): number {
    const i = this.indexOf(address);
    return i < 0 ? -1 : i * PORT_SPACE;
  }

  has(address: number): boolean {
    return this.indexOf(address) >= 0;
  }
}
