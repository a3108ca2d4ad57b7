/**
 * What the host agent shows of itself: the `distnat status host` report and
 * the Prometheus endpoint, both read from the agent's parts when asked.
 */
import type { Server as HttpServer } from 'node:http';
import type { DaemonStatus } from '../cli/commands/status.ts';
import type { HostConfig } from '../config/host-config.ts';
import type { IoStats } from '../io/types.ts';
import { newRegistry, startMetricsServer } from '../metrics/server.ts';
import type { HostLeases } from '../pap/host-leases.ts';
import type { PapClient } from '../pap/pap-client.ts';
import type { Clock } from '../util/clock.ts';
import type { HostForwarder } from './forwarder.ts';
import type { HostIke } from './host-ike.ts';
import type { EngineIpsecStep } from './ipsec-engine-step.ts';
import type { LeasedPortPool } from './leased-ports.ts';
import { registerHostMetrics } from './metrics.ts';
import { registerIkeMetrics } from '../ike/metrics.ts';
import { hostStatus } from './status.ts';
import type { PortTranslator, SourcePortTranslationTable } from './translation/index.ts';

export interface HostAgentParts {
  readonly config: HostConfig;
  readonly clock: Clock;
  /** When the agent started, by `clock`. */
  readonly started: number;
  readonly tunMtu: number;
  readonly lanMtu: number;
  readonly leases: HostLeases;
  readonly ports: LeasedPortPool;
  readonly sptt: SourcePortTranslationTable;
  readonly translator: PortTranslator;
  readonly forwarder: HostForwarder;
  readonly client: PapClient;
  readonly io: () => Record<string, IoStats>;
  /** The manual keying step, when `config.ipsec` made one. */
  readonly engineStep: EngineIpsecStep | undefined;
  readonly ike: HostIke | undefined;
}

export function agentStatus(p: HostAgentParts): DaemonStatus {
  const { config, leases, ports, engineStep, ike } = p;
  const now = p.clock.now();
  const st = hostStatus({
    now,
    summary: {
      mode: config.mode,
      router: config.router,
      'pap transport': config.pap.transport,
      'lan address': config.lanAddress,
      'shared address': config.sharedAddress,
      tun: `${config.tun} (MTU ${p.tunMtu}, LAN MTU ${p.lanMtu})`,
      epoch: leases.epoch === 0 ? 'none yet' : `0x${leases.epoch.toString(16).padStart(8, '0')}`,
      'ports held': ports.held,
      'ports unused': ports.unused,
      forwarding: ports.held > 0 ? 'yes' : 'no (waiting for a lease)',
      'up for': `${Math.round((now - p.started) / 1000)}s`,
    },
    blocks: leases.blocks(),
    sptt: p.sptt,
    translator: p.translator,
    forwarder: p.forwarder,
    pap: p.client.counters,
    io: p.io(),
  });
  if (engineStep !== undefined) {
    st.summary.ipsec = `${config.ipsec} (${engineStep.installed ? 'SAs installed' : 'waiting for SPI leases'})`;
    Object.assign(st.counters, engineStep.counters());
  }
  if (ike !== undefined) {
    st.summary.ike = ike.summary();
    st.tables.push(...(ike.service?.tables() ?? []));
    Object.assign(st.counters, ike.step.counters(), ike.service?.counters() ?? {});
  }
  return st;
}

/** Serves the agent's metrics on `listen` (host:port); resolves with the server and the address it took. */
export async function serveAgentMetrics(
  p: HostAgentParts,
  listen: string,
): Promise<{ server: HttpServer; address: string }> {
  const registry = newRegistry('distnat_host');
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
  if (p.ike !== undefined) registerIkeMetrics(registry, () => p.ike?.service);
  const server = await startMetricsServer(registry, listen);
  const a = server.address();
  return { server, address: a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : listen };
}
