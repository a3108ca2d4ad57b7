import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateRequest } from '../../../src/pki/client.ts';
import { hostExtensions, hostName, localNamePrefix, signCertificate } from '../../../src/pki/profile.ts';
import { verifyHostCertificate } from '../../../src/pki/verify.ts';
import { x509 } from '../../../src/pki/x509.ts';
import {
  H1,
  SHARED,
  file,
  hostKey,
  lease,
  makeHierarchy,
  openssl,
  opensslVerify,
  type Hierarchy,
} from './helpers.ts';

const BLOCK = { lowest: 1026, count: 32 };

/** A certificate signed with the local CA's key but outside what LocalCa.issue would write. */
async function rogue(
  h: Hierarchy,
  o: {
    keyType?: 'ec-p256' | 'rsa-2048';
    address?: string;
    ou?: string;
    extra?: x509.Extension[];
    signer?: { key: Awaited<ReturnType<typeof hostKey>>['key']; cert: x509.X509Certificate };
  },
) {
  const { key } = await hostKey(o.keyType);
  const address = o.address ?? SHARED;
  const now = h.clock.now();
  const issuerKey = o.signer?.key ?? h.ca.authority.key;
  const issuerCert = o.signer?.cert ?? h.ca.authority.certificate;
  return signCertificate({
    subject: hostName('distnat', o.ou ?? SHARED, [BLOCK]),
    issuer: issuerCert.subjectName,
    publicKey: key.publicKey,
    signer: issuerKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 600_000),
    extensions: [
      ...(await hostExtensions({
        subjectKey: await x509.PublicKey.create(key.publicKey),
        issuerKey: issuerKey.publicKey,
        sharedAddress: address,
        ports: [BLOCK],
        spis: [],
        crlUrl: h.ca.crlUrl,
      })),
      ...(o.extra ?? []),
    ],
  });
}

const trust = (h: Hierarchy) => ({
  roots: [h.root.certificate],
  intermediates: [h.ca.authority.certificate],
});

