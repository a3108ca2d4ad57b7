/**
 * What `distnat status router` prints: the lease tables with the patent's
 * columns (FIG. 8, FIG. 21), the flows in use (FIG. 12), the local CA's
 * valid certificates, and every counter: drops by reason, traffic, PAP,
 * fragments, devices, certificates and the CRL.
 */
import type { DaemonStatus } from '../../control/status.ts';
import type { StatusTable } from '../../control/status.ts';
import type { IoStats } from '../../io/types.ts';
import type { LeaseBook } from '../../pap/lease-book.ts';
import { addressIndexOfSlot, portOfSlot } from '../../util/block.ts';
import type { PapServer } from '../../pap/pap-server.ts';
import type { Clock } from '../../util/clock.ts';
import type { RouterForwarding } from '../data-path/forwarder.ts';
import type { LocalCaService } from './local-ca-service.ts';
import type { RouterDataPath } from './fast-path.ts';
import { feedIaptt, routerCounts } from './fast-path.ts';
import type { ForwardingWorkers } from './workers.ts';

/** IAPTT rows printed at most; the rest are counted. */
export const MAX_FLOW_ROWS = 500;

export interface RouterStatusSources {
  readonly summary: Readonly<Record<string, string | number>>;
  readonly clock: Clock;
  readonly startedAt: number;
  readonly forwarder: RouterForwarding;
  readonly leases: LeaseBook;
  readonly pap: PapServer;
  /** Counters of each PAP transport, by name (udp, icmp). */
  readonly transports: Readonly<Record<string, object>>;
  /** Packet devices by role (tun, lan-rx, lan-tx). */
  readonly devices: Readonly<Record<string, { stats(): IoStats }>>;
  /** The local CA, when the router runs one. */
  readonly pki?: Pick<LocalCaService, 'stats' | 'summary' | 'statusTable'>;
  /** Which data path forwards; the eBPF fast path's counters and stamps when it runs. */
  readonly dataPath?: RouterDataPath;
  /** The forwarding workers, when they run: FIG. 12 merges their rows, the counters add their tables'. */
  readonly workers?: ForwardingWorkers | undefined;
  /**
   * The shared addresses, first first. With several, FIG. 8 and the
   * quarantine name each block's address (its slots, util/block.ts, made
   * back into address and port). Default: one.
   */
  readonly sharedAddresses?: readonly string[];
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP' };

/** FIG. 8 or FIG. 21 rows, lowest value first, from the lease table itself; `addresses` adds each port block's. */
function blockRows(
  leases: LeaseBook,
  kind: 'port' | 'spi',
  now: number,
  addresses: readonly string[] | undefined,
): (string | number)[][] {
  return leases
    .leases()
    .filter((l) => l.kind === kind)
    .sort((a, b) => a.lowest - b.lowest)
    .map((l) => {
      const left = `${Math.max(0, Math.round((l.expiresAt - now) / 1000))}s`;
      if (addresses === undefined) return [l.host, l.lowest, l.count, left];
      return [l.host, addresses[addressIndexOfSlot(l.lowest)] ?? '?', portOfSlot(l.lowest), l.count, left];
    });
}

export function routerStatus(s: RouterStatusSources): DaemonStatus {
  const now = s.clock.now();
  const tables = s.forwarder.tables;
  // FIG. 12 as of now, what the fast path forwarded included.
  feedIaptt(s.dataPath?.fast, tables, now);
  s.workers?.mergeIaptt();
  const several = (s.sharedAddresses?.length ?? 1) > 1 ? s.sharedAddresses : undefined;
  const ports: StatusTable = {
    title: 'FIG. 8  PORT-TO-INTERNAL-NETWORK ADDRESS TABLE (leased ports, also ICMP query ids)',
    columns: [
      'INTERNAL NETWORK ADDRESS',
      ...(several === undefined ? [] : ['SHARED ADDRESS']),
      'LOWEST PORT',
      'NUMBER OF PORTS',
      'LEASE LEFT',
    ],
    rows: blockRows(s.leases, 'port', now, several),
  };
  const spis: StatusTable = {
    title: 'FIG. 21  SPI-TO-INTERNAL-NETWORK ADDRESS TABLE',
    columns: ['INTERNAL NETWORK ADDRESS', 'LOWEST SPI', 'NUMBER OF SPIs', 'LEASE LEFT'],
    rows: blockRows(s.leases, 'spi', now, undefined),
  };
  const all = tables.iaptt.rows();
  // With several shared addresses each row names the address its port is on (the same port on two is two rows).
  const flowRows: (string | number)[][] = all
    .slice(0, MAX_FLOW_ROWS)
    .map((r) => [
      ...(several === undefined ? [] : [several[r.addressIndex] ?? '?']),
      r.port,
      r.address,
      `${r.protocol} (${PROTOCOL_NAMES[r.protocol] ?? '?'})`,
      new Date(r.lastUse).toISOString(),
      `${Math.max(0, Math.round((now - r.lastUse) / 1000))}s`,
    ]);
  if (all.length > MAX_FLOW_ROWS)
    flowRows.push([
      `... ${all.length - MAX_FLOW_ROWS} more`,
      ...(several === undefined ? [] : ['']),
      '',
      '',
      '',
      '',
    ]);
  const flows: StatusTable = {
    title: 'FIG. 12  IP ADDRESS TRANSLATION TABLE (IAPTT: ports and ICMP ids in use)',
    columns: [
      ...(several === undefined ? [] : ['SHARED ADDRESS']),
      'DESTINATION PORT',
      'INTERNAL DESTINATION IP ADDRESS',
      'PROTOCOL',
      'TIMESTAMP',
      'IDLE',
    ],
    rows: flowRows,
  };
  const quarantine: StatusTable = {
    title: 'QUARANTINE (ended blocks kept from everyone, RFC 6888 REQ-8)',
    columns: ['KIND', 'LAST HOLDER', 'LOWEST', 'COUNT', 'FREE IN'],
    rows: s.leases.quarantined().map((q) => {
      // With several shared addresses a port block's lowest is named with its address.
      const lowest =
        several !== undefined && q.kind === 'port'
          ? `${several[addressIndexOfSlot(q.lowest)] ?? '?'} ${portOfSlot(q.lowest)}`
          : q.lowest;
      return [q.kind, q.host, lowest, q.count, `${Math.max(0, Math.round((q.until - now) / 1000))}s`];
    }),
  };
  return {
    role: 'router',
    summary: {
      ...s.summary,
      ...(s.dataPath === undefined ? {} : { 'data path': s.dataPath.describe() }),
      epoch: s.leases.epoch,
      'hold-off': holdOffText(s.leases.holdOffUntil, now),
      uptime: `${Math.round((now - s.startedAt) / 1000)}s`,
      'hosts with leases': tables.ownership.hostCount,
      flows: all.length,
      ...s.pki?.summary(),
    },
    tables: [ports, spis, flows, quarantine, ...(s.pki === undefined ? [] : [s.pki.statusTable()])],
    counters: routerCounters(s),
  };
}

/** Whether new blocks wait for the hold-off after lost lease state (docs/pap.md 6.3). */
function holdOffText(until: number | undefined, now: number): string {
  if (until === undefined) return 'no';
  return `until ${new Date(until).toISOString()} (${Math.ceil((until - now) / 1000)}s): reclaims only`;
}

/** Every counter, flattened to dotted names. */
export function routerCounters(s: RouterStatusSources): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (prefix: string, values: object) => {
    for (const [k, v] of Object.entries(values)) if (typeof v === 'number') out[`${prefix}.${k}`] = v;
  };
  const f = s.forwarder;
  const tables = f.tables;
  // Both data paths under the slow path's names; what the fast path left to the slow one apart.
  const fast = s.dataPath?.fast;
  const counts = routerCounts(f, fast);
  put('drop', counts.drops);
  put('traffic', counts.traffic);
  // Its own share too, so that whether it carried the traffic can be seen.
  if (counts.fastTraffic !== undefined) put('fastpath.traffic', counts.fastTraffic);
  if (counts.pass !== undefined) {
    put('fastpath.pass.lan', counts.pass.lan);
    put('fastpath.pass.wan', counts.pass.wan);
  }
  if (fast !== undefined) {
    out['fastpath.active'] = fast.active ? 1 : 0;
    out['fastpath.map_bytes'] = fast.mapMemory().total;
  }
  put('pap.answered', s.pap.counters.answered);
  put('pap.dropped', s.pap.counters.dropped);
  put('pap.refused', s.pap.counters.refused);
  out['pap.stale_epoch'] = s.pap.counters.staleEpoch;
  out['pap.reclaimed'] = s.pap.counters.reclaimed;
  out['pap.withdrawn'] = s.pap.counters.withdrawn;
  for (const [name, c] of Object.entries(s.transports)) put(`pap.${name}`, c);
  put('leases', s.leases.stats());
  put('fragments', tables.fragments.counters);
  put('fragments.hold', tables.held.counters);
  out['fragments.live'] = tables.fragments.size;
  out['fragments.held_now'] = tables.held.size;
  out['tables.lease_rejected'] = tables.ownership.counters.rejected;
  out['tables.outbound_sas'] = f.outboundSas.size;
  if (s.workers !== undefined) {
    // Their fragment tables and SA tables, under the same names (as of each worker's last tick).
    for (const [k, v] of Object.entries(s.workers.gauges())) if (!k.startsWith('io.')) out[k] = v;
    s.workers.perWorker().forEach((t, i) => {
      for (const k of ['lan-rx-packets', 'wan-rx-packets', 'outbound-packets', 'inbound-packets'] as const)
        out[`worker.${i}.${k}`] = t[k];
    });
  }
  for (const [name, d] of Object.entries(s.devices)) put(`io.${name}`, d.stats());
  if (s.pki !== undefined) {
    const p = s.pki.stats();
    out['pki.certificates_issued'] = p.issued;
    out['pki.certificates_valid'] = p.valid;
    out['pki.certificates_revoked'] = p.revoked;
    out['pki.crl_number'] = p.crlNumber;
    // Seconds since the Unix epoch, like Prometheus timestamps.
    out['pki.crl_next_update'] = Math.floor(p.crlNextUpdate / 1000);
    for (const [k, v] of Object.entries(p.shared ?? {})) out[`pki.${k}`] = v;
  }
  return out;
}
