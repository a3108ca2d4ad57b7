/**
 * IKE in `distnat peer`: an endpoint with an address of its own (the
 * server), so it listens on the classic ports 500 and 4500 of its WAN
 * address, uses its own certificate (issued by the root, or any CA the
 * hosts trust) and random inbound SPIs. Child SAs with distnat hosts are
 * narrowed to the ports their certificates bind (hostToHostPolicy), and a
 * host whose certificate the router revoked is refused once the CRL says so.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ExitCode, UserError } from '../cli/exit-codes.ts';
import type { IkeConfig } from '../config/ike-config.ts';
import { loadCertificates } from '../ike/certs.ts';
import { ikeBypassPolicy } from '../ike/engine-sad.ts';
import { startIkeService, type IkeService } from '../ike/service.ts';
import { UdpTransport } from '../ike/udp-transport.ts';
import type { IpsecEngine } from '../ipsec/engine.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../util/log.ts';

export const PEER_IKE_PORT = 500;
export const PEER_NATT_PORT = 4500;

/**
 * The first IPv4 address of an interface (in this namespace). Read with
 * `ip`, not os.networkInterfaces(), which leaves out interfaces without
 * carrier: a WAN link that comes up a moment after the peer still counts.
 */
export function interfaceAddress(name: string): string {
  let found: string | undefined;
  try {
    const out = execFileSync('ip', ['-4', '-j', 'addr', 'show', 'dev', name], { encoding: 'utf8' });
    const links = JSON.parse(out) as { addr_info?: { local?: string }[] }[];
    found = links[0]?.addr_info?.find((a) => a.local !== undefined)?.local;
  } catch {
    found = undefined;
  }
  if (found === undefined)
    throw new UserError(
      `--wan-if ${name}: no such interface, or it has no IPv4 address to run IKE on`,
      ExitCode.CONFIG,
    );
  return found;
}

function readPem(file: string | undefined, field: string): string {
  if (file === undefined) throw new Error(`${field}: a peer needs its own ${field} in the IKE file`);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${field}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** IKE's ports bypass the SPD ahead of everything else; call before the first child SA. */
export function addIkeBypass(engine: IpsecEngine, ports: readonly number[]): void {
  ports.forEach((port, i) => engine.spd.add(ikeBypassPolicy(`ike-${port}`, port), i));
}

export async function startPeerIke(o: {
  readonly config: IkeConfig;
  readonly address: string;
  readonly engine: IpsecEngine;
  readonly clock: Clock;
  readonly log: Logger;
}): Promise<IkeService> {
  const port = o.config.port ?? PEER_IKE_PORT;
  const nattPort = o.config.nattPort ?? PEER_NATT_PORT;
  const [certificate, ...chain] = loadCertificates(readPem(o.config.certificate, 'certificate'));
  if (certificate === undefined) throw new Error(`certificate: no certificate in ${o.config.certificate}`);
  const key = readPem(o.config.key, 'key');
  const transport = await UdpTransport.open({ address: o.address, port, nattPort });
  try {
    return startIkeService({
      config: o.config,
      transport,
      identity: { certificate, chain, privateKey: key },
      engine: o.engine,
      clock: o.clock,
      log: o.log,
    });
  } catch (e) {
    transport.close();
    throw e;
  }
}
