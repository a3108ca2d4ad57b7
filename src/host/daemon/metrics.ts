/**
 * The host agent's Prometheus metrics. Values are read from the agent's own
 * counters when scraped (collect callbacks), so the packet path counts only
 * in its typed arrays and pays nothing for Prometheus.
 */
import type { Server as HttpServer } from 'node:http';
import { newRegistry, startMetricsServer } from '../../metrics/server.ts';
import type { HostAgentParts } from './status.ts';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { IoStats } from '../../io/types.ts';
import type { HostForwarder } from '../data-path/forwarder.ts';
import type { LeasedPortPool } from '../data-path/leased-ports.ts';
import type { SourcePortTranslationTable } from '../data-path/translation/sptt.ts';
import type { PortTranslator } from '../data-path/translation/translator.ts';
import type { PapClientCounters } from '../../pap/pap-client.ts';
import { registerIkeMetrics } from '../../ike/metrics.ts';
import type { FastPathCounts } from './fast-path.ts';
import { fastPathCounts } from './fast-path.ts';

export interface HostMetricSources {
  readonly forwarder: HostForwarder;
  readonly translator: PortTranslator;
  readonly sptt: SourcePortTranslationTable;
  readonly ports: LeasedPortPool;
  readonly pap: () => PapClientCounters;
  readonly io: () => Readonly<Record<string, IoStats>>;
  /** The IPsec step's verdict counters (`ipsec.<direction>.<verdict>`), when the agent runs IPsec. */
  readonly ipsec?: () => Record<string, number>;
  /** Security associations installed, when the agent runs IPsec. */
  readonly ipsecSas?: () => number;
  /** The eBPF fast path's counters, when it runs (undefined once it is closed). */
  readonly fast?: () => FastPathCounts | undefined;
}

export function registerHostMetrics(registry: Registry, s: HostMetricSources): void {
  const registers = [registry];
  new Counter({
    name: 'distnat_host_packets_total',
    help: 'Packets forwarded and other packet events (outbound, inbound, fragmentation-needed, mss-clamped-*, ...)',
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const events: Record<string, number> = s.forwarder.events.snapshot();
      // Both data paths, as the router counts its two.
      const f = s.fast?.();
      if (f !== undefined) {
        events['outbound'] = (events['outbound'] ?? 0) + f.packets.outbound;
        events['inbound'] = (events['inbound'] ?? 0) + f.packets.inbound;
      }
      for (const [event, v] of Object.entries(events)) this.inc({ event }, v);
    },
  });
  if (s.fast !== undefined) registerFastPathMetrics(registers, s.fast);
  new Counter({
    name: 'distnat_host_dropped_packets_total',
    help: 'Packets dropped by the host agent, by direction and reason',
    labelNames: ['direction', 'reason'],
    registers,
    collect() {
      this.reset();
      const c = s.forwarder.counters();
      for (const [reason, v] of Object.entries(c.outboundDrops))
        this.inc({ direction: 'outbound', reason }, v);
      for (const [reason, v] of Object.entries(c.inboundDrops)) this.inc({ direction: 'inbound', reason }, v);
    },
  });
  new Counter({
    name: 'distnat_host_translations_total',
    help: 'Port translation outcomes by direction (FIG. 11)',
    labelNames: ['direction', 'outcome'],
    registers,
    collect() {
      this.reset();
      const t = s.translator.counters;
      for (const [outcome, v] of Object.entries(t.outbound)) this.inc({ direction: 'outbound', outcome }, v);
      for (const [outcome, v] of Object.entries(t.inbound)) this.inc({ direction: 'inbound', outcome }, v);
    },
  });
  if (s.ipsec !== undefined) {
    const ipsec = s.ipsec;
    new Counter({
      name: 'distnat_host_ipsec_packets_total',
      help: 'IPsec engine verdicts by direction (protected, accepted, bypass, replay, auth-failed, no-sa, ...)',
      labelNames: ['direction', 'verdict'],
      registers,
      collect() {
        this.reset();
        for (const [key, v] of Object.entries(ipsec())) {
          const [, direction, verdict] = key.split('.');
          if (direction !== undefined && verdict !== undefined) this.inc({ direction, verdict }, v);
        }
      },
    });
  }
  if (s.ipsecSas !== undefined) {
    const sas = s.ipsecSas;
    new Gauge({
      name: 'distnat_host_ipsec_sas',
      help: 'IPsec security associations installed (both directions)',
      registers,
      collect() {
        this.set(sas());
      },
    });
  }
  new Counter({
    name: 'distnat_host_pap_messages_total',
    help: 'PAP client events (sent, retransmitted, timeouts, unmatched, malformed, withdrawals)',
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      for (const [event, v] of Object.entries(s.pap())) this.inc({ event }, v);
    },
  });
  new Counter({
    name: 'distnat_host_io_packets_total',
    help: 'Packets through the TUN device and the raw sockets, by device and direction',
    labelNames: ['device', 'direction'],
    registers,
    collect() {
      this.reset();
      for (const [device, st] of Object.entries(s.io())) {
        this.inc({ device, direction: 'rx' }, st.rxPackets);
        this.inc({ device, direction: 'tx' }, st.txPackets);
      }
    },
  });
  new Gauge({
    name: 'distnat_host_leased_ports',
    help: 'Ports held in PAP blocks, and how many of them are unused',
    labelNames: ['state'],
    registers,
    collect() {
      this.set({ state: 'held' }, s.ports.held);
      this.set({ state: 'unused' }, s.ports.unused);
    },
  });
  new Gauge({
    name: 'distnat_host_translation_rows',
    help: 'Rows in the source port translation table (FIG. 11)',
    registers,
    collect() {
      this.set(s.sptt.size);
    },
  });
}

