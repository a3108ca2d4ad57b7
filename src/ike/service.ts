/**
 * IKE as the host agent and `distnat peer` run it: one IkeDaemon on a UDP
 * transport, its child SAs installed into the engine the data path uses,
 * peers that the IKE file says to initiate to kept up, CRLs fetched from the
 * distribution points of the certificates peers present, and status tables.
 */
import type { StatusTable } from '../control/status.ts';
import { readPemFile, type IkeConfig } from '../config/ike-config.ts';
import type { IpsecEngine } from '../ipsec/engine.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../util/log.ts';
import type { LocalIdentity } from './config.ts';
import { KeptConnections } from './connections.ts';
import { describeId } from './certs.ts';
import { CrlCache, revocationCheckingAuthorizer } from './crl-cache.ts';
import { IkeDaemon } from './daemon.ts';
import { EngineChildSaDatabase } from './engine-sad.ts';
import type { ChildPolicy, PeerAuthorizer, SpiAllocator } from './policy.ts';
import { describeSelector, type Ipv4Selector } from './selectors.ts';
import type { IkeTransport } from './transport.ts';
import { UdpTransport } from './udp-transport.ts';

export interface IkeServiceOptions {
  readonly config: IkeConfig;
  readonly transport: IkeTransport;
  readonly identity: LocalIdentity;
  /** The data path's engine: its SPD holds the bypass for IKE's own ports already. */
  readonly engine: IpsecEngine;
  readonly spis?: SpiAllocator;
  readonly childPolicy?: ChildPolicy;
  /** Our selectors for the child SAs we initiate, asked at each attempt; default our IKE address. */
  readonly localSelectors?: () => readonly Ipv4Selector[];
  /** Checks after the CRLs; default the port-binding check. */
  readonly authorize?: PeerAuthorizer;
  readonly clock: Clock;
  readonly log: Logger;
  /** Told after every child SA change (MTU sums). */
  readonly onChildChange?: () => void;
}

export interface IkeService {
  readonly daemon: IkeDaemon;
  readonly sad: EngineChildSaDatabase;
  readonly kept: KeptConnections;
  readonly crls: CrlCache;
  /** SA tables for `distnat status`. */
  tables(): StatusTable[];
  /** Counters for status and metrics, prefixed `ike.`. */
  counters(): Record<string, number>;
  close(): Promise<void>;
}

