import { randomBytes } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  Name as AsnName,
  NameConstraints,
  id_ce_nameConstraints,
} from '@peculiar/asn1-x509';
import type { Block } from '../util/block.ts';
import type { SigningKey } from './keys.ts';
import { formatRanges, portBindingExtension } from './port-binding.ts';
import { x509, type CryptoKey } from './x509.ts';

/**
 * The three certificate profiles of the hierarchy (docs/pki.md lists every
 * field): the root ("higher certificate authority"), the router's local CA
 * and a host. Plain RFC 5280 so that strongSwan and openssl accept them
 * without configuration.
 */

/** Upper bound of a commonName (RFC 5280 appendix A, ub-common-name). */
const UB_COMMON_NAME = 64;

/** 16 random bytes, positive and without a leading zero byte: unique without a counter on disk (RFC 5280 4.1.2.2). */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

export function rootName(organization: string, commonName: string): x509.Name {
  return new x509.Name([{ O: [organization] }, { CN: [commonName] }]);
}

/** The part of every name under a local CA: its own name and every host's begin with it. */
export function localNamePrefix(organization: string, sharedAddress: string): x509.Name {
  return new x509.Name([{ O: [organization] }, { OU: [sharedAddress] }]);
}

/**
 * The shared addresses a local CA certifies, first first. A router with one
 * address has a CA of one; a CA of several certifies each address's hosts
 * under that address's own name prefix (nameConstraintsExtension).
 */
export type CaAddresses = string | readonly string[];

export const addressList = (a: CaAddresses): readonly string[] => (typeof a === 'string' ? [a] : a);

/**
 * `O=<org>, OU=<first address>, CN=distnat local CA <addresses>`. The OU
 * stays the first address: a CA's own name is not bound by its own
 * constraints (RFC 5280 4.2.1.10 applies them to the certificates below),
 * and one OU keeps the name of a one-address CA what it always was.
 */
export function localCaName(organization: string, sharedAddresses: CaAddresses): x509.Name {
  const all = addressList(sharedAddresses);
  const first = all[0]!;
  const full = `distnat local CA ${all.join(' ')}`;
  const cn = full.length <= UB_COMMON_NAME ? full : `distnat local CA ${first} +${all.length - 1} more`;
  return new x509.Name([{ O: [organization] }, { OU: [first] }, { CN: [cn] }]);
}

/**
 * "198.51.100.30 ports 1026-1057": unique per host at any one time, readable
 * in IKE logs, and with a space so that no verifier mistakes it for a host name.
 */
export function hostCommonName(sharedAddress: string, ports: readonly Block[]): string {
  // Ranges apart by spaces: a comma would need escaping in every DN string (RFC 4514).
  const full = `${sharedAddress} ports ${formatRanges(ports).replace(/, /g, ' ')}`;
  if (full.length <= UB_COMMON_NAME) return full;
  const first = formatRanges(ports.slice(0, 1));
  return `${sharedAddress} ports ${first} +${ports.length - 1} more`.slice(0, UB_COMMON_NAME);
}

/**
 * `O=<org>, OU=<the CA's first address>, CN=<address> ports ...`: the OU is
 * the name prefix the local CA may certify (nameConstraintsExtension), the
 * CN the address the host's ports are on. With one address both are the
 * same address.
 */
export function hostName(
  organization: string,
  sharedAddress: string,
  ports: readonly Block[],
  caAddress: string = sharedAddress,
): x509.Name {
  return new x509.Name([
    { O: [organization] },
    { OU: [caAddress] },
    { CN: [hostCommonName(sharedAddress, ports)] },
  ]);
}

