import { randomInt } from 'node:crypto';
import type { Etcd3, ICompare, IKeyValue, Watcher } from 'etcd3';
import type { Clock, Timer } from '../util/clock.ts';
import type { Block, ResourceKind } from '../util/block.ts';
import { addressIndexOfSlot, PORT_SPACE, portOfSlot, portSlot } from '../util/block.ts';
import { AnswerCache } from './answer-cache.ts';
import { MAX_BLOCK } from './block.ts';
import type { LeaseBook } from './lease-book.ts';
import type { LeaseConfig, LeaseTableOptions, RenewParams, RequestParams } from './lease-config.ts';
import { clampLease, resolveLeaseConfig } from './lease-config.ts';
import { LeaseEntry, LeaseIndex } from './lease-index.ts';
import type { QuarantineRecord } from './journal.ts';
import type { HostAddress, Lease, LeaseAnswer, LeaseEndReason, LeaseListener, LeaseStatus } from './lease.ts';
import { ResourcePool } from './resource-pool.ts';
import type { QuarantinedBlock, SharedBlock, SkipReason } from './shared-lease-layout.ts';
import {
  KINDS,
  blockKey,
  encodeBlock,
  epochKey,
  overlapRange,
  parseBlock,
  parseKey,
} from './shared-lease-layout.ts';

export interface SharedLeaseTableOptions extends Omit<
  LeaseTableOptions,
  'store' | 'withoutState' | 'holdOffSeconds' | 'compactEvery'
> {
  readonly client: Etcd3;
  /**
   * Key prefix of the first shared address's leases, ending in '/'. The
   * epoch and the SPIs (one space for every address, docs/router.md) live
   * under it too.
   */
  readonly prefix: string;
  /**
   * With several shared addresses (`addresses`, first first): the key prefix
   * of each, the first being `prefix`. Port leases of the address at index i
   * are slots i x 65536 + port (util/block.ts), as in the journal's table.
   * Default: [prefix].
   */
  readonly prefixes?: readonly string[];
  /**
   * Where in each range the first-fit search for a free block starts (0 to
   * 1, wrapping round): routers that share the table start at different
   * places, so they grant side by side instead of all reaching for the same
   * lowest free block and failing each other's compares. Default 0.
   */
  readonly searchFrom?: number;
  /** Names this router in the values it writes. */
  readonly routerId?: string;
  /**
   * How far the routers' clocks may disagree. A lease counts as expired, and
   * a quarantine as over, only this long after the time written in etcd, so
   * a router whose clock runs ahead never ends another's lease early.
   */
  readonly clockSkewMs?: number;
  /** Between sweeps for expired leases and finished quarantines. Default 1000 ms. */
  readonly sweepMs?: number;
  /** Tries of one grant when other routers' changes keep getting in the way. Default 32. */
  readonly maxAttempts?: number;
  /** Told of every key under the prefix that is skipped. */
  readonly onSkip?: (key: string, reason: SkipReason) => void;
  /** Told when etcd stops or starts answering. */
  readonly onAvailability?: (available: boolean, error?: string) => void;
}

/** One key of the prefix as this router last saw it. */
interface Entry {
  readonly kind: ResourceKind;
  readonly lowest: number;
  readonly count: number;
  /** etcd's mod_revision of what is known; older news of the key is ignored. */
  mod: number;
  /** etcd's create_revision: the key's incarnation, whose count never changes. */
  create: number;
  lease: LeaseEntry | undefined;
  quarantine: (QuarantineRecord & { reason: LeaseEndReason }) | undefined;
}

/** One shared address's keys: its prefix and the watch on it. */
interface Space {
  /** The address's index: its port slots are index x 65536 + port. */
  readonly index: number;
  readonly prefix: string;
  /** The revision up to which the watch on the prefix has delivered every change. */
  rev: number;
  watcher: Watcher | undefined;
}

interface Pending extends Block {
  readonly kind: ResourceKind;
  readonly host: HostAddress;
}

/** What a txn's failure branch read back, and at which revision. */
type TxnResult =
  | { succeeded: true; revision: number }
  | {
      succeeded: false;
      kvs: IKeyValue[];
      revision: number;
      space: Space;
      range?: { start: string; end: string };
    };

/** Compares one grant may carry; etcd refuses a txn of more than 128 (--max-txn-ops). */
const MAX_COMPARES = 100;

/**
 * A renewal of a lease with at least this share of the asked lifetime left
 * is answered without a write. Renewals at half the lease (host-leases.ts)
 * are always written; failover probes every second only once the lease has
 * lost a quarter: a 300 s lease is written every 75 s by an idle host.
 */
const UNWRITTEN_RENEWAL_SHARE = 0.75;

