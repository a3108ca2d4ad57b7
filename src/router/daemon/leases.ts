/**
 * The router daemon's lease table: opened on the state directory's journal
 * (what was recovered said in the log), and followed by the data path's
 * tables so that a lease granted is a lease routed.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RouterConfig } from '../../config/router-config.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { FileStateDir, LeaseStore } from '../../pap/lease-store.ts';
import { LeaseTable } from '../../pap/lease-table.ts';
import type { LeaseBook } from '../../pap/lease-book.ts';
import type { Clock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { blockFields, leaseLogger } from './log.ts';
import type { RouterTables } from '../data-path/tables/router-tables.ts';

/** A file in the state directory that says the same as --fresh, once (docs/pap.md 6.3). */
export const FRESH_MARKER = 'fresh';

/**
 * The table, recovered from the journal; its closer (snapshot, close) goes
 * onto `closers`. Without saved state it holds off (docs/pap.md 6.3) unless
 * this is a first start, when no host can hold a block of an earlier router
 * life: `fresh` (--fresh), or a file `fresh` in the state directory, which is
 * removed at every start so that it can never excuse a later loss of state.
 */
export function openLeaseTable(
  config: RouterConfig,
  clock: Clock,
  log: Logger,
  closers: (() => void | Promise<void>)[],
  freshFlag = false,
): LeaseTable {
  const marker = join(config.stateDir, FRESH_MARKER);
  const fresh = freshFlag || existsSync(marker);
  try {
    // Gone before the table writes its state: if anything fails now, the next start holds off.
    rmSync(marker, { force: true });
  } catch (e) {
    throw new UserError(
      `cannot remove ${marker} (${(e as Error).message}): left there, it would excuse a later loss of state`,
      ExitCode.CANTCREATE,
    );
  }
  const table = new LeaseTable({
    clock,
    store: new LeaseStore(new FileStateDir(config.stateDir)),
    addresses: sharedAddressesOf(config),
    portRange: { min: config.pap.portRange[0], max: config.pap.portRange[1] },
    spiRange: { min: config.pap.spiFirst, max: 0xffffffff },
    blockSize: { port: config.pap.blockSize, spi: config.pap.spiBlockSize },
    maxPerHost: { port: config.pap.maxPortsPerHost, spi: config.pap.maxSpisPerHost },
    leaseSeconds: config.pap.leaseSeconds,
    // Bounded, because the longest lease sets the hold-off after lost state.
    maxLeaseSeconds: Math.max(config.pap.maxLeaseSeconds, config.pap.leaseSeconds),
    quarantineSeconds: config.pap.quarantineSeconds,
    withoutState: fresh ? 'fresh' : 'state-lost',
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
  if (table.recovered && fresh) log.warn('--fresh ignored: the state directory holds lease state');
  logHoldOff(table, clock, log, closers);
  return table;
}

/** Says when the table holds off and why, and again when it grants once more. */
function logHoldOff(
  table: LeaseTable,
  clock: Clock,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): void {
  const until = table.holdOffUntil;
  if (until === undefined) return;
  log.warn(
    table.recovered
      ? 'still holding off after lost lease state: hosts reclaim their blocks, new requests wait'
      : 'lease state lost (or a first start without --fresh): holding off, hosts reclaim their blocks, new requests wait',
    { until: new Date(until).toISOString(), seconds: Math.ceil((until - clock.now()) / 1000) },
  );
  const timer = clock.setTimeout(
    () => log.info('hold-off over: granting new blocks', { leases: table.leases().length }),
    until - clock.now(),
  );
  closers.push(() => timer.cancel());
}

/**
 * Makes the data path's tables follow the lease table (a lease granted is a
 * lease routed, a lease ended is one no longer routed) and logs each lease
 * event.
 */
export function followLeases(
  table: LeaseBook,
  tables: RouterTables,
  log: Logger,
  addresses?: readonly string[],
): void {
  table.addListener({
    onLeaseAdded: (lease) => {
      const change = tables.onLeaseAdded(lease);
      if (change !== 'added' && change !== 'exists')
        log.error('lease not entered in the tables', {
          host: lease.host,
          ...blockFields(lease, addresses),
          change,
        });
    },
    onLeaseRemoved: (lease, reason) => {
      const change = tables.onLeaseRemoved(lease, reason === 'withdrawn');
      if (change !== 'removed')
        log.warn('lease not found in the tables on removal', {
          host: lease.host,
          ...blockFields(lease, addresses),
          change,
        });
    },
  });
  table.addListener(leaseLogger(log, addresses), false);
}
