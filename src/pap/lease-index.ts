import type { ResourceKind } from '../util/block.ts';
import { DeadlineHeap } from './deadline-heap.ts';
import type { QuarantineRecord } from './journal.ts';
import type { HostAddress, Lease } from './lease.ts';
import type { OwnerIndex } from './owner-index.ts';
import { SortedOwnerIndex } from './owner-index.ts';

/** A live lease; the same object from grant to end, so listeners may key by it. */
export class LeaseEntry implements Lease {
  live = true;
  constructor(
    readonly kind: ResourceKind,
    readonly host: HostAddress,
    readonly lowest: number,
    readonly count: number,
    readonly grantedAt: number,
    public expiresAt: number,
    public leaseSeconds: number,
  ) {}
}

interface HostState {
  readonly leases: Set<LeaseEntry>;
  readonly held: Record<ResourceKind, number>;
}

const byKindThenLowest = (a: { kind: ResourceKind; lowest: number }, b: typeof a): number =>
  a.kind === b.kind ? a.lowest - b.lowest : a.kind === 'port' ? -1 : 1;

/**
 * The live leases, findable by value (owner lookup), by host, and by expiry.
 * Renewals push a new expiry and leave the old heap entry to be skipped.
 */
export class LeaseIndex {
  readonly #owners: Record<ResourceKind, OwnerIndex<LeaseEntry>> = {
    port: new SortedOwnerIndex(),
    spi: new SortedOwnerIndex(),
  };
  readonly #hosts = new Map<HostAddress, HostState>();
  readonly #expiries = new DeadlineHeap<LeaseEntry>();

  add(lease: LeaseEntry): void {
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

  remove(lease: LeaseEntry): void {
    lease.live = false;
    this.#owners[lease.kind].remove(lease);
    const h = this.#hosts.get(lease.host)!;
    h.leases.delete(lease);
    h.held[lease.kind] -= lease.count;
    if (h.leases.size === 0) this.#hosts.delete(lease.host);
  }

  /** Records a new expiry for a live lease. */
  extend(lease: LeaseEntry, expiresAt: number, leaseSeconds: number): void {
    lease.expiresAt = expiresAt;
    lease.leaseSeconds = leaseSeconds;
    this.#expiries.push(expiresAt, lease);
  }

  find(kind: ResourceKind, value: number): LeaseEntry | undefined {
    return this.#owners[kind].find(value);
  }

  leasesOf(host: HostAddress): LeaseEntry[] {
    return [...(this.#hosts.get(host)?.leases ?? [])].sort(byKindThenLowest);
  }

  /** Every live lease, ports then SPIs, each ascending. */
  all(): LeaseEntry[] {
    const out: LeaseEntry[] = [];
    for (const h of this.#hosts.values()) out.push(...h.leases);
    return out.sort(byKindThenLowest);
  }

  held(host: HostAddress, kind: ResourceKind): number {
    return this.#hosts.get(host)?.held[kind] ?? 0;
  }

  count(kind: ResourceKind): number {
    return this.#owners[kind].size;
  }

  get hostCount(): number {
    return this.#hosts.size;
  }

  /** The earliest real expiry (stale heap entries are dropped on the way). */
  nextExpiry(): number | undefined {
    while (this.#expiries.size > 0) {
      const top = this.#expiries.peek()!;
      if (top.live && top.expiresAt === this.#expiries.peekTime()) return top.expiresAt;
      this.#expiries.pop();
    }
    return undefined;
  }

  /** A live lease whose expiry is at or before now, if any (it stays indexed until removed). */
  takeExpired(now: number): LeaseEntry | undefined {
    const next = this.nextExpiry();
    if (next === undefined || next > now) return undefined;
    return this.#expiries.pop();
  }
}

/**
 * Blocks that ended and are kept from everyone until their time is up
 * (RFC 6888 REQ-8: a port is not reused for a different host for 120 s).
 */
export class Quarantine {
  readonly #due = new DeadlineHeap<QuarantineRecord>();
  readonly #all = new Set<QuarantineRecord>();

  add(q: QuarantineRecord): void {
    const copy = { ...q };
    this.#due.push(copy.until, copy);
    this.#all.add(copy);
  }

  nextDue(): number | undefined {
    return this.#due.peekTime();
  }

  /** A block whose quarantine ended at or before now, removed from the quarantine. */
  takeDue(now: number): QuarantineRecord | undefined {
    if ((this.#due.peekTime() ?? Infinity) > now) return undefined;
    const q = this.#due.pop()!;
    this.#all.delete(q);
    return q;
  }

  /** Copies, by end time then kind and value. */
  list(): QuarantineRecord[] {
    return [...this.#all].map((q) => ({ ...q })).sort((a, b) => a.until - b.until || byKindThenLowest(a, b));
  }
}
