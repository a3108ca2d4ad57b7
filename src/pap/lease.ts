import type { ResourceKind } from '../util/block.ts';

/**
 * A host's LAN address, the key of every router-side table (FIG. 8, FIG. 21).
 * A string so that IPv4, IPv6 or MAC addresses (the patent allows any) all fit.
 */
export type HostAddress = string;

/**
 * One row of FIG. 8 (ports) or FIG. 21 (SPIs), with the lease's timing. A
 * port lease's `lowest` is a slot (util/block.ts portSlot): the port on the
 * router's first shared address, or address index * 65536 + port.
 */
export interface Lease {
  readonly kind: ResourceKind;
  readonly host: HostAddress;
  readonly lowest: number;
  readonly count: number;
  /** When the block was first granted (ms since the Unix epoch). */
  readonly grantedAt: number;
  /** When it lapses unless renewed (ms since the Unix epoch). */
  readonly expiresAt: number;
  /** The lease time last granted, in seconds. */
  readonly leaseSeconds: number;
}

/** Why a lease left the table: the host invalidated it, it ran out, or the router withdrew it. */
export type LeaseEndReason = 'released' | 'expired' | 'withdrawn';

/**
 * Outcome of one request to the lease table. Maps one to one onto the PAP
 * response's code and status (ok -> success; the rest -> failure with that
 * status). 'try-later': the table is in its hold-off after a start that lost
 * the lease state, and grants nothing new until it ends.
 */
export type LeaseStatus = 'ok' | 'quota-exceeded' | 'pool-exhausted' | 'unknown-lease' | 'try-later';

/** How a lease came into the table: granted by a request, or reclaimed by its holder during a hold-off. */
export type LeaseOrigin = 'granted' | 'reclaimed';

/**
 * The answer to a request, renewal or invalidation, flat and JSON-safe so the
 * same answer can be cached and written to disk for retransmissions.
 * For success: the block granted, renewed or released. For a failed renewal
 * or invalidation: the block or value the host named (count 0 for a value).
 * For a failed request: lowest and count 0.
 */
export interface LeaseAnswer {
  readonly status: LeaseStatus;
  readonly kind: ResourceKind;
  /**
   * Ports: the shared address of the block, absent for the router's first.
   * `lowest` is then the port on that address (the table's own slots, util/block.ts,
   * stay inside it), as the PAP message carries them.
   */
  readonly address?: string;
  readonly lowest: number;
  readonly count: number;
  /**
   * Lease granted in seconds; 0 for invalidations and failures, except
   * try-later, where it is the seconds left until the hold-off ends.
   */
  readonly leaseSeconds: number;
  /** Absolute expiry in ms; 0 for invalidations and failures. */
  readonly expiresAt: number;
  /** The router epoch the answer was given in. */
  readonly epoch: number;
}

/**
 * Keeps another table (the router's port and SPI demultiplexing tables) in
 * step with the leases. Called synchronously after the change is durable.
 * A listener added to a table that already holds leases first gets
 * onLeaseAdded for each of them.
 */
export interface LeaseListener {
  /** `origin` is 'granted' also for the leases a listener hears about when it is added. */
  onLeaseAdded(lease: Lease, origin?: LeaseOrigin): void;
  onLeaseRemoved(lease: Lease, reason: LeaseEndReason): void;
  onLeaseRenewed?(lease: Lease): void;
}
