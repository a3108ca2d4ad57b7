/**
 * Certificates in IKE: the peer's chain from its CERT payloads, the trust
 * anchors, CRLs, and whether the IDi/IDr payload names the certificate.
 *
 * The chain check here is the generic one every peer gets (signatures up to
 * a trust anchor, validity, CA flag of every issuer, CRL of every issuer that
 * has one loaded). A certificate of a host behind distnat (one with the port
 * binding extension) is additionally put through src/pki's
 * verifyHostCertificate by the default authorization (policy.ts), which adds
 * name constraints, pathLen and the port coverage.
 *
 * node:crypto's X509Certificate does the signature checks (OpenSSL, fast,
 * synchronous); @peculiar/x509 reads names and CRLs.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { crlUrls } from '../pki/describe.ts';
import { portsCoveredBy, type PortBinding } from '../pki/index.ts';
import { x509 } from '../pki/x509.ts';
import { CertEncoding, IdType, PayloadType } from './constants.ts';
import { ipv4Bytes } from './nat.ts';
import type { CertPayload, IdPayload } from './payloads.ts';

/** What we trust: root certificates and any CRLs we hold (for roots or intermediate CAs). */
export interface TrustAnchors {
  readonly roots: readonly X509Certificate[];
  readonly crls?: readonly x509.X509Crl[];
}

/** Reads PEM (any number of certificates) or DER. Throws for input that holds no certificate. */
export function loadCertificates(
  input: string | Uint8Array | readonly (string | Uint8Array)[],
): X509Certificate[] {
  const list = Array.isArray(input) ? input : [input];
  const out: X509Certificate[] = [];
  for (const item of list as (string | Uint8Array)[]) {
    const text = typeof item === 'string' ? item : Buffer.from(item).toString('latin1');
    const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    if (pems) for (const p of pems) out.push(new X509Certificate(p));
    else
      out.push(
        new X509Certificate(typeof item === 'string' ? Buffer.from(item, 'base64') : Buffer.from(item)),
      );
  }
  if (out.length === 0) throw new Error('no certificate found');
  return out;
}

/**
 * What IKE reads from a certificate, parsed once per distinct certificate:
 * a peer sends the same one in every handshake, and parsing (ASN.1 in
 * JavaScript for names and extensions) costs more than the signatures.
 */
export interface CertificateFacts {
  readonly cert: X509Certificate;
  /** DER of the subject Name (what ID_DER_ASN1_DN carries). */
  readonly subject: Buffer;
  readonly dns: readonly string[];
  readonly emails: readonly string[];
  /** The distnat port binding, if the certificate carries a well-formed one. */
  readonly binding: PortBinding | undefined;
  /** Where the issuer publishes its CRL (RFC 5280 4.2.1.13). */
  readonly crlUrls: readonly string[];
  /** Keys of issuers whose signature on this certificate has been checked. */
  readonly signedBy: Set<string>;
}

/** The DER itself (as a string, the map key), so that no two certificates can share facts. */
const FACTS = new Map<string, CertificateFacts>();
const MAX_FACTS = 1024;
const factsKey = (der: Uint8Array): string =>
  Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('latin1');
/** The facts behind an X509Certificate this module made: `cert.raw` copies the DER at every call. */
const FACTS_OF = new WeakMap<X509Certificate, CertificateFacts>();

/** The facts of a DER certificate; throws for one that cannot be parsed. */
export function certificateFacts(der: Uint8Array): CertificateFacts {
  const key = factsKey(der);
  const known = FACTS.get(key);
  if (known !== undefined) return known;
  const cert = new X509Certificate(Buffer.from(der));
  const p = new x509.X509Certificate(Buffer.from(der));
  const names = p.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const facts: CertificateFacts = {
    cert,
    subject: Buffer.from(p.subjectName.toArrayBuffer()),
    dns: names.filter((n) => n.type === 'dns').map((n) => n.value),
    emails: names.filter((n) => n.type === 'email').map((n) => n.value),
    binding: portsCoveredBy(p),
    crlUrls: crlUrls(p),
    signedBy: new Set(),
  };
  if (FACTS.size >= MAX_FACTS) FACTS.delete(FACTS.keys().next().value!);
  FACTS.set(key, facts);
  FACTS_OF.set(cert, facts);
  return facts;
}

/** How many certificates' facts are held: at most MAX_FACTS, whatever peers send. */
export const certificateFactsHeld = (): number => FACTS.size;

/** The facts of a certificate, found by the object when certificateFacts made it. */
export function factsOf(cert: X509Certificate): CertificateFacts {
  return FACTS_OF.get(cert) ?? certificateFacts(cert.raw);
}

