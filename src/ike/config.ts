/**
 * The daemon's options, and their resolved form with every default filled in.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import type { Clock } from '../util/clock.ts';
import { loadCertificates, type IdentitySpec, type TrustAnchors } from './certs.ts';
import { MIN_FRAGMENT_DATAGRAM } from './fragments.ts';
import type { Endpoint } from './nat.ts';
import {
  hostToHostPolicy,
  portBindingAuthorizer,
  randomSpiAllocator,
  type ChildPolicy,
  type ChildSaDatabase,
  type PeerAuthorizer,
  type SpiAllocator,
} from './policy.ts';
import {
  DEFAULT_ESP_PROPOSALS,
  DEFAULT_IKE_PROPOSALS,
  parseProposal,
  type ProposalConfig,
} from './proposal.ts';
import type { Ipv4Selector } from './selectors.ts';
import type { IpsecMode } from '../ipsec/types.ts';

/** Retransmission of requests (RFC 7296 2.1): timeout, then timeout * base, * base^2 ... */
export interface RetransmitOptions {
  /** First wait, default 1000 ms. */
  readonly timeoutMs?: number;
  /** Growth per retransmission, default 2. */
  readonly base?: number;
  /** Retransmissions before the peer counts as dead, default 5 (63 s in all with the defaults). */
  readonly tries?: number;
}

export interface LocalIdentity {
  /** Our certificate (PEM or DER). */
  readonly certificate: string | Uint8Array | X509Certificate;
  /** CA certificates to send along (the local CA for a distnat host), PEM or DER. */
  readonly chain?: readonly (string | Uint8Array | X509Certificate)[];
  /** PKCS #8 PEM or a KeyObject. */
  readonly privateKey: string | KeyObject;
  /** What IDi/IDr says; default the certificate's subject DN. */
  readonly id?: IdentitySpec;
}

/** What to ask for in a child SA (initiator side). */
export interface ChildRequest {
  readonly mode?: IpsecMode;
  /** Our side; default our IKE address, all protocols and ports. */
  readonly localSelectors?: readonly Ipv4Selector[];
  /** The peer's side; default its IKE address. */
  readonly remoteSelectors?: readonly Ipv4Selector[];
  /** Override the daemon's ESP proposals. */
  readonly proposals?: readonly (ProposalConfig | string)[];
}

export type LogLevel = 'debug' | 'info' | 'warn';

export interface IkeDaemonOptions {
  readonly transport: import('./transport.ts').IkeTransport;
  readonly clock?: Clock;
  readonly identity: LocalIdentity;
  readonly trust: {
    readonly roots: readonly (string | Uint8Array | X509Certificate)[];
    readonly crls?: TrustAnchors['crls'];
  };
  readonly ikeProposals?: readonly (ProposalConfig | string)[];
  readonly espProposals?: readonly (ProposalConfig | string)[];
  /** Inbound SPIs of child SAs; default random (a distnat host passes its leased block). */
  readonly spis?: SpiAllocator;
  /** Where negotiated child SAs go; default nowhere (IKE only). */
  readonly sad?: ChildSaDatabase;
  /** Default portBindingAuthorizer(). */
  readonly authorize?: PeerAuthorizer;
  /** Responder's child SA policy; default hostToHostPolicy(). */
  readonly childPolicy?: ChildPolicy;
  /** Half-open SAs at which IKE_SA_INIT without a valid cookie is answered with COOKIE; default 16. 0: always. */
  readonly cookieThreshold?: number;
  /** Half-open SAs beyond which new IKE_SA_INIT requests are dropped, cookie or not; default 5000. */
  readonly halfOpenLimit?: number;
  /** A responder's SA that is not authenticated within this time goes; default 30 s. */
  readonly halfOpenTimeoutMs?: number;
  readonly retransmit?: RetransmitOptions;
  /** Liveness check after this long without hearing from the peer; 0 (default) off. */
  readonly dpdIntervalMs?: number;
  /** Rekey the IKE SA / child SAs we initiated after this long; 0 (default) never. */
  readonly ikeRekeyMs?: number;
  readonly childRekeyMs?: number;
  /**
   * Rekeys and liveness checks the daemon starts on its own, across all SAs:
   * at most `burst` at once, `perSecond` after that; what is over waits its
   * turn. Default 50 per second, burst 100; perSecond 0: no limit. Calls to
   * rekeyChild, rekeyIke and checkLiveness are not paced.
   */
  readonly maintenanceRate?: { readonly perSecond: number; readonly burst?: number };
  /** Limits on the data a child SA carries, enforced by the data plane; default none. */
  readonly childLifetime?: ChildLifetime;
  /** Pretend to be behind a NAT so that the peer must use ESP-in-UDP (strongSwan's encap=yes). */
  readonly forceEncap?: boolean;
  /** Rotation of the cookie secret; default 60 s. */
  readonly cookieRotateMs?: number;
  /** Announce SIGNATURE_HASH_ALGORITHMS (RFC 7427); default true. Without it both sides use AUTH methods 1 and 9. */
  readonly signatureHashes?: boolean;
  /** Sign our AUTH with RSASSA-PSS (RFC 7427) when our key is RSA and the peer takes RFC 7427; default false. */
  readonly rsaPss?: boolean;
  /**
   * IKE fragmentation (RFC 7383): announce IKEV2_FRAGMENTATION_SUPPORTED and,
   * when the peer does too, send messages that would not fit `fragmentSize`
   * as encrypted fragments. Default true.
   */
  readonly fragmentation?: boolean;
  /** The largest IP datagram (IPv4 and UDP headers included) an IKE message may take; default 1280, at least 576. */
  readonly fragmentSize?: number;
  /** Bounds on what reassembly keeps (RFC 7383 2.6). */
  readonly fragmentLimits?: FragmentLimitOptions;
  readonly log?: (level: LogLevel, message: string) => void;
}

