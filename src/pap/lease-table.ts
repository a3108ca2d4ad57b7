import type { Clock, Timer } from '../util/clock.ts';
import { AnswerCache } from './answer-cache.ts';
import type { ResourceKind } from '../util/block.ts';
import { MAX_BLOCK } from './block.ts';
import type { LeaseConfig, LeaseTableOptions, RenewParams, RequestParams } from './lease-config.ts';
import { clampLease, newEpoch, resolveLeaseConfig } from './lease-config.ts';
import { LeaseEntry, LeaseIndex, Quarantine } from './lease-index.ts';
import type { JournalChange, LeaseRecord, QuarantineRecord, Snapshot } from './journal.ts';
import type { HostAddress, Lease, LeaseAnswer, LeaseEndReason, LeaseListener, LeaseStatus } from './lease.ts';
import { answerOfEntry, replay } from './lease-replay.ts';
import { LeaseStore, MemoryFiles } from './lease-store.ts';
import { ResourcePool } from './resource-pool.ts';

export type { LeaseTableOptions, RenewParams, RequestParams } from './lease-config.ts';

const KINDS: readonly ResourceKind[] = ['port', 'spi'];

/**
 * The router's leases: which host holds which blocks of ports (FIG. 8) and
 * SPIs (FIG. 21), until when, and what is quarantined. Every change is on
 * disk (through the LeaseStore) before the call that made it returns, so an
 * answer sent to a host is never forgotten by a restart.
 *
 * Blocks that end (released, withdrawn or expired) are kept from everyone
 * for the quarantine time, so a stray packet for the old owner never reaches
 * a new one.
 */
export class LeaseTable {
  readonly epoch: number;
  /** True when state was recovered from the store; false on a fresh start (new epoch). */
  readonly recovered: boolean;
  /** What recovery had to skip or repair, for the log. */
  readonly recoveryNotes: readonly string[];

  readonly #clock: Clock;
  readonly #store: LeaseStore;
  readonly #pools: Record<ResourceKind, ResourcePool>;
  readonly #leases = new LeaseIndex();
  readonly #quarantine = new Quarantine();
  readonly #answers: AnswerCache;
  readonly #listeners = new Set<LeaseListener>();
  readonly #config: LeaseConfig;
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #closed = false;
  #compactFailures = 0;
  /** The last error of a background compaction (requests themselves throw their errors). */
  lastStoreError: unknown;

