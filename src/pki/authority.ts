import { isIPv4 } from 'node:net';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { z } from 'zod';
import type { Block } from '../util/block.ts';
import { SystemClock, type Clock } from '../util/clock.ts';
import { DIR_MODE, KEY_MODE, writeFileAtomic, writeNewFile } from './files.ts';
import { generateSigningKey, loadSigningKey, type KeyType, type SigningKey } from './keys.ts';
import {
  addressList,
  localCaExtensions,
  localCaName,
  rootExtensions,
  rootName,
  signCertificate,
  type CaAddresses,
} from './profile.ts';
import {
  CertificateRegistry,
  REVOCATION_REASONS,
  type IssuedCertificate,
  type RevocationReason,
  type RevokeOutcome,
} from './registry.ts';
import { crlToPem, readCertificates, readCrl, toPem } from './pem.ts';
import { subtle, x509 } from './x509.ts';

/**
 * A certificate authority kept in one directory, the same layout for the
 * root and for a router's local CA:
 *
 *   ca.key       private key, PKCS #8 PEM, mode 0600
 *   ca.pem       this CA's certificate
 *   chain.pem    the issuers above it up to the root (absent for the root)
 *   ca.json      role, organization, shared address, CRL URL
 *   issued.json  registry of every certificate signed (registry.ts)
 *   crl.pem      the latest CRL
 */
export const CA_FILES = {
  key: 'ca.key',
  cert: 'ca.pem',
  chain: 'chain.pem',
  settings: 'ca.json',
  registry: 'issued.json',
  crl: 'crl.pem',
} as const;

const settingsSchema = z.object({
  version: z.literal(1),
  role: z.enum(['root', 'local']),
  organization: z.string().min(1),
  sharedAddress: z.string().optional(),
  /** A local CA of several shared addresses: all of them, `sharedAddress` first. */
  sharedAddresses: z.array(z.string()).min(1).optional(),
  /** Where this CA's CRL is published: written into every certificate it signs. */
  crlUrl: z.string().url().optional(),
});
export type CaSettings = z.infer<typeof settingsSchema>;

/** The shared addresses a local CA certifies, first first; a ca.json of one address names only `sharedAddress`. */
export const caAddresses = (s: CaSettings): readonly string[] =>
  s.sharedAddresses ?? (s.sharedAddress === undefined ? [] : [s.sharedAddress]);

/** Why a CA directory could not be created, read or used; `kind` lets the CLI pick an exit code. */
export class CaError extends Error {
  override readonly name = 'CaError';
  constructor(
    message: string,
    readonly kind: 'exists' | 'missing' | 'invalid' | 'refused',
  ) {
    super(message);
  }
}

export interface RootCaOptions {
  readonly keyType?: KeyType;
  readonly organization?: string;
  readonly commonName?: string;
  readonly days?: number;
  /** Where the root will publish its CRL; written into the local CA certificates it signs. */
  readonly crlUrl?: string;
  readonly clock?: Clock;
}

export interface LocalCaIssueOptions {
  /** The router's shared address, or all of its addresses (one CA certifies each under its own name prefix). */
  readonly sharedAddress: CaAddresses;
  readonly keyType?: KeyType;
  readonly days?: number;
  /** Where the router serves the local CA's CRL; default http://<shared address>/distnat/crl. */
  readonly crlUrl?: string;
}

/** What the registry keeps about a certificate besides what the certificate itself says. */
export interface RecordDetails {
  readonly role: 'host' | 'local-ca' | 'peer';
  readonly host?: string;
  readonly address?: string;
  readonly ports?: readonly Block[];
  readonly spis?: readonly Block[];
}

/** A CRL's number and entries when they come from elsewhere than the registry. */
export interface SharedCrlContents {
  readonly number: number;
  readonly entries: readonly { serial: string; at: number; reason: RevocationReason }[];
}

const DAY = 86_400_000;
/** Certificates start a little in the past so that a peer whose clock is behind accepts them. */
export const BACKDATE_MS = 60_000;

export const defaultCrlUrl = (sharedAddress: string): string => `http://${sharedAddress}/distnat/crl`;