/**
 * What a local CA may certify: names under its own name prefix
 * (`O=<org>, OU=<first shared address>`: one directoryName subtree, also
 * for a CA of several addresses, whose hosts of every address share it;
 * strongSwan 5.9.8 requires a name to match every permitted subtree of its
 * type rather than one, so a subtree per address would make it refuse every
 * host certificate; docs/pki.md), and no DNS names or e-mail addresses at all (only
 * under the reserved top-level domain "invalid", RFC 6761, which nobody can
 * own). Critical, as RFC 5280 4.2.1.10 requires; the criticality is also what
 * makes strongSwan read the constraints at all (its openssl plugin refuses a
 * certificate with critical nameConstraints, and its x509 plugin, next in
 * line, parses and enforces them).
 *
 * No iPAddress subtree: strongSwan 5.9.8's x509 plugin accepts only 4- or
 * 16-byte iPAddress names and so cannot parse the 8-byte address-and-mask
 * form of a constraint, which makes it reject the whole certificate. The
 * local CA's own iPAddress subjectAltName stands in for it in
 * verifyHostCertificate (issuerAddressConstraints); docs/pki.md says what
 * other verifiers lose.
 */
export function nameConstraintsExtension(sharedAddresses: CaAddresses, organization: string): x509.Extension {
  const first = addressList(sharedAddresses)[0]!;
  const prefix = AsnConvert.parse(localNamePrefix(organization, first).toArrayBuffer(), AsnName);
  const subtree = (base: GeneralName): GeneralSubtree => new GeneralSubtree({ base });
  const nc = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([
      subtree(new GeneralName({ directoryName: prefix })),
      subtree(new GeneralName({ dNSName: 'invalid' })),
      subtree(new GeneralName({ rfc822Name: 'invalid' })),
    ]),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(nc));
}

const CA_USAGE = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

export async function rootExtensions(key: SigningKey): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(CA_USAGE, true),
    await x509.SubjectKeyIdentifierExtension.create(key.publicKey),
  ];
}

export interface LocalCaProfile {
  readonly subjectKey: CryptoKey;
  readonly issuerKey: CryptoKey;
  readonly sharedAddress: CaAddresses;
  readonly organization: string;
  /** Where the root publishes its CRL, if it does. */
  readonly issuerCrlUrl?: string;
}

/**
 * pathLen 0: the router may sign hosts but no further CA (RFC 5280 4.2.1.9).
 * The subjectAltName is the patent's "certificate in which a public
 * encryption key for the router is bound to its global IP address": every
 * address, which is also what verifyHostCertificate lets its host
 * certificates name (issuerAddressConstraints).
 */
export async function localCaExtensions(p: LocalCaProfile): Promise<x509.Extension[]> {
  const ext = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(CA_USAGE, true),
    nameConstraintsExtension(p.sharedAddress, p.organization),
    new x509.SubjectAlternativeNameExtension(
      addressList(p.sharedAddress).map((value) => ({ type: 'ip' as const, value })),
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(p.subjectKey),
    await x509.AuthorityKeyIdentifierExtension.create(p.issuerKey),
  ];
  if (p.issuerCrlUrl !== undefined) ext.push(new x509.CRLDistributionPointsExtension([p.issuerCrlUrl]));
  return ext;
}

export interface HostProfile {
  readonly subjectKey: x509.PublicKey;
  readonly issuerKey: CryptoKey;
  readonly sharedAddress: string;
  readonly ports: readonly Block[];
  readonly spis: readonly Block[];
  readonly crlUrl: string;
}

/**
 * digitalSignature only (IKEv2 authenticates by signature) and no extended
 * key usage (RFC 4945 5.1.3.12: its absence is what IKE implementations accept best).
 */
export async function hostExtensions(p: HostProfile): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: p.sharedAddress }], false),
    portBindingExtension(p.ports, p.spis),
    await x509.SubjectKeyIdentifierExtension.create(p.subjectKey),
    await x509.AuthorityKeyIdentifierExtension.create(p.issuerKey),
    new x509.CRLDistributionPointsExtension([p.crlUrl]),
  ];
}

export interface SignParams {
  readonly subject: x509.Name;
  readonly issuer: x509.Name;
  readonly publicKey: CryptoKey | x509.PublicKey;
  readonly signer: SigningKey;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extensions: x509.Extension[];
  readonly serial?: string;
}

export function signCertificate(p: SignParams): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: p.serial ?? randomSerial(),
    subject: p.subject,
    issuer: p.issuer,
    publicKey: p.publicKey,
    signingKey: p.signer.privateKey,
    signingAlgorithm: p.signer.algorithm,
    notBefore: p.notBefore,
    notAfter: p.notAfter,
    extensions: p.extensions,
  });
}