/**
 * The leases of one shared address, kept in etcd and shared by every router
 * that serves it (docs/multi-router.md). etcd decides; each router keeps a
 * view of the prefix, fed by a watch, that its listeners (the forwarding
 * tables, the eBPF maps, the local CA) follow, so a lease granted through any
 * router is forwarded by all and a withdrawal anywhere stops it everywhere.
 *
 * Every change is one etcd transaction that compares what this router based
 * it on:
 * - a grant of [lowest, lowest + count) compares that no key of the range
 *   that could overlap it (shared-lease-layout.ts) changed after the view's
 *   revision, which the view shows free: under etcd's linearizable
 *   transactions two routers can never both win an overlapping block, partition
 *   or not;
 * - renewal, release, withdrawal, the end of an expired lease and of a
 *   quarantine compare the key's mod_revision with the one the view holds.
 * A failed compare reads the range back, and the grant is tried again on
 * the newer view.
 *
 * Expiry is not an etcd lease: the expiry time is in the value and every
 * router sweeps (quarantine from the expiry, then delete), each with a
 * compare-and-swap, so whichever router is alive does it and a router that
 * died takes nothing with it. Clock skew is allowed for by clockSkewMs.
 *
 * When etcd does not answer, requests get try-later (counted); the view
 * keeps forwarding what it knows until the leases expire by this router's
 * clock.
 */
export class SharedLeaseTable implements LeaseBook {
  readonly epoch: number;
  /** The leases live in etcd: a router restart never loses them. */
  readonly recovered = true;
  readonly holdOffUntil: number | undefined = undefined;
  readonly prefix: string;

