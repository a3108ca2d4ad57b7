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
      for (const [event, v] of Object.entries(s.forwarder.events.snapshot())) this.inc({ event }, v);
    },
  });
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
  const server = await startMetricsServer(registry, listen);
  const a = server.address();
  return { server, address: a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : listen };
}
