/**
 * The host agent's periodic work off the packet path: the translation
 * table's expiry sweep, the port pool's refresh, and saying so when no
 * lease comes (after 5 s, then less and less often, up to once a minute).
 */
import type { PapClient } from '../../pap/pap-client.ts';
import type { Clock, Timer } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import type { HostForwarder } from '../data-path/forwarder.ts';
import type { LeasedPortPool } from '../data-path/leased-ports.ts';
import type { SourcePortTranslationTable } from '../data-path/translation/index.ts';

const NO_LEASE_LOG_FIRST_MS = 5000;
const NO_LEASE_LOG_MAX_MS = 60_000;

export interface HousekeepingOptions {
  readonly clock: Clock;
  readonly log: Logger;
  /** When the agent started, by `clock`. */
  readonly started: number;
  readonly everyMs: number;
  readonly sptt: SourcePortTranslationTable;
  readonly ports: LeasedPortPool;
  readonly client: PapClient;
  readonly forwarder: HostForwarder;
  /** The router as the log names it. */
  readonly routerText: string;
}

/** Starts the periodic work; the result stops it. */
export function startHousekeeping(o: HousekeepingOptions): { cancel(): void } {
  const { clock, log, started, sptt, ports } = o;
  let tick: Timer | undefined;
  let nextNoLeaseLog = started + NO_LEASE_LOG_FIRST_MS;
  let noLeaseGap = NO_LEASE_LOG_FIRST_MS;
  const onTick = (): void => {
    const now = clock.now();
    sptt.sweep(now);
    ports.refresh();
    if (ports.held > 0) {
      noLeaseGap = NO_LEASE_LOG_FIRST_MS;
      nextNoLeaseLog = now + noLeaseGap;
    } else if (now >= nextNoLeaseLog) {
      log.warn(`no port lease yet: router ${o.routerText} has not granted one; still asking`, {
        waitedSeconds: Math.round((now - started) / 1000),
        papSent: o.client.counters.sent,
        papTimeouts: o.client.counters.timeouts,
        outboundDropped: o.forwarder.outboundDrops.get('no-lease'),
      });
      noLeaseGap = Math.min(noLeaseGap * 2, NO_LEASE_LOG_MAX_MS);
      nextNoLeaseLog = now + noLeaseGap;
    }
    tick = clock.setTimeout(onTick, o.everyMs);
  };
  tick = clock.setTimeout(onTick, o.everyMs);
  return { cancel: () => tick?.cancel() };
}
