import type { AnswerRecord } from './journal.ts';
import type { HostAddress, LeaseAnswer } from './lease.ts';

/**
 * Recent answers per host by transaction id, so a retransmitted request gets
 * the answer already given instead of a second allocation.
 *
 * The entry also holds a fingerprint of the request: a host that reuses a
 * transaction id for a different request gets that request served, not a
 * stale answer to another one. Entries older than the time-to-live are
 * ignored (a retransmission comes within seconds), each host keeps only its
 * most recent few, and the least recently active hosts are forgotten first
 * when too many hosts are remembered.
 */
export class AnswerCache {
  readonly #perHost: number;
  readonly #maxHosts: number;
  readonly #ttlMs: number;
  // Map order is recency: a host is re-inserted on every put.
  readonly #hosts = new Map<HostAddress, Map<number, AnswerRecord>>();

  constructor(options: { perHost?: number; maxHosts?: number; ttlMs?: number } = {}) {
    this.#perHost = options.perHost ?? 16;
    this.#maxHosts = options.maxHosts ?? 4096;
    this.#ttlMs = options.ttlMs ?? 60_000;
  }

  get(host: HostAddress, txid: number, fp: string, now: number): LeaseAnswer | undefined {
    const r = this.#hosts.get(host)?.get(txid);
    if (r === undefined || r.fp !== fp || now - r.at > this.#ttlMs) return undefined;
    return r.answer;
  }

  put(record: AnswerRecord): void {
    let answers = this.#hosts.get(record.host);
    if (answers === undefined) {
      answers = new Map();
    } else {
      this.#hosts.delete(record.host);
    }
    this.#hosts.set(record.host, answers);
    answers.delete(record.txid);
    answers.set(record.txid, record);
    while (answers.size > this.#perHost) answers.delete(answers.keys().next().value!);
    while (this.#hosts.size > this.#maxHosts) this.#hosts.delete(this.#hosts.keys().next().value!);
  }

  /** Entries still within their time-to-live, oldest host first, for the snapshot. */
  live(now: number): AnswerRecord[] {
    const out: AnswerRecord[] = [];
    for (const answers of this.#hosts.values()) {
      for (const r of answers.values()) if (now - r.at <= this.#ttlMs) out.push(r);
    }
    return out;
  }

  get size(): number {
    let n = 0;
    for (const answers of this.#hosts.values()) n += answers.size;
    return n;
  }
}
