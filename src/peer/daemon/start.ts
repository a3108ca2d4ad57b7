/**
 * `distnat peer`: the far end of a distnat host's SAs on a machine with its
 * own public address. A TUN device takes what the local stack sends to the
 * remote shared address; ESP and AH from the WAN come in on raw sockets.
 * See docs/ipsec-e2e.md.
 *
 * Routes (made at start, undone at stop, when `route` is given):
 *
 *   ip route replace <remote>/32 dev <tun>                       # the stack's packets into the TUN
 *   ip route replace <remote>/32 via <gateway> dev <wan> metric 100
 *
 * The second route is what the raw sender, bound to the WAN interface
 * (SO_BINDTODEVICE), finds: a lookup restricted to one interface skips
 * routes through others, so protected packets leave by the WAN instead of
 * looping back into the TUN.
 */
import { execFileSync } from 'node:child_process';
import type { Server } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { DaemonStatus } from '../../control/status.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { controlSocketPath } from '../../control/protocol.ts';
import { startControlServer } from '../../control/server.ts';
import { openRawSender, openRawSocket } from '../../io/raw.ts';
import { openTun } from '../../io/tun.ts';
import { offloadByDefault, OffloadTun } from '../../io/offload-tun.ts';
import type { PacketDevice } from '../../io/types.ts';
import {
  buildManualKeying,
  IpsecEngine,
  readManualKeying,
  SecurityAssociationDatabase,
  SecurityPolicyDatabase,
} from '../../ipsec/index.ts';
import { readIkeConfig } from '../../config/ike-config.ts';
import type { IkeService } from '../../ike/service.ts';
import { SystemClock, type Clock } from '../../util/clock.ts';
import { addIkeBypass, interfaceAddress, PEER_IKE_PORT, PEER_NATT_PORT, startPeerIke } from './ike.ts';
import type { ManualKeyingConfig } from '../../ipsec/index.ts';
import type { Logger } from '../../util/log.ts';
import { PeerForwarder } from '../data-path/forwarder.ts';
import type { PeerDevices } from '../data-path/forwarder.ts';
import { mirrorManualKeying } from './mirror.ts';
import { runUndo } from '../../util/undo.ts';

export interface PeerRoute {
  /** The remote shared address (the distnat router's public address). */
  readonly remote: string;
  /** Next hop towards it on the WAN. */
  readonly gateway: string;
}

export interface PeerOptions {
  /** Keying file as this end sees it, or ... */
  readonly ipsec?: string;
  /** ... the hosts' files, each turned round, policies and SAs in file order. */
  readonly mirror?: readonly string[];
  /** IKE file (docs/ike.md): SAs negotiated with IKEv2 on the WAN address, beside or instead of manual keying. */
  readonly ike?: string;
  readonly clock?: Clock;
  readonly tun: string;
  /** TUN MTU: the WAN's minus the largest IPsec overhead. Default 1400. */
  readonly mtu?: number;
  /** WAN interface the protected packets leave by. */
  readonly wan: string;
  readonly route?: PeerRoute;
  readonly runDir: string;
  /** Serve the control socket. Default true. */
  readonly control?: boolean;
  /** Devices (tests pass in-memory ones); default TUN and raw sockets. */
  readonly devices?: PeerDevices;
}

