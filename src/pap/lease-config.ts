import { randomInt } from 'node:crypto';
import type { Clock } from '../util/clock.ts';
import type { ResourceKind } from '../util/block.ts';
import type { PortPreference, ValueRange } from './block.ts';
import { DEFAULT_BLOCK, PORT_RANGE, SPI_RANGE } from './block.ts';
import type { LeaseStore } from './lease-store.ts';

export interface LeaseTableOptions {
  readonly clock: Clock;
  /** Where leases are kept across restarts. Default: in memory only. */
  readonly store?: LeaseStore;
  /**
   * The shared addresses, dotted quads, first first: each has its own ports
   * (portRange on each), leases name them by index (RequestParams.address)
   * and the journal by text. Default: one, unnamed on disk.
   */
  readonly addresses?: readonly string[];
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
  /**
   * What a start finding no saved state means (docs/pap.md 6.3):
   * - 'fresh': a first start; no host can hold a block of an earlier router
   *   life, so grant at once;
   * - 'state-lost': the state was lost (wiped, a new machine); hosts may still
   *   hold blocks, so hold off: grant nothing new for holdOffSeconds, during
   *   which hosts reclaim what they hold (LeaseTable.reclaim).
   * Default 'fresh'. Ignored when state is recovered.
   */
  readonly withoutState?: 'fresh' | 'state-lost';
  /** Length of that hold-off. Default holdOffSecondsFor(max lease, quarantine). */
  readonly holdOffSeconds?: number;
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
  /** Ports only: the index of the shared address to grant on. Default 0, the first. */
  readonly address?: number;
}

export interface RenewParams {
  readonly leaseSeconds?: number;
  readonly txid?: number;
}

/** The options with every default filled in. */
export interface LeaseConfig {
  readonly portRange: ValueRange;
  readonly spiRange: ValueRange;
  readonly blockSize: Readonly<Record<ResourceKind, number>>;
  readonly maxPerHost: Readonly<Record<ResourceKind, number>>;
  readonly leaseSeconds: number;
  readonly minLeaseSeconds: number;
  readonly maxLeaseSeconds: number;
  readonly quarantineMs: number;
  readonly compactEvery: number;
  /** Hold-off after a start that lost state; 0 after a fresh one. */
  readonly holdOffMs: number;
}

export function resolveLeaseConfig(o: LeaseTableOptions): LeaseConfig {
  const leaseSeconds = o.leaseSeconds ?? 300;
  const maxLeaseSeconds = o.maxLeaseSeconds ?? Math.max(3600, leaseSeconds);
  const quarantineSeconds = o.quarantineSeconds ?? 120;
  const holdOffSeconds = o.holdOffSeconds ?? holdOffSecondsFor(maxLeaseSeconds, quarantineSeconds);
  return {
    portRange: o.portRange ?? PORT_RANGE,
    spiRange: o.spiRange ?? SPI_RANGE,
    blockSize: { ...DEFAULT_BLOCK, ...o.blockSize },
    maxPerHost: { port: 1024, spi: 1024, ...o.maxPerHost },
    leaseSeconds,
    minLeaseSeconds: o.minLeaseSeconds ?? Math.min(30, leaseSeconds),
    maxLeaseSeconds,
    quarantineMs: quarantineSeconds * 1000,
    compactEvery: o.compactEvery ?? 1000,
    holdOffMs: o.withoutState === 'state-lost' ? holdOffSeconds * 1000 : 0,
  };
}

/**
 * The hold-off after a start that lost the lease state (docs/pap.md 6.3):
 * half the longest lease, plus the quarantine. A host renews at half its
 * lease (and again at 7/8), counted from before the restart, so by half the
 * longest lease every host still holding a block of the earlier life has
 * asked for it again (or, if every renewal fell while the router was down,
 * let it run out by 1/8 of a lease after the restart); the quarantine then
 * lets stray packets of blocks that nobody reclaimed drain, as after any
 * other end of a lease.
 */
export function holdOffSecondsFor(maxLeaseSeconds: number, quarantineSeconds: number): number {
  return Math.ceil(maxLeaseSeconds / 2) + quarantineSeconds;
}

/** The lease to grant for what a host asked (0: the default), in whole seconds within the bounds. */
export function clampLease(c: LeaseConfig, asked: number | undefined): number {
  if (!asked) return c.leaseSeconds;
  return Math.round(Math.min(c.maxLeaseSeconds, Math.max(c.minLeaseSeconds, asked)));
}

/** A new router epoch: random, non-zero, 32 bits. */
export function newEpoch(random: (() => number) | undefined): number {
  const e = random ? random() >>> 0 : randomInt(1, 0x100000000);
  if (e === 0) throw new RangeError('router epoch must be non-zero');
  return e;
}
