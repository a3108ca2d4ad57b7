/** Two IKE daemons on an in-memory network, with recording SA databases. */
import { IkeDaemon } from '../../../src/ike/daemon.ts';
import type { IkeDaemonOptions } from '../../../src/ike/config.ts';
import type { IkeEvent } from '../../../src/ike/ike-sa.ts';
import {
  spiAllocatorFromBlocks,
  type ChildSaDatabase,
  type NegotiatedChildSa,
} from '../../../src/ike/policy.ts';
import { MemoryNetwork, type MemoryTransport } from '../../../src/ike/transport.ts';
import type { Clock } from '../../../src/util/clock.ts';
import { HOST_SPIS, PEER, SHARED, type Identity, type TestPki } from './pki-fixture.ts';

export class RecordingSad implements ChildSaDatabase {
  readonly installed = new Map<number, NegotiatedChildSa>();
  readonly removed: { sa: NegotiatedChildSa; reason: string }[] = [];
  refuse = false;
  install(sa: NegotiatedChildSa): void {
    if (this.refuse) throw new Error('refused by test');
    this.installed.set(sa.id, sa);
  }
  remove(sa: NegotiatedChildSa, reason: string): void {
    this.installed.delete(sa.id);
    this.removed.push({ sa, reason });
  }
  get live(): NegotiatedChildSa[] {
    return [...this.installed.values()];
  }
}

export interface Side {
  readonly daemon: IkeDaemon;
  readonly transport: MemoryTransport;
  readonly sad: RecordingSad;
  readonly events: IkeEvent[];
  readonly logs: string[];
}

export function side(
  net: MemoryNetwork,
  address: string,
  port: number,
  nattPort: number,
  id: Identity,
  pki: TestPki,
  extra: Partial<IkeDaemonOptions> = {},
  clock?: Clock,
): Side {
  const transport = net.attach(address, port, nattPort);
  const sad = new RecordingSad();
  const events: IkeEvent[] = [];
  const logs: string[] = [];
  const daemon = new IkeDaemon({
    transport,
    clock,
    identity: { certificate: id.certPem, chain: id.chainPem, privateKey: id.key },
    trust: { roots: [pki.rootPem] },
    sad,
    log: (level, m) => logs.push(`${level}: ${m}`),
    retransmit: { timeoutMs: 200, base: 2, tries: 3 },
    ...extra,
  });
  daemon.on((e) => events.push(e));
  return { daemon, transport, sad, events, logs };
}

/** A distnat host (shared address, leased port 1030, SPIs from its block) and a peer with its own address. */
export function hostAndPeer(
  pki: TestPki,
  hostExtra: Partial<IkeDaemonOptions> = {},
  peerExtra: Partial<IkeDaemonOptions> = {},
  options: { hostPort?: number; clock?: Clock } = {},
): { net: MemoryNetwork; host: Side; peer: Side } {
  const net = new MemoryNetwork();
  const hostPort = options.hostPort ?? 1030;
  const host = side(
    net,
    SHARED,
    hostPort,
    hostPort,
    pki.host,
    pki,
    { spis: spiAllocatorFromBlocks([HOST_SPIS]), ...hostExtra },
    options.clock,
  );
  const peer = side(net, PEER, 500, 4500, pki.peer, pki, peerExtra, options.clock);
  return { net, host, peer };
}

export const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** The two ends' SAs agree: each one's outbound is the other's inbound, keys included. */
export function pairsMatch(a: NegotiatedChildSa, b: NegotiatedChildSa): boolean {
  return (
    a.outbound.spi === b.inbound.spi &&
    a.inbound.spi === b.outbound.spi &&
    a.outbound.encryptionKey.equals(b.inbound.encryptionKey) &&
    a.inbound.encryptionKey.equals(b.outbound.encryptionKey) &&
    a.outbound.integrityKey.equals(b.inbound.integrityKey) &&
    a.inbound.integrityKey.equals(b.outbound.integrityKey) &&
    a.mode === b.mode &&
    a.encryption === b.encryption
  );
}