/**
 * Data a child SA may carry, counted by the data plane per SA (each
 * direction on its own): past `rekey*` IKE rekeys the child, whichever end
 * made it; past `life*` the data plane stops using the SA and IKE deletes
 * it. As strongSwan's rekey_bytes / life_bytes and the packet pairs.
 */
export interface ChildLifetime {
  readonly rekeyBytes?: number;
  readonly lifeBytes?: number;
  readonly rekeyPackets?: number;
  readonly lifePackets?: number;
}

export interface FragmentLimitOptions {
  /** Total Fragments above this is refused; default 64. */
  readonly maxFragments?: number;
  /** Bytes one reassembled message may have; default 32 KiB. */
  readonly maxMessageBytes?: number;
  /** A message not complete this long after its first fragment is dropped; default 10 s. */
  readonly timeoutMs?: number;
  /** Bytes all reassemblies of the daemon may hold together; default 4 MiB. */
  readonly memoryBytes?: number;
}

export interface ResolvedConfig {
  readonly identity: {
    readonly certificate: X509Certificate;
    readonly chain: readonly X509Certificate[];
    readonly privateKey: KeyObject;
    readonly id: IdentitySpec;
  };
  readonly trust: TrustAnchors;
  readonly ikeProposals: readonly ProposalConfig[];
  readonly espProposals: readonly ProposalConfig[];
  readonly spis: SpiAllocator;
  readonly sad: ChildSaDatabase | undefined;
  readonly authorize: PeerAuthorizer;
  readonly childPolicy: ChildPolicy;
  readonly cookieThreshold: number;
  readonly halfOpenLimit: number;
  readonly halfOpenTimeoutMs: number;
  readonly retransmit: Required<RetransmitOptions>;
  readonly dpdIntervalMs: number;
  readonly ikeRekeyMs: number;
  readonly childRekeyMs: number;
  readonly childLifetime: ChildLifetime;
  readonly maintenanceRate: { readonly perSecond: number; readonly burst: number };
  readonly forceEncap: boolean;
  readonly cookieRotateMs: number;
  readonly signatureHashes: boolean;
  readonly rsaPss: boolean;
  readonly fragmentation: boolean;
  readonly fragmentSize: number;
  readonly fragmentLimits: Required<FragmentLimitOptions>;
}

const asCert = (c: string | Uint8Array | X509Certificate): X509Certificate[] =>
  typeof c === 'string' || c instanceof Uint8Array ? loadCertificates(c) : [c];

export const proposals = (
  list: readonly (ProposalConfig | string)[],
  kind: 'ike' | 'esp',
): ProposalConfig[] => list.map((p) => (typeof p === 'string' ? parseProposal(p, kind) : p));

