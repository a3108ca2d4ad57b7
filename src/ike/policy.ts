/**
 * The hooks through which the host agent and `distnat peer` take part in
 * IKE: where inbound SPIs come from, where negotiated child SAs go, who may
 * authenticate, and which traffic a child SA may carry.
 *
 * On a host behind distnat (patent FIG. 22-25):
 * - SPIs come from the SPI block the host leased with PAP (FIG. 24 step 324:
 *   "a locally unique security value is selected ... from a stored list");
 *   `spiAllocatorFromBlocks` turns the leased blocks into an allocator.
 * - The certificate is the host certificate from the router's local CA,
 *   binding its key to the shared address and its port (and SPI) blocks.
 * A peer checks the other side with `portBindingAuthorizer`: a certificate
 * that carries a port binding must cover the address and UDP port IKE talks
 * to, and the child SA's selectors are narrowed to the certified ports.
 */
import type { SaLifetime } from '../ipsec/sa.ts';
import type { X509Certificate } from 'node:crypto';
import type { Block } from '../util/block.ts';
import { verifyHostCertificate } from '../pki/index.ts';
import type { PortBinding } from '../pki/index.ts';
import { x509 } from '../pki/x509.ts';
import type { EspEncryption, IntegrityAlgorithm, IpsecMode } from '../ipsec/types.ts';
import type { IdPayload } from './payloads.ts';
import type { Endpoint } from './nat.ts';
import { bindingSelectors, hostSelector, narrow, type Ipv4Selector } from './selectors.ts';
import { factsOf, type TrustAnchors } from './certs.ts';

/** Chooses the SPIs of our inbound child SAs. */
export interface SpiAllocator {
  /** A free SPI (>= 256), or undefined when none is left (the exchange fails with NO_ADDITIONAL_SAS). */
  allocateSpi(): number | undefined;
  /** Gives an SPI back once its SA is gone or was never made. */
  releaseSpi(spi: number): void;
}

/** One direction's keys of a negotiated child SA. */
export interface ChildSaKeys {
  readonly spi: number;
  /** For AES-GCM the key followed by the 4-byte salt, as src/ipsec's EspSa takes it. */
  readonly encryptionKey: Buffer;
  /** Empty for AES-GCM. */
  readonly integrityKey: Buffer;
}

/** What IKE negotiated for one ESP child SA pair: everything an SA database needs. */
export interface NegotiatedChildSa {
  /** Unique in this daemon, for logs and `remove`. */
  readonly id: number;
  readonly protocol: 'esp';
  readonly mode: IpsecMode;
  readonly encryption: EspEncryption;
  readonly encryptionKeyBits: number;
  readonly integrity: IntegrityAlgorithm | undefined;
  readonly esn: boolean;
  readonly inbound: ChildSaKeys;
  readonly outbound: ChildSaKeys;
  /** Selectors for traffic from us / from the peer. */
  readonly localSelectors: readonly Ipv4Selector[];
  readonly remoteSelectors: readonly Ipv4Selector[];
  /** The IKE endpoints: tunnel-mode outer addresses. */
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** ESP-in-UDP ports (RFC 3948) when NAT was detected or the peer asked for it; undefined for plain ESP. */
  readonly encap: { readonly localPort: number; readonly remotePort: number } | undefined;
  /** The child this one replaces (rekeying); its SAs stay until the old one is deleted. */
  readonly replaces: number | undefined;
  /** Our part in the exchange that made it: a rekey's responder keeps sending on the old SA until it goes. */
  readonly role: 'initiator' | 'responder';
  /** Data limits for each of the two SAs (src/ipsec SaLifetime), from the daemon's childLifetime. */
  readonly lifetime: SaLifetime | undefined;
}

/** The minimal SA database IKE feeds. Throwing from install fails the child SA (the peer is told). */
export interface ChildSaDatabase {
  install(sa: NegotiatedChildSa): void | Promise<void>;
  remove(sa: NegotiatedChildSa, reason: 'deleted' | 'rekeyed' | 'ike-gone'): void;
  /**
   * A database whose data plane counts bytes and packets calls `listener`
   * once per child SA and kind when one of its SAs crosses a limit of
   * `lifetime`: 'soft' to rekey, 'hard' when the SA no longer carries data.
   */
  watchLifetimes?(listener: (sa: NegotiatedChildSa, kind: 'soft' | 'hard') => void): void;
}

/** What a peer authenticated as, handed to the authorization hook. */
export interface PeerContext {
  /** Verified path: the peer's certificate first, our trust anchor last. */
  readonly path: readonly X509Certificate[];
  readonly id: IdPayload;
  /** Where its IKE messages come from (a distnat host: the shared address and one leased port). */
  readonly remote: Endpoint;
  /** The binding of a distnat host certificate, if the certificate carries one. */
  readonly binding: PortBinding | undefined;
  /** The selectors the first child SA proposes (empty when none is created): peer's side, our side. */
  readonly peerSelectors: readonly Ipv4Selector[];
  readonly ourSelectors: readonly Ipv4Selector[];
  readonly trust: TrustAnchors;
}

export type Authorization = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Decides whether an authenticated peer is welcome; refusal is answered with AUTHENTICATION_FAILED. */
export type PeerAuthorizer = (peer: PeerContext) => Authorization | Promise<Authorization>;

