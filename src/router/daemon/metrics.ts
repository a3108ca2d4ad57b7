/**
 * The router's Prometheus metrics. The packet path counts in typed arrays
 * (CounterSet) and never touches prom-client; each metric reads those
 * counters when scraped (`collect`), so a scrape costs the work and a packet
 * costs nothing extra.
 *
 * | metric                                               | type    | labels            |
 * |------------------------------------------------------|---------|-------------------|
 * | distnat_router_packets_total                         | counter | direction         |
 * | distnat_router_bytes_total                           | counter | direction         |
 * | distnat_router_dropped_packets_total                 | counter | reason            |
 * | distnat_router_leased_blocks                         | gauge   | kind (, address)  |
 * | distnat_router_free_values                           | gauge   | kind (ports, SPIs free to lease) (, address) |
 * | distnat_router_hosts                                 | gauge   |                   |
 * | distnat_router_flows                                 | gauge   | (IAPTT rows) (address) |
 * | distnat_router_pap_messages_total                    | counter | kind (answered)   |
 * | distnat_router_pap_dropped_messages_total            | counter | reason            |
 * | distnat_router_io_packets_total                      | counter | device, direction |
 * | distnat_router_io_errors_total                       | counter | device, kind      |
 * | distnat_router_pki_certificates                      | gauge   | state (issued, valid, revoked) |
 * | distnat_router_pki_crl_number                        | gauge   |                   |
 * | distnat_router_pki_crl_next_update_timestamp_seconds | gauge   | (Unix time)       |
 * | distnat_router_fastpath_passed_packets_total        | counter | direction, reason (eBPF: left to the TUN path) |
 * | distnat_router_fastpath_active                       | gauge   | (eBPF attached and fed: 1) |
 * | distnat_router_fastpath_map_bytes                    | gauge   | (kernel memory of its maps) |
 *
 * Packets, bytes and drops count both data paths, the eBPF fast path's and
 * the TUN path's, under the same labels; io counts the TUN path's devices.
 * docs/metrics.md lists them with their meaning; the process metrics
 * (process_*, nodejs_*) come with the registry (src/metrics/server.ts).
 *
 * With several shared addresses the port gauges (leased_blocks and
 * free_values of kind port, flows) have one series per address, labelled
 * `address`; SPIs are one space per router and carry no address. With one
 * address they have no address label, as before there could be several.
 *
 * Directions: `lan_in` (read from hosts' tunnels), `outbound` (written to
 * the TUN), `wan_in` (read from the TUN), `inbound` (tunnelled to hosts),
 * `hairpin`.
 */
import type { Server as HttpServer } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { IoStats } from '../../io/types.ts';
import { addressIndexOfSlot } from '../../util/block.ts';
import { newRegistry, startMetricsServer } from '../../metrics/server.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { LeaseBook } from '../../pap/lease-book.ts';
import type { PapServer } from '../../pap/pap-server.ts';
import { DROP_REASONS } from '../data-path/counters.ts';
import type { RouterForwarding } from '../data-path/forwarder.ts';
import type { LocalCaStats } from './local-ca-service.ts';
import type { RouterFastPath } from '../data-path/ebpf/fast-path.ts';
import { FAST_DIRECTIONS, FAST_PASSES } from '../data-path/ebpf/layout.ts';
import { routerCounts } from './fast-path.ts';
import type { ForwardingWorkers } from './workers.ts';

export interface RouterMetricSources {
  readonly forwarder: RouterForwarding;
  readonly leases: LeaseBook;
  readonly pap: PapServer;
  readonly devices: Readonly<Record<string, { stats(): IoStats }>>;
  /** The local CA, when the router runs one; its metrics exist only then. */
  readonly pki?: { stats(): LocalCaStats } | undefined;
  /** The eBPF fast path, when it runs. */
  readonly fastPath?: RouterFastPath | undefined;
  /** The forwarding workers, when they run: per-worker packet counts. */
  readonly workers?: ForwardingWorkers | undefined;
  /** The shared addresses, first first; with several the port gauges are by address. */
  readonly sharedAddresses?: readonly string[];
}

