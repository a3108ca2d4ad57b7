/**
 * The router daemon's lease table: opened on the state directory's journal
 * (what was recovered said in the log), and followed by the data path's
 * tables so that a lease granted is a lease routed.
 */
import type { RouterConfig } from '../../config/router-config.ts';
import { FileStateDir, LeaseStore } from '../../pap/lease-store.ts';
import { LeaseTable } from '../../pap/lease-table.ts';
import type { Clock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { leaseLogger } from './log.ts';
import type { RouterTables } from '../data-path/tables/router-tables.ts';

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

/**
 * Makes the data path's tables follow the lease table (a lease granted is a
 * lease routed, a lease ended is one no longer routed) and logs each lease
 * event.
 */
export function followLeases(table: LeaseTable, tables: RouterTables, log: Logger): void {
  table.addListener({
    onLeaseAdded: (lease) => {
      const change = tables.onLeaseAdded(lease);
      if (change !== 'added' && change !== 'exists')
        log.error('lease not entered in the tables', {
          host: lease.host,
          kind: lease.kind,
          lowest: lease.lowest,
          count: lease.count,
          change,
        });
    },
    onLeaseRemoved: (lease) => {
      const change = tables.onLeaseRemoved(lease);
      if (change !== 'removed')
        log.warn('lease not found in the tables on removal', {
          host: lease.host,
          kind: lease.kind,
          lowest: lease.lowest,
          count: lease.count,
          change,
        });
    },
  });
  table.addListener(leaseLogger(log), false);
}