/** What a responder is asked about each child SA the peer proposes. */
export interface ChildContext {
  readonly remote: Endpoint;
  readonly local: Endpoint;
  readonly binding: PortBinding | undefined;
  /** The peer's proposal: selectors for its traffic and for ours. */
  readonly peerSelectors: readonly Ipv4Selector[];
  readonly ourSelectors: readonly Ipv4Selector[];
  readonly transportRequested: boolean;
}

export type ChildDecision =
  | {
      readonly ok: true;
      readonly peerSelectors: readonly Ipv4Selector[];
      readonly ourSelectors: readonly Ipv4Selector[];
      readonly mode: IpsecMode;
    }
  | { readonly ok: false };

/** Narrows or refuses (TS_UNACCEPTABLE) a child SA's selectors as responder. */
export type ChildPolicy = (child: ChildContext) => ChildDecision;

/** An allocator over leased SPI blocks (PAP), lowest free first; a function gives the blocks held now. */
export function spiAllocatorFromBlocks(
  blocks: readonly Block[] | (() => readonly Block[]),
): SpiAllocator & { readonly inUse: number } {
  const used = new Set<number>();
  const held = typeof blocks === 'function' ? blocks : () => blocks;
  return {
    allocateSpi() {
      for (const b of held())
        for (let s = Math.max(b.lowest, 256); s < b.lowest + b.count; s++)
          if (!used.has(s)) {
            used.add(s);
            return s;
          }
      return undefined;
    },
    releaseSpi(spi) {
      used.delete(spi);
    },
    get inUse() {
      return used.size;
    },
  };
}

/** Random SPIs for an endpoint with an address of its own (`distnat peer`): 256..2^32-1, not reused while live. */
export function randomSpiAllocator(
  random: () => number = () => Math.floor(Math.random() * 0xffffffff),
): SpiAllocator {
  const used = new Set<number>();
  return {
    allocateSpi() {
      for (let i = 0; i < 64; i++) {
        const s = random() >>> 0;
        if (s >= 256 && !used.has(s)) {
          used.add(s);
          return s;
        }
      }
      return undefined;
    },
    releaseSpi(spi) {
      used.delete(spi);
    },
  };
}

/**
 * The default authorization: a certificate with a distnat port binding must
 * pass src/pki's verifyHostCertificate for the peer's address and IKE port
 * (chain, name constraints, CRL, coverage); one without is accepted as the
 * chain check already did (a peer with an address of its own), unless
 * `requireBinding`.
 */
export function portBindingAuthorizer(options: { requireBinding?: boolean } = {}): PeerAuthorizer {
  return async (peer) => {
    const leaf = peer.path[0]!;
    if (peer.binding === undefined)
      return options.requireBinding
        ? { ok: false, reason: 'certificate carries no distnat port binding' }
        : { ok: true };
    const issuerName = new x509.X509Certificate(leaf.raw).issuerName.toString();
    const crl = (peer.trust.crls ?? []).find((c) => c.issuerName.toString() === issuerName) ?? null;
    const roots = peer.path.slice(-1).map((c) => c.raw);
    const intermediates = peer.path.slice(1, -1).map((c) => c.raw);
    const verdict = await verifyHostCertificate(
      new x509.X509Certificate(leaf.raw),
      {
        roots: roots.map((r) => new x509.X509Certificate(r)),
        intermediates: intermediates.map((r) => new x509.X509Certificate(r)),
      },
      crl,
      { address: peer.remote.address, ports: [peer.remote.port] },
    );
    return verdict.ok ? { ok: true } : { ok: false, reason: `${verdict.reason}: ${verdict.detail}` };
  };
}

/** The binding of a verified certificate, if it has one. */
export function bindingOf(cert: X509Certificate): PortBinding | undefined {
  try {
    return factsOf(cert).binding;
  } catch {
    return undefined;
  }
}

/**
 * The default responder policy: host-to-host. The peer's traffic must come
 * from its IKE address (and, for a distnat host, from its certified ports),
 * ours from our IKE address; transport mode is granted when asked for.
 */
export function hostToHostPolicy(options: { allowTransport?: boolean } = {}): ChildPolicy {
  return (c) => {
    const peerAllowed = c.binding
      ? bindingSelectors(c.binding.address, c.binding.ports)
      : [hostSelector(c.remote.address)];
    const peerSelectors = narrow(c.peerSelectors, peerAllowed);
    const ourSelectors = narrow(c.ourSelectors, [hostSelector(c.local.address)]);
    if (peerSelectors.length === 0 || ourSelectors.length === 0) return { ok: false };
    return {
      ok: true,
      peerSelectors,
      ourSelectors,
      mode: c.transportRequested && options.allowTransport !== false ? 'transport' : 'tunnel',
    };
  };
}

/** A policy from fixed selector lists: the peer's side and ours are narrowed to them. */
export function selectorPolicy(
  peerAllowed: readonly Ipv4Selector[],
  ourAllowed: readonly Ipv4Selector[],
  options: { allowTransport?: boolean } = {},
): ChildPolicy {
  return (c) => {
    const peerSelectors = narrow(c.peerSelectors, peerAllowed);
    const ourSelectors = narrow(c.ourSelectors, ourAllowed);
    if (peerSelectors.length === 0 || ourSelectors.length === 0) return { ok: false };
    return {
      ok: true,
      peerSelectors,
      ourSelectors,
      mode: c.transportRequested && options.allowTransport !== false ? 'transport' : 'tunnel',
    };
  };
}