/** The fast path's own share and what it left to the agent, beside the agent's metrics. */
function registerFastPathMetrics(registers: Registry[], read: () => FastPathCounts | undefined): void {
  new Counter({
    name: 'distnat_host_fastpath_packets_total',
    help: "Packets the eBPF fast path carried without the agent (its share of distnat_host_packets_total's outbound and inbound)",
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const f = read();
      if (f === undefined) return;
      this.inc({ event: 'outbound' }, f.packets.outbound);
      this.inc({ event: 'inbound' }, f.packets.inbound);
    },
  });
  new Counter({
    name: 'distnat_host_fastpath_bytes_total',
    help: 'Bytes the eBPF fast path carried: outbound with the outer header, inbound the inner datagram',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      const f = read();
      if (f === undefined) return;
      this.inc({ direction: 'outbound' }, f.bytes.outbound);
      this.inc({ direction: 'inbound' }, f.bytes.inbound);
    },
  });
  new Counter({
    name: 'distnat_host_fastpath_passed_packets_total',
    help: 'Packets the eBPF fast path left to the agent unchanged, by direction (out, in) and reason',
    labelNames: ['direction', 'reason'],
    registers,
    collect() {
      this.reset();
      const f = read();
      if (f === undefined) return;
      for (const direction of ['out', 'in'] as const)
        for (const [reason, v] of Object.entries(f.pass[direction])) this.inc({ direction, reason }, v);
    },
  });
  new Counter({
    name: 'distnat_host_fastpath_dropped_packets_total',
    help: 'Packets the eBPF fast path dropped: a helper failed after it had changed them (fastpath.error)',
    registers,
    collect() {
      this.reset();
      this.inc(read()?.error ?? 0);
    },
  });
  new Gauge({
    name: 'distnat_host_fastpath_active',
    help: '1 while the eBPF fast path is attached and programmed, 0 after it detached itself',
    registers,
    collect() {
      this.set(read()?.active === true ? 1 : 0);
    },
  });
}

/** Serves the agent's metrics on `listen` (host:port); resolves with the server and the address it took. */
export async function serveAgentMetrics(
  p: HostAgentParts,
  listen: string,
): Promise<{ server: HttpServer; address: string }> {
  const registry = newRegistry();
  const keyedStep = p.engineStep ?? p.ike?.step;
  registerHostMetrics(registry, {
    forwarder: p.forwarder,
    translator: p.translator,
    sptt: p.sptt,
    ports: p.ports,
    pap: () => p.client.counters,
    io: p.io,
    ...(p.dataPath?.fast !== undefined && { fast: () => fastPathCounts(p.dataPath?.fast) }),
    ...(keyedStep !== undefined && {
      ipsec: () => keyedStep.counters(),
      ipsecSas: () => keyedStep.engine?.sad.all().length ?? 0,
    }),
  });
  if (p.ike !== undefined)
    registerIkeMetrics(
      registry,
      'host',
      () => p.ike?.service,
      () => p.ike?.revocation ?? new Map(),
    );
  const failover = p.failover;
  if (failover !== undefined)
    new Counter({
      name: 'distnat_host_router_switches_total',
      help: 'Moves to the next router after the one sent through stopped answering PAP (router.switches)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(failover.switches);
      },
    });
  const server = await startMetricsServer(registry, listen);
  const a = server.address();
  return { server, address: a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : listen };
}
