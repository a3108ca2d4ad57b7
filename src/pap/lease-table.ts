import { randomInt } from 'node:crypto';
import type { Clock, Timer } from '../util/clock.ts';
import { AnswerCache } from './answer-cache.ts';
import type { PortPreference, ResourceKind, ValueRange } from './block.ts';
import { DEFAULT_BLOCK, MAX_BLOCK, PORT_RANGE, SPI_RANGE } from './block.ts';
import { DeadlineHeap } from './deadline-heap.ts';
import type { JournalChange, LeaseRecord, QuarantineRecord, Snapshot } from './journal.ts';
import type { HostAddress, Lease, LeaseAnswer, LeaseEndReason, LeaseListener, LeaseStatus } from './lease.ts';
import { answerOfEntry, replay } from './lease-replay.ts';
import { LeaseStore, MemoryFiles } from './lease-store.ts';
import type { OwnerIndex } from './owner-index.ts';
import { createOwnerIndex } from './owner-index.ts';
import { ResourcePool } from './resource-pool.ts';

export interface LeaseTableOptions {
  readonly clock: Clock;
  /** Where leases are kept across restarts. Default: in memory only. */
  readonly store?: LeaseStore;
  readonly portRange?: ValueRange;
  readonly spiRange?: ValueRange;
  /** Block handed out when a request asks for 0. Default 32 ports, 64 SPIs. */
  readonly blockSize?: Partial<Record<ResourceKind, number>>;
  /** Most values one host may hold at once. Default 1024 of each. */
  readonly maxPerHost?: Partial<Record<ResourceKind, number>>;
  /** Lease granted when the request asks for 0. Default 300. */
  readonly leaseSeconds?: number;
  /** Bounds on what a host may ask for. Default 30 and 3600. */
  readonly minLeaseSeconds?: number;
  readonly maxLeaseSeconds?: number;
  /** How long an ended block is kept from everyone (RFC 6888 REQ-8 asks >= 120 s). Default 120. */
  readonly quarantineSeconds?: number;
  /** Journal entries between snapshots. Default 1000. */
  readonly compactEvery?: number;
  readonly answerCache?: { perHost?: number; maxHosts?: number; ttlMs?: number };
  /** Source of a new epoch (non-zero u32). Default: crypto. */
  readonly randomEpoch?: () => number;
}

export interface RequestParams {
  /** Values wanted; 0 or absent: the default block. */
  readonly count?: number;
  /** Ports only: the request's code 0 (low) or 1 (high). */
  readonly preference?: PortPreference;
  /** Lease wanted in seconds; 0 or absent: the default. */
  readonly leaseSeconds?: number;
  /** The request's transaction id: a repeat gets the same answer. */
  readonly txid?: number;
}

export interface RenewParams {
  readonly leaseSeconds?: number;
  readonly txid?: number;
}

class LeaseEntry implements Lease {
  constructor(
    readonly kind: ResourceKind,
    readonly host: HostAddress,
    readonly lowest: number,
    readonly count: number,
    readonly grantedAt: number,
    public expiresAt: number,
    public leaseSeconds: number,
  ) {}
  live = true;
}