export function startIkeService(o: IkeServiceOptions): IkeService {
  const { config, log } = o;
  const crls = new CrlCache({
    maxAgeMs: config.crlMaxAgeSeconds * 1000,
    log: (m) => log.warn(m),
  });
  const sad = new EngineChildSaDatabase(o.engine, {
    onChange: (what, c) => {
      // debug: a line per child SA doubled what a handshake cost in logging; `distnat status` lists them.
      if (log.isDebugEnabled())
        log.debug(`child SA ${what}`, {
          id: c.id,
          in: `0x${c.inbound.spi.toString(16)}`,
          out: `0x${c.outbound.spi.toString(16)}`,
          local: c.localSelectors.map(describeSelector).join(' '),
          remote: c.remoteSelectors.map(describeSelector).join(' '),
          encap: c.encap !== undefined ? `udp ${c.encap.localPort}->${c.encap.remotePort}` : 'no',
        });
      o.onChildChange?.();
    },
  });
  const daemon = new IkeDaemon({
    transport: o.transport,
    clock: o.clock,
    identity: o.identity,
    trust: { roots: config.trust.map((f) => readPemFile(f, 'trust')) },
    ...(config.proposals.ike !== undefined ? { ikeProposals: config.proposals.ike } : {}),
    ...(config.proposals.esp !== undefined ? { espProposals: config.proposals.esp } : {}),
    ...(o.spis !== undefined ? { spis: o.spis } : {}),
    ...(o.childPolicy !== undefined ? { childPolicy: o.childPolicy } : {}),
    sad,
    authorize: revocationCheckingAuthorizer(crls, o.authorize),
    cookieThreshold: config.cookieThreshold,
    halfOpenLimit: config.halfOpenLimit,
    rsaPss: config.rsaPss,
    fragmentation: config.fragmentation,
    fragmentSize: config.fragmentSize,
    dpdIntervalMs: config.dpdSeconds * 1000,
    ikeRekeyMs: config.rekeySeconds.ike * 1000,
    childRekeyMs: config.rekeySeconds.child * 1000,
    childLifetime: config.childLifetime,
    maintenanceRate: config.maintenanceRate,
    // winston's stream machinery runs even for a level it then drops: ask first.
    log: (level, message) => {
      if (level !== 'debug' || log.isDebugEnabled()) log.log(level, `IKE: ${message}`);
    },
  });
  daemon.on((e) => {
    if (e.type === 'ike-up')
      log.info('IKE SA up', {
        peer: `${e.sa.remote.address}:${e.sa.remote.port}`,
        id: e.sa.peer !== undefined ? describeId(e.sa.peer.id) : '?',
        auth: e.sa.peer?.scheme ?? '?',
        role: e.sa.role,
      });
    else if (e.type === 'ike-down')
      log.info('IKE SA down', { peer: `${e.sa.remote.address}:${e.sa.remote.port}`, reason: e.reason });
    else if (e.type === 'auth-failed')
      log.warn('IKE authentication failed', {
        peer: `${e.sa.remote.address}:${e.sa.remote.port}`,
        reason: e.reason,
      });
  });
  const kept = new KeptConnections(daemon, o.clock, {
    firstDelayMs: config.retrySeconds * 1000,
    log: (level, message) => log.log(level, message),
  });
  for (const p of config.peers)
    if (p.initiate)
      kept.add({
        remote: { address: p.address, port: p.port },
        child: () => ({
          mode: p.mode,
          ...(o.localSelectors !== undefined ? { localSelectors: o.localSelectors() } : {}),
        }),
      });

  return {
    daemon,
    sad,
    kept,
    crls,
    tables() {
      const now = o.clock.now();
      return [
        {
          title: 'IKE SAs',
          columns: ['PEER', 'ROLE', 'STATE', 'NAT-T', 'CHILD SAS', 'AGE'],
          rows: daemon.sas.map((sa) => [
            `${sa.remote.address}:${sa.remote.port}`,
            sa.role,
            sa.state,
            sa.natt ? 'yes' : 'no',
            sa.children.length,
            `${Math.round((now - sa.createdAt) / 1000)}s`,
          ]),
        },
        {
          title: 'Child SAs (ESP)',
          columns: ['SPI IN', 'SPI OUT', 'MODE', 'CIPHER', 'LOCAL', 'REMOTE'],
          rows: daemon.sas.flatMap((sa) =>
            sa.children.map((c) => {
              const n = c.negotiated;
              return [
                `0x${n.inbound.spi.toString(16)}`,
                `0x${n.outbound.spi.toString(16)}`,
                n.mode,
                `${n.encryption}-${n.encryptionKeyBits}${n.integrity ? `/${n.integrity}` : ''}`,
                n.localSelectors.map(describeSelector).join(' '),
                n.remoteSelectors.map(describeSelector).join(' '),
              ];
            }),
          ),
        },
        {
          title: 'IKE peers kept up',
          columns: ['PEER', 'STATE', 'ATTEMPTS', 'LAST ERROR'],
          rows: kept.describe().map((k) => [k.remote, k.state, k.attempts, k.lastError || '-']),
        },
      ];
    },
    counters() {
      const out: Record<string, number> = {
        'ike.sas': daemon.sas.length,
        'ike.half-open': daemon.halfOpenCount,
        'ike.fragment-bytes-held': daemon.fragmentBytesHeld,
        'ike.child-sas': sad.size,
        'ike.crl-fetches': crls.fetches,
        'ike.crl-fetch-failures': crls.failures,
      };
      for (const [k, v] of daemon.counters) out[`ike.${k}`] = v;
      if (o.transport instanceof UdpTransport)
        for (const [k, v] of o.transport.drops) out[`ike.transport.${k}`] = v;
      return out;
    },
    async close() {
      kept.close();
      await daemon.close();
      sad.clear();
    },
  };
}
