/**
 * What the router's main thread and its forwarding workers share
 * (workers.ts, worker-main.ts): the set-up a worker starts from, the
 * messages each way, and the layout of the per-worker gauges the main
 * thread sums for `distnat status` and Prometheus without asking.
 */
import { emptyStats, type IoStats } from '../../io/types.ts';
import type { IapttIdle, IapttMemory } from '../data-path/tables/iaptt.ts';
import type { LeasedBlock, OwnershipChange, OwnershipMemory } from '../data-path/tables/lease-ownership.ts';
import type { RouterTables } from '../data-path/tables/router-tables.ts';

/** What the main thread and every worker agree on: the devices and the shared address. */
export interface WorkerCommon {
  readonly count: number;
  readonly tun: string;
  /** Open the TUN queue with TCP offloads (as the main thread would). */
  readonly offload: boolean;
  readonly lanInterface: string;
  readonly sharedAddress: number;
  /** All shared addresses, first first, when there are several. */
  readonly sharedAddresses?: readonly number[];
  readonly lanAddress: number;
  readonly lanMtu: number;
  readonly idle: IapttIdle;
  readonly tickMs: number;
}

export interface WorkerSetup extends WorkerCommon {
  /** This worker's share (0-based) of `count`. */
  readonly index: number;
  readonly ownership: OwnershipMemory;
  readonly iaptt: IapttMemory;
  /** Float64 per drop reason and per traffic counter (counters.ts order). */
  readonly drops: SharedArrayBuffer;
  readonly traffic: SharedArrayBuffer;
  /** Float64 per WORKER_GAUGES name. */
  readonly gauges: SharedArrayBuffer;
}

/** Main thread -> worker. */
export type WorkerMessage =
  | { readonly type: 'added'; readonly lease: LeasedBlock; readonly change: OwnershipChange }
  | {
      readonly type: 'removed';
      readonly lease: LeasedBlock;
      readonly withdrawn: boolean;
      readonly change: OwnershipChange;
      readonly at: number;
    }
  /** Write the gauges now and answer 'gauges' (tests; status reads them as they are). */
  | { readonly type: 'gauges' }
  | { readonly type: 'stop' };

/** Worker -> main thread. */
export type WorkerReport =
  | { readonly type: 'ready'; readonly tun: string }
  | { readonly type: 'failed'; readonly error: string }
  | { readonly type: 'gauges' }
  | { readonly type: 'stopped' };

const IO_FIELDS = Object.keys(emptyStats()) as (keyof IoStats)[];
export const WORKER_DEVICES = ['tun', 'lan-rx', 'lan-tx'] as const;

/** Status counter names a worker keeps, as `distnat status` names them. */
export const WORKER_GAUGES: readonly string[] = [
  'fragments.recorded',
  'fragments.hits',
  'fragments.misses',
  'fragments.evicted',
  'fragments.hold.held',
  'fragments.hold.released',
  'fragments.hold.expired',
  'fragments.hold.evicted',
  'fragments.hold.tooBig',
  'fragments.live',
  'fragments.held_now',
  'tables.outbound_sas',
  ...WORKER_DEVICES.flatMap((d) => IO_FIELDS.map((f) => `io.${d}.${f}`)),
];

/** Writes a worker's gauges (after each maintenance tick: at most that old when read). */
export function writeWorkerGauges(
  out: Float64Array,
  tables: RouterTables,
  outboundSas: number,
  devices: Readonly<Record<(typeof WORKER_DEVICES)[number], { stats(): IoStats }>>,
): void {
  const f = tables.fragments.counters;
  const h = tables.held.counters;
  const values = [
    f.recorded,
    f.hits,
    f.misses,
    f.evicted,
    h.held,
    h.released,
    h.expired,
    h.evicted,
    h.tooBig,
    tables.fragments.size,
    tables.held.size,
    outboundSas,
  ];
  for (const d of WORKER_DEVICES) {
    const s = devices[d].stats();
    for (const k of IO_FIELDS) values.push(s[k]);
  }
  for (let i = 0; i < values.length; i++) out[i] = values[i]!;
}
