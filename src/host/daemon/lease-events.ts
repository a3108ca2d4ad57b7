/**
 * The host agent's listener on its leases: one log line per block gained,
 * lost or asked for, the translations of a lost port block dropped, and the
 * agent's own reactions (SAs, native range, waiters) called in order.
 */
import { formatBlock } from '../../util/block.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import type { BlockLossReason, HostLeases, HostLeasesListener } from '../../pap/host-leases.ts';
import type { Logger } from '../../util/log.ts';
import type { SourcePortTranslationTable } from '../data-path/translation/index.ts';

export interface LeaseEventOptions {
  readonly log: Logger;
  readonly leases: HostLeases;
  readonly sptt: SourcePortTranslationTable;
  /** The router as the log names it, e.g. "10.0.0.7 (UDP port 7032)". */
  readonly routerText: string;
  /** After an SPI block is gained. */
  readonly spiBlockAdded: () => void;
  /** After a port block is gained or lost (before portBlockAdded on a gain). */
  readonly portsChanged: () => void;
  /** After a port block is gained. */
  readonly portBlockAdded: () => void;
}

export function leaseEventListener(o: LeaseEventOptions): HostLeasesListener {
  const { log, leases } = o;
  let lastEpochLogged = 0;
  return {
    onBlockAdded(b: HeldBlock) {
      log.info(`leased ${b.kind === 'port' ? 'ports' : 'SPIs'} ${formatBlock(b)}`, {
        count: b.count,
        leaseSeconds: b.leaseSeconds,
        epoch: b.epoch.toString(16),
      });
      if (b.kind === 'spi') o.spiBlockAdded();
      if (b.kind === 'port') {
        o.portsChanged();
        o.portBlockAdded();
      }
    },
    onBlockLost(b: HeldBlock, reason: BlockLossReason, inUse: readonly number[]) {
      const flows = b.kind === 'port' ? o.sptt.dropLease(b.lowest, b.count) : 0;
      if (reason === 'epoch-changed' && lastEpochLogged !== leases.epoch) {
        lastEpochLogged = leases.epoch;
        log.warn('the router restarted without its leases (new epoch): leasing again', {
          epoch: leases.epoch.toString(16),
        });
      }
      const level = reason === 'released' ? 'info' : 'warn';
      log.log(
        level,
        `${reason === 'released' ? 'released' : 'lost'} ${b.kind === 'port' ? 'ports' : 'SPIs'} ${formatBlock(b)}`,
        {
          reason,
          inUse: inUse.length,
          translationsDropped: flows,
        },
      );
      if (b.kind === 'port') o.portsChanged();
    },
    onRenewDue(b: HeldBlock, attempt: 1 | 2) {
      log.debug(`renewing ${formatBlock(b)}`, { attempt });
    },
    onMoreNeeded(kind, count) {
      log.info(`asking router ${o.routerText} for ${count} ${kind === 'port' ? 'ports' : 'SPIs'}`);
    },
  };
}
