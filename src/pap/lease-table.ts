import type { Clock, Timer } from '../util/clock.ts';
import { AnswerCache } from './answer-cache.ts';
import type { Block, ResourceKind } from '../util/block.ts';
import { addressIndexOfSlot, PORT_SPACE, portOfSlot, portSlot } from '../util/block.ts';
import { MAX_BLOCK } from './block.ts';
import type { LeaseConfig, LeaseTableOptions, RenewParams, RequestParams } from './lease-config.ts';
import { clampLease, newEpoch, resolveLeaseConfig } from './lease-config.ts';
import { LeaseEntry, LeaseIndex, Quarantine } from './lease-index.ts';
import type { JournalChange, LeaseRecord, QuarantineRecord, Snapshot } from './journal.ts';
import type {
  HostAddress,
  Lease,
  LeaseAnswer,
  LeaseEndReason,
  LeaseListener,
  LeaseOrigin,
  LeaseStatus,
} from './lease.ts';
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
 *
 * A table that starts without saved state because the state was lost
 * (options.withoutState 'state-lost') holds off (docs/pap.md 6.3): for the
 * hold-off time it grants no new block (requests get 'try-later') and lets
 * each host reclaim, value for value, the blocks it still holds from the
 * router's earlier life, as long as nobody reclaimed them first.
 *
 * The interface, for the PAP server, the router's data path and status, and
 * whatever else keeps leases:
 * - request / renew / reclaim / release answer one host message each, by
 *   transaction id (a repeat gets the answer already given) and durably;
 * - withdraw takes a block back on the router's own initiative;
 * - find / ownerOf / leasesOf / leases / held / free / quarantined read;
 * - listeners hear every lease added, renewed and removed, after the change
 *   is on disk;
 * - epoch, recovered and holdOffUntil say which router life this is.
 */
export class LeaseTable {
  readonly epoch: number;
  /** True when state was recovered from the store; false on a start without state (new epoch). */
  readonly recovered: boolean;
  /** What recovery had to skip or repair, for the log. */
  readonly recoveryNotes: readonly string[];

  readonly #clock: Clock;
  readonly #store: LeaseStore;
  /** SPIs: one pool. Ports: one per shared address, over that address's slots. */
  readonly #spiPool: ResourcePool;
  readonly #portPools: readonly ResourcePool[];
  /** The shared addresses by index, as the journal names them (the first by none). */
  readonly #addresses: readonly string[];
  readonly #leases = new LeaseIndex();
  readonly #quarantine = new Quarantine();
  readonly #answers: AnswerCache;
  readonly #listeners = new Set<LeaseListener>();
  readonly #config: LeaseConfig;
  #timer: Timer | undefined;
  #timerAt = Infinity;
  #holdOffUntil: number | undefined;
  #closed = false;
  #compactFailures = 0;
  /** The last error of a background compaction (requests themselves throw their errors). */
  lastStoreError: unknown;

