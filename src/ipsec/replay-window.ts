/**
 * Anti-replay window (RFC 4303 3.4.3, RFC 4302 3.4.3), kept as a ring of
 * 32-bit words in the manner of RFC 6479: the ring holds at least one word
 * more than the window, so advancing the right edge only ever clears whole
 * words and never shifts bits, whatever the window size.
 *
 *          ring word k covers sequence numbers with (seq >>> 5) & mask === k
 *   ... [ w0 | w1 | w2 | w3 ] ...     window = [top - size + 1, top]
 *
 * Two steps, split on purpose: `check` runs before the integrity check and
 * rejects duplicates and too-old numbers (cheap, so a flood of replays costs
 * no cryptography); `accept` runs only after the ICV verified, so forged
 * packets can neither move the window nor mark numbers as seen.
 *
 * With extended sequence numbers (ESN) only the low 32 bits travel; `check`
 * infers the high half from the window as RFC 4303 Appendix A2.1 describes
 * and returns the full 64-bit number, which the ICV then covers. Numbers
 * are JS numbers, exact up to 2^53: at a million packets per second that is
 * 285 years of one SA.
 */

/** `check` results below 1: the packet must be dropped. */
export const REPLAY_DUPLICATE = -1;
export const REPLAY_TOO_OLD = -2;

export const DEFAULT_REPLAY_WINDOW = 64;
export const MAX_REPLAY_WINDOW = 65536;
const TWO_32 = 0x1_0000_0000;

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export class ReplayWindow {
  /** Width in sequence numbers: [top - size + 1, top] is inside. */
  readonly size: number;
  readonly esn: boolean;
  private readonly ring: Uint32Array;
  private readonly mask: number;
  /** Highest sequence number accepted so far; 0 before the first. */
  private top = 0;

  /** `size` 32..65536 (RFC 4303: at least 32, 64 by default). */
  constructor(size = DEFAULT_REPLAY_WINDOW, esn = false) {
    if (!Number.isInteger(size) || size < 32 || size > MAX_REPLAY_WINDOW) {
      throw new RangeError(`replay window must be 32..${MAX_REPLAY_WINDOW}, got ${size}`);
    }
    this.size = size;
    this.esn = esn;
    // One spare word past the window: see the file comment.
    const words = pow2AtLeast(Math.ceil(size / 32) + 1);
    this.ring = new Uint32Array(words);
    this.mask = words - 1;
  }

  /** The highest authenticated sequence number (64-bit with ESN). */
  get highest(): number {
    return this.top;
  }

  /**
   * The full sequence number for the 32-bit `low` from the wire, or
   * REPLAY_DUPLICATE / REPLAY_TOO_OLD. Changes nothing.
   */
  check(low: number): number {
    low >>>= 0;
    const seq = this.esn ? this.infer(low) : low;
    if (seq < 1) return REPLAY_TOO_OLD;
    const top = this.top;
    if (seq > top) return seq;
    if (seq + this.size <= top) return REPLAY_TOO_OLD;
    const bit = (this.ring[(low >>> 5) & this.mask]! >>> (low & 31)) & 1;
    return bit === 0 ? seq : REPLAY_DUPLICATE;
  }

  /** Marks `seq` (a value `check` returned) as received and moves the right edge if it is new. */
  accept(seq: number): void {
    const top = this.top;
    if (seq > top) {
      // Clear the words between the old right edge and the new one; they
      // hold numbers from a full ring ago.
      const oldWord = Math.floor(top / 32);
      const newWord = Math.floor(seq / 32);
      const steps = Math.min(newWord - oldWord, this.ring.length);
      for (let i = 1; i <= steps; i++) this.ring[(newWord - steps + i) & this.mask] = 0;
      this.top = seq;
    } else if (seq + this.size <= top) {
      return;
    }
    const low = seq >>> 0;
    this.ring[(low >>> 5) & this.mask]! |= 1 << (low & 31);
  }

  /** RFC 4303 Appendix A2.1: place `low` in the 2^32 cycle that keeps it nearest the window. */
  private infer(low: number): number {
    const top = this.top;
    const topLow = top % TWO_32;
    const topHigh = (top - topLow) / TWO_32;
    const bottom = topLow - this.size + 1;
    let high: number;
    if (bottom >= 0) {
      // Case A: the window lies within one cycle.
      high = low >= bottom ? topHigh : topHigh + 1;
    } else {
      // Case B: the window straddles the start of the cycle.
      high = low >= bottom + TWO_32 ? topHigh - 1 : topHigh;
    }
    return high < 0 ? 0 : high * TWO_32 + low;
  }
}