  constructor(options: LeaseTableOptions) {
    this.#clock = options.clock;
    this.#store = options.store ?? new LeaseStore(new MemoryFiles());
    this.#config = resolveLeaseConfig(options);
    this.#pools = {
      port: new ResourcePool('port', this.#config.portRange),
      spi: new ResourcePool('spi', this.#config.spiRange),
    };
    this.#answers = new AnswerCache(options.answerCache);

    const loaded = this.#store.load();
    const notes = [...loaded.notes];
    if (loaded.snapshot === undefined) {
      this.epoch = newEpoch(options.randomEpoch);
      this.recovered = false;
      this.#store.reset(this.#snapshot());
    } else {
      this.epoch = loaded.snapshot.epoch;
      this.recovered = true;
      const state = replay(loaded.snapshot, loaded.entries, this.#config.quarantineMs);
      notes.push(...state.notes);
      for (const l of state.leases) this.#restoreLease(l, notes);
      for (const q of state.quarantine) this.#restoreQuarantine(q, notes);
      for (const a of state.answers) this.#answers.put(a);
      this.#sweep();
      // Start from a fresh snapshot: the journal's torn tail, if any, is gone.
      this.compact();
    }
    this.recoveryNotes = notes;
    this.#arm();
  }

  /** Grants a new block to host (the patent's PAP request, code 0 or 1). */
  request(host: HostAddress, kind: ResourceKind, params: RequestParams = {}): LeaseAnswer {
    const count = Math.min(params.count || this.#config.blockSize[kind], MAX_BLOCK[kind]);
    const preference = kind === 'port' ? (params.preference ?? 'low') : 'low';
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const fp = `request:${kind}:${count}:${preference}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const room = this.#config.maxPerHost[kind] - this.held(host, kind);
      if (room <= 0) return this.#failure('quota-exceeded', kind, 0, 0);
      const block = this.#pools[kind].allocate(Math.min(count, room), preference);
      if (block === undefined) return this.#failure('pool-exhausted', kind, 0, 0);
      const now = this.#clock.now();
      const lease = new LeaseEntry(
        kind,
        host,
        block.lowest,
        block.count,
        now,
        now + leaseSeconds * 1000,
        leaseSeconds,
      );
      const change: JournalChange = {
        op: 'grant',
        at: now,
        lease: toRecord(lease),
        ...cause(params.txid, fp),
      };
      try {
        this.#store.append(change);
      } catch (e) {
        this.#pools[kind].release(block.lowest, block.count);
        throw e;
      }
      this.#leases.add(lease);
      this.#afterChange();
      for (const l of this.#listeners) l.onLeaseAdded(lease);
      return answerOfEntry(change, this.epoch);
    });
  }

  /** Extends host's lease on exactly [lowest, lowest + count). */
  renew(
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
    params: RenewParams = {},
  ): LeaseAnswer {
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const fp = `renew:${kind}:${lowest}:${count}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const lease = this.#leases.find(kind, lowest);
      if (lease === undefined || lease.host !== host || lease.lowest !== lowest || lease.count !== count) {
        return this.#failure('unknown-lease', kind, lowest, count);
      }
      const now = this.#clock.now();
      const expiresAt = now + leaseSeconds * 1000;
      const change: JournalChange = {
        op: 'renew',
        at: now,
        kind,
        host,
        lowest,
        count,
        expiresAt,
        leaseSeconds,
        ...cause(params.txid, fp),
      };
      this.#store.append(change);
      this.#leases.extend(lease, expiresAt, leaseSeconds);
      this.#afterChange();
      for (const l of this.#listeners) l.onLeaseRenewed?.(lease);
      return answerOfEntry(change, this.epoch);
    });
  }

  /** Ends host's lease on the block containing value (the patent's invalidate, code 2). */
  release(
    host: HostAddress,
    kind: ResourceKind,
    value: number,
    params: { readonly txid?: number } = {},
  ): LeaseAnswer {
    const fp = `release:${kind}:${value}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const lease = this.#leases.find(kind, value);
      if (lease === undefined || lease.host !== host) return this.#failure('unknown-lease', kind, value, 0);
      return this.#end(lease, 'released', params.txid, fp)!;
    });
  }

  /** Takes a block back from its holder (the router-initiated invalidate). Undefined if nothing starts at lowest. */
  withdraw(kind: ResourceKind, lowest: number): Lease | undefined {
    this.#sweep();
    const lease = this.#leases.find(kind, lowest);
    if (lease === undefined || lease.lowest !== lowest) return undefined;
    this.#end(lease, 'withdrawn', undefined, undefined);
    this.#arm();
    return lease;
  }

  /** The live lease holding value. O(1) for ports, O(log n) for SPIs. */
  find(kind: ResourceKind, value: number): Lease | undefined {
    return this.#leases.find(kind, value);
  }

  ownerOf(kind: ResourceKind, value: number): HostAddress | undefined {
    return this.#leases.find(kind, value)?.host;
  }

  leasesOf(host: HostAddress): Lease[] {
    return this.#leases.leasesOf(host);
  }

  /** Every live lease, ports then SPIs, each in ascending order. */
  leases(): Lease[] {
    return this.#leases.all();
  }

  /** Blocks in quarantine with the time each becomes free again. */
  quarantined(): QuarantineRecord[] {
    return this.#quarantine.list();
  }

  /** Values of kind that host holds now. */
  held(host: HostAddress, kind: ResourceKind): number {
    return this.#leases.held(host, kind);
  }

  /** Values of kind free to be granted now (not leased, not in quarantine). */
  free(kind: ResourceKind): number {
    return this.#pools[kind].free;
  }

  /** Adds a listener; unless told otherwise it first hears onLeaseAdded for every live lease. */
  addListener(listener: LeaseListener, replayExisting = true): void {
    this.#listeners.add(listener);
    if (replayExisting) for (const lease of this.leases()) listener.onLeaseAdded(lease);
  }

  removeListener(listener: LeaseListener): void {
    this.#listeners.delete(listener);
  }

  /** Ends expired leases and frees finished quarantines now (a timer also does this on time). */
  sweep(): void {
    this.#sweep();
    this.#arm();
  }

  /** Writes a snapshot of the whole state and empties the journal. */
  compact(): void {
    this.#store.writeSnapshot(this.#snapshot());
  }

  /** Stops the timer and closes the store. Leases stay on disk. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#store.close();
  }

  #answerOnce(
    host: HostAddress,
    txid: number | undefined,
    fp: string,
    compute: () => LeaseAnswer,
  ): LeaseAnswer {
    if (this.#closed) throw new Error('lease table is closed');
    this.#sweep();
    const now = this.#clock.now();
    const cached = txid === undefined ? undefined : this.#answers.get(host, txid, fp, now);
    if (cached !== undefined) return cached;
    const answer = compute();
    if (txid !== undefined) this.#answers.put({ host, txid, fp, at: now, answer });
    this.#arm();
    return answer;
  }

  /** Ends a lease; the answer for the host when the host (or the router) ended it, undefined on expiry. */
  #end(
    lease: LeaseEntry,
    reason: LeaseEndReason,
    txid: number | undefined,
    fp: string | undefined,
  ): LeaseAnswer | undefined {
    const now = this.#clock.now();
    const until =
      reason === 'expired' ? lease.expiresAt + this.#config.quarantineMs : now + this.#config.quarantineMs;
    const q: QuarantineRecord = {
      kind: lease.kind,
      host: lease.host,
      lowest: lease.lowest,
      count: lease.count,
      until,
    };
    let answer: LeaseAnswer | undefined;
    if (reason !== 'expired') {
      // Expiry needs no entry: the grant or renewal on disk already says when.
      const change: JournalChange = { op: 'end', at: now, reason, quarantine: q, ...cause(txid, fp) };
      this.#store.append(change);
      answer = answerOfEntry(change, this.epoch);
    }
    this.#leases.remove(lease);
    this.#quarantine.add(q);
    if (reason !== 'expired') this.#afterChange();
    for (const l of this.#listeners) l.onLeaseRemoved(lease, reason);
    return answer;
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (let l = this.#leases.takeExpired(now); l !== undefined; l = this.#leases.takeExpired(now)) {
      this.#end(l, 'expired', undefined, undefined);
    }
    for (let q = this.#quarantine.takeDue(now); q !== undefined; q = this.#quarantine.takeDue(now)) {
      this.#pools[q.kind].release(q.lowest, q.count);
    }
  }

  #arm(): void {
    if (this.#closed) return;
    const next = Math.min(this.#leases.nextExpiry() ?? Infinity, this.#quarantine.nextDue() ?? Infinity);
    if (next === this.#timerAt) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#timerAt = next;
    if (next === Infinity) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.sweep();
    }, next - this.#clock.now());
  }

  #afterChange(): void {
    if (this.#store.journalLength < this.#config.compactEvery) return;
    // The change is already durable in the journal, so a failed compaction
    // must not fail the request (the host would retry and get a second
    // block): keep journaling and try again after the next change.
    try {
      this.compact();
    } catch (e) {
      this.#compactFailures++;
      this.lastStoreError = e;
    }
  }

  #restoreLease(r: LeaseRecord, notes: string[]): void {
    if (!this.#pools[r.kind].reserve(r.lowest, r.count)) {
      notes.push(`restored ${r.kind} lease ${r.lowest}+${r.count} of ${r.host} overlaps another: dropped`);
      return;
    }
    this.#leases.add(
      new LeaseEntry(r.kind, r.host, r.lowest, r.count, r.grantedAt, r.expiresAt, r.leaseSeconds),
    );
  }

  #restoreQuarantine(q: QuarantineRecord, notes: string[]): void {
    if (!this.#pools[q.kind].reserve(q.lowest, q.count)) {
      notes.push(`restored ${q.kind} quarantine ${q.lowest}+${q.count} overlaps a lease: dropped`);
      return;
    }
    this.#quarantine.add(q);
  }

  #snapshot(): Omit<Snapshot, 'seq'> {
    const now = this.#clock.now();
    return {
      format: 'distnat-leases',
      version: 1,
      epoch: this.epoch,
      savedAt: now,
      leases: this.leases().map((l) => toRecord(l)),
      quarantine: this.#quarantine.list(),
      answers: this.#answers.live(now),
    };
  }

  #failure(status: LeaseStatus, kind: ResourceKind, lowest: number, count: number): LeaseAnswer {
    return { status, kind, lowest, count, leaseSeconds: 0, expiresAt: 0, epoch: this.epoch };
  }

  /** Counts for `distnat status`. */
  stats(): Record<string, number> {
    const q = { port: 0, spi: 0 };
    for (const r of this.#quarantine.list()) q[r.kind] += r.count;
    const out: Record<string, number> = {
      hosts: this.#leases.hostCount,
      compact_failures: this.#compactFailures,
    };
    for (const k of KINDS) {
      out[`${k}_leases`] = this.#leases.count(k);
      out[`${k}_free`] = this.#pools[k].free;
      out[`${k}_quarantined`] = q[k];
    }
    return out;
  }
}

function toRecord(l: Lease): LeaseRecord {
  return {
    kind: l.kind,
    host: l.host,
    lowest: l.lowest,
    count: l.count,
    grantedAt: l.grantedAt,
    expiresAt: l.expiresAt,
    leaseSeconds: l.leaseSeconds,
  };
}

function cause(txid: number | undefined, fp: string | undefined): { txid?: number; fp?: string } {
  return txid === undefined || fp === undefined ? {} : { txid, fp };
}