interface Validity {
  readonly from: number;
  readonly to: number;
  readonly ca: boolean;
  /** The DER as a string: a key for the signatures checked under this certificate. */
  readonly key: string;
}

/**
 * What the chain check reads of every certificate on a path, per object:
 * node's getters go to OpenSSL and build strings at every call, and the
 * trust anchors and the certificates of returning peers are the same
 * objects every time.
 */
const VALIDITY = new WeakMap<X509Certificate, Validity>();

function validityOf(c: X509Certificate): Validity {
  let v = VALIDITY.get(c);
  if (v === undefined) {
    v = {
      from: new Date(c.validFrom).getTime(),
      to: new Date(c.validTo).getTime(),
      ca: c.ca,
      key: factsKey(c.raw),
    };
    VALIDITY.set(c, v);
  }
  return v;
}

const KEY_HASHES = new WeakMap<X509Certificate, Buffer>();

/** SHA-1 of the certificate's SubjectPublicKeyInfo: what CERTREQ lists per trusted CA (RFC 7296 3.7). */
export function keyHash(cert: X509Certificate): Buffer {
  let h = KEY_HASHES.get(cert);
  if (h === undefined) {
    h = createHash('sha1')
      .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
      .digest();
    KEY_HASHES.set(cert, h);
  }
  return h;
}

export function certReqPayload(roots: readonly X509Certificate[]): CertPayload {
  return {
    type: PayloadType.CERTREQ,
    encoding: CertEncoding.X509_SIGNATURE,
    data: Buffer.concat(roots.map(keyHash)),
  };
}

export function certPayload(cert: X509Certificate): CertPayload {
  return { type: PayloadType.CERT, encoding: CertEncoding.X509_SIGNATURE, data: cert.raw };
}

export type ChainCheck =
  | { readonly ok: true; readonly path: readonly X509Certificate[] }
  | { readonly ok: false; readonly problem: string };

const MAX_PATH = 6;

function validAt(c: X509Certificate, at: Date): string | undefined {
  const v = validityOf(c);
  if (at.getTime() < v.from)
    return `"${c.subject.replace(/\n/g, ', ')}" is not valid before ${new Date(v.from).toISOString()}`;
  if (at.getTime() > v.to)
    return `"${c.subject.replace(/\n/g, ', ')}" expired at ${new Date(v.to).toISOString()}`;
  return undefined;
}

const signedBy = (child: X509Certificate, issuer: X509Certificate): boolean => {
  let facts: CertificateFacts | undefined;
  try {
    facts = factsOf(child);
  } catch {
    facts = undefined;
  }
  const issuerKey = validityOf(issuer).key;
  if (facts?.signedBy.has(issuerKey)) return true;
  try {
    const good = child.checkIssued(issuer) && child.verify(issuer.publicKey);
    if (good) facts?.signedBy.add(issuerKey);
    return good;
  } catch {
    return false;
  }
};

/**
 * Builds and checks the path from the peer's leaf (first CERT payload)
 * through the CA certificates it sent to one of our roots. Never throws.
 */
export async function verifyPeerChain(
  sent: readonly Buffer[],
  trust: TrustAnchors,
  at: Date,
): Promise<ChainCheck> {
  let certs: X509Certificate[];
  try {
    certs = sent.map((d) => certificateFacts(d).cert);
  } catch (e) {
    return { ok: false, problem: `unreadable certificate: ${(e as Error).message}` };
  }
  const leaf = certs[0];
  if (leaf === undefined) return { ok: false, problem: 'no certificate' };
  const path = [leaf];
  const pool = certs.slice(1);
  for (;;) {
    const child = path[path.length - 1]!;
    const root = trust.roots.find((r) => signedBy(child, r));
    if (root !== undefined) {
      // The leaf itself may be a root we trust (self-signed peers); do not list it twice.
      if (validityOf(root).key !== validityOf(child).key) path.push(root);
      break;
    }
    if (trust.roots.some((r) => validityOf(r).key === validityOf(child).key)) break;
    const next = pool.find((c) => !path.includes(c) && signedBy(child, c));
    if (next === undefined)
      return { ok: false, problem: `no trusted CA issued "${child.subject.replace(/\n/g, ', ')}"` };
    if (path.length >= MAX_PATH) return { ok: false, problem: 'certificate path too long' };
    path.push(next);
  }
  for (const c of path) {
    const v = validAt(c, at);
    if (v !== undefined) return { ok: false, problem: v };
  }
  for (const issuer of path.slice(1))
    if (!validityOf(issuer).ca)
      return { ok: false, problem: `"${issuer.subject.replace(/\n/g, ', ')}" is not a CA` };
  const revoked = await pathRevocation(path, trust.crls ?? [], at);
  if (revoked !== undefined) return { ok: false, problem: revoked };
  return { ok: true, path };
}

