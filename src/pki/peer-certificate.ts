/**
 * A certificate for an IKE peer with an address of its own (`distnat peer`
 * on a server): issued by the root, so that hosts, which trust the root,
 * accept it. It binds a fresh key to the peer's IPv4 address (subjectAltName
 * iPAddress, what RFC 4945 3.1.1 ties an ID_IPV4_ADDR identity to), carries
 * no port binding, and cannot sign anything.
 */
import { isIPv4 } from 'node:net';
import { BACKDATE_MS, CaError, type CertificateAuthority } from './authority.ts';
import { generateSigningKey, type KeyType } from './keys.ts';
import { toPem } from './pem.ts';
import { signCertificate } from './profile.ts';
import { x509 } from './x509.ts';

export interface PeerCertificateOptions {
  readonly address: string;
  readonly days?: number;
  readonly keyType?: KeyType;
}

export interface IssuedPeer {
  readonly certificate: x509.X509Certificate;
  /** The peer's certificate, then the issuer's chain up to the root. */
  readonly chainPem: string;
  /** PKCS #8. */
  readonly keyPem: string;
}

export async function issuePeerCertificate(
  ca: CertificateAuthority,
  o: PeerCertificateOptions,
): Promise<IssuedPeer> {
  if (ca.settings.role !== 'root') throw new CaError(`${ca.dir} is not a root CA`, 'refused');
  if (!isIPv4(o.address)) throw new CaError(`${o.address} is not an IPv4 address`, 'invalid');
  const { key, pem } = await generateSigningKey(o.keyType ?? 'ec-p256');
  const now = ca.clock.now();
  const notAfter = Math.min(now + (o.days ?? 365) * 86_400_000, ca.certificate.notAfter.getTime());
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: o.address }], false),
    await x509.SubjectKeyIdentifierExtension.create(key.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.key.publicKey),
  ];
  if (ca.settings.crlUrl !== undefined)
    extensions.push(new x509.CRLDistributionPointsExtension([ca.settings.crlUrl]));
  const certificate = await signCertificate({
    subject: new x509.Name([{ O: [ca.settings.organization] }, { CN: [o.address] }]),
    issuer: ca.certificate.subjectName,
    publicKey: key.publicKey,
    signer: ca.key,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    extensions,
  });
  await ca.record(certificate, { role: 'peer', address: o.address });
  return { certificate, chainPem: toPem([certificate, ca.certificate, ...ca.chain]), keyPem: pem };
}
