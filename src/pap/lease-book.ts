import type { ResourceKind } from '../util/block.ts';
import type { QuarantineRecord } from './journal.ts';
import type { RenewParams, RequestParams } from './lease-config.ts';
import type { HostAddress, Lease, LeaseAnswer, LeaseListener } from './lease.ts';

/** A value now, or later when it has to be agreed with others first. */
export type MaybePromise<T> = T | Promise<T>;

/**
 * What the PAP server, status, metrics and the local CA need of a lease
 * table, whichever keeps the leases: the router's own journal (LeaseTable,
 * answers at once) or etcd shared with other routers (SharedLeaseTable,
 * answers once the transaction is decided).
 */
export interface LeaseBook {
  readonly epoch: number;
  readonly recovered: boolean;
  readonly holdOffUntil: number | undefined;
  request(host: HostAddress, kind: ResourceKind, params?: RequestParams): MaybePromise<LeaseAnswer>;
  renew(
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
    params?: RenewParams,
  ): MaybePromise<LeaseAnswer>;
  reclaim(
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
    params?: RenewParams,
  ): MaybePromise<LeaseAnswer>;
  release(
    host: HostAddress,
    kind: ResourceKind,
    value: number,
    params?: { readonly txid?: number },
  ): MaybePromise<LeaseAnswer>;
  withdraw(kind: ResourceKind, lowest: number): MaybePromise<Lease | undefined>;
  find(kind: ResourceKind, value: number): Lease | undefined;
  ownerOf(kind: ResourceKind, value: number): HostAddress | undefined;
  leasesOf(host: HostAddress): Lease[];
  leases(): Lease[];
  quarantined(): QuarantineRecord[];
  held(host: HostAddress, kind: ResourceKind): number;
  free(kind: ResourceKind): number;
  /** Ports free on the shared address at `addressIndex` (several addresses; metrics by address). */
  freePorts?(addressIndex: number): number;
  addListener(listener: LeaseListener, replayExisting?: boolean): void;
  removeListener(listener: LeaseListener): void;
  stats(): Record<string, number>;
}

/** Applies f to a value that may still be on its way, without making a promise of one that is not (not named `then`: a module exporting `then` is taken for a promise by import()). */
export function andThen<T, U>(v: MaybePromise<T>, f: (t: T) => U): MaybePromise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}