/** Why some certificate of a verified path (leaf first) counts as revoked by one of `crls`, or undefined. */
export async function pathRevocation(
  path: readonly X509Certificate[],
  crls: readonly x509.X509Crl[],
  at: Date,
): Promise<string | undefined> {
  for (let i = 0; i + 1 < path.length; i++) {
    const revoked = await revocation(path[i]!, path[i + 1]!, crls, at);
    if (revoked !== undefined) return revoked;
  }
  return undefined;
}

/** Why `cert` counts as revoked by a CRL of `issuer` that we hold, or undefined. */
async function revocation(
  cert: X509Certificate,
  issuer: X509Certificate,
  crls: readonly x509.X509Crl[],
  at: Date,
): Promise<string | undefined> {
  if (crls.length === 0) return undefined;
  const issuerName = Buffer.from(new x509.X509Certificate(issuer.raw).subjectName.toArrayBuffer());
  for (const crl of crls) {
    if (!Buffer.from(crl.issuerName.toArrayBuffer()).equals(issuerName)) continue;
    let good = false;
    try {
      const key = await new x509.X509Certificate(issuer.raw).publicKey.export();
      good = await crl.verify({ publicKey: key });
    } catch {
      good = false;
    }
    if (!good) return `CRL of "${issuer.subject.replace(/\n/g, ', ')}" has a bad signature`;
    if (crl.nextUpdate !== undefined && at > crl.nextUpdate) return 'CRL is out of date';
    const entry = crl.findRevoked(new x509.X509Certificate(cert.raw));
    if (entry !== null) return `certificate ${cert.serialNumber} is revoked`;
  }
  return undefined;
}

/** The identity we send: the certificate's subject DN unless told otherwise. */
export type IdentitySpec =
  | { readonly type: 'dn' }
  | { readonly type: 'ipv4'; readonly address: string }
  | { readonly type: 'fqdn'; readonly name: string };

export function idPayload(type: PayloadType_ID, spec: IdentitySpec, cert: X509Certificate): IdPayload {
  switch (spec.type) {
    case 'dn':
      return { type, idType: IdType.DER_ASN1_DN, data: certificateFacts(cert.raw).subject };
    case 'ipv4':
      return { type, idType: IdType.IPV4_ADDR, data: ipv4Bytes(spec.address) };
    case 'fqdn':
      return { type, idType: IdType.FQDN, data: Buffer.from(spec.name, 'ascii') };
  }
}
type PayloadType_ID = typeof PayloadType.IDi | typeof PayloadType.IDr;

/** "C=.., O=.." / "192.0.2.1" / "host.example": an ID payload for logs and callbacks. */
/**
 * Distinguished names read for the logs, by their DER: reading one is a
 * full ASN.1 parse, and the same peers come back at every rekey and
 * reconnection. Emptied when full, so it stays small whatever peers send.
 */
const NAMES = new Map<string, string>();
const MAX_NAMES = 1024;

function describeDn(der: Buffer): string {
  const key = der.toString('latin1');
  let name = NAMES.get(key);
  if (name === undefined) {
    name = new x509.Name(der).toString();
    if (NAMES.size >= MAX_NAMES) NAMES.clear();
    NAMES.set(key, name);
  }
  return name;
}

export function describeId(id: IdPayload): string {
  try {
    switch (id.idType) {
      case IdType.DER_ASN1_DN:
        return describeDn(id.data);
      case IdType.IPV4_ADDR:
        return id.data.length === 4 ? [...id.data].join('.') : `ipv4 ${id.data.toString('hex')}`;
      case IdType.FQDN:
      case IdType.RFC822_ADDR:
        return id.data.toString('ascii');
      default:
        return `id type ${id.idType}: ${id.data.toString('hex')}`;
    }
  } catch {
    return `unreadable id type ${id.idType}`;
  }
}

/** True when the certificate vouches for the identity (RFC 4945 3.1). Never throws. */
export function idMatchesCertificate(id: IdPayload, cert: X509Certificate): boolean {
  try {
    switch (id.idType) {
      case IdType.DER_ASN1_DN:
        return factsOf(cert).subject.equals(id.data);
      case IdType.IPV4_ADDR:
        return id.data.length === 4 && cert.checkIP([...id.data].join('.')) !== undefined;
      case IdType.FQDN: {
        const name = id.data.toString('ascii').toLowerCase();
        return factsOf(cert).dns.some((v) => v.toLowerCase() === name);
      }
      case IdType.RFC822_ADDR: {
        const mail = id.data.toString('ascii').toLowerCase();
        return factsOf(cert).emails.some((v) => v.toLowerCase() === mail);
      }
      default:
        return false;
    }
  } catch {
    return false;
  }
}