/** Reads an identity; throws when the key does not belong to the certificate. */
export function resolveIdentity(identity: LocalIdentity): ResolvedConfig['identity'] {
  const [certificate] = asCert(identity.certificate);
  const privateKey =
    typeof identity.privateKey === 'string' ? createPrivateKey(identity.privateKey) : identity.privateKey;
  if (!certificate!.checkPrivateKey(privateKey))
    throw new Error('the private key does not belong to the certificate');
  return {
    certificate: certificate!,
    chain: (identity.chain ?? []).flatMap(asCert),
    privateKey,
    id: identity.id ?? { type: 'dn' },
  };
}

/** Fills in defaults; throws for unusable options (a key that does not match the certificate, ...). */
export function resolveConfig(o: IkeDaemonOptions): ResolvedConfig {
  return {
    identity: resolveIdentity(o.identity),
    trust: { roots: o.trust.roots.flatMap(asCert), crls: o.trust.crls ?? [] },
    ikeProposals: proposals(o.ikeProposals ?? DEFAULT_IKE_PROPOSALS, 'ike'),
    espProposals: proposals(o.espProposals ?? DEFAULT_ESP_PROPOSALS, 'esp'),
    spis: o.spis ?? randomSpiAllocator(),
    sad: o.sad,
    authorize: o.authorize ?? portBindingAuthorizer(),
    childPolicy: o.childPolicy ?? hostToHostPolicy(),
    cookieThreshold: o.cookieThreshold ?? 16,
    halfOpenLimit: o.halfOpenLimit ?? 5000,
    halfOpenTimeoutMs: o.halfOpenTimeoutMs ?? 30_000,
    retransmit: {
      timeoutMs: o.retransmit?.timeoutMs ?? 1000,
      base: o.retransmit?.base ?? 2,
      tries: o.retransmit?.tries ?? 5,
    },
    dpdIntervalMs: o.dpdIntervalMs ?? 0,
    ikeRekeyMs: o.ikeRekeyMs ?? 0,
    childRekeyMs: o.childRekeyMs ?? 0,
    childLifetime: checkedLifetime(o.childLifetime ?? {}),
    maintenanceRate: {
      perSecond: o.maintenanceRate?.perSecond ?? 50,
      burst: o.maintenanceRate?.burst ?? 2 * (o.maintenanceRate?.perSecond ?? 50),
    },
    forceEncap: o.forceEncap ?? false,
    cookieRotateMs: o.cookieRotateMs ?? 60_000,
    signatureHashes: o.signatureHashes ?? true,
    rsaPss: o.rsaPss ?? false,
    fragmentation: o.fragmentation ?? true,
    fragmentSize: checkedFragmentSize(o.fragmentSize ?? 1280),
    fragmentLimits: {
      maxFragments: o.fragmentLimits?.maxFragments ?? 64,
      maxMessageBytes: o.fragmentLimits?.maxMessageBytes ?? 32 * 1024,
      timeoutMs: o.fragmentLimits?.timeoutMs ?? 10_000,
      memoryBytes: o.fragmentLimits?.memoryBytes ?? 4 * 1024 * 1024,
    },
  };
}

function checkedLifetime(l: ChildLifetime): ChildLifetime {
  for (const [k, v] of Object.entries(l))
    if (v !== undefined && (typeof v !== 'number' || !(v > 0)))
      throw new RangeError(`childLifetime.${k} ${String(v)}: expected a positive number`);
  if (l.rekeyBytes !== undefined && l.lifeBytes !== undefined && l.rekeyBytes >= l.lifeBytes)
    throw new RangeError(
      'childLifetime.rekeyBytes must be below lifeBytes: the rekey needs time before expiry',
    );
  if (l.rekeyPackets !== undefined && l.lifePackets !== undefined && l.rekeyPackets >= l.lifePackets)
    throw new RangeError('childLifetime.rekeyPackets must be below lifePackets');
  return l;
}

function checkedFragmentSize(size: number): number {
  if (!Number.isInteger(size) || size < MIN_FRAGMENT_DATAGRAM || size > 65_535)
    throw new RangeError(
      `fragmentSize ${size}: expected a datagram size from ${MIN_FRAGMENT_DATAGRAM} to 65535`,
    );
  return size;
}

export type { Endpoint };