describe.each(['ec-p256', 'rsa-2048'] as const)('hierarchy with %s keys', (keyType) => {
  let h: Hierarchy;
  let host: x509.X509Certificate;
  let hostPem: string;

  beforeAll(async () => {
    h = await makeHierarchy(keyType);
    const { csr } = await hostKey(keyType);
    const expires = h.clock.now() + 300_000;
    const r = await h.ca.issue(csr, {
      host: H1,
      leases: [lease(H1, 'port', 1026, 32, expires), lease(H1, 'spi', 256, 64, expires)],
    });
    if (!r.ok) throw new Error(r.detail);
    host = r.certificate;
    hostPem = file(h.dir, 'host.pem', host.toString('pem'));
  });
  afterAll(() => h.cleanup());

  it('verifies with openssl: root trusted, local CA untrusted intermediate', () => {
    const r = opensslVerify(h, hostPem);
    expect(r.out).toContain(': OK');
    expect(r.status).toBe(0);
  });

  it('verifies with our checker and reports the binding', async () => {
    const v = await verifyHostCertificate(host, trust(h), null, {
      address: SHARED,
      ports: [1026, 1057],
      spis: [256, 319],
    });
    expect(v).toMatchObject({
      ok: true,
      binding: { address: SHARED, ports: [BLOCK], spis: [{ lowest: 256, count: 64 }] },
    });
    if (v.ok)
      expect(v.path.map((c) => c.subject)).toEqual([
        host.subject,
        h.ca.authority.certificate.subject,
        h.root.certificate.subject,
      ]);
  });

  it('openssl reads the host profile field by field', () => {
    const t = openssl('x509', '-in', hostPem, '-noout', '-text').out;
    expect(t).toContain(keyType === 'ec-p256' ? 'ecdsa-with-SHA256' : 'sha256WithRSAEncryption');
    expect(t).toMatch(/Subject: O = distnat, OU = 198\.51\.100\.30, CN = 198\.51\.100\.30 ports 1026-1057/);
    expect(t).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(t).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(t).toMatch(/Subject Alternative Name: \s+IP Address:198\.51\.100\.30\n/);
    expect(t).toMatch(/1\.3\.6\.1\.4\.1\.32473\.7032\.1: \n/); // present and not critical
    expect(t).toMatch(/CRL Distribution Points: \s+Full Name:\s+URI:http:\/\/198\.51\.100\.30\/distnat\/crl/);
    expect(t).not.toContain('Extended Key Usage');
  });

  it('openssl reads the local CA profile: pathlen 0, CA usages, critical name constraints', () => {
    const t = openssl('x509', '-in', h.localPem, '-noout', '-text').out;
    expect(t).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(t).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(t).toMatch(
      /Name Constraints: critical\s+Permitted:\s+DirName:O = distnat, OU = 198\.51\.100\.30\s+DNS:invalid\s+email:invalid\n/,
    );
    expect(t).toMatch(/Subject Alternative Name: \s+IP Address:198\.51\.100\.30/);
  });

  it('openssl finds in the name constraints only subtree forms strongSwan 5.9.8 parses (no address-and-mask)', () => {
    const der = file(h.dir, 'local.der', Buffer.from(h.ca.authority.certificate.rawData));
    const top = openssl('asn1parse', '-inform', 'DER', '-in', der).out.split('\n');
    const at = top.findIndex((l) => l.includes(':X509v3 Name Constraints'));
    // The extension's value is the OCTET STRING after the OID and the critical flag.
    const octets = top.slice(at + 1).find((l) => l.includes('OCTET STRING'));
    const offset = /^\s*(\d+):/.exec(octets ?? '')?.[1];
    expect(offset).toBeDefined();
    const nc = openssl('asn1parse', '-inform', 'DER', '-in', der, '-strparse', offset!).out;
    // directoryName [4], dNSName [2], rfc822Name [1]; an iPAddress [7] here would be 8 bytes.
    expect([...nc.matchAll(/cont \[ (\d) \]/g)].map((m) => m[1])).toEqual(['0', '4', '2', '1']);
    expect(nc).not.toContain('cont [ 7 ]');
  });

  it('openssl parses the port binding extension to the same integers', () => {
    const ext = host.getExtension('1.3.6.1.4.1.32473.7032.1')!;
    const out = openssl(
      'asn1parse',
      '-inform',
      'DER',
      '-in',
      file(h.dir, 'binding.der', Buffer.from(ext.value)),
    ).out;
    const ints = [...out.matchAll(/INTEGER\s+:([0-9A-F]+)/g)].map((m) => parseInt(m[1]!, 16));
    expect(ints).toEqual([1026, 32, 256, 64]);
    expect(out).toMatch(/cont \[ 0 \]/);
    expect(out).toMatch(/cont \[ 1 \]/);
  });

  it('another address under the right name: openssl accepts it (no iPAddress constraint), our checker refuses it', async () => {
    const bad = await rogue(h, { address: '192.0.2.5' });
    const r = opensslVerify(h, file(h.dir, 'bad-ip.pem', bad.toString('pem')));
    expect(r.out).toContain(': OK'); // the loss docs/pki.md describes
    const v = await verifyHostCertificate(bad, trust(h), null, { address: '192.0.2.5', ports: [1026] });
    expect(v).toMatchObject({ ok: false, reason: 'name-constraints-violated' });
    expect(v.ok || v.detail).toMatch(
      /IP 192\.0\.2\.5 is outside .* named by its issuer "O=distnat, OU=198\.51\.100\.30/,
    );
  });

  it('refuses a subject outside the local name prefix, a DNS name and an e-mail address', async () => {
    for (const [name, bad] of [
      ['dn', await rogue(h, { ou: '198.51.100.31' })],
      ['dns', await sanRogue(h, { type: 'dns', value: 'bank.example' })],
      ['email', await sanRogue(h, { type: 'email', value: 'ceo@bank.example' })],
    ] as const) {
      const r = opensslVerify(h, file(h.dir, `bad-${name}.pem`, bad.toString('pem')));
      expect(r.out, name).toContain('permitted subtree violation');
      const v = await verifyHostCertificate(bad, trust(h), null, { address: SHARED, ports: [1026] });
      expect(v, name).toMatchObject({ ok: false, reason: 'name-constraints-violated' });
    }
  });

  it('the same construction inside the constraints passes (the refusals above are about names)', async () => {
    const good = await rogue(h, {});
    expect(opensslVerify(h, file(h.dir, 'control.pem', good.toString('pem'))).status).toBe(0);
    expect((await verifyHostCertificate(good, trust(h), null, { address: SHARED })).ok).toBe(true);
  });

  it('pathLen 0: a CA under the local CA cannot certify anyone', async () => {
    const { key: subKey } = await hostKey(keyType);
    const now = h.clock.now();
    const sub = await signCertificate({
      subject: new x509.Name([...localNamePrefix('distnat', SHARED).toJSON(), { CN: ['sub CA'] }]),
      issuer: h.ca.authority.certificate.subjectName,
      publicKey: subKey.publicKey,
      signer: h.ca.authority.key,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 600_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    const leaf = await rogue(h, { signer: { key: subKey, cert: sub } });
    const untrusted = file(
      h.dir,
      'sub-chain.pem',
      h.ca.authority.certificate.toString('pem') + '\n' + sub.toString('pem'),
    );
    const r = openssl(
      'verify',
      '-CAfile',
      h.rootPem,
      '-untrusted',
      untrusted,
      file(h.dir, 'under-sub.pem', leaf.toString('pem')),
    );
    expect(r.status).not.toBe(0);
    expect(r.out).toContain('path length constraint exceeded');
    const v = await verifyHostCertificate(
      leaf,
      { roots: [h.root.certificate], intermediates: [h.ca.authority.certificate, sub] },
      null,
      { address: SHARED },
    );
    expect(v).toMatchObject({ ok: false, reason: 'bad-chain' });
    expect(v.ok || v.detail).toMatch(/allows 0 CA/);
  });

  it('a certificate signed by a host key is refused (a host is no CA)', async () => {
    const { key } = await hostKey(keyType);
    const expires = h.clock.now() + 300_000;
    const csr = await createCertificateRequest(key);
    const r = await h.ca.issue(csr, { host: H1, leases: [lease(H1, 'port', 1026, 32, expires)] });
    if (!r.ok) throw new Error(r.detail);
    const leaf = await rogue(h, { signer: { key, cert: r.certificate } });
    const untrusted = file(
      h.dir,
      'host-chain.pem',
      h.ca.authority.certificate.toString('pem') + '\n' + r.certificate.toString('pem'),
    );
    const o = openssl(
      'verify',
      '-CAfile',
      h.rootPem,
      '-untrusted',
      untrusted,
      file(h.dir, 'by-host.pem', leaf.toString('pem')),
    );
    expect(o.status).not.toBe(0);
    expect(o.out).toContain('invalid CA certificate');
    const v = await verifyHostCertificate(
      leaf,
      { roots: [h.root.certificate], intermediates: [h.ca.authority.certificate, r.certificate] },
      null,
      { address: SHARED },
    );
    expect(v).toMatchObject({ ok: false, reason: 'bad-chain' });
    expect(v.ok || v.detail).toMatch(/is not a CA/);
  });

  it('expired and not yet valid, with openssl -attime agreeing', async () => {
    const after = new Date(host.notAfter.getTime() + 1000);
    const v = await verifyHostCertificate(host, trust(h), null, { address: SHARED, at: after });
    expect(v).toMatchObject({ ok: false, reason: 'expired' });
    const late = opensslVerify(h, hostPem, '-attime', String(after.getTime() / 1000));
    expect(late.out).toContain('certificate has expired');
    const before = new Date(host.notBefore.getTime() - 1000);
    expect(await verifyHostCertificate(host, trust(h), null, { address: SHARED, at: before })).toMatchObject({
      ok: false,
      reason: 'not-yet-valid',
    });
    expect(opensslVerify(h, hostPem, '-attime', String(before.getTime() / 1000)).out).toContain(
      'not yet valid',
    );
  });

  it('not covered: a port, an SPI or an address outside the binding', async () => {
    const check = (claim: Parameters<typeof verifyHostCertificate>[3]) =>
      verifyHostCertificate(host, trust(h), null, claim);
    expect(await check({ address: SHARED, ports: [1025] })).toMatchObject({
      ok: false,
      reason: 'not-covered',
    });
    expect(await check({ address: SHARED, ports: [1058] })).toMatchObject({
      ok: false,
      reason: 'not-covered',
    });
    expect(await check({ address: SHARED, spis: [320] })).toMatchObject({ ok: false, reason: 'not-covered' });
    expect(await check({ address: '198.51.100.31', ports: [1026] })).toMatchObject({
      ok: false,
      reason: 'not-covered',
    });
  });

  it('no path: an unknown root, a missing intermediate, garbage', async () => {
    const other = await makeHierarchy(keyType);
    try {
      expect(
        await verifyHostCertificate(
          host,
          { roots: [other.root.certificate], intermediates: [h.ca.authority.certificate] },
          null,
          { address: SHARED },
        ),
      ).toMatchObject({ ok: false, reason: 'bad-chain' });
      expect(
        await verifyHostCertificate(host, { roots: [h.root.certificate] }, null, { address: SHARED }),
      ).toMatchObject({ ok: false, reason: 'bad-chain' });
      // Same names, other keys: the signature check, not the name match, decides.
      expect(
        await verifyHostCertificate(
          host,
          { roots: [h.root.certificate], intermediates: [other.ca.authority.certificate] },
          null,
          { address: SHARED },
        ),
      ).toMatchObject({ ok: false, reason: 'bad-chain' });
      expect(
        await verifyHostCertificate('not a certificate', trust(h), null, { address: SHARED }),
      ).toMatchObject({ ok: false, reason: 'malformed' });
    } finally {
      other.cleanup();
    }
  });
});

/** A host certificate from the local CA's key with one more subjectAltName beside the shared address. */
async function sanRogue(h: Hierarchy, extra: x509.JsonGeneralName): Promise<x509.X509Certificate> {
  const { key } = await hostKey();
  const now = h.clock.now();
  return signCertificate({
    subject: hostName('distnat', SHARED, [BLOCK]),
    issuer: h.ca.authority.certificate.subjectName,
    publicKey: key.publicKey,
    signer: h.ca.authority.key,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 600_000),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: SHARED }, extra]),
    ],
  });
}

