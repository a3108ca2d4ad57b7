/**
 * One router per LAN. Two routers on one LAN would lease the same ports to
 * different hosts and each tunnel the other's replies to the wrong host, so a
 * starting router first asks the LAN whether a router is already there.
 *
 * The probe is an ordinary PAP message every router already answers and that
 * changes nothing: a port invalidate (type 32, code 2, R = 0) for port 0,
 * epoch 0, with a random transaction id. Port 0 is never in a pool, so a
 * router answers it as it answers any invalidate of a port it never leased:
 * a port response, code 0 (failure), status 3 (unknown lease), the same
 * transaction id, from its own LAN address and UDP 7032. The probe goes to
 * the LAN's broadcast address, UDP 7032.
 *
 * A router's PAP socket is bound to its LAN address, and Linux does not
 * deliver broadcasts to a socket bound to a unicast address; so each running
 * router also listens on <broadcast>:7032 (SO_REUSEADDR, so that routers of
 * several LANs on one machine can all listen) and answers probes there, and
 * nothing else, through its PAP socket. Hosts bind their LAN address and an
 * ephemeral port: a probe never reaches them.
 *
 * The prober ignores answers from its own LAN address, answers that are not
 * responses, and answers with another transaction id. Two routers started in
 * the same ~300 ms window can both miss each other: the probe closes the
 * common case (a second router brought up by mistake), not a race.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { emitPap, PAP_MESSAGE_LENGTH, parsePap, PapStatus } from '../../wire/pap.ts';
import type { PapPeer } from '../../pap/transport.ts';

/** How long a starting router waits for another router's answer. */
export const LAN_PROBE_WAIT_MS = 300;

/** The directed broadcast address of the interface carrying `address`, or undefined (no such address, or a /31, /32). */
export function lanBroadcastOf(address: string): string | undefined {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) {
      if (a.family !== 'IPv4' || a.address !== address) continue;
      const bits = Number(a.cidr?.split('/')[1] ?? 32);
      if (bits >= 31) return undefined;
      const ip = toNumber(a.address);
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      return fromNumber((ip | ~mask) >>> 0);
    }
  return undefined;
}

const toNumber = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const fromNumber = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');

/** Whether `bytes` is the probe (a port invalidate of port 0), the only message a probe listener answers. */
export function isLanProbe(bytes: Uint8Array): boolean {
  const m = parsePap(bytes, 0, bytes.length);
  return m.ok && m.value.kind === 'port-invalidate' && m.value.port === 0;
}

export interface LanProbeOptions {
  /** The starting router's LAN address: the probe's source, and answers from it are ignored. */
  readonly lanAddress: string;
  /** The LAN's broadcast address. */
  readonly broadcast: string;
  readonly port: number;
  readonly waitMs?: number;
}

/** Broadcasts the probe and resolves with the first other router that answers, or undefined. */
export function probeLanForRouter(o: LanProbeOptions): Promise<PapPeer | undefined> {
  const txid = randomInt(1, 0xffffffff);
  const probe = new Uint8Array(PAP_MESSAGE_LENGTH);
  emitPap(
    { kind: 'port-invalidate', port: 0, status: PapStatus.Ok, transactionId: txid, epoch: 0, leaseTime: 0 },
    probe,
  );
  const socket = createSocket({ type: 'udp4' });
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (found: PapPeer | undefined, err?: Error) => {
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(found);
    };
    socket.once('error', (e) => finish(undefined, e));
    socket.on('message', (msg, rinfo) => {
      if (rinfo.address === o.lanAddress) return;
      const m = parsePap(msg, 0, msg.length);
      if (!m.ok || m.value.transactionId !== txid) return;
      if (m.value.kind !== 'port-response') return;
      finish({ address: rinfo.address, port: rinfo.port });
    });
    socket.bind({ address: o.lanAddress, port: 0 }, () => {
      socket.setBroadcast(true);
      socket.send(probe, o.port, o.broadcast, (e) => {
        if (e) finish(undefined, e);
        else timer = setTimeout(() => finish(undefined), o.waitMs ?? LAN_PROBE_WAIT_MS);
      });
    });
  });
}

/**
 * Listens on broadcast:port for probes and hands each (and nothing else) to
 * `answer`, which replies from the router's PAP socket. Resolves with a close.
 */
export function listenForLanProbes(o: {
  readonly broadcast: string;
  readonly port: number;
  readonly answer: (bytes: Uint8Array, peer: PapPeer) => void;
}): Promise<() => Promise<void>> {
  const socket: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: o.broadcast, port: o.port }, () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      socket.on('message', (msg, rinfo) => {
        if (isLanProbe(msg)) o.answer(msg, { address: rinfo.address, port: rinfo.port });
      });
      resolve(() => new Promise<void>((done) => socket.close(() => done())));
    });
  });
}