  readonly #client: Etcd3;
  readonly #clock: Clock;
  readonly #config: LeaseConfig;
  readonly #routerId: string;
  readonly #skewMs: number;
  readonly #maxAttempts: number;
  readonly #opts: SharedLeaseTableOptions;
  /** Every shared address's keys, first first; the SPIs and the epoch are under the first. */
  readonly #spaces: readonly Space[];
  /** The shared addresses by index, as answers name them (the first by none). */
  readonly #addresses: readonly string[];
  readonly #searchFrom: number;
  readonly #entries = new Map<string, Entry>();
  readonly #leases = new LeaseIndex();
  readonly #pending = new Set<Pending>();
  readonly #answers: AnswerCache;
  readonly #inFlight = new Map<string, Promise<LeaseAnswer>>();
  readonly #listeners = new Set<LeaseListener>();
  /**
   * Keys under the prefix that are no block this router can read. They
   * lease nothing, but a grant still compares them (unchanged), and keeps off
   * the value a block key names, so the key stays for the operator to see.
   */
  readonly #skipped = new Map<
    string,
    { reason: SkipReason; create: number; kind?: ResourceKind; lowest?: number }
  >();
  readonly #waiters: { space: Space; rev: number; resolve: () => void }[] = [];
  /** Keys a read-back found deleted before the watch said so, with the revision of the read. */
  readonly #tombstones = new Map<string, number>();
  /** One grant of each kind at a time: the next is chosen on a view that holds the last. */
  readonly #grants: Record<ResourceKind, Promise<unknown>> = {
    port: Promise.resolve(),
    spi: Promise.resolve(),
  };
  /** SPIs: one pool. Ports: one per shared address, over that address's slots. */
  #pools: { spi: ResourcePool; port: ResourcePool[] } | undefined;
  #timer: Timer | undefined;
  #sweeping = false;
  #available = true;
  #closed = false;
  readonly counters = {
    /** Keys under the prefix that were skipped, by reason (each key once). */
    skipped: { 'foreign-key': 0, 'corrupt-value': 0, 'out-of-range': 0 } as Record<SkipReason, number>,
    /** Requests answered try-later because etcd did not answer. */
    unavailable: 0,
    /** Transactions whose compare failed because another router changed the range first. */
    conflicts: 0,
    /** Expired leases and finished quarantines this router ended in etcd. */
    swept: 0,
    /** Watch events that named a block overlapping another one the view holds (never written by a router). */
    overlapping: 0,
    /** Renewals answered from the view, the lease having most of its time left (no transaction). */
    unwrittenRenewals: 0,
  };

  private constructor(o: SharedLeaseTableOptions, epoch: number, revisions: readonly number[]) {
    this.#opts = o;
    this.#client = o.client;
    this.#clock = o.clock;
    this.prefix = o.prefix;
    this.#config = resolveLeaseConfig(o);
    this.#routerId = o.routerId ?? '';
    this.#skewMs = o.clockSkewMs ?? 2000;
    this.#maxAttempts = o.maxAttempts ?? 32;
    this.#answers = new AnswerCache(o.answerCache);
    this.epoch = epoch;
    const prefixes = o.prefixes ?? [o.prefix];
    this.#spaces = prefixes.map((prefix, index) => ({
      index,
      prefix,
      rev: revisions[index]!,
      watcher: undefined,
    }));
    this.#addresses = o.addresses ?? [];
    this.#searchFrom = o.searchFrom ?? 0;
  }

  /**
   * Reads the epoch (made by the first router) and every block under the
   * prefix, then watches the prefix from there. Throws when etcd does not
   * answer.
   */
  static async open(o: SharedLeaseTableOptions): Promise<SharedLeaseTable> {
    const kv = o.client.kv;
    const prefixes = o.prefixes ?? [o.prefix];
    if (prefixes[0] !== o.prefix) throw new Error(`prefixes[0] ${prefixes[0]} is not prefix ${o.prefix}`);
    if (prefixes.length > PORT_SPACE) throw new Error('too many shared addresses');
    const ek = Buffer.from(epochKey(o.prefix));
    const fresh = String(randomInt(1, 0x100000000));
    // The first router writes the epoch; everyone else reads the one there.
    const made = await kv.txn({
      compare: [{ key: ek, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: ek, value: Buffer.from(fresh) } }],
      failure: [{ request_range: { key: ek } }],
    });
    const text = made.succeeded ? fresh : made.responses[0]?.response_range?.kvs[0]?.value.toString();
    const epoch = Number(text);
    if (!Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff)
      throw new Error(`${epochKey(o.prefix)} holds ${JSON.stringify(text)}, not an epoch (1 to 2^32-1)`);
    // Each address's keys are read, and then watched, on their own: no key is under two prefixes.
    const reads = await Promise.all(
      prefixes.map((p) => kv.range({ key: Buffer.from(p), range_end: prefixEnd(p) })),
    );
    const table = new SharedLeaseTable(
      o,
      epoch,
      reads.map((r) => Number(r.header.revision)),
    );
    for (const read of reads) for (const item of read.kvs) table.#apply(item, false);
    for (const space of table.#spaces) await table.#watch(space);
    table.#arm();
    return table;
  }

  /** The etcd client, for what else the routers keep beside the leases (the revocation list). */
  get client(): Etcd3 {
    return this.#client;
  }

  /** Whether etcd answered the last call. */
  get available(): boolean {
    return this.#available;
  }

  /** The revision up to which the watches have delivered every change of every address's prefix. */
  get revision(): number {
    return Math.min(...this.#spaces.map((s) => s.rev));
  }

  request(host: HostAddress, kind: ResourceKind, params: RequestParams = {}): Promise<LeaseAnswer> {
    const count = Math.min(params.count || this.#config.blockSize[kind], MAX_BLOCK[kind]);
    const preference = kind === 'port' ? (params.preference ?? 'low') : 'low';
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const address = kind === 'port' ? (params.address ?? 0) : 0;
    const fp = `request:${kind}:${count}:${preference}:${leaseSeconds}${address === 0 ? '' : `:${address}`}`;
    return this.#answerOnce(host, params.txid, fp, () =>
      this.#serially(kind, async () => {
        for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
          const room = this.#config.maxPerHost[kind] - this.held(host, kind) - this.#pendingOf(host, kind);
          if (room <= 0) return this.#failure('quota-exceeded', kind, 0, 0);
          const block = this.#pool(kind, address)?.allocate(
            Math.min(count, room),
            preference,
            this.#searchFrom,
          );
          if (block === undefined) return this.#failure('pool-exhausted', kind, 0, 0);
          const now = this.#clock.now();
          const value: SharedBlock = {
            state: 'leased',
            host,
            count: block.count,
            grantedAt: now,
            expiresAt: now + leaseSeconds * 1000,
            leaseSeconds,
            ...(this.#routerId ? { by: this.#routerId } : {}),
          };
          const pending: Pending = { kind, host, ...block };
          this.#pending.add(pending);
          let result: TxnResult;
          try {
            result = await this.#grantTxn(kind, block, value);
          } catch (e) {
            return this.#unreachable(kind, e);
          } finally {
            this.#pending.delete(pending);
            this.#pools = undefined;
          }
          if (result.succeeded) {
            this.#putEntry(kind, block.lowest, value, result.revision, result.revision);
            return this.#okAnswer(kind, block.lowest, block.count, leaseSeconds, value.expiresAt);
          }
          await this.#learn(result);
        }
        return this.#busy(kind, 0, 0);
      }),
    );
  }

  #serially<T>(kind: ResourceKind, f: () => Promise<T>): Promise<T> {
    const run = this.#grants[kind].then(f, f);
    this.#grants[kind] = run.catch(() => undefined);
    return run;
  }

  renew(
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
    params: RenewParams = {},
  ): Promise<LeaseAnswer> {
    const leaseSeconds = clampLease(this.#config, params.leaseSeconds);
    const fp = `renew:${kind}:${lowest}:${count}:${leaseSeconds}`;
    return this.#answerOnce(host, params.txid, fp, () =>
      this.#change(kind, lowest, count, (e) => {
        const l = e.lease;
        if (l === undefined || l.host !== host || e.lowest !== lowest || e.count !== count)
          return this.#failure('unknown-lease', kind, lowest, count);
        const now = this.#clock.now();
        // A lease with most of its time left is not written again: an idle host that
        // lists several routers renews every second as a probe (router-failover.ts), and
        // a write per probe would be one etcd transaction per host per second. The
        // answer gives the time etcd already holds, never more, so the host renews
        // before it runs out. Cut off from etcd, the view may be stale: write (and fail).
        const left = l.expiresAt - now;
        if (this.#available && left >= leaseSeconds * 1000 * UNWRITTEN_RENEWAL_SHARE) {
          this.counters.unwrittenRenewals++;
          return this.#okAnswer(kind, lowest, count, Math.floor(left / 1000), l.expiresAt);
        }
        const value: SharedBlock = {
          state: 'leased',
          host,
          count,
          grantedAt: l.grantedAt,
          expiresAt: now + leaseSeconds * 1000,
          leaseSeconds,
          ...(this.#routerId ? { by: this.#routerId } : {}),
        };
        return {
          value,
          answer: this.#okAnswer(kind, lowest, count, leaseSeconds, value.expiresAt),
        };
      }),
    );
  }

  /** There is no hold-off with etcd (its state is not lost with a router), so nothing is reclaimed. */
  reclaim(host: HostAddress, kind: ResourceKind, lowest: number, count: number): Promise<LeaseAnswer> {
    return Promise.resolve(this.#failure('unknown-lease', kind, lowest, count));
  }

  release(
    host: HostAddress,
    kind: ResourceKind,
    value: number,
    params: { readonly txid?: number } = {},
  ): Promise<LeaseAnswer> {
    const fp = `release:${kind}:${value}`;
    return this.#answerOnce(host, params.txid, fp, () => {
      const lease = this.#leases.find(kind, value);
      if (lease === undefined || lease.host !== host)
        return Promise.resolve(this.#failure('unknown-lease', kind, value, 0));
      return this.#change(kind, lease.lowest, lease.count, (e) => {
        if (e.lease === undefined || e.lease.host !== host)
          return this.#failure('unknown-lease', kind, value, 0);
        return {
          value: this.#quarantineOf(e, 'released', this.#clock.now()),
          answer: this.#okAnswer(kind, e.lowest, e.count, 0, 0),
        };
      });
    });
  }

  /** Takes a block back from its holder. Undefined if no lease starts at lowest, or etcd did not take the change. */
  async withdraw(kind: ResourceKind, lowest: number): Promise<Lease | undefined> {
    const lease = this.#leases.find(kind, lowest);
    if (lease === undefined || lease.lowest !== lowest) return undefined;
    const answer = await this.#change(kind, lowest, lease.count, (e) => {
      if (e.lease === undefined) return this.#failure('unknown-lease', kind, lowest, 0);
      return {
        value: this.#quarantineOf(e, 'withdrawn', this.#clock.now()),
        answer: this.#okAnswer(kind, lowest, e.count, 0, 0),
      };
    });
    return answer.status === 'ok' ? lease : undefined;
  }

  find(kind: ResourceKind, value: number): Lease | undefined {
    return this.#leases.find(kind, value);
  }

  ownerOf(kind: ResourceKind, value: number): HostAddress | undefined {
    return this.#leases.find(kind, value)?.host;
  }

  leasesOf(host: HostAddress): Lease[] {
    return this.#leases.leasesOf(host);
  }

  leases(): Lease[] {
    return this.#leases.all();
  }

  quarantined(): QuarantineRecord[] {
    const out: QuarantineRecord[] = [];
    for (const e of this.#entries.values()) {
      const q = e.quarantine;
      if (q !== undefined)
        out.push({ kind: q.kind, host: q.host, lowest: q.lowest, count: q.count, until: q.until });
    }
    return out.sort((a, b) => a.until - b.until || a.lowest - b.lowest);
  }

  held(host: HostAddress, kind: ResourceKind): number {
    return this.#leases.held(host, kind);
  }

  /** Values of kind free to be granted now, on every shared address. */
  free(kind: ResourceKind): number {
    if (kind === 'spi') return this.#pool('spi')!.free;
    let n = 0;
    for (let i = 0; i < this.#spaces.length; i++) n += this.#pool('port', i)!.free;
    return n;
  }

  /** Ports free to be granted now on the shared address at `addressIndex`. */
  freePorts(addressIndex: number): number {
    return this.#pool('port', addressIndex)?.free ?? 0;
  }

  addListener(listener: LeaseListener, replayExisting = true): void {
    this.#listeners.add(listener);
    if (replayExisting) for (const lease of this.leases()) listener.onLeaseAdded(lease, 'granted');
  }

  removeListener(listener: LeaseListener): void {
    this.#listeners.delete(listener);
  }

  /** Ends expired leases in the view now and in etcd (a timer does this every sweepMs). */
  async sweep(): Promise<void> {
    if (this.#sweeping || this.#closed) return;
    this.#sweeping = true;
    try {
      const now = this.#clock.now();
      const cutoff = now - this.#skewMs;
      for (let l = this.#leases.takeExpired(cutoff); l !== undefined; l = this.#leases.takeExpired(cutoff)) {
        const key = this.#keyOf(l.kind, l.lowest)!;
        const e = this.#entries.get(key)!;
        // Off the forwarding tables by this router's clock, whether or not etcd answers.
        const q = this.#quarantineOf(e, 'expired', l.expiresAt);
        this.#setQuarantine(e, q);
        await this.#sweepTxn(key, e.mod, encodeBlock(q));
        if (this.#closed) return;
      }
      for (const [key, e] of [...this.#entries]) {
        if (this.#closed) return;
        if (e.quarantine !== undefined && e.quarantine.until <= cutoff)
          await this.#sweepTxn(key, e.mod, undefined);
      }
    } finally {
      this.#sweeping = false;
    }
  }

  /** Waits until the watch of an address's prefix (default the first's) has delivered every change up to revision (or timeoutMs passed). */
  waitFor(revision: number, timeoutMs = 5000, address = 0): Promise<boolean> {
    const space = this.#spaces[address];
    if (space === undefined || space.rev >= revision) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(false);
      }, timeoutMs);
      const w = {
        space,
        rev: revision,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.#waiters.push(w);
    });
  }

  /** Stops the watch and the sweeps; the leases stay in etcd. The client is the caller's to close. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const space of this.#spaces) {
      const w = space.watcher;
      space.watcher = undefined;
      await w?.cancel().catch(() => undefined);
    }
    for (const waiter of this.#waiters.splice(0)) waiter.resolve();
  }

  stats(): Record<string, number> {
    const q = { port: 0, spi: 0 };
    for (const r of this.quarantined()) q[r.kind] += r.count;
    const out: Record<string, number> = {
      hosts: this.#leases.hostCount,
      hold_off_seconds_left: 0,
      etcd_available: this.#available ? 1 : 0,
      etcd_revision: this.revision,
      etcd_unavailable_refusals: this.counters.unavailable,
      etcd_conflicts: this.counters.conflicts,
      etcd_swept: this.counters.swept,
      etcd_overlapping_events: this.counters.overlapping,
      etcd_unwritten_renewals: this.counters.unwrittenRenewals,
    };
    for (const [reason, n] of Object.entries(this.counters.skipped))
      out[`etcd_skipped_${reason.replaceAll('-', '_')}`] = n;
    for (const k of KINDS) {
      out[`${k}_leases`] = this.#leases.count(k);
      out[`${k}_free`] = this.free(k);
      out[`${k}_quarantined`] = q[k];
    }
    return out;
  }

  // ---- transactions

  /**
   * The grant: put the block only if no block that could overlap it exists
   * in etcd but the ones the view knows, each still the same incarnation
   * (create_revision; a block never changes its count in place). Those the
   * view knows do not overlap it (it was chosen free), so none does.
   */
  async #grantTxn(kind: ResourceKind, block: Block, value: SharedBlock): Promise<TxnResult> {
    const space = this.#spaceOfValue(kind, block.lowest)!;
    const lowest = kind === 'port' ? portOfSlot(block.lowest) : block.lowest;
    const r = overlapRange(space.prefix, kind, lowest, block.count);
    const compare = this.#overlapCompares(space, r);
    const range = { key: Buffer.from(r.start), range_end: Buffer.from(r.end) };
    const res = await this.#client.kv.txn({
      compare,
      success: [
        {
          request_put: {
            key: Buffer.from(blockKey(space.prefix, kind, lowest)),
            value: encodeBlock(value),
          },
        },
      ],
      failure: [{ request_range: range }],
    });
    this.#setAvailable(true);
    const revision = Number(res.header.revision);
    if (res.succeeded) return { succeeded: true, revision };
    this.counters.conflicts++;
    return {
      succeeded: false,
      kvs: res.responses[0]?.response_range?.kvs ?? [],
      revision,
      space,
      range: r,
    };
  }

  /**
   * For each key the view holds in [start, end): its create_revision is
   * unchanged; for each stretch between them: no key at all. With too many
   * known keys for one txn, the range is compared as a whole instead: nothing
   * in it created after the watch's revision (the view then holds all of it).
   */
  #overlapCompares(space: Space, r: { start: string; end: string }): ICompare[] {
    const known: [string, { create: number }][] = [...this.#entries.entries(), ...this.#skipped.entries()]
      .filter(([key]) => key >= r.start && key < r.end)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    if (2 * known.length + 1 > MAX_COMPARES)
      return [
        {
          key: Buffer.from(r.start),
          range_end: Buffer.from(r.end),
          target: 'Create',
          result: 'Less',
          create_revision: space.rev + 1,
        },
      ];
    const compare: ICompare[] = [];
    let from = r.start;
    for (const [key, e] of known) {
      if (from < key) compare.push(emptyRange(from, key));
      compare.push({ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: e.create });
      from = `${key}\u0000`;
    }
    if (from < r.end) compare.push(emptyRange(from, r.end));
    return compare;
  }

  /** Replaces the value of the key at (kind, lowest) only if it is still what the view holds. */
  async #casTxn(key: string, mod: number, value: Buffer | undefined): Promise<TxnResult> {
    const k = Buffer.from(key);
    const res = await this.#client.kv.txn({
      compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: mod }],
      success: [
        value === undefined ? { request_delete_range: { key: k } } : { request_put: { key: k, value } },
      ],
      failure: [{ request_range: { key: k } }],
    });
    this.#setAvailable(true);
    const revision = Number(res.header.revision);
    if (res.succeeded) return { succeeded: true, revision };
    this.counters.conflicts++;
    return {
      succeeded: false,
      kvs: res.responses[0]?.response_range?.kvs ?? [],
      revision,
      space: this.#spaceOf(key)!,
      range: { start: key, end: `${key}\u0000` },
    };
  }

  /**
   * A renewal, release or withdrawal of the block at (kind, lowest): decide
   * on the view's entry, write it with a compare on the entry's revision,
   * and decide again on what etcd had instead if that failed.
   */
  async #change(
    kind: ResourceKind,
    lowest: number,
    count: number,
    decide: (e: Entry) => LeaseAnswer | { value: SharedBlock; answer: LeaseAnswer },
  ): Promise<LeaseAnswer> {
    const key = this.#keyOf(kind, lowest);
    if (key === undefined) return this.#failure('unknown-lease', kind, lowest, count);
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      const e = this.#entries.get(key);
      if (e === undefined) return this.#failure('unknown-lease', kind, lowest, count);
      const d = decide(e);
      if (!('value' in d)) return d;
      let result: TxnResult;
      try {
        result = await this.#casTxn(key, e.mod, encodeBlock(d.value));
      } catch (err) {
        return this.#unreachable(kind, err, lowest, count);
      }
      if (result.succeeded) {
        this.#putEntry(kind, lowest, d.value, result.revision, e.create);
        return d.answer;
      }
      await this.#learn(result);
    }
    return this.#busy(kind, lowest, count);
  }

  async #sweepTxn(key: string, mod: number, value: Buffer | undefined): Promise<void> {
    if (!this.#available) return;
    try {
      const result = await this.#casTxn(key, mod, value);
      if (result.succeeded) {
        this.counters.swept++;
        const e = this.#entries.get(key);
        if (value === undefined) {
          if (e !== undefined && e.mod === mod) this.#removeEntry(key, e, 'expired');
        } else if (e !== undefined)
          this.#putEntry(
            e.kind,
            e.lowest,
            JSON.parse(value.toString()) as SharedBlock,
            result.revision,
            e.create,
          );
      } else await this.#learn(result);
    } catch (err) {
      this.#setAvailable(false, (err as Error).message);
    }
  }

  /**
   * Takes what a failed compare read back into the view: keys newer than the
   * view's, and keys the view holds in the range that are gone (remembered as
   * tombstones, so the watch's older news of them is not taken back in).
   */
  async #learn(result: Extract<TxnResult, { succeeded: false }>): Promise<void> {
    let newest = 0;
    const seen = new Set<string>();
    for (const kv of result.kvs) {
      seen.add(kv.key.toString());
      this.#apply(kv, true);
      newest = Math.max(newest, Number(kv.create_revision));
    }
    const r = result.range;
    if (r !== undefined)
      for (const [key, e] of [...this.#entries])
        if (key >= r.start && key < r.end && !seen.has(key) && e.mod < result.revision) {
          this.#tombstones.set(key, result.revision);
          this.#removeEntry(key, e, 'withdrawn');
        }
    if (r !== undefined)
      for (const key of [...this.#skipped.keys()])
        if (key >= r.start && key < r.end && !seen.has(key)) {
          this.#skipped.delete(key);
          this.#pools = undefined;
        }
    // Only the whole-range compare depends on the watch: it must have passed what was read.
    if (newest > result.space.rev) await this.waitFor(newest, 2000, result.space.index);
  }

  // ---- the view

  async #watch(space: Space): Promise<void> {
    const w = await this.#client
      .watch()
      .prefix(space.prefix)
      .startRevision(String(space.rev + 1))
      .create();
    space.watcher = w;
    w.on('data', (res) => {
      let newest = space.rev;
      for (const ev of res.events) {
        if (ev.type === 'Delete') this.#applyDelete(ev.kv);
        else this.#apply(ev.kv, true);
        newest = Math.max(newest, Number(ev.kv.mod_revision));
      }
      this.#advance(space, newest);
    });
    w.on('connected', () => this.#setAvailable(true));
    w.on('disconnected', (err) => this.#setAvailable(false, err.message));
    w.on('error', (err) => {
      // The watch cannot go on (etcd's history compacted past it, say): read afresh at the next tick.
      this.#setAvailable(false, err.message);
      if (space.watcher === w) space.watcher = undefined;
      void w.cancel().catch(() => undefined);
    });
  }

  #advance(space: Space, rev: number): void {
    if (rev <= space.rev) return;
    space.rev = rev;
    for (const [key, at] of this.#tombstones)
      if (at <= rev && key.startsWith(space.prefix)) this.#tombstones.delete(key);
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      if (w.space === space && w.rev <= rev) {
        this.#waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** A put seen in etcd (the initial read, the watch, or a failed compare's read-back). */
  #apply(kv: IKeyValue, notify: boolean): void {
    const key = kv.key.toString();
    const mod = Number(kv.mod_revision);
    const space = this.#spaceOf(key);
    if (space === undefined) return;
    const parsed = parseKey(space.prefix, key);
    if (parsed.what === 'epoch' || parsed.what === 'crl') return;
    const create = Number(kv.create_revision);
    // SPIs are one space for every address, kept under the first's prefix: one elsewhere is no block of ours.
    if (parsed.what === 'foreign' || (parsed.kind === 'spi' && space.index > 0))
      return this.#skip(key, 'foreign-key', create);
    const lowest = parsed.kind === 'port' ? portSlot(space.index, parsed.lowest) : parsed.lowest;
    const block = parseBlock(parsed.kind, parsed.lowest, kv.value);
    if (!block.ok) {
      const old = this.#entries.get(key);
      if (old !== undefined && old.mod < mod) this.#removeEntry(key, old, 'withdrawn');
      return this.#skip(key, block.reason, create, parsed.kind, lowest);
    }
    const old = this.#entries.get(key);
    if (old !== undefined && old.mod >= mod) return;
    if ((this.#tombstones.get(key) ?? 0) >= mod) return;
    this.#skipped.delete(key);
    this.#putEntry(parsed.kind, lowest, block.block, mod, Number(kv.create_revision), notify);
  }

  #applyDelete(kv: IKeyValue): void {
    const key = kv.key.toString();
    this.#skipped.delete(key);
    const e = this.#entries.get(key);
    if (e === undefined || e.mod >= Number(kv.mod_revision)) return;
    // A lease deleted outright (by hand): taken as withdrawn.
    this.#removeEntry(key, e, 'withdrawn');
  }

  #skip(key: string, reason: SkipReason, create: number, kind?: ResourceKind, lowest?: number): void {
    const was = this.#skipped.get(key);
    this.#skipped.set(key, { reason, create, ...(kind === undefined ? {} : { kind, lowest }) });
    this.#pools = undefined;
    if (was?.reason === reason) return;
    this.counters.skipped[reason]++;
    this.#opts.onSkip?.(key, reason);
  }

  /** Enters a block as etcd now holds it at revision mod, telling the listeners what changed. */
  #putEntry(
    kind: ResourceKind,
    lowest: number,
    b: SharedBlock,
    mod: number,
    create: number,
    notify = true,
  ): void {
    const key = this.#keyOf(kind, lowest)!;
    const old = this.#entries.get(key);
    if (old !== undefined && old.mod >= mod) return;
    if (old !== undefined && (old.count !== b.count || old.create !== create)) {
      this.#removeEntry(key, old, 'withdrawn');
      return this.#putEntry(kind, lowest, b, mod, create, notify);
    }
    if (old === undefined && this.#overlapsView(kind, lowest, b.count)) {
      this.counters.overlapping++;
      return;
    }
    const e: Entry = old ?? {
      kind,
      lowest,
      count: b.count,
      mod,
      create,
      lease: undefined,
      quarantine: undefined,
    };
    e.mod = mod;
    this.#entries.set(key, e);
    this.#pools = undefined;
    if (b.state === 'leased') {
      const l = e.lease;
      if (l !== undefined && l.host === b.host) {
        if (l.expiresAt !== b.expiresAt || l.leaseSeconds !== b.leaseSeconds) {
          this.#leases.extend(l, b.expiresAt, b.leaseSeconds);
          if (notify) for (const x of this.#listeners) x.onLeaseRenewed?.(l);
        }
        return;
      }
      if (l !== undefined) this.#endLease(e, 'withdrawn');
      e.quarantine = undefined;
      const lease = new LeaseEntry(kind, b.host, lowest, b.count, b.grantedAt, b.expiresAt, b.leaseSeconds);
      e.lease = lease;
      this.#leases.add(lease);
      for (const x of this.#listeners) x.onLeaseAdded(lease, 'granted');
      return;
    }
    this.#setQuarantine(e, b);
  }

  #setQuarantine(e: Entry, q: QuarantinedBlock): void {
    if (e.lease !== undefined) this.#endLease(e, q.reason);
    e.quarantine = {
      kind: e.kind,
      host: q.host,
      lowest: e.lowest,
      count: e.count,
      until: q.until,
      reason: q.reason,
    };
  }

  #endLease(e: Entry, reason: LeaseEndReason): void {
    const l = e.lease!;
    e.lease = undefined;
    this.#leases.remove(l);
    for (const x of this.#listeners) x.onLeaseRemoved(l, reason);
  }

  #removeEntry(key: string, e: Entry, reason: LeaseEndReason): void {
    if (e.lease !== undefined) this.#endLease(e, reason);
    this.#entries.delete(key);
    this.#pools = undefined;
  }

  #overlapsView(kind: ResourceKind, lowest: number, count: number): boolean {
    for (const e of this.#entries.values())
      if (e.kind === kind && e.lowest < lowest + count && lowest < e.lowest + e.count) return true;
    return false;
  }

  #quarantineOf(e: Entry, reason: LeaseEndReason, endedAt: number): QuarantinedBlock {
    const host = e.lease?.host ?? e.quarantine?.host ?? '';
    return { state: 'quarantined', host, count: e.count, until: endedAt + this.#config.quarantineMs, reason };
  }

  /**
   * The free values of kind (ports: of the address at that index): neither in
   * the view nor asked for by a grant in flight. Rebuilt after any change.
   */
  #pool(kind: ResourceKind, address = 0): ResourcePool | undefined {
    if (this.#pools === undefined) {
      const ports = this.#config.portRange;
      const pools = {
        spi: new ResourcePool('spi', this.#config.spiRange),
        port: this.#spaces.map((_, i) => {
          const base = i * PORT_SPACE;
          return new ResourcePool('port', { min: base + ports.min, max: base + ports.max }, 1 + 2 * i, base);
        }),
      };
      const poolOf = (kind: ResourceKind, value: number): ResourcePool | undefined =>
        kind === 'spi' ? pools.spi : pools.port[addressIndexOfSlot(value)];
      for (const e of this.#entries.values()) poolOf(e.kind, e.lowest)?.reserve(e.lowest, e.count);
      for (const p of this.#pending) poolOf(p.kind, p.lowest)?.reserve(p.lowest, p.count);
      for (const k of this.#skipped.values())
        if (k.kind !== undefined) poolOf(k.kind, k.lowest!)?.reserve(k.lowest!, 1);
      this.#pools = pools;
    }
    return kind === 'spi' ? this.#pools.spi : this.#pools.port[address];
  }

  /** The address whose keys hold the block of kind at value (a port slot or an SPI). */
  #spaceOfValue(kind: ResourceKind, value: number): Space | undefined {
    return kind === 'spi' ? this.#spaces[0] : this.#spaces[addressIndexOfSlot(value)];
  }

  /** The address whose prefix key is under. */
  #spaceOf(key: string): Space | undefined {
    return this.#spaces.find((s) => key.startsWith(s.prefix));
  }

  /** The etcd key of the block of kind at lowest (a port slot or an SPI); undefined for a slot of no address. */
  #keyOf(kind: ResourceKind, lowest: number): string | undefined {
    const space = this.#spaceOfValue(kind, lowest);
    if (space === undefined) return undefined;
    return blockKey(space.prefix, kind, kind === 'port' ? portOfSlot(lowest) : lowest);
  }

  /** A port slot as answers give it: the port, and the address unless the first. */
  #placed(kind: ResourceKind, value: number): { lowest: number; address?: string } {
    if (kind === 'spi') return { lowest: value };
    const i = addressIndexOfSlot(value);
    const address = this.#addresses[i];
    return i === 0 ? { lowest: value } : { lowest: portOfSlot(value), ...(address ? { address } : {}) };
  }

  #pendingOf(host: HostAddress, kind: ResourceKind): number {
    let n = 0;
    for (const p of this.#pending) if (p.host === host && p.kind === kind) n += p.count;
    return n;
  }

  // ---- answers

  #answerOnce(
    host: HostAddress,
    txid: number | undefined,
    fp: string,
    compute: () => Promise<LeaseAnswer>,
  ): Promise<LeaseAnswer> {
    if (this.#closed) return Promise.reject(new Error('lease table is closed'));
    const now = this.#clock.now();
    if (txid === undefined) return compute();
    const cached = this.#answers.get(host, txid, fp, now);
    if (cached !== undefined) return Promise.resolve(cached);
    // A retransmission while the first copy's transaction is still in etcd: the same answer, once.
    const flight = `${host}\u0000${txid}\u0000${fp}`;
    const running = this.#inFlight.get(flight);
    if (running !== undefined) return running;
    const p = compute().then((answer) => {
      this.#answers.put({ host, txid, fp, at: this.#clock.now(), answer });
      return answer;
    });
    this.#inFlight.set(flight, p);
    void p.finally(() => this.#inFlight.delete(flight)).catch(() => undefined);
    return p;
  }

  #unreachable(kind: ResourceKind, e: unknown, lowest = 0, count = 0): LeaseAnswer {
    this.#setAvailable(false, (e as Error).message);
    this.counters.unavailable++;
    return { ...this.#failure('try-later', kind, lowest, count), leaseSeconds: 1 };
  }

  /** Other routers kept changing the range: the host asks again shortly. */
  #busy(kind: ResourceKind, lowest: number, count: number): LeaseAnswer {
    return { ...this.#failure('try-later', kind, lowest, count), leaseSeconds: 1 };
  }

  #setAvailable(available: boolean, error?: string): void {
    if (this.#available === available) return;
    this.#available = available;
    this.#opts.onAvailability?.(available, error);
  }

  #okAnswer(
    kind: ResourceKind,
    lowest: number,
    count: number,
    leaseSeconds: number,
    expiresAt: number,
  ): LeaseAnswer {
    return {
      status: 'ok',
      kind,
      ...this.#placed(kind, lowest),
      count,
      leaseSeconds,
      expiresAt,
      epoch: this.epoch,
    };
  }

  #failure(status: LeaseStatus, kind: ResourceKind, lowest: number, count: number): LeaseAnswer {
    return {
      status,
      kind,
      ...this.#placed(kind, lowest),
      count,
      leaseSeconds: 0,
      expiresAt: 0,
      epoch: this.epoch,
    };
  }

  #arm(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      void this.#tick();
    }, this.#opts.sweepMs ?? 1000);
  }

  async #tick(): Promise<void> {
    if (!this.#available) {
      // Ask etcd whether it is back; the answer (or error) sets availability.
      try {
        await this.#client.kv.range({ key: Buffer.from(epochKey(this.prefix)) });
        this.#setAvailable(true);
      } catch (e) {
        this.#setAvailable(false, (e as Error).message);
      }
    }
    for (const space of this.#spaces)
      if (space.watcher === undefined && !this.#closed) await this.#resync(space).catch(() => undefined);
    // Leases expire in the view by this router's clock even while etcd is away.
    await this.sweep().catch(() => undefined);
    this.#arm();
  }

  /** Reads an address's whole prefix again and watches from there: the view of it is etcd's as of that read. */
  async #resync(space: Space): Promise<void> {
    const all = await this.#client.kv.range({
      key: Buffer.from(space.prefix),
      range_end: prefixEnd(space.prefix),
    });
    const revision = Number(all.header.revision);
    const seen = new Set<string>();
    for (const kv of all.kvs) {
      seen.add(kv.key.toString());
      this.#apply(kv, true);
    }
    for (const [key, e] of [...this.#entries])
      if (key.startsWith(space.prefix) && !seen.has(key) && e.mod < revision) {
        this.#tombstones.set(key, revision);
        this.#removeEntry(key, e, 'withdrawn');
      }
    for (const key of [...this.#skipped.keys()])
      if (key.startsWith(space.prefix) && !seen.has(key)) this.#skipped.delete(key);
    this.#pools = undefined;
    this.#advance(space, revision);
    if (this.#closed) return;
    await this.#watch(space);
    this.#setAvailable(true);
  }
}

function emptyRange(start: string, end: string): ICompare {
  return {
    key: Buffer.from(start),
    range_end: Buffer.from(end),
    target: 'Version',
    result: 'Equal',
    version: 0,
  };
}

/** The end of the key range of every key starting with prefix. */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  let i = b.length - 1;
  while (i >= 0 && b[i] === 0xff) i--;
  if (i < 0) return Buffer.from([0]);
  const end = b.subarray(0, i + 1);
  end[i]!++;
  return end;
}
