/**
 * IKE in `distnat peer`: an endpoint with an address of its own (the
 * server), so it listens on the classic ports 500 and 4500 of its WAN
 * address, uses its own certificate (issued by the root, or any CA the
 * hosts trust) and random inbound SPIs. Child SAs with distnat hosts are
 * narrowed to the ports their certificates bind (hostToHostPolicy), and a
 * host whose certificate the router revoked is refused once the CRL says so.
 */
import { addressOf } from '../../io/interfaces.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { readPemFile, type IkeConfig } from '../../config/ike-config.ts';
import { loadCertificates } from '../../ike/certs.ts';
import { ikeBypassPolicy } from '../../ike/engine-sad.ts';
import { startIkeService, type IkeService } from '../../ike/service.ts';
import { UdpTransport } from '../../ike/udp-transport.ts';
import type { IpsecEngine } from '../../ipsec/engine.ts';
import type { Clock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';

export const PEER_IKE_PORT = 500;
export const PEER_NATT_PORT = 4500;

/** The WAN interface's address, which IKE binds to and claims in NAT detection. */
export function interfaceAddress(name: string): string {
  const found = addressOf(name);
  if (found === undefined)
    throw new UserError(
      `--wan-if ${name}: no such interface, or it has no IPv4 address to run IKE on`,
      ExitCode.CONFIG,
    );
  return found;
}

function readPem(file: string | undefined, field: string): string {
  if (file === undefined) throw new Error(`${field}: a peer needs its own ${field} in the IKE file`);
  return readPemFile(file, field);
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