export class CertificateAuthority {
  private constructor(
    readonly dir: string,
    readonly settings: CaSettings,
    readonly key: SigningKey,
    readonly certificate: x509.X509Certificate,
    /** Issuers above this CA, nearest first, ending with the root; empty for the root. */
    readonly chain: readonly x509.X509Certificate[],
    readonly registry: CertificateRegistry,
    readonly clock: Clock,
  ) {}

  /** Opens an existing CA directory, checking that key and certificate belong together. */
  static async open(
    dir: string,
    clock: Clock = new SystemClock({ unref: true }),
  ): Promise<CertificateAuthority> {
    const read = (name: string): string => {
      const path = join(dir, name);
      if (!existsSync(path)) throw new CaError(`${path} is missing: is ${dir} a CA directory?`, 'missing');
      return readFileSync(path, 'utf8');
    };
    const parsed = settingsSchema.safeParse(JSON.parse(read(CA_FILES.settings)));
    if (!parsed.success)
      throw new CaError(`${join(dir, CA_FILES.settings)}: ${parsed.error.issues[0]?.message}`, 'invalid');
    const key = await loadSigningKey(read(CA_FILES.key));
    const certificate = new x509.X509Certificate(read(CA_FILES.cert));
    const mine = Buffer.from(await subtle.exportKey('spki', key.publicKey));
    if (!mine.equals(Buffer.from(certificate.publicKey.rawData)))
      throw new CaError(
        `${join(dir, CA_FILES.key)} does not belong to ${join(dir, CA_FILES.cert)}`,
        'invalid',
      );
    const chainPath = join(dir, CA_FILES.chain);
    const chain = existsSync(chainPath) ? readCertificates(readFileSync(chainPath, 'utf8')) : [];
    const registry = CertificateRegistry.open(join(dir, CA_FILES.registry));
    return new CertificateAuthority(dir, parsed.data, key, certificate, chain, registry, clock);
  }

