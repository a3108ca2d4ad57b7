/**
 * Putting IKE fragments (RFC 7383 2.6) back together, with bounds.
 *
 * Each fragment is authenticated before it gets here (fragments.ts), so
 * only a peer holding the SA's keys can make us keep anything; but anyone
 * who completes IKE_SA_INIT holds such keys, so what a half-open SA may
 * keep is bounded three ways: fragments per message, bytes per message,
 * and the bytes every reassembly of the daemon holds together
 * (FragmentBudget). A reassembly that does not complete in time is
 * dropped.
 *
 * The rules of 2.6: a fragment whose Total Fragments is larger than the
 * one being collected starts the collection over (the sender went to
 * smaller fragments after losses, 2.5.2); a smaller one is stale and
 * dropped; a fragment number already held is dropped, whether the same
 * bytes (a retransmission) or different ones (an overlap: the same piece
 * of message cannot say two things).
 */
import type { Timer } from '../util/clock.ts';
import type { FragmentHeader } from './fragments.ts';

export interface ReassemblyLimits {
  /** Total Fragments beyond this is refused. */
  readonly maxFragments: number;
  /** The reassembled inner chain may not exceed this. */
  readonly maxMessageBytes: number;
  /** A message not complete this long after its first fragment is dropped. */
  readonly timeoutMs: number;
}

/** Bytes of fragment content all reassemblies of one daemon hold together, and their bound. */
export class FragmentBudget {
  #held = 0;

  constructor(readonly limit: number) {}

  get held(): number {
    return this.#held;
  }

  take(bytes: number): boolean {
    if (this.#held + bytes > this.limit) return false;
    this.#held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.#held = Math.max(0, this.#held - bytes);
  }
}

/** Why a fragment was not kept; the daemon counts each by name. */
export type FragmentDrop =
  | 'fragment-too-many' // Total Fragments above the limit
  | 'fragment-stale-total' // fewer fragments than the message being collected
  | 'fragment-duplicate' // a number already held, same content
  | 'fragment-overlap' // a number already held, different content
  | 'fragment-too-big' // the message would exceed maxMessageBytes (the collection is dropped)
  | 'fragment-memory'; // the daemon-wide budget is spent

export type FragmentVerdict =
  | { readonly kind: 'more' }
  | { readonly kind: 'complete'; readonly chain: Buffer; readonly firstInner: number }
  | { readonly kind: 'dropped'; readonly reason: FragmentDrop };

const MORE: FragmentVerdict = { kind: 'more' };
const drop = (reason: FragmentDrop): FragmentVerdict => ({ kind: 'dropped', reason });

/** One message being reassembled: one per IKE SA for requests, one for responses (window size 1). */
export class Reassembly {
  readonly #budget: FragmentBudget;
  readonly #limits: ReassemblyLimits;
  readonly #schedule: (callback: () => void, ms: number) => Timer;
  readonly #note: (what: string) => void;
  #messageId = -1;
  #total = 0;
  #pieces: (Buffer | undefined)[] = [];
  #count = 0;
  #bytes = 0;
  #firstInner = 0;
  #timer: Timer | undefined;

  constructor(
    budget: FragmentBudget,
    limits: ReassemblyLimits,
    schedule: (callback: () => void, ms: number) => Timer,
    /** Told of restarts and timeouts ('fragment-restart', 'fragment-timeout'). */
    note: (what: string) => void,
  ) {
    this.#budget = budget;
    this.#limits = limits;
    this.#schedule = schedule;
    this.#note = note;
  }

  /** Bytes held now. */
  get holding(): number {
    return this.#bytes;
  }

  /** Message ID being collected, or -1. */
  get messageId(): number {
    return this.#messageId;
  }

  /** Adds the authenticated content of one fragment of message `messageId`. */
  add(messageId: number, h: FragmentHeader, content: Buffer): FragmentVerdict {
    if (h.total > this.#limits.maxFragments) return drop('fragment-too-many');
    if (messageId !== this.#messageId) this.#start(messageId, h.total);
    else if (h.total > this.#total) {
      this.#note('fragment-restart');
      this.#start(messageId, h.total);
    } else if (h.total < this.#total) return drop('fragment-stale-total');
    const held = this.#pieces[h.number - 1];
    if (held !== undefined) return drop(held.equals(content) ? 'fragment-duplicate' : 'fragment-overlap');
    if (this.#bytes + content.length > this.#limits.maxMessageBytes) {
      this.clear();
      return drop('fragment-too-big');
    }
    if (!this.#budget.take(content.length)) return drop('fragment-memory');
    this.#pieces[h.number - 1] = Buffer.from(content);
    this.#bytes += content.length;
    this.#count++;
    if (h.number === 1) this.#firstInner = h.firstInner;
    if (this.#count < this.#total) return MORE;
    const chain = Buffer.concat(this.#pieces as Buffer[], this.#bytes);
    const firstInner = this.#firstInner;
    this.clear();
    return { kind: 'complete', chain, firstInner };
  }

  #start(messageId: number, total: number): void {
    this.clear();
    this.#messageId = messageId;
    this.#total = total;
    this.#pieces = new Array<Buffer | undefined>(total);
    this.#timer = this.#schedule(() => {
      this.#note('fragment-timeout');
      this.clear();
    }, this.#limits.timeoutMs);
  }

  /** Forgets the message being collected and gives its bytes back to the budget. */
  clear(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#budget.give(this.#bytes);
    this.#messageId = -1;
    this.#total = 0;
    this.#pieces = [];
    this.#count = 0;
    this.#bytes = 0;
    this.#firstInner = 0;
  }
}
