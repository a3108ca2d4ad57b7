/** What a valid configuration file sets up, in the one line `distnat check` prints for it. */
import type { HostConfig } from '../../config/host-config.ts';
import type { IkeConfig } from '../../config/ike-config.ts';
import type { RouterConfig } from '../../config/router-config.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import type { Settled } from '../../config/schema-walk.ts';
import type { ManualKeyingConfig } from '../../ipsec/manual-config.ts';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function routerSummary(c: RouterConfig): string {
  const [lo, hi] = c.pap.portRange;
  return (
    `router: shared ${sharedAddressesOf(c).join(', ')}, LAN ${c.lanAddress}, ` +
    `ports ${lo}-${hi} in ${plural((hi - lo + 1) / c.pap.blockSize, 'block')} of ${c.pap.blockSize}, ` +
    `SPIs from ${c.pap.spiFirst} in blocks of ${c.pap.spiBlockSize}, lease ${c.pap.leaseSeconds} s` +
    (c.pki === undefined ? '' : `, local CA on port ${c.pki.port}`)
  );
}

export function hostSummary(c: Settled<HostConfig>): string {
  const keying = c.ipsec !== undefined ? ', manual keying' : c.ike !== undefined ? ', IKE' : '';
  return (
    `host: LAN ${c.lanAddress} via router ${c.router}, shared ${c.sharedAddress ?? `from ${c.tun}`}, ` +
    `${c.mode} mode, PAP over ${c.pap?.transport}${keying}`
  );
}

export const ipsecSummary = (c: ManualKeyingConfig): string =>
  `manual keying: ${plural(c.sas.length, 'SA')}, ${c.policies.length} ${c.policies.length === 1 ? 'policy' : 'policies'}, ` +
  `default ${c.defaultAction}`;

export const ikeSummary = (c: IkeConfig): string =>
  `IKE: ${plural(c.trust.length, 'trusted root file')}, ${plural(c.peers.length, 'peer')}, ` +
  (c.certificate !== undefined
    ? 'own certificate'
    : // The file does not say whose it is; `distnat peer --ike` refuses it at start.
      'certificate from the router (for a host: a peer needs certificate and key)');
