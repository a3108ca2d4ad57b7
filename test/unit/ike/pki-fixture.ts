/**
 * Certificates for the IKE tests, made with src/pki: a root, the local CA
 * of the router for 198.51.100.30, a host certificate from it (ports
 * 1026-1057, SPIs 256-319), and a plain certificate from the root for a peer
 * with its own address (203.0.113.3, no port binding). For tests of what a
 * verifier refuses, host certificates signed with the local CA's key but
 * outside what LocalCa.issue would write.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../../src/pki/authority.ts';
import { createCertificateRequest } from '../../../src/pki/client.ts';
import { generateSigningKey, type KeyType } from '../../../src/pki/keys.ts';
import { LocalCa } from '../../../src/pki/local-ca.ts';
import { hostExtensions, hostName, signCertificate } from '../../../src/pki/profile.ts';
import { x509 } from '../../../src/pki/x509.ts';

export const SHARED = '198.51.100.30';
export const PEER = '203.0.113.3';
export const HOST_PORTS = { lowest: 1026, count: 32 };
export const HOST_SPIS = { lowest: 256, count: 64 };

export interface Identity {
  readonly certPem: string;
  readonly chainPem: string[];
  readonly key: KeyObject;
  readonly keyPem: string;
}

export interface TestPki {
  readonly dir: string;
  readonly root: CertificateAuthority;
  readonly rootPem: string;
  readonly localCa: LocalCa;
  readonly host: Identity;
  readonly peer: Identity;
  /** Issues another host certificate for the given blocks. */
  issueHost(ports: { lowest: number; count: number }, keyType?: KeyType): Promise<Identity>;
  /** A plain end-entity certificate from the root for an address (or with a DN only). */
  issuePlain(
    address: string | undefined,
    keyType?: KeyType,
    options?: { notAfter?: Date; cn?: string },
  ): Promise<Identity>;
  /**
   * A host certificate (ports HOST_PORTS) signed with the local CA's key, with
   * the subject's OU, the iPAddress subjectAltName, an added dNSName or
   * rfc822Name set apart from what the local CA may certify.
   */
  issueOutsideProfile(o: OutsideProfile): Promise<Identity>;
  cleanup(): void;
}

export interface OutsideProfile {
  /** The subject's OU (the local CA's is the shared address). */
  readonly ou?: string;
  /** The iPAddress subjectAltName (and the port binding's address). */
  readonly address?: string;
  /** A dNSName subjectAltName beside the address. */
  readonly dns?: string;
  /** An rfc822Name subjectAltName beside the address. */
  readonly email?: string;
}

export async function makePki(keyType: KeyType = 'ec-p256'): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), 'distnat-ike-'));
  const root = await CertificateAuthority.initRoot(join(dir, 'root'), { keyType });
  await root.issueLocalCa(join(dir, 'local'), { sharedAddress: SHARED, keyType });
  const localCa = await LocalCa.open(join(dir, 'local'));
  const rootPem = root.certificate.toString('pem');

  const issueHost = async (
    ports: { lowest: number; count: number },
    kt: KeyType = keyType,
  ): Promise<Identity> => {
    const { key, pem } = await generateSigningKey(kt);
    const csr = await createCertificateRequest(key);
    const now = Date.now();
    const lease = (kind: 'port' | 'spi', b: { lowest: number; count: number }) => ({
      kind,
      host: '10.0.0.1',
      ...b,
      grantedAt: now,
      expiresAt: now + 3_600_000,
      leaseSeconds: 3600,
    });
    const r = await localCa.issue(csr, {
      host: '10.0.0.1',
      leases: [lease('port', ports), lease('spi', HOST_SPIS)],
    });
    if (!r.ok) throw new Error(`host certificate not issued: ${r.detail}`);
    return {
      certPem: r.certificate.toString('pem'),
      chainPem: [localCa.authority.certificate.toString('pem')],
      key: createPrivateKey(pem),
      keyPem: pem,
    };
  };

  const issuePlain = async (
    address: string | undefined,
    kt: KeyType = keyType,
    options: { notAfter?: Date; cn?: string } = {},
  ): Promise<Identity> => {
    const { key, pem } = await generateSigningKey(kt);
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ];
    if (address !== undefined)
      extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: address }]));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: Date.now().toString(16) + Math.floor(Math.random() * 1e6).toString(16),
      subject: `O=distnat, CN=${options.cn ?? address ?? 'peer'}`,
      issuer: root.certificate.subject,
      publicKey: key.publicKey,
      signingKey: root.key.privateKey,
      signingAlgorithm: root.key.algorithm,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: options.notAfter ?? new Date(Date.now() + 86_400_000),
      extensions,
    });
    return { certPem: cert.toString('pem'), chainPem: [], key: createPrivateKey(pem), keyPem: pem };
  };

  const issueOutsideProfile = async (o: OutsideProfile): Promise<Identity> => {
    const { key, pem } = await generateSigningKey(keyType);
    const ca = localCa.authority;
    const extensions = await hostExtensions({
      subjectKey: await x509.PublicKey.create(key.publicKey),
      issuerKey: ca.key.publicKey,
      sharedAddress: o.address ?? SHARED,
      ports: [HOST_PORTS],
      spis: [HOST_SPIS],
      crlUrl: localCa.crlUrl,
    });
    const extra: x509.JsonGeneralName[] = [
      ...(o.dns === undefined ? [] : [{ type: 'dns' as const, value: o.dns }]),
      ...(o.email === undefined ? [] : [{ type: 'email' as const, value: o.email }]),
    ];
    if (extra.length > 0) {
      const i = extensions.findIndex((e) => e instanceof x509.SubjectAlternativeNameExtension);
      extensions[i] = new x509.SubjectAlternativeNameExtension([
        { type: 'ip', value: o.address ?? SHARED },
        ...extra,
      ]);
    }
    const cert = await signCertificate({
      subject: hostName(ca.settings.organization, o.ou ?? SHARED, [HOST_PORTS]),
      issuer: ca.certificate.subjectName,
      publicKey: key.publicKey,
      signer: ca.key,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      extensions,
    });
    return {
      certPem: cert.toString('pem'),
      chainPem: [ca.certificate.toString('pem')],
      key: createPrivateKey(pem),
      keyPem: pem,
    };
  };

  return {
    dir,
    root,
    rootPem,
    localCa,
    host: await issueHost(HOST_PORTS),
    peer: await issuePlain(PEER),
    issueHost,
    issuePlain,
    issueOutsideProfile,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
