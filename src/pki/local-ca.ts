import { isIPv4 } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import { SubjectAlternativeName, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import type { Block, ResourceKind } from '../util/block.ts';
import { addressIndexOfSlot, portOfSlot } from '../util/block.ts';
import type { Clock } from '../util/clock.ts';
import { BACKDATE_MS, CaError, caAddresses, CertificateAuthority } from './authority.ts';
import { describePublicKey, KeyPolicyError } from './keys.ts';
import { toPem } from './pem.ts';
import { hostExtensions, hostName, signCertificate } from './profile.ts';
import type { IssuedCertificate, RevocationReason } from './registry.ts';
import type { RevocationRecord, SharedRevocationList } from './shared-revocations.ts';
import { x509 } from './x509.ts';

/**
 * A block a host holds, as the router's lease table reports it: the CA needs
 * only these fields of a lease, and takes them by shape so that it does not
 * depend on the allocation protocol that grants them.
 */
export interface HeldLease extends Block {
  readonly kind: ResourceKind;
  /** The host's LAN address. */
  readonly host: string;
  /** When the lease lapses unless renewed (ms since the Unix epoch). */
  readonly expiresAt: number;
}

/** Why a lease ended: the host gave it up, it ran out, or the router took it back. */
export type LeaseEnd = 'released' | 'expired' | 'withdrawn';

/** The leases a host holds right now, as the router's lease table reports them (LeaseTable.leasesOf). */
export interface HostLeaseInfo {
  readonly host: string;
  readonly leases: readonly HeldLease[];
}

export interface LocalCaOptions {
  readonly clock?: Clock;
  /** How long a host certificate may outlive the earliest-expiring lease it names. Default 60 s. */
  readonly marginSeconds?: number;
  /** nextUpdate minus thisUpdate of every CRL. Default 600 s. */
  readonly crlSeconds?: number;
  /** How long the registry keeps certificates after they expire. Default one day. */
  readonly retentionSeconds?: number;
  /** Told when a CRL made in the background (after a lease ended) could not be made. */
  readonly onError?: (e: Error) => void;
  /**
   * The list all routers of the shared address sign their CRL from (etcd).
   * Without it the CRL lists what this CA's registry holds as revoked.
   */
  readonly revocations?: SharedRevocationList;
  /** How long a revocation etcd did not take waits before it is offered again. Default 1 s. */
  readonly retryMs?: number;
  /**
   * The router's shared addresses in the order of its port slots
   * (util/block.ts: a port lease's lowest is address index x 65536 + port).
   * Default: the CA's first address alone, whose slots are its ports.
   */
  readonly routerAddresses?: readonly string[];
}

export type IssueRefusal =
  | 'malformed-csr'
  | 'bad-signature'
  | 'key-not-allowed'
  | 'no-lease'
  | 'unknown-address'
  | 'address-not-certified'
  | 'ca-expired';

/** A port block as its certificate names it: the shared address and ports on it. */
interface PlacedBlock extends Block {
  readonly address: string;
}

/**
 * The address a request asks to be certified on: the iPAddress of the
 * subjectAltName it requests (`openssl req -addext subjectAltName=IP:...`,
 * createCertificateRequest), undefined when it asks for none, null when the
 * extension cannot be read or names more than one address.
 */
export function requestedAddress(request: x509.Pkcs10CertificateRequest): string | undefined | null {
  const ext = request.getExtension(id_ce_subjectAltName);
  if (ext === null) return undefined;
  try {
    const ips = AsnConvert.parse(ext.value, SubjectAlternativeName)
      .map((g) => g.iPAddress)
      .filter((a): a is string => a !== undefined);
    if (ips.length > 1) return null;
    return ips[0];
  } catch {
    return null;
  }
}

export type IssueResult =
  | {
      readonly ok: true;
      readonly certificate: x509.X509Certificate;
      /** The host certificate, then the local CA and the root: what the host sends in IKE CERT payloads. */
      readonly chainPem: string;
      /** True when an identical certificate issued earlier was handed out again. */
      readonly reused: boolean;
    }
  | { readonly ok: false; readonly reason: IssueRefusal; readonly detail: string };

/** How a lease ended decides the CRL reason code (RFC 5280 5.3.1). */
const REASON_OF: Readonly<Record<LeaseEnd, RevocationReason>> = {
  withdrawn: 'privilegeWithdrawn',
  expired: 'privilegeWithdrawn',
  released: 'cessationOfOperation',
};

const contains = (outer: Block, inner: Block): boolean =>
  outer.lowest <= inner.lowest && inner.lowest + inner.count <= outer.lowest + outer.count;
const overlaps = (a: Block, b: Block): boolean =>
  a.lowest < b.lowest + b.count && b.lowest < a.lowest + a.count;
const sameRanges = (a: readonly Block[], b: readonly Block[]): boolean =>
  a.length === b.length && a.every((r, i) => r.lowest === b[i]!.lowest && r.count === b[i]!.count);
const byLowest = (a: Block, b: Block): number => a.lowest - b.lowest;

/**
 * The router as local certificate authority (FIG. 22-23, claims 33-39): it
 * certifies that a host's key owns the shared address plus the host's
 * leased port and SPI blocks, and revokes the certificate as soon as the
 * lease behind it ends, so a block never changes hands while a valid
 * certificate still names it. Register it as a listener on the lease table
 * (its onLease* methods have the listener's shape).
 */
export class LocalCa {
  readonly authority: CertificateAuthority;
  readonly #clock: Clock;
  readonly #marginMs: number;
  readonly #crlMs: number;
  readonly #retentionMs: number;
  readonly #onError: (e: Error) => void;
  #crl: x509.X509Crl | undefined;
  #crlDirty = false;
  #crlInFlight: Promise<x509.X509Crl> | undefined;
  readonly #shared: SharedRevocationList | undefined;
  readonly #retryMs: number;
  /** Revocations of this CA that etcd has not taken yet (it did not answer), by serial. */
  readonly #unshared = new Map<string, RevocationRecord>();
  #retry: { cancel(): void } | undefined;
  #failing = false;
  /** The shared list's number the last CRL was made with. */
  #madeNumber = -1;
  readonly #routerAddresses: readonly string[];

  constructor(authority: CertificateAuthority, o: LocalCaOptions = {}) {
    if (authority.settings.role !== 'local' || authority.settings.sharedAddress === undefined)
      throw new CaError(`${authority.dir} is not a local CA (made by \`distnat ca issue-local\`)`, 'invalid');
    this.authority = authority;
    this.#clock = o.clock ?? authority.clock;
    this.#marginMs = (o.marginSeconds ?? 60) * 1000;
    this.#crlMs = (o.crlSeconds ?? 600) * 1000;
    this.#retentionMs = (o.retentionSeconds ?? 86_400) * 1000;
    this.#onError = o.onError ?? (() => {});
    this.#crl = authority.lastCrl();
    this.#shared = o.revocations;
    this.#retryMs = o.retryMs ?? 1000;
    this.#routerAddresses = o.routerAddresses ?? [authority.settings.sharedAddress];
    // The CRL on disk was made from this router's view of the list, maybe long ago.
    if (this.#shared !== undefined) this.#crlDirty = true;
  }

  static async open(dir: string, o: LocalCaOptions = {}): Promise<LocalCa> {
    return new LocalCa(await CertificateAuthority.open(dir, o.clock), o);
  }

  /** The CA's first shared address. */
  get sharedAddress(): string {
    return this.authority.settings.sharedAddress!;
  }

  /** Every shared address the CA certifies, first first. */
  get sharedAddresses(): readonly string[] {
    return caAddresses(this.authority.settings);
  }

  /** The router's addresses this CA cannot certify (made before the router had them): hosts there are refused. */
  uncertifiedAddresses(): string[] {
    return this.#routerAddresses.filter((a) => !this.sharedAddresses.includes(a));
  }

  /** A leased port block (slots) as the address and ports a certificate names; undefined past the router's addresses. */
  #place(b: Block): PlacedBlock | undefined {
    const address = this.#routerAddresses[addressIndexOfSlot(b.lowest)];
    return address === undefined ? undefined : { address, lowest: portOfSlot(b.lowest), count: b.count };
  }

  /** A registry entry's address; entries written before CAs had several name none and are of the first. */
  #addressOf(e: IssuedCertificate): string {
    return e.address ?? this.sharedAddress;
  }

  get crlUrl(): string {
    return this.authority.settings.crlUrl!;
  }

  /** The local CA's certificate and the root's: what a host or peer needs to build the path. */
  caChainPem(): string {
    return this.authority.chainPem();
  }

  /**
   * Signs a certificate for the key in `csr`, binding it to one shared
   * address and to every port block the host holds on it, with every SPI
   * block the host holds (SPIs are one space per router). The address is
   * the one the request asks for (requestedAddress), else the first of the
   * router's addresses the host holds ports on. The CSR's subject and other
   * requested extensions are ignored: the router alone decides what it
   * vouches for. Valid from a minute ago until the earliest of the leases
   * it names ends plus the margin. Asking again with the same key and
   * unchanged leases returns the certificate already issued.
   */
  async issue(
    csr: string | Uint8Array | x509.Pkcs10CertificateRequest,
    lease: HostLeaseInfo,
  ): Promise<IssueResult> {
    let request: x509.Pkcs10CertificateRequest;
    try {
      request =
        csr instanceof x509.Pkcs10CertificateRequest
          ? csr
          : new x509.Pkcs10CertificateRequest(typeof csr === 'string' ? csr : Buffer.from(csr));
    } catch (e) {
      return {
        ok: false,
        reason: 'malformed-csr',
        detail: `not a PKCS #10 request: ${(e as Error).message}`,
      };
    }
    try {
      describePublicKey(request.publicKey.rawData);
    } catch (e) {
      if (e instanceof KeyPolicyError) return { ok: false, reason: 'key-not-allowed', detail: e.message };
      throw e;
    }
    let signed = false;
    try {
      signed = await request.verify();
    } catch {
      signed = false;
    }
    if (!signed)
      return {
        ok: false,
        reason: 'bad-signature',
        detail: 'the request is not signed by the key it carries',
      };

    const now = this.#clock.now();
    const live = lease.leases.filter((l) => l.host === lease.host && l.expiresAt > now);
    const placed = live
      .filter((l) => l.kind === 'port')
      .map((l) => ({ lease: l, at: this.#place(l) }))
      .filter((p): p is { lease: HeldLease; at: PlacedBlock } => p.at !== undefined);
    const asked = requestedAddress(request);
    if (asked === null || (asked !== undefined && !isIPv4(asked)))
      return {
        ok: false,
        reason: 'malformed-csr',
        detail: 'the requested subjectAltName must name one IPv4 address, the shared address to certify',
      };
    const address =
      asked ??
      this.#routerAddresses.find((a) => placed.some((p) => p.at.address === a)) ??
      this.sharedAddress;
    if (!this.#routerAddresses.includes(address))
      return {
        ok: false,
        reason: 'unknown-address',
        detail: `${address} is not a shared address of this router (${this.#routerAddresses.join(', ')})`,
      };
    if (!this.sharedAddresses.includes(address))
      return { ok: false, reason: 'address-not-certified', detail: this.#notCertified(address) };
    const mine = placed.filter((p) => p.at.address === address);
    const ports = mine.map((p) => ({ lowest: p.at.lowest, count: p.at.count }));
    const spiLeases = live.filter((l) => l.kind === 'spi');
    const spis = spiLeases.map(({ lowest, count }) => ({ lowest, count }));
    if (ports.length === 0)
      return {
        ok: false,
        reason: 'no-lease',
        detail: `${lease.host} holds no port block on ${address}: lease one with PAP first`,
      };
    const held = [...mine.map((p) => p.lease), ...spiLeases];
    ports.sort(byLowest);
    spis.sort(byLowest);

    const caEnd = this.authority.certificate.notAfter.getTime();
    if (caEnd <= now)
      return { ok: false, reason: 'ca-expired', detail: 'the local CA certificate has expired' };
    // X.509 times have whole seconds; comparing in seconds makes the reuse check exact.
    const earliest = Math.min(...held.map((l) => l.expiresAt));
    const notAfter = Math.floor(Math.min(earliest + this.#marginMs, caEnd) / 1000) * 1000;

    const keyId = Buffer.from(await request.publicKey.getKeyIdentifier()).toString('hex');
    const earlier = this.authority.registry
      .valid(now)
      .find(
        (e) =>
          e.role === 'host' &&
          e.host === lease.host &&
          this.#addressOf(e) === address &&
          e.keyId === keyId &&
          e.notAfter === notAfter &&
          sameRanges(e.ports, ports) &&
          sameRanges(e.spis, spis),
      );
    if (earlier !== undefined) {
      const certificate = new x509.X509Certificate(earlier.pem);
      return { ok: true, certificate, chainPem: toPem([certificate]) + this.caChainPem(), reused: true };
    }

    const a = this.authority;
    const certificate = await signCertificate({
      subject: hostName(a.settings.organization, address, ports, this.sharedAddress),
      issuer: a.certificate.subjectName,
      publicKey: request.publicKey,
      signer: a.key,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      extensions: await hostExtensions({
        subjectKey: request.publicKey,
        issuerKey: a.key.publicKey,
        sharedAddress: address,
        ports,
        spis,
        crlUrl: this.crlUrl,
      }),
    });
    await a.record(certificate, { role: 'host', host: lease.host, address, ports, spis });
    return { ok: true, certificate, chainPem: toPem([certificate]) + this.caChainPem(), reused: false };
  }

  #notCertified(address: string): string {
    return (
      `this local CA (${this.authority.dir}) certifies ${this.sharedAddresses.join(', ')} only, not ${address}: ` +
      'make one for every address of the router with `distnat ca issue-local ' +
      this.#routerAddresses.map((a) => `--shared-address ${a}`).join(' ') +
      ' ...` and point pki.dir at it'
    );
  }

  onLeaseAdded(): void {}

  onLeaseRenewed(): void {}

  /** The router took a block back or the host gave it up: no certificate may go on naming it. */
  onLeaseRemoved(lease: HeldLease, reason: LeaseEnd): void {
    const revoked = this.revokeBlock(lease.host, lease.kind, lease, REASON_OF[reason]);
    if (revoked.length > 0) void this.crl().catch((e: Error) => this.#onError(e));
  }

  /**
   * Revokes every valid host certificate of `host` that names a value of
   * `block` (a port block in slots, as leased: its address and ports);
   * returns the serials. The CRL is remade on the next crl() call.
   */
  revokeBlock(host: string, kind: ResourceKind, block: Block, reason: RevocationReason): string[] {
    const now = this.#clock.now();
    const port = kind === 'port' ? this.#place(block) : undefined;
    if (kind === 'port' && port === undefined) return [];
    const hit = (e: IssuedCertificate): boolean =>
      e.role === 'host' &&
      e.host === host &&
      (port === undefined
        ? e.spis.some((r) => overlaps(r, block))
        : this.#addressOf(e) === port.address && e.ports.some((r) => overlaps(r, port)));
    return this.#revokeWhere(hit, reason, now);
  }

  /**
   * After a restart: revokes every valid certificate naming a block its host
   * no longer holds in `leases` (the patent's "invalid security certificates
   * are gracefully revoked"). Returns the serials.
   */
  reconcile(leases: readonly HeldLease[]): string[] {
    const now = this.#clock.now();
    const live = leases.filter((l) => l.expiresAt > now);
    const ports = live
      .filter((l) => l.kind === 'port')
      .map((l) => ({ host: l.host, at: this.#place(l) }))
      .filter((p): p is { host: string; at: PlacedBlock } => p.at !== undefined);
    const portHeld = (e: IssuedCertificate, r: Block): boolean =>
      ports.some((p) => p.host === e.host && p.at.address === this.#addressOf(e) && contains(p.at, r));
    const spiHeld = (host: string | undefined, r: Block): boolean =>
      live.some((l) => l.host === host && l.kind === 'spi' && contains(l, r));
    const orphan = (e: IssuedCertificate): boolean =>
      e.role === 'host' && (e.ports.some((r) => !portHeld(e, r)) || e.spis.some((r) => !spiHeld(e.host, r)));
    const revoked = this.#revokeWhere(orphan, 'privilegeWithdrawn', now);
    // Revoked here while etcd did not take it (or before the routers shared a list): offered again.
    if (this.#shared !== undefined)
      for (const e of this.authority.registry.revokedUnexpired(now))
        if (!this.#shared.has(e.serial)) this.#share(e, e.revoked!.reason, e.revoked!.at);
    if (revoked.length > 0) void this.crl().catch((e: Error) => this.#onError(e));
    return revoked;
  }

  /** Revokes one certificate by serial (the `distnat ca revoke` path); the CRL follows on the next crl() call. */
  revoke(serial: string, reason: RevocationReason): ReturnType<CertificateAuthority['revoke']> {
    const outcome = this.authority.revoke(serial, reason);
    if (outcome === 'revoked') {
      this.#crlDirty = true;
      const e = this.authority.registry.find(serial)!;
      this.#share(e, reason, e.revoked!.at);
    }
    return outcome;
  }

  #revokeWhere(match: (e: IssuedCertificate) => boolean, reason: RevocationReason, now: number): string[] {
    const hit = this.authority.registry.valid(now).filter(match);
    for (const e of hit) {
      this.authority.registry.revoke(e.serial, reason, now);
      this.#share(e, reason, now);
    }
    if (hit.length > 0) this.#crlDirty = true;
    return hit.map((e) => e.serial);
  }

  /**
   * Hands a revocation to the routers' common list; while etcd does not
   * take it, it stays in this router's CRL (from the registry) and is
   * offered again every retryMs.
   */
  #share(e: IssuedCertificate, reason: RevocationReason, at: number): void {
    if (this.#shared === undefined) return;
    this.#unshared.set(e.serial, { serial: e.serial, at, reason, notAfter: e.notAfter });
    this.#flush();
  }

  #flush(): void {
    const shared = this.#shared;
    if (shared === undefined || this.#retry !== undefined) return;
    const now = this.#clock.now();
    const batch = [...this.#unshared.values()];
    void Promise.all(
      batch.map((r) =>
        r.notAfter <= now
          ? this.#unshared.delete(r.serial)
          : shared.add(r).then(() => this.#unshared.delete(r.serial)),
      ),
    ).then(
      () => {
        this.#failing = false;
        if (this.#unshared.size > 0) this.#flush();
      },
      (e: Error) => {
        // Once per outage, not once a second.
        if (!this.#failing)
          this.#onError(new Error(`etcd did not take a revocation (offered again): ${e.message}`));
        this.#failing = true;
        this.#retry = this.#clock.setTimeout(() => {
          this.#retry = undefined;
          this.#flush();
        }, this.#retryMs);
      },
    );
  }

  /** Revocations etcd has not taken yet. */
  get unshared(): number {
    return this.#unshared.size;
  }

  /**
   * The common list changed (another router revoked, or the number moved):
   * the next CRL is made from it. Returns that CRL, or undefined when the
   * one held is already made from the list as it stands.
   */
  revocationsChanged(): Promise<x509.X509Crl> | undefined {
    if (this.#shared === undefined || this.#madeNumber === this.#shared.number) return undefined;
    this.#crlDirty = true;
    return this.crl();
  }

  /**
   * The current CRL: remade when a certificate was revoked since the last
   * one, or when half its lifetime has passed, so that a verifier caching
   * it until nextUpdate never holds one that is about to lapse.
   */
  crl(): Promise<x509.X509Crl> {
    const now = this.#clock.now();
    const c = this.#crl;
    // A CRL being signed is newer than the one held: wait for it.
    if (this.#crlInFlight !== undefined && !this.#crlDirty) return this.#crlInFlight;
    const fresh = c !== undefined && !this.#crlDirty && now < c.thisUpdate.getTime() + this.#crlMs / 2;
    if (fresh) return Promise.resolve(c);
    // A CRL remade only because it ages needs a new number all the same (RFC 5280 5.2.3).
    const aged = !this.#crlDirty;
    this.#crlDirty = false;
    // One CRL at a time, in number order: a later revocation waits for the CRL
    // being signed and then makes the next one, never an older one after a newer.
    const previous = this.#crlInFlight ?? Promise.resolve(undefined);
    const made: Promise<x509.X509Crl> = previous
      .catch(() => undefined)
      .then(() => {
        this.authority.registry.prune(this.#clock.now(), this.#retentionMs);
        return this.#shared === undefined
          ? this.authority.makeCrl(this.#crlMs / 1000)
          : this.#makeShared(aged);
      })
      .then(
        (crl) => {
          this.#crl = crl;
          if (this.#crlInFlight === made) this.#crlInFlight = undefined;
          return crl;
        },
        (e: unknown) => {
          this.#crlDirty = true;
          if (this.#crlInFlight === made) this.#crlInFlight = undefined;
          throw e;
        },
      );
    this.#crlInFlight = made;
    return made;
  }

  /**
   * A CRL from the routers' common list, numbered by it, plus whatever this
   * router revoked that etcd has not taken yet (listed at once rather than
   * after etcd answers again).
   */
  async #makeShared(aged: boolean): Promise<x509.X509Crl> {
    const shared = this.#shared!;
    const now = this.#clock.now();
    // Without etcd the number stays: the CRL is remade with the entries it had.
    if (aged) await shared.bump().catch(() => undefined);
    await shared.prune(now, this.#retentionMs).catch(() => 0);
    const entries = shared.entries(now);
    for (const e of this.authority.registry.revokedUnexpired(now))
      if (!shared.has(e.serial)) {
        entries.push({ serial: e.serial, ...e.revoked!, notAfter: e.notAfter });
        // Revoked in the registry by `distnat ca revoke` beside the running router: offered to etcd now.
        if (!this.#unshared.has(e.serial)) this.#share(e, e.revoked!.reason, e.revoked!.at);
      }
    const number = shared.number;
    const crl = await this.authority.makeCrl(this.#crlMs / 1000, { number, entries });
    this.#madeNumber = number;
    return crl;
  }
}
