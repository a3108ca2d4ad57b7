/**
 * What `distnat status host` prints: a summary of the agent, the leases
 * (patent Table 1 blocks), the source port translation table (FIG. 11,
 * Table 7), IKE's tables when it runs, and every counter, read from the
 * agent's parts when asked.
 */
import type { DaemonStatus, StatusTable } from '../../control/status.ts';
import type { IoStats } from '../../io/types.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import { formatBlock } from '../../util/block.ts';
import type { PapClientCounters } from '../../pap/pap-client.ts';
import type { SourcePortTranslationTable } from '../data-path/translation/sptt.ts';
import type { PortTranslator } from '../data-path/translation/translator.ts';
import type { HostForwarder } from '../data-path/forwarder.ts';
import type { HostConfig } from '../../config/host-config.ts';
import type { HostLeases } from '../../pap/host-leases.ts';
import type { PapClient } from '../../pap/pap-client.ts';
import type { Clock } from '../../util/clock.ts';
import type { HostIke } from './host-ike.ts';
import type { Hairpin } from './hairpin.ts';
import type { EngineIpsecStep } from '../data-path/ipsec-engine-step.ts';
import type { LeasedPortPool } from '../data-path/leased-ports.ts';
import type { FastPathCounts, HostDataPath } from './fast-path.ts';
import { fastPathCounts } from './fast-path.ts';
import type { RouterFailover } from './router-failover.ts';

/** Rows of FIG. 11 printed at most; the JSON form has the count. */
export const MAX_STATUS_ROWS = 2000;

export interface HostStatusSources {
  readonly now: number;
  readonly summary: Record<string, string | number>;
  readonly blocks: readonly HeldBlock[];
  readonly sptt: SourcePortTranslationTable;
  readonly translator: PortTranslator;
  readonly forwarder: HostForwarder;
  readonly pap: PapClientCounters;
  readonly io: Readonly<Record<string, IoStats>>;
  /** The eBPF fast path's counters, when it runs. */
  readonly fast?: FastPathCounts | undefined;
}

const PROTOCOLS: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP' };

const seconds = (ms: number): string => `${Math.max(0, Math.round(ms / 1000))}s`;

export function leaseTable(blocks: readonly HeldBlock[], now: number): StatusTable {
  return {
    title: 'Leased blocks (PAP; patent Table 1)',
    columns: ['KIND', 'BLOCK', 'COUNT', 'IN USE', 'LEASE', 'EXPIRES IN', 'EPOCH'],
    rows: blocks.map((b) => [
      b.kind,
      formatBlock(b),
      b.count,
      b.inUse,
      `${b.leaseSeconds}s`,
      seconds(b.expiresAt - now),
      `0x${b.epoch.toString(16).padStart(8, '0')}`,
    ]),
  };
}

export function spttTable(sptt: SourcePortTranslationTable, now: number): StatusTable {
  const rows = sptt.rows();
  const shown = rows.slice(0, MAX_STATUS_ROWS);
  return {
    title:
      'Source port translation table (FIG. 11)' +
      (rows.length > shown.length ? ` - first ${shown.length} of ${rows.length} rows` : ''),
    columns: ['DEFAULT PORT', 'TRANSLATED PORT', 'PROTOCOL', 'TIMESTAMP', 'TIMER', 'EXPIRES IN'],
    rows: shown.map((r) => [
      r.localPort,
      r.leasedPort,
      `${r.protocol} (${PROTOCOLS[r.protocol] ?? '?'})`,
      Math.round(r.lastUse),
      r.timer,
      seconds(r.expiresAt - now),
    ]),
  };
}