export function registerRouterMetrics(registry: Registry, s: RouterMetricSources): void {
  const registers = [registry];
  const f = s.forwarder;
  const several = (s.sharedAddresses?.length ?? 1) > 1 ? s.sharedAddresses! : undefined;
  const byAddress = several === undefined ? [] : ['address'];
  new Counter({
    name: 'distnat_router_packets_total',
    help: 'Packets by direction: lan_in, outbound, wan_in, inbound, hairpin',
    labelNames: ['direction'],
    registers,
    collect() {
      const t = routerCounts(f, s.fastPath).traffic;
      this.reset();
      this.inc({ direction: 'lan_in' }, t['lan-rx-packets'] ?? 0);
      this.inc({ direction: 'outbound' }, t['outbound-packets'] ?? 0);
      this.inc({ direction: 'wan_in' }, t['wan-rx-packets'] ?? 0);
      this.inc({ direction: 'inbound' }, t['inbound-packets'] ?? 0);
      this.inc({ direction: 'hairpin' }, t['hairpin-packets'] ?? 0);
    },
  });
  new Counter({
    name: 'distnat_router_bytes_total',
    help: 'Bytes by direction (lan_in and inbound include the 20-byte outer header)',
    labelNames: ['direction'],
    registers,
    collect() {
      const t = routerCounts(f, s.fastPath).traffic;
      this.reset();
      this.inc({ direction: 'lan_in' }, t['lan-rx-bytes'] ?? 0);
      this.inc({ direction: 'outbound' }, t['outbound-bytes'] ?? 0);
      this.inc({ direction: 'wan_in' }, t['wan-rx-bytes'] ?? 0);
      this.inc({ direction: 'inbound' }, t['inbound-bytes'] ?? 0);
    },
  });
  new Counter({
    name: 'distnat_router_withdrawn_ike_drain_packets_total',
    help: 'IKE let out from a port block just withdrawn from its host: its Deletes (docs/router.md)',
    registers,
    collect() {
      this.reset();
      this.inc(f.traffic.get('withdrawn-ike-drain'));
    },
  });
  new Counter({
    name: 'distnat_router_dropped_packets_total',
    help: 'Packets dropped, by reason (docs/router.md)',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      const drops = routerCounts(f, s.fastPath).drops;
      for (const reason of DROP_REASONS) this.inc({ reason }, drops[reason] ?? 0);
      // The fast path's own failure, which the slow path cannot have.
      if (s.fastPath !== undefined) this.inc({ reason: 'fastpath-error' }, drops['fastpath-error'] ?? 0);
    },
  });
  new Gauge({
    name: 'distnat_router_leased_blocks',
    help: 'Blocks leased now, by kind',
    labelNames: ['kind', ...byAddress],
    registers,
    collect() {
      const st = s.leases.stats();
      this.set({ kind: 'spi' }, st.spi_leases ?? 0);
      if (several === undefined) {
        this.set({ kind: 'port' }, st.port_leases ?? 0);
        return;
      }
      const n = several.map(() => 0);
      for (const l of s.leases.leases()) if (l.kind === 'port') n[addressIndexOfSlot(l.lowest)]!++;
      several.forEach((address, i) => this.set({ kind: 'port', address }, n[i]!));
    },
  });
  new Gauge({
    name: 'distnat_router_etcd_available',
    help: 'Leases on etcd: 1 while etcd answers (grants go on), 0 when it does not; absent with the local journal',
    registers,
    collect() {
      const st = s.leases.stats();
      if (st.etcd_available !== undefined) this.set(st.etcd_available);
    },
  });
  new Counter({
    name: 'distnat_router_etcd_events_total',
    help:
      'Leases on etcd, by event: requests refused (try-later) while etcd did not answer, transactions retried after ' +
      "another router's change, expiries swept, renewals answered without a write (most of the lease left), keys under the prefix skipped (foreign, corrupt, out of range)",
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const st = s.leases.stats();
      for (const [key, event] of [
        ['etcd_unavailable_refusals', 'unavailable-refusal'],
        ['etcd_conflicts', 'conflict'],
        ['etcd_swept', 'swept'],
        ['etcd_unwritten_renewals', 'unwritten-renewal'],
        ['etcd_skipped_foreign_key', 'skipped-foreign-key'],
        ['etcd_skipped_corrupt_value', 'skipped-corrupt-value'],
        ['etcd_skipped_out_of_range', 'skipped-out-of-range'],
      ] as const) {
        const v = st[key];
        if (v !== undefined) this.inc({ event }, v);
      }
    },
  });
  new Gauge({
    name: 'distnat_router_free_values',
    help: 'Values free to lease now (not leased, not in quarantine), by kind',
    labelNames: ['kind', ...byAddress],
    registers,
    collect() {
      this.set({ kind: 'spi' }, s.leases.free('spi'));
      const freePorts = s.leases.freePorts?.bind(s.leases);
      if (several === undefined || freePorts === undefined) this.set({ kind: 'port' }, s.leases.free('port'));
      else several.forEach((address, i) => this.set({ kind: 'port', address }, freePorts(i)));
    },
  });
  new Gauge({
    name: 'distnat_router_hosts',
    help: 'Hosts holding at least one block',
    registers,
    collect() {
      this.set(s.forwarder.tables.ownership.hostCount);
    },
  });
  if (s.workers !== undefined) {
    const workers = s.workers;
    new Counter({
      name: 'distnat_router_worker_packets_total',
      help: 'Packets each forwarding worker of the TUN path read, by worker and direction (lan_in, wan_in)',
      labelNames: ['worker', 'direction'],
      registers,
      collect() {
        this.reset();
        workers.perWorker().forEach((t, i) => {
          this.inc({ worker: String(i), direction: 'lan_in' }, t['lan-rx-packets']);
          this.inc({ worker: String(i), direction: 'wan_in' }, t['wan-rx-packets']);
        });
      },
    });
  }
  new Gauge({
    name: 'distnat_router_flows',
    help: 'IAPTT rows (FIG. 12): ports and ICMP ids in use',
    labelNames: byAddress,
    registers,
    collect() {
      const iaptt = f.tables.iaptt;
      if (several === undefined) this.set(iaptt.size);
      else several.forEach((address, i) => this.set({ address }, iaptt.sizeOn(i)));
    },
  });
  new Counter({
    name: 'distnat_router_pap_messages_total',
    help: 'PAP requests answered, by message kind',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      for (const [kind, n] of Object.entries(s.pap.counters.answered)) this.inc({ kind }, n);
    },
  });
  new Counter({
    name: 'distnat_router_pap_dropped_messages_total',
    help: 'PAP messages dropped unanswered, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(s.pap.counters.dropped)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'distnat_router_io_packets_total',
    help: 'Packets through each device, by direction',
    labelNames: ['device', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const [device, d] of Object.entries(s.devices)) {
        const st = d.stats();
        this.inc({ device, direction: 'rx' }, st.rxPackets);
        this.inc({ device, direction: 'tx' }, st.txPackets);
      }
    },
  });
  new Counter({
    name: 'distnat_router_io_errors_total',
    help: 'Device failures: rx errors and truncations, tx queue-full drops, errors and invalid spans',
    labelNames: ['device', 'kind'],
    registers,
    collect() {
      this.reset();
      for (const [device, d] of Object.entries(s.devices)) {
        const st = d.stats();
        this.inc({ device, kind: 'rx_error' }, st.rxErrors);
        this.inc({ device, kind: 'rx_truncated' }, st.rxTruncated);
        this.inc({ device, kind: 'tx_dropped' }, st.txDropped);
        this.inc({ device, kind: 'tx_error' }, st.txErrors);
        this.inc({ device, kind: 'tx_invalid' }, st.txInvalid);
      }
    },
  });
  const fast = s.fastPath;
  if (fast !== undefined) {
    new Counter({
      name: 'distnat_router_fastpath_passed_packets_total',
      help: 'Packets the eBPF fast path left to the kernel and the TUN path unchanged, by direction (lan, wan) and reason',
      labelNames: ['direction', 'reason'],
      registers,
      collect() {
        this.reset();
        const pass = routerCounts(f, fast).pass;
        if (pass === undefined) return;
        for (const direction of FAST_DIRECTIONS)
          for (const reason of FAST_PASSES) this.inc({ direction, reason }, pass[direction][reason]);
      },
    });
    new Gauge({
      name: 'distnat_router_fastpath_active',
      help: '1 while the eBPF fast path is attached and fed, 0 after it detached itself',
      registers,
      collect() {
        this.set(fast.active ? 1 : 0);
      },
    });
    new Gauge({
      name: 'distnat_router_fastpath_map_bytes',
      help: "Kernel memory of the eBPF fast path's maps",
      registers,
      collect() {
        this.set(fast.mapMemory().total);
      },
    });
  }
  const pki = s.pki;
  if (pki === undefined) return;
  new Gauge({
    name: 'distnat_router_pki_certificates',
    help: 'Host certificates of the local CA: issued (in the registry), valid now, revoked and not yet expired',
    labelNames: ['state'],
    registers,
    collect() {
      const st = pki.stats();
      this.set({ state: 'issued' }, st.issued);
      this.set({ state: 'valid' }, st.valid);
      this.set({ state: 'revoked' }, st.revoked);
    },
  });
  new Gauge({
    name: 'distnat_router_pki_crl_number',
    help: 'cRLNumber of the CRL the router serves now',
    registers,
    collect() {
      this.set(pki.stats().crlNumber);
    },
  });
  new Gauge({
    name: 'distnat_router_pki_crl_next_update_timestamp_seconds',
    help: 'nextUpdate of the CRL the router serves now, Unix time in seconds',
    registers,
    collect() {
      this.set(Math.floor(pki.stats().crlNextUpdate / 1000));
    },
  });
}

/** Serves metrics on `listen` (host:port); resolves with the address taken and a close. */
export async function serveRouterMetrics(
  sources: RouterMetricSources,
  listen: string,
): Promise<{ address: string; close: () => Promise<void> }> {
  const registry = newRegistry();
  registerRouterMetrics(registry, sources);
  let server: HttpServer;
  try {
    server = await startMetricsServer(registry, listen);
  } catch (e) {
    throw new UserError(`cannot serve metrics on ${listen}: ${(e as Error).message}`, ExitCode.CANTCREATE);
  }
  const a = server.address();
  return {
    address: a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : listen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