export interface Peer {
  readonly forwarder: PeerForwarder;
  readonly ike: IkeService | undefined;
  status(): DaemonStatus;
  stop(): Promise<void>;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function loadPeerKeying(o: Pick<PeerOptions, 'ipsec' | 'mirror'>): {
  cfg: ManualKeyingConfig;
  source: string;
} {
  if (o.ipsec !== undefined) return { cfg: readManualKeying(o.ipsec), source: o.ipsec };
  if (o.mirror !== undefined && o.mirror.length > 0) {
    // Policy names are per file: qualify them when several files meet in one SPD.
    const parts = o.mirror.map((f, i) => {
      const c = mirrorManualKeying(readManualKeying(f));
      if (o.mirror!.length === 1) return c;
      const q = (name: string): string => `${i + 1}.${name}`;
      return {
        ...c,
        policies: c.policies.map((p) => ({ ...p, name: q(p.name) })),
        sas: c.sas.map((sa) => (sa.policy === undefined ? sa : { ...sa, policy: q(sa.policy) })),
      };
    });
    const cfg: ManualKeyingConfig = {
      defaultAction: parts[0]!.defaultAction,
      policies: parts.flatMap((c) => c.policies),
      sas: parts.flatMap((c) => c.sas),
    };
    return { cfg, source: `${o.mirror.join(', ')} (mirrored)` };
  }
  throw new Error('give --ipsec FILE, --mirror FILE or --ike FILE');
}

/** The engine a peer starts with: from manual keying, or empty (every SA from IKE) with only --ike. */
function initialEngine(o: PeerOptions): { engine: IpsecEngine; source: string } {
  if (o.ipsec === undefined && (o.mirror ?? []).length === 0 && o.ike !== undefined) {
    const engine = new IpsecEngine(new SecurityPolicyDatabase('bypass'), new SecurityAssociationDatabase());
    return { engine, source: `IKE (${o.ike})` };
  }
  const { cfg, source } = loadPeerKeying(o);
  const { spd, sad } = buildManualKeying(cfg, { source });
  return { engine: new IpsecEngine(spd, sad), source };
}

export async function startPeer(o: PeerOptions, log: Logger): Promise<Peer> {
  const ikeConfig = o.ike !== undefined ? readIkeConfig(o.ike) : undefined;
  const { engine, source } = initialEngine(o);
  const spd = engine.spd;
  const undo: (() => void)[] = [];
  const unwind = (): void =>
    runUndo(undo, (e) => log.warn('a step of the set-up could not be undone', { error: e.message }));
  try {
    let devices = o.devices;
    if (devices === undefined) {
      // Before anything is opened: a mistyped --wan-if is a usage problem, not a crash.
      try {
        execFileSync('ip', ['link', 'show', 'dev', o.wan], { stdio: 'ignore' });
      } catch {
        throw new UserError(`--wan-if ${o.wan}: no such interface`, ExitCode.CONFIG);
      }
      const onError = (err: Error): void => {
        log.error('packet device failed', { error: err.message });
      };
      // The local stack's TCP goes through the TUN as super-packets (segmented
      // here before sealing) and opened segments are coalesced before the TUN
      // write, as in the host agent: one system call per burst, not per packet.
      const offload = offloadByDefault();
      const device = openTun({
        name: o.tun,
        mtu: o.mtu ?? 1400,
        up: true,
        onError,
        ...(offload ? { vnetHdr: true, offload: { csum: true, tso4: true }, slotCount: 64 } : {}),
      });
      const tun: PacketDevice = offload ? new OffloadTun(device) : device;
      undo.push(() => tun.close());
      const wan = openRawSender({ device: o.wan, onError });
      undo.push(() => wan.close());
      const esp = openRawSocket(50, { device: o.wan, onError });
      undo.push(() => esp.close());
      const ah = openRawSocket(51, { device: o.wan, onError });
      undo.push(() => ah.close());
      devices = { tun, wan, receivers: [esp, ah] };
    }
    if (o.route !== undefined) {
      const { remote, gateway } = o.route;
      ip(['route', 'replace', `${remote}/32`, 'via', gateway, 'dev', o.wan, 'metric', '100']);
      undo.push(() => ip(['route', 'del', `${remote}/32`, 'via', gateway, 'dev', o.wan, 'metric', '100']));
      ip(['route', 'replace', `${remote}/32`, 'dev', o.tun]);
      // Leave the clear route behind as it was before the peer started.
      undo.push(() => ip(['route', 'replace', `${remote}/32`, 'via', gateway, 'dev', o.wan]));
    }
    let ike: IkeService | undefined;
    if (ikeConfig !== undefined) {
      const address = interfaceAddress(o.wan);
      addIkeBypass(engine, [ikeConfig.port ?? PEER_IKE_PORT, ikeConfig.nattPort ?? PEER_NATT_PORT]);
      ike = await startPeerIke({
        config: ikeConfig,
        address,
        engine,
        clock: o.clock ?? new SystemClock(),
        log,
      });
      const service = ike;
      undo.push(() => void service.close());
      log.info('IKE listening', {
        address,
        port: ikeConfig.port ?? PEER_IKE_PORT,
        nattPort: ikeConfig.nattPort ?? PEER_NATT_PORT,
        initiate: ikeConfig.peers.filter((p) => p.initiate).map((p) => `${p.address}:${p.port}`),
      });
    }
    const forwarder = new PeerForwarder(engine, devices);
    forwarder.start();
    undo.push(() => forwarder.stop());
    const status = (): DaemonStatus => ({
      role: 'peer',
      summary: {
        keying: source,
        tun: o.tun,
        wan: o.wan,
        ...(o.route !== undefined ? { remote: `${o.route.remote} via ${o.route.gateway}` } : {}),
        policies: spd.policies.length,
        'worst-case overhead': engine.maxOverhead(),
      },
      tables: [
        {
          title: 'Security policies (SPD)',
          columns: ['NAME', 'ACTION', 'PROTECT'],
          rows: spd.policies.map((p) => [p.name, p.action, p.template.join('+') || '-']),
        },
        ...(ike?.tables() ?? []),
      ],
      counters: { ...forwarder.counters(), ...(ike?.counters() ?? {}) },
    });
    let server: Server | undefined;
    if (o.control ?? true) {
      const path = controlSocketPath(o.runDir, 'peer');
      server = await startControlServer(path, status);
      const s = server;
      undo.push(() => {
        s.close();
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      });
    }
    log.info('peer running', { keying: source, tun: o.tun, wan: o.wan });
    let stopped = false;
    return {
      forwarder,
      ike,
      status,
      async stop() {
        if (stopped) return;
        stopped = true;
        // IKE first, while the data path still carries its Delete notifications.
        await ike?.close();
        unwind();
        log.info('peer stopped');
      },
    };
  } catch (e) {
    unwind();
    throw e;
  }
}