  /** Creates the root ("higher certificate authority"): a fresh key and a self-signed certificate. */
  static async initRoot(dir: string, o: RootCaOptions = {}): Promise<CertificateAuthority> {
    const clock = o.clock ?? new SystemClock({ unref: true });
    prepareDirectory(dir);
    const { key, pem } = await generateSigningKey(o.keyType ?? 'ec-p256');
    const organization = o.organization ?? 'distnat';
    const name = rootName(organization, o.commonName ?? `${organization} root CA`);
    const now = clock.now();
    const cert = await signCertificate({
      subject: name,
      issuer: name,
      publicKey: key.publicKey,
      signer: key,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + (o.days ?? 3650) * DAY),
      extensions: await rootExtensions(key),
    });
    const settings: CaSettings = { version: 1, role: 'root', organization, crlUrl: o.crlUrl };
    writeState(dir, pem, cert, [], settings);
    return CertificateAuthority.open(dir, clock);
  }

  /**
   * Signs a local CA for one router: a fresh key in `outDir` and a
   * certificate constrained to the shared address, or to each of the
   * router's shared addresses (profile.ts). Only a root signs local CAs; the
   * local CA's pathLen 0 stops it doing the same.
   */
  async issueLocalCa(outDir: string, o: LocalCaIssueOptions): Promise<CertificateAuthority> {
    if (this.settings.role !== 'root') throw new CaError(`${this.dir} is not a root CA`, 'refused');
    const addresses = addressList(o.sharedAddress);
    if (addresses.length === 0) throw new CaError('a local CA needs a shared address', 'invalid');
    for (const a of addresses) if (!isIPv4(a)) throw new CaError(`${a} is not an IPv4 address`, 'invalid');
    if (new Set(addresses).size !== addresses.length)
      throw new CaError(`${addresses.join(', ')}: an address is named twice`, 'invalid');
    const first = addresses[0]!;
    prepareDirectory(outDir);
    const { key, pem } = await generateSigningKey(o.keyType ?? 'ec-p256');
    const now = this.clock.now();
    const notAfter = Math.min(now + (o.days ?? 365) * DAY, this.certificate.notAfter.getTime());
    const organization = this.settings.organization;
    const cert = await signCertificate({
      subject: localCaName(organization, addresses),
      issuer: this.certificate.subjectName,
      publicKey: key.publicKey,
      signer: this.key,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      extensions: await localCaExtensions({
        subjectKey: key.publicKey,
        issuerKey: this.key.publicKey,
        sharedAddress: addresses,
        organization,
        issuerCrlUrl: this.settings.crlUrl,
      }),
    });
    const settings: CaSettings = {
      version: 1,
      role: 'local',
      organization,
      sharedAddress: first,
      // Only with several, so that a one-address ca.json reads as it always did.
      ...(addresses.length > 1 ? { sharedAddresses: [...addresses] } : {}),
      crlUrl: o.crlUrl ?? defaultCrlUrl(first),
    };
    writeState(outDir, pem, cert, [this.certificate, ...this.chain], settings);
    await this.record(cert, { role: 'local-ca', address: addresses.join(' ') });
    return CertificateAuthority.open(outDir, this.clock);
  }

  /** Adds a certificate this CA signed to its registry. */
  async record(cert: x509.X509Certificate, details: RecordDetails): Promise<IssuedCertificate> {
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const entry: IssuedCertificate = {
      serial: cert.serialNumber.toLowerCase(),
      role: details.role,
      subject: cert.subject,
      host: details.host,
      keyId: ski?.keyId ?? Buffer.from(await cert.publicKey.getKeyIdentifier()).toString('hex'),
      notBefore: cert.notBefore.getTime(),
      notAfter: cert.notAfter.getTime(),
      address: details.address,
      ports: details.ports ?? [],
      spis: details.spis ?? [],
      pem: cert.toString('pem'),
    };
    this.registry.add(entry);
    return entry;
  }

  revoke(serial: string, reason: RevocationReason): RevokeOutcome {
    return this.registry.revoke(serial, reason, this.clock.now());
  }

  /**
   * Signs a CRL of every revoked certificate not yet expired, numbered one
   * above the last (the number is durable before the CRL is), and writes it to
   * crl.pem. `lifetimeSeconds` sets nextUpdate, the time by which verifiers
   * must fetch a newer one. `shared` replaces the registry's number and
   * entries when the routers of a shared address keep one list on etcd
   * (shared-revocations.ts).
   */
  async makeCrl(lifetimeSeconds: number, shared?: SharedCrlContents): Promise<x509.X509Crl> {
    const now = this.clock.now();
    const number = shared?.number ?? this.registry.takeCrlNumber();
    const entries =
      shared?.entries ??
      this.registry.revokedUnexpired(now).map((e) => ({ serial: e.serial, ...e.revoked! }));
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.certificate.subjectName,
      thisUpdate: new Date(now),
      nextUpdate: new Date(now + lifetimeSeconds * 1000),
      signingKey: this.key.privateKey,
      signingAlgorithm: this.key.algorithm,
      entries: entries.map((e) => ({
        serialNumber: e.serial,
        revocationDate: new Date(e.at),
        reason: REVOCATION_REASONS[e.reason] as number as x509.X509CrlReason,
      })),
      extensions: [
        await x509.AuthorityKeyIdentifierExtension.create(this.key.publicKey),
        new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(number))),
      ],
    });
    writeFileAtomic(join(this.dir, CA_FILES.crl), crlToPem(crl));
    return crl;
  }

  /** The latest CRL on disk, if one was made. */
  lastCrl(): x509.X509Crl | undefined {
    const path = join(this.dir, CA_FILES.crl);
    return existsSync(path) ? readCrl(readFileSync(path, 'utf8')) : undefined;
  }

  /** This CA's certificate followed by its issuers: what a host or peer needs to build the path. */
  chainPem(): string {
    return toPem([this.certificate, ...this.chain]);
  }
}

function prepareDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if (existsSync(join(dir, CA_FILES.key)))
    throw new CaError(`${dir} already holds a CA key; choose another directory or remove it first`, 'exists');
}

function writeState(
  dir: string,
  keyPem: string,
  cert: x509.X509Certificate,
  chain: readonly x509.X509Certificate[],
  settings: CaSettings,
): void {
  writeNewFile(join(dir, CA_FILES.key), keyPem, KEY_MODE);
  writeFileAtomic(join(dir, CA_FILES.cert), cert.toString('pem') + '\n');
  if (chain.length > 0) writeFileAtomic(join(dir, CA_FILES.chain), toPem(chain));
  writeFileAtomic(join(dir, CA_FILES.settings), JSON.stringify(settings, null, 2) + '\n');
}
