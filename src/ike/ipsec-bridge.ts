/**
 * From a negotiated child SA to the parameters of src/ipsec's EspSa, so the
 * host agent can install what IKE made without knowing IKE's key layout.
 */
import type { EspSaParams } from '../ipsec/sa.ts';
import { ipv4ToNumber } from './selectors.ts';
import type { NegotiatedChildSa } from './policy.ts';

export function childSaParams(c: NegotiatedChildSa): { inbound: EspSaParams; outbound: EspSaParams } {
  const local = ipv4ToNumber(c.local.address);
  const remote = ipv4ToNumber(c.remote.address);
  const common = {
    mode: c.mode,
    esn: c.esn,
    encryption: c.encryption,
    integrity: c.integrity,
    lifetime: c.lifetime,
  } as const;
  const tunnel = (l: number, r: number): EspSaParams['tunnel'] =>
    c.mode === 'tunnel' ? { local: l, remote: r } : undefined;
  return {
    inbound: {
      ...common,
      spi: c.inbound.spi,
      direction: 'inbound',
      encryptionKey: c.inbound.encryptionKey,
      integrityKey: c.integrity ? c.inbound.integrityKey : undefined,
      tunnel: tunnel(local, remote),
      encap: c.encap,
      name: `ike-${c.id}-in`,
    },
    outbound: {
      ...common,
      spi: c.outbound.spi,
      direction: 'outbound',
      encryptionKey: c.outbound.encryptionKey,
      integrityKey: c.integrity ? c.outbound.integrityKey : undefined,
      tunnel: tunnel(local, remote),
      encap: c.encap,
      name: `ike-${c.id}-out`,
    },
  };
}
