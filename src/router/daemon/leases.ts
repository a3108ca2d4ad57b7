/**
 * The router daemon's lease table: opened on the state directory's journal
 * (what was recovered said in the log), and followed by the forwarding
 * tables so that a lease granted is a lease routed.
 */
import type { RouterConfig } from '../../config/router-config.ts';
import { FileStateDir, LeaseStore } from '../../pap/lease-store.ts';
import { LeaseTable } from '../../pap/lease-table.ts';
import { numericLeaseListener } from '../../pap/router-link.ts';
import type { Clock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { leaseLogger } from './log.ts';
import type { LeaseHolders } from '../data-path/lease-holders.ts';

/** The table, recovered from the journal; its closer (snapshot, close) goes onto `closers`. */
export function openLeaseTable(
  config: RouterConfig,
  clock: Clock,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): LeaseTable {
  const table = new LeaseTable({
    clock,
    store: new LeaseStore(new FileStateDir(config.stateDir)),
    portRange: { min: config.pap.portRange[0], max: config.pap.portRange[1] },
    spiRange: { min: config.pap.spiFirst, max: 0xffffffff },
    blockSize: { port: config.pap.blockSize, spi: config.pap.spiBlockSize },
    maxPerHost: { port: config.pap.maxPortsPerHost, spi: config.pap.maxSpisPerHost },
    leaseSeconds: config.pap.leaseSeconds,
    quarantineSeconds: config.pap.quarantineSeconds,
  });
  closers.push(() => {
    try {
      table.compact();
    } catch (e) {
      log.warn('could not write the lease snapshot at stop (the journal has every change)', {
        error: (e as Error).message,
      });
    }
    table.close();
  });
  for (const note of table.recoveryNotes) log.warn('lease recovery', { note });
  const recovered = table.leases();
  log.info(table.recovered ? 'leases recovered' : 'no saved leases: new epoch', {
    epoch: table.epoch,
    leases: recovered.length,
    stateDir: config.stateDir,
  });
  return table;
}

/** Enters every lease into the forwarding tables (through `holders`) and logs each lease event. */
export function followLeases(table: LeaseTable, holders: LeaseHolders, log: Logger): void {
  const sink = {
    onLeaseAdded: (b: Parameters<LeaseHolders['onLeaseAdded']>[0]) => {
      const change = holders.onLeaseAdded(b);
      if (change !== 'added' && change !== 'exists')
        log.error('lease not entered in the tables', { ...b, change });
    },
    onLeaseRemoved: (b: Parameters<LeaseHolders['onLeaseRemoved']>[0]) => {
      const change = holders.onLeaseRemoved(b);
      if (change !== 'removed') log.warn('lease not found in the tables on removal', { ...b, change });
    },
  };
  table.addListener(
    numericLeaseListener(sink, (l) => log.warn('lease of a non-IPv4 host not forwarded', { host: l.host })),
  );
  table.addListener(leaseLogger(log), false);
}