interface HostState {
  readonly leases: Set<LeaseEntry>;
  readonly held: Record<ResourceKind, number>;
}

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
  readonly #owners: Record<ResourceKind, OwnerIndex<LeaseEntry>>;
  readonly #hosts = new Map<HostAddress, HostState>();
  readonly #expiries = new DeadlineHeap<LeaseEntry>();
  readonly #quarantine = new DeadlineHeap<QuarantineRecord>();
  readonly #quarantined = new Set<QuarantineRecord>();
  readonly #answers: AnswerCache;
  readonly #listeners = new Set<LeaseListener>();
  readonly #blockSize: Record<ResourceKind, number>;
  readonly #maxPerHost: Record<ResourceKind, number>;
  readonly #leaseSeconds: number;
  readonly #minLease: number;
  readonly #maxLease: number;
  readonly #quarantineMs: number;
  readonly #compactEvery: number;
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #closed = false;

  constructor(options: LeaseTableOptions) {
    this.#clock = options.clock;
    this.#store = options.store ?? new LeaseStore(new MemoryFiles());
    this.#pools = {
      port: new ResourcePool('port', options.portRange ?? PORT_RANGE),
      spi: new ResourcePool('spi', options.spiRange ?? SPI_RANGE),
    };
    this.#owners = { port: createOwnerIndex('port'), spi: createOwnerIndex('spi') };
    this.#blockSize = { ...DEFAULT_BLOCK, ...options.blockSize };
    this.#maxPerHost = { port: 1024, spi: 1024, ...options.maxPerHost };
    this.#leaseSeconds = options.leaseSeconds ?? 300;
    this.#minLease = options.minLeaseSeconds ?? Math.min(30, this.#leaseSeconds);
    this.#maxLease = options.maxLeaseSeconds ?? Math.max(3600, this.#leaseSeconds);
    this.#quarantineMs = (options.quarantineSeconds ?? 120) * 1000;
    this.#compactEvery = options.compactEvery ?? 1000;
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
      const state = replay(loaded.snapshot, loaded.entries, this.#quarantineMs);
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
    const count = Math.min(params.count || this.#blockSize[kind], MAX_BLOCK[kind]);
    const preference = kind === 'port' ? (params.preference ?? 'low') : 'low';
    const leaseSeconds = this.#clampLease(params.leaseSeconds);
    const fp = `request:${kind}:${count}:${preference}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const room = this.#maxPerHost[kind] - this.held(host, kind);
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
      this.#addLease(lease);
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
    const leaseSeconds = this.#clampLease(params.leaseSeconds);
    const fp = `renew:${kind}:${lowest}:${count}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const lease = this.#owners[kind].find(lowest);
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
      lease.expiresAt = expiresAt;
      lease.leaseSeconds = leaseSeconds;
      this.#expiries.push(expiresAt, lease);
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
      const lease = this.#owners[kind].find(value);
      if (lease === undefined || lease.host !== host) return this.#failure('unknown-lease', kind, value, 0);
      return this.#end(lease, 'released', params.txid, fp)!;
    });
  }

  /** Takes a block back from its holder (the router-initiated invalidate). Undefined if nothing starts at lowest. */
  withdraw(kind: ResourceKind, lowest: number): Lease | undefined {
    this.#sweep();
    const lease = this.#owners[kind].find(lowest);
    if (lease === undefined || lease.lowest !== lowest) return undefined;
    this.#end(lease, 'withdrawn', undefined, undefined);
    this.#arm();
    return lease;
  }

  /** The live lease holding value. O(1) for ports, O(log n) for SPIs. */
  find(kind: ResourceKind, value: number): Lease | undefined {
    return this.#owners[kind].find(value);
  }

  ownerOf(kind: ResourceKind, value: number): HostAddress | undefined {
    return this.#owners[kind].find(value)?.host;
  }

  leasesOf(host: HostAddress): Lease[] {
    return [...(this.#hosts.get(host)?.leases ?? [])];
  }

  /** Every live lease, ports then SPIs, each in ascending order. */
  leases(): Lease[] {
    const all: Lease[] = [];
    for (const h of this.#hosts.values()) all.push(...h.leases);
    return all.sort((a, b) => (a.kind === b.kind ? a.lowest - b.lowest : a.kind === 'port' ? -1 : 1));
  }

  /** Blocks in quarantine with the time each becomes free again. */
  quarantined(): QuarantineRecord[] {
    return this.#quarantineList();
  }

  /** Values of kind that host holds now. */
  held(host: HostAddress, kind: ResourceKind): number {
    return this.#hosts.get(host)?.held[kind] ?? 0;
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
    const until = reason === 'expired' ? lease.expiresAt + this.#quarantineMs : now + this.#quarantineMs;
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
    this.#removeLease(lease);
    this.#quarantine.push(until, q);
    this.#quarantined.add(q);
    if (reason !== 'expired') this.#afterChange();
    for (const l of this.#listeners) l.onLeaseRemoved(lease, reason);
    return answer;
  }

  #sweep(): void {
    const now = this.#clock.now();
    while ((this.#expiries.peekTime() ?? Infinity) <= now) {
      const at = this.#expiries.peekTime()!;
      const lease = this.#expiries.pop()!;
      if (lease.live && lease.expiresAt === at) this.#end(lease, 'expired', undefined, undefined);
    }
    while ((this.#quarantine.peekTime() ?? Infinity) <= now) {
      const q = this.#quarantine.pop()!;
      this.#quarantined.delete(q);
      this.#pools[q.kind].release(q.lowest, q.count);
    }
  }

  #arm(): void {
    if (this.#closed) return;
    // Drop stale expiry entries (superseded by a renewal or an end) so the timer aims at a real deadline.
    while (this.#expiries.size > 0) {
      const top = this.#expiries.peek()!;
      if (top.live && top.expiresAt === this.#expiries.peekTime()) break;
      this.#expiries.pop();
    }
    const next = Math.min(this.#expiries.peekTime() ?? Infinity, this.#quarantine.peekTime() ?? Infinity);
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
    if (this.#store.journalLength >= this.#compactEvery) this.compact();
  }

  #addLease(lease: LeaseEntry): void {
    this.#owners[lease.kind].add(lease);
    let h = this.#hosts.get(lease.host);
    if (h === undefined) {
      h = { leases: new Set(), held: { port: 0, spi: 0 } };
      this.#hosts.set(lease.host, h);
    }
    h.leases.add(lease);
    h.held[lease.kind] += lease.count;
    this.#expiries.push(lease.expiresAt, lease);
  }

  #removeLease(lease: LeaseEntry): void {
    lease.live = false;
    this.#owners[lease.kind].remove(lease);
    const h = this.#hosts.get(lease.host)!;
    h.leases.delete(lease);
    h.held[lease.kind] -= lease.count;
    if (h.leases.size === 0) this.#hosts.delete(lease.host);
  }

  #restoreLease(r: LeaseRecord, notes: string[]): void {
    if (!this.#pools[r.kind].reserve(r.lowest, r.count)) {
      notes.push(`restored ${r.kind} lease ${r.lowest}+${r.count} of ${r.host} overlaps another: dropped`);
      return;
    }
    this.#addLease(
      new LeaseEntry(r.kind, r.host, r.lowest, r.count, r.grantedAt, r.expiresAt, r.leaseSeconds),
    );
  }

  #restoreQuarantine(q: QuarantineRecord, notes: string[]): void {
    if (!this.#pools[q.kind].reserve(q.lowest, q.count)) {
      notes.push(`restored ${q.kind} quarantine ${q.lowest}+${q.count} overlaps a lease: dropped`);
      return;
    }
    const copy = { ...q };
    this.#quarantine.push(q.until, copy);
    this.#quarantined.add(copy);
  }

  #quarantineList(): QuarantineRecord[] {
    return [...this.#quarantined]
      .map((q) => ({ ...q }))
      .sort(
        (a, b) => a.until - b.until || (a.kind === b.kind ? a.lowest - b.lowest : a.kind === 'port' ? -1 : 1),
      );
  }

  #snapshot(): Omit<Snapshot, 'seq'> {
    const now = this.#clock.now();
    return {
      format: 'distnat-leases',
      version: 1,
      epoch: this.epoch,
      savedAt: now,
      leases: this.leases().map((l) => toRecord(l)),
      quarantine: this.#quarantineList(),
      answers: this.#answers.live(now),
    };
  }

  #clampLease(asked: number | undefined): number {
    if (!asked) return this.#leaseSeconds;
    return Math.round(Math.min(this.#maxLease, Math.max(this.#minLease, asked)));
  }

  #failure(status: LeaseStatus, kind: ResourceKind, lowest: number, count: number): LeaseAnswer {
    return { status, kind, lowest, count, leaseSeconds: 0, expiresAt: 0, epoch: this.epoch };
  }

  /** Counts for `distnat status`. */
  stats(): Record<string, number> {
    const q = { port: 0, spi: 0 };
    for (const r of this.#quarantineList()) q[r.kind] += r.count;
    const out: Record<string, number> = { hosts: this.#hosts.size };
    for (const k of KINDS) {
      out[`${k}_leases`] = this.#owners[k].size;
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

function newEpoch(random: (() => number) | undefined): number {
  const e = random ? random() >>> 0 : randomInt(1, 0x100000000);
  if (e === 0) throw new RangeError('router epoch must be non-zero');
  return e;
}