/** The message of what forge throws (a plain object, not an Error), or 'ok'. */
function forgeVerdict(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (e) {
    return (e as { message?: string }).message ?? String(e);
  }
}

describe('node-forge as a second verifier (RSA: forge has no ECDSA certificates)', () => {
  let h: Hierarchy;
  let hostPem: string;
  beforeAll(async () => {
    h = await makeHierarchy('rsa-2048');
    const { csr } = await hostKey('rsa-2048');
    const r = await h.ca.issue(csr, {
      host: H1,
      leases: [lease(H1, 'port', 1026, 32, h.clock.now() + 300_000)],
    });
    if (!r.ok) throw new Error(r.detail);
    hostPem = r.certificate.toString('pem');
  });
  afterAll(() => h.cleanup());

  const store = () => forge.pki.createCaStore([h.root.certificate.toString('pem')]);
  const cert = (pem: string) => forge.pki.certificateFromPem(pem);

  it('accepts host <- local CA <- root', () => {
    expect(
      forge.pki.verifyCertificateChain(store(), [
        cert(hostPem),
        cert(h.ca.authority.certificate.toString('pem')),
      ]),
    ).toBe(true);
    const parsed = cert(hostPem);
    expect(parsed.getExtension('subjectAltName')).toMatchObject({ altNames: [{ type: 7, ip: SHARED }] });
    expect(cert(h.ca.authority.certificate.toString('pem')).getExtension('basicConstraints')).toMatchObject({
      cA: true,
      pathLenConstraint: 0,
    });
  });

  it('refuses a certificate signed by a host key', async () => {
    const { key } = await hostKey('rsa-2048');
    const r = await h.ca.issue(await createCertificateRequest(key), {
      host: H1,
      leases: [lease(H1, 'port', 1026, 32, h.clock.now() + 300_000)],
    });
    if (!r.ok) throw new Error(r.detail);
    const leaf = await rogue(h, { keyType: 'rsa-2048', signer: { key, cert: r.certificate } });
    const chain = [leaf, r.certificate, h.ca.authority.certificate].map((c) => cert(c.toString('pem')));
    expect(forgeVerdict(() => forge.pki.verifyCertificateChain(store(), chain))).toMatch(/not a CA/);
  });

  it('refuses certificates outside the name constraints (forge 1.4 checks them too)', async () => {
    const local = cert(h.ca.authority.certificate.toString('pem'));
    const bad = await rogue(h, { keyType: 'rsa-2048', ou: '198.51.100.31' });
    expect(
      forgeVerdict(() => forge.pki.verifyCertificateChain(store(), [cert(bad.toString('pem')), local])),
    ).toMatch(/not permitted by a name constraint/);
    const good = await rogue(h, { keyType: 'rsa-2048' });
    expect(
      forgeVerdict(() => forge.pki.verifyCertificateChain(store(), [cert(good.toString('pem')), local])),
    ).toBe('ok');
  });

  it('refuses a CA under the local CA (pathLen 0)', async () => {
    const { key: subKey } = await hostKey('rsa-2048');
    const now = h.clock.now();
    const sub = await signCertificate({
      subject: new x509.Name([...localNamePrefix('distnat', SHARED).toJSON(), { CN: ['sub CA'] }]),
      issuer: h.ca.authority.certificate.subjectName,
      publicKey: subKey.publicKey,
      signer: h.ca.authority.key,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 600_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ],
    });
    const leaf = await rogue(h, { keyType: 'rsa-2048', signer: { key: subKey, cert: sub } });
    const chain = [leaf, sub, h.ca.authority.certificate].map((c) => cert(c.toString('pem')));
    expect(forgeVerdict(() => forge.pki.verifyCertificateChain(store(), chain))).toMatch(
      /pathLenConstraint violated/,
    );
    // Control: the sub-CA itself, directly under the local CA, passes; it is the leaf below it that breaks pathLen.
    expect(forge.pki.verifyCertificateChain(store(), chain.slice(1))).toBe(true);
  });

  it('refuses a chain whose local CA was not signed by the root', async () => {
    const other = await makeHierarchy('rsa-2048');
    try {
      const chain = [cert(hostPem), cert(other.ca.authority.certificate.toString('pem'))];
      // The other local CA has the same name but another key, and another root above it.
      expect(forgeVerdict(() => forge.pki.verifyCertificateChain(store(), chain))).toMatch(
        /signature|not trusted/,
      );
    } finally {
      other.cleanup();
    }
  });
});