  constructor(options: LeaseTableOptions) {
    this.#clock = options.clock;
    this.#store = options.store ?? new LeaseStore(new MemoryFiles());
    this.#config = resolveLeaseConfig(options);
    this.#addresses = options.addresses?.length ? [...options.addresses] : [''];
    const ports = this.#config.portRange;
    this.#portPools = this.#addresses.map((_, i) => {
      const base = i * PORT_SPACE;
      return new ResourcePool('port', { min: base + ports.min, max: base + ports.max }, 1 + 2 * i, base);
    });
    this.#spiPool = new ResourcePool('spi', this.#config.spiRange);
    this.#answers = new AnswerCache(options.answerCache);

    const loaded = this.#store.load();
    const notes = [...loaded.notes];
    if (loaded.snapshot === undefined) {
      this.epoch = newEpoch(options.randomEpoch);
      this.recovered = false;
      if (this.#config.holdOffMs > 0) this.#holdOffUntil = this.#clock.now() + this.#config.holdOffMs;
      // Written at once: a restart during the hold-off recovers it instead of granting early.
      this.#store.reset(this.#snapshot());
    } else {
      this.epoch = loaded.snapshot.epoch;
      this.recovered = true;
      this.#holdOffUntil = loaded.snapshot.holdOffUntil;
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

  /**
   * Grants a new block to host (the patent's PAP request, code 0 or 1):
   * try-later during a hold-off, quota-exceeded when host holds its maximum,
   * pool-exhausted when nothing is free; otherwise as many values as asked
   * (up to the quota and the longest free run).
   */
  request(host: HostAddress, kind: ResourceKind, params: RequestParams = {}): LeaseAnswer {
    const count = Math.min(params.count || this.#config.blockSize[kind], MAX_BLOCK[kind]);
    const preference = kind === 'port' ? (params.preference ?? 'low') : 'low';
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const address = kind === 'port' ? (params.address ?? 0) : 0;
    const fp = `request:${kind}:${count}:${preference}:${leaseSeconds}${address === 0 ? '' : `:${address}`}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const until = this.holdOffUntil;
      if (until !== undefined) {
        const left = Math.ceil((until - this.#clock.now()) / 1000);
        return { ...this.#failure('try-later', kind, 0, 0), leaseSeconds: left };
      }
      const room = this.#config.maxPerHost[kind] - this.held(host, kind);
      if (room <= 0) return this.#failure('quota-exceeded', kind, 0, 0);
      const pool = kind === 'port' ? this.#portPools[address] : this.#spiPool;
      if (pool === undefined) return this.#failure('pool-exhausted', kind, 0, 0);
      const block = pool.allocate(Math.min(count, room), preference);
      if (block === undefined) return this.#failure('pool-exhausted', kind, 0, 0);
      return this.#grant(host, kind, block, leaseSeconds, 'granted', params.txid, fp);
    });
  }

  /** Extends host's lease on exactly [lowest, lowest + count); unknown-lease if host holds no such block. */
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
      const lease = this.#heldExactly(host, kind, lowest, count);
      if (lease === undefined) return this.#failure('unknown-lease', kind, lowest, count);
      return this.#extend(lease, leaseSeconds, params.txid, fp);
    });
  }

  /**
   * During the hold-off: gives host exactly [lowest, lowest + count), a block
   * it holds from the router's earlier life, if every value of it is free
   * (inside the pool, leased to nobody, not in quarantine); the lease runs
   * from now. A host that already holds exactly that block (it reclaimed it
   * before and did not hear the answer) has it renewed. Refused with
   * quota-exceeded when it would take host over its quota, and with
   * unknown-lease otherwise: outside the hold-off, or when another host
   * reclaimed some of it first, or the values are not this router's to give.
   */
  reclaim(
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
    params: RenewParams = {},
  ): LeaseAnswer {
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const fp = `reclaim:${kind}:${lowest}:${count}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const held = this.#heldExactly(host, kind, lowest, count);
      if (held !== undefined) return this.#extend(held, leaseSeconds, params.txid, fp);
      const refused = this.#failure('unknown-lease', kind, lowest, count);
      const pool = this.#poolOf(kind, lowest);
      if (this.holdOffUntil === undefined || count < 1 || count > MAX_BLOCK[kind]) return refused;
      if (pool === undefined || lowest < pool.range.min || lowest + count - 1 > pool.range.max)
        return refused;
      if (this.held(host, kind) + count > this.#config.maxPerHost[kind])
        return this.#failure('quota-exceeded', kind, lowest, count);
      if (!pool.reserve(lowest, count)) return refused;
      return this.#grant(host, kind, { lowest, count }, leaseSeconds, 'reclaimed', params.txid, fp);
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

  /** Values of kind free to be granted now (not leased, not in quarantine), on every shared address. */
  free(kind: ResourceKind): number {
    if (kind === 'spi') return this.#spiPool.free;
    let n = 0;
    for (const p of this.#portPools) n += p.free;
    return n;
  }

  /** Ports free to be granted now on the shared address at `addressIndex`. */
  freePorts(addressIndex: number): number {
    return this.#portPools[addressIndex]?.free ?? 0;
  }

  /** The pool a value (a port slot or SPI) belongs to; undefined for a slot of no address of this table. */
  #poolOf(kind: ResourceKind, value: number): ResourcePool | undefined {
    return kind === 'spi' ? this.#spiPool : this.#portPools[addressIndexOfSlot(value)];
  }

  /** A port slot as the journal and the answers give it: the port, and the address unless the first. */
  #placed(kind: ResourceKind, value: number): { lowest: number; address?: string } {
    if (kind === 'spi') return { lowest: value };
    const i = addressIndexOfSlot(value);
    const address = this.#addresses[i];
    return i === 0 || address === undefined ? { lowest: value } : { lowest: portOfSlot(value), address };
  }

  /** The slot of a record's block; undefined when it names an address this table does not have. */
  #slotOf(kind: ResourceKind, lowest: number, address: string | undefined): number | undefined {
    if (kind === 'spi' || address === undefined) return lowest;
    const i = this.#addresses.indexOf(address);
    return i < 0 ? undefined : portSlot(i, lowest);
  }

  /** When the hold-off after lost state ends (ms since the Unix epoch); undefined when not holding off. */
  get holdOffUntil(): number | undefined {
    const until = this.#holdOffUntil;
    if (until === undefined) return undefined;
    if (this.#clock.now() < until) return until;
    this.#holdOffUntil = undefined;
    return undefined;
  }

  /** Adds a listener; unless told otherwise it first hears onLeaseAdded for every live lease. */
  addListener(listener: LeaseListener, replayExisting = true): void {
    this.#listeners.add(listener);
    if (replayExisting) for (const lease of this.leases()) listener.onLeaseAdded(lease, 'granted');
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

  /** Leases block (already taken from the pool) to host, durably; gives the block back if the write fails. */
  #grant(
    host: HostAddress,
    kind: ResourceKind,
    block: Block,
    leaseSeconds: number,
    origin: LeaseOrigin,
    txid: number | undefined,
    fp: string,
  ): LeaseAnswer {
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
      lease: this.#record(lease),
      ...(origin === 'reclaimed' ? { reclaim: true as const } : {}),
      ...cause(txid, fp),
    };
    try {
      this.#store.append(change);
    } catch (e) {
      this.#poolOf(kind, block.lowest)?.release(block.lowest, block.count);
      throw e;
    }
    this.#leases.add(lease);
    this.#afterChange();
    for (const l of this.#listeners) l.onLeaseAdded(lease, origin);
    return answerOfEntry(change, this.epoch);
  }

  #extend(lease: LeaseEntry, leaseSeconds: number, txid: number | undefined, fp: string): LeaseAnswer {
    const now = this.#clock.now();
    const expiresAt = now + leaseSeconds * 1000;
    const change: JournalChange = {
      op: 'renew',
      at: now,
      kind: lease.kind,
      host: lease.host,
      ...this.#placed(lease.kind, lease.lowest),
      count: lease.count,
      expiresAt,
      leaseSeconds,
      ...cause(txid, fp),
    };
    this.#store.append(change);
    this.#leases.extend(lease, expiresAt, leaseSeconds);
    this.#afterChange();
    for (const l of this.#listeners) l.onLeaseRenewed?.(lease);
    return answerOfEntry(change, this.epoch);
  }

  #heldExactly(host: HostAddress, kind: ResourceKind, lowest: number, count: number): LeaseEntry | undefined {
    const lease = this.#leases.find(kind, lowest);
    return lease !== undefined && lease.host === host && lease.lowest === lowest && lease.count === count
      ? lease
      : undefined;
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
      const quarantine = { ...q, ...this.#placed(q.kind, q.lowest) };
      const change: JournalChange = { op: 'end', at: now, reason, quarantine, ...cause(txid, fp) };
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
      this.#poolOf(q.kind, q.lowest)?.release(q.lowest, q.count);
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
    const lowest = this.#slotOf(r.kind, r.lowest, r.address);
    if (lowest === undefined) {
      notes.push(
        `restored ${r.kind} lease ${r.lowest}+${r.count} of ${r.host} on ${r.address}, an address not served: dropped`,
      );
      return;
    }
    if (!this.#poolOf(r.kind, lowest)?.reserve(lowest, r.count)) {
      notes.push(`restored ${r.kind} lease ${r.lowest}+${r.count} of ${r.host} overlaps another: dropped`);
      return;
    }
    this.#leases.add(
      new LeaseEntry(r.kind, r.host, lowest, r.count, r.grantedAt, r.expiresAt, r.leaseSeconds),
    );
  }

  #restoreQuarantine(r: QuarantineRecord, notes: string[]): void {
    const lowest = this.#slotOf(r.kind, r.lowest, r.address);
    // A block of an address no longer served has nobody to keep it from.
    if (lowest === undefined) return;
    if (!this.#poolOf(r.kind, lowest)?.reserve(lowest, r.count)) {
      notes.push(`restored ${r.kind} quarantine ${r.lowest}+${r.count} overlaps a lease: dropped`);
      return;
    }
    const { address: _, ...q } = r;
    this.#quarantine.add({ ...q, lowest });
  }

  #snapshot(): Omit<Snapshot, 'seq'> {
    const now = this.#clock.now();
    const holdOffUntil = this.holdOffUntil;
    return {
      format: 'distnat-leases',
      version: 1,
      epoch: this.epoch,
      savedAt: now,
      ...(holdOffUntil === undefined ? {} : { holdOffUntil }),
      leases: this.leases().map((l) => this.#record(l)),
      quarantine: this.#quarantine.list().map((q) => ({ ...q, ...this.#placed(q.kind, q.lowest) })),
      answers: this.#answers.live(now),
    };
  }

  #failure(status: LeaseStatus, kind: ResourceKind, lowest: number, count: number): LeaseAnswer {
    const placed = this.#placed(kind, lowest);
    return { status, kind, ...placed, count, leaseSeconds: 0, expiresAt: 0, epoch: this.epoch };
  }

  #record(l: Lease): LeaseRecord {
    return { ...toRecord(l), ...this.#placed(l.kind, l.lowest) };
  }

  /** Counts for `distnat status`. */
  stats(): Record<string, number> {
    const q = { port: 0, spi: 0 };
    for (const r of this.#quarantine.list()) q[r.kind] += r.count;
    const until = this.holdOffUntil;
    const out: Record<string, number> = {
      hosts: this.#leases.hostCount,
      compact_failures: this.#compactFailures,
      hold_off_seconds_left: until === undefined ? 0 : Math.ceil((until - this.#clock.now()) / 1000),
    };
    for (const k of KINDS) {
      out[`${k}_leases`] = this.#leases.count(k);
      out[`${k}_free`] = this.free(k);
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
