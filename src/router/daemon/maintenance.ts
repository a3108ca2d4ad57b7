/**
 * The router daemon's periodic work off the packet path: FIG. 12's stamps
 * of what the eBPF fast path forwarded carried into the IAPTT, the IAPTT
 * sweep, fragment, held-packet and outbound SA expiry, and a drop summary
 * in the log every `dropLogMs`.
 */
import type { Clock, Timer } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { DROP_REASONS } from '../data-path/counters.ts';
import { logDrops } from './log.ts';
import { feedIaptt, routerCounts } from './fast-path.ts';
import type { RouterForwarding } from '../data-path/forwarder.ts';
import type { RouterTables } from '../data-path/tables/router-tables.ts';
import type { RouterFastPath } from '../data-path/ebpf/fast-path.ts';
import type { ForwardingWorkers } from './workers.ts';

export interface MaintenanceOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly tables: RouterTables;
  readonly forwarder: RouterForwarding;
  /** The eBPF fast path, when it runs: its drops join the summary, its stamps the IAPTT. */
  readonly fastPath?: RouterFastPath | undefined;
  /** The forwarding workers, when they run: their FIG. 12 rows join the main thread's IAPTT before its sweep. */
  readonly workers?: ForwardingWorkers | undefined;
  /** When the router started, by `clock`: the first drop summary's window begins there. */
  readonly startedAt: number;
  readonly tickMs: number;
  readonly dropLogMs: number;
}

/** Starts the periodic work; the result stops it. */
export function startMaintenance(o: MaintenanceOptions): () => void {
  const { clock, log, tables, forwarder } = o;
  const lastDrops = new Float64Array(DROP_REASONS.length);
  let lastSummary = o.startedAt;
  let timer: Timer | undefined;
  const tick = () => {
    const now = clock.now();
    const fast = o.fastPath;
    // Before the sweep, so a row the fast path keeps busy is not swept as idle.
    feedIaptt(fast, tables, now);
    o.workers?.mergeIaptt();
    tables.iaptt.sweep(now, 8192);
    tables.fragments.expireHead(now);
    tables.held.expire(now);
    forwarder.outboundSas.expire(now);
    if (now - lastSummary >= o.dropLogMs) {
      lastSummary = now;
      logDrops(log, routerCounts(forwarder, fast).drops, lastDrops, o.dropLogMs);
    }
    timer = clock.setTimeout(tick, o.tickMs);
  };
  timer = clock.setTimeout(tick, o.tickMs);
  return () => timer?.cancel();
}