/** Every counter under one flat name: direction and kind first, so sorted output groups them. */
export function hostCounters(s: HostStatusSources): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (prefix: string, values: object): void => {
    for (const [k, v] of Object.entries(values)) if (typeof v === 'number') out[`${prefix}.${k}`] = v;
  };
  const c = s.forwarder.counters();
  put('packets', c.events);
  // Both data paths under the agent's names, as the router adds its two; the fast path's own share beside them.
  const f = s.fast;
  if (f !== undefined) {
    out['packets.outbound'] = (out['packets.outbound'] ?? 0) + f.packets.outbound;
    out['packets.inbound'] = (out['packets.inbound'] ?? 0) + f.packets.inbound;
    put('fastpath.packets', f.packets);
    put('fastpath.bytes', f.bytes);
    out['fastpath.error'] = f.error;
    put('fastpath.pass.out', f.pass.out);
    put('fastpath.pass.in', f.pass.in);
    out['fastpath.active'] = f.active ? 1 : 0;
  }
  put('drop.outbound', c.outboundDrops);
  put('drop.inbound', c.inboundDrops);
  const t = s.translator.counters;
  put('translate.outbound', t.outbound);
  put('translate.inbound', t.inbound);
  put('sptt', s.sptt.counters);
  out['sptt.rows'] = s.sptt.size;
  put('pap', s.pap);
  for (const [name, stats] of Object.entries(s.io)) put(`io.${name}`, stats);
  return out;
}

export function hostStatus(s: HostStatusSources): DaemonStatus {
  return {
    role: 'host',
    summary: s.summary,
    tables: [leaseTable(s.blocks, s.now), spttTable(s.sptt, s.now)],
    counters: hostCounters(s),
  };
}

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
  /** The hairpin's policy routing, unless configured off. */
  readonly hairpin: Hairpin | undefined;
  /** Which data path forwards (the eBPF fast path beside the agent, or the agent alone). */
  readonly dataPath?: HostDataPath | undefined;
  /** With several routers: which one the host sends through, and its moves. */
  readonly failover?: RouterFailover | undefined;
}

export function agentStatus(p: HostAgentParts): DaemonStatus {
  const { config, leases, ports, engineStep, ike } = p;
  const now = p.clock.now();
  const st = hostStatus({
    now,
    summary: {
      mode: config.mode,
      router: p.failover?.current.address ?? config.router,
      'pap transport': config.pap.transport,
      'lan address': config.lanAddress,
      'shared address': config.sharedAddress,
      tun: `${config.tun} (MTU ${p.tunMtu}, LAN MTU ${p.lanMtu})`,
      epoch: leases.epoch === 0 ? 'none yet' : `0x${leases.epoch.toString(16).padStart(8, '0')}`,
      'ports held': ports.held,
      'ports unused': ports.unused,
      forwarding: ports.held > 0 ? 'yes' : 'no (waiting for a lease)',
      hairpin: p.hairpin?.describe() ?? 'off (hairpin.enabled: false)',
      datapath: p.dataPath?.describe() ?? 'TUN',
      'up for': `${Math.round((now - p.started) / 1000)}s`,
    },
    blocks: leases.blocks(),
    sptt: p.sptt,
    translator: p.translator,
    forwarder: p.forwarder,
    pap: p.client.counters,
    io: p.io(),
    fast: fastPathCounts(p.dataPath?.fast),
  });
  const f = p.failover;
  if (f !== undefined) {
    st.summary.routers = (config.routers ?? []).join(', ');
    st.summary['router switches'] =
      f.last === undefined
        ? 0
        : `${f.switches} (last ${f.last.from} -> ${f.last.to}, ${seconds(now - f.last.at)} ago, after ${f.last.silentMs} ms silent)`;
    st.counters['router.switches'] = f.switches;
    st.counters['router.probes'] = f.probes;
  }
  if (engineStep !== undefined) {
    st.summary.ipsec = `${config.ipsec} (${engineStep.installed ? 'SAs installed' : 'waiting for SPI leases'})`;
    Object.assign(st.counters, engineStep.counters());
  }
  if (ike !== undefined) {
    st.summary.ike = ike.summary();
    st.tables.push(...(ike.service?.tables() ?? []));
    Object.assign(st.counters, ike.step.counters(), ike.service?.counters() ?? {}, ike.counters());
  }
  return st;
}
