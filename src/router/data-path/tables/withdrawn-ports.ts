/**
 * Port blocks the router took back from their hosts (`distnat withdraw
 * --kind port` or `all`, a PAP withdraw), each with its former owner, for
 * a short drain after the withdrawal: the outbound check lets the former
 * owner's IKE from the block out (outbound-check.ts), so that the Delete
 * telling its peers the SAs are revoked is not dropped as `spoofed-port`
 * (docs/ike.md, "Revocation reaches the SAs that are up"; docs/pap.md 6.6).
 *
 * Why IKE_DRAIN_MS is 5 s: the withdraw reaches the host in one LAN trip,
 * and the host sends its Delete at once and again after 1 s and 3 s (the
 * IKE retransmission schedule, 1 s doubling), keeping its old IKE socket
 * open 4 s for that (host-ike.ts). Five seconds covers the first send and
 * both retransmissions with a second to spare; it is far below the
 * quarantine (at least 120 s, RFC 6888), so nobody else can hold the block
 * while it drains, and short enough that a host cannot keep using a block
 * it lost.
 *
 * A fixed ring of `capacity` entries, the oldest forgotten first, like
 * withdrawn-spis.ts: withdrawals are rare and a drain lasts seconds. The
 * lookup is a scan of at most `capacity` entries, made only for UDP to an
 * IKE port whose source port the sender does not own.
 */
import type { Block } from '../../../util/block.ts';

/** How long after a withdrawal the former owner's IKE from the block still goes out. */
export const IKE_DRAIN_MS = 5000;

export class WithdrawnPorts {
  readonly #first: Uint32Array;
  readonly #end: Uint32Array;
  readonly #owner: Uint32Array;
  readonly #until: Float64Array;
  #next = 0;
  #size = 0;

  constructor(
    readonly capacity = 16,
    readonly drainMs = IKE_DRAIN_MS,
  ) {
    this.#first = new Uint32Array(capacity);
    this.#end = new Uint32Array(capacity);
    this.#owner = new Uint32Array(capacity);
    this.#until = new Float64Array(capacity);
  }

  /** Entries held, drained or not. */
  get size(): number {
    return this.#size;
  }

  /** The block was withdrawn from `owner` at `now` (ms): it drains until now + drainMs. */
  add(block: Block, owner: number, now: number): void {
    if (this.capacity === 0 || block.count <= 0) return;
    const i = this.#next;
    this.#first[i] = block.lowest;
    this.#end[i] = block.lowest + block.count;
    this.#owner[i] = owner >>> 0;
    this.#until[i] = now + this.drainMs;
    this.#next = (i + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
  }

  /** Ports of `block` are leased again: an entry they touch ends at once (the new owner's ports are its own). */
  clear(block: Block): void {
    const lo = block.lowest;
    const hi = block.lowest + block.count;
    for (let i = 0; i < this.#size; i++) if (this.#first[i]! < hi && lo < this.#end[i]!) this.#until[i] = 0;
  }

  /** True when `port` lies in a block withdrawn from `host` less than drainMs before `now`. */
  drains(host: number, port: number, now: number): boolean {
    const owner = host >>> 0;
    for (let i = 0; i < this.#size; i++)
      if (
        port >= this.#first[i]! &&
        port < this.#end[i]! &&
        this.#owner[i] === owner &&
        now < this.#until[i]!
      )
        return true;
    return false;
  }
}
