import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { CaError, CertificateAuthority } from '../../../src/pki/authority.ts';
import { createCertificateRequest } from '../../../src/pki/client.ts';
import { generateSigningKey } from '../../../src/pki/keys.ts';
import { LocalCa } from '../../../src/pki/local-ca.ts';
import { crlToPem } from '../../../src/pki/pem.ts';
import { portsCoveredBy } from '../../../src/pki/port-binding.ts';
import { verifyHostCertificate } from '../../../src/pki/verify.ts';
import { x509 } from '../../../src/pki/x509.ts';
import {
  H1,
  H2,
  SHARED,
  file,
  hostKey,
  lease,
  makeHierarchy,
  openssl,
  opensslVerify,
  type Hierarchy,
} from './helpers.ts';

let h: Hierarchy;
let table: LeaseTable;
beforeEach(async () => {
  h = await makeHierarchy('ec-p256', { marginSeconds: 60, crlSeconds: 600 });
  table = new LeaseTable({ clock: h.clock, randomEpoch: () => 7, leaseSeconds: 300 });
  table.addListener(h.ca);
});
afterEach(() => {
  table.close();
  h.cleanup();
});

const issueFor = async (host: string, csr?: x509.Pkcs10CertificateRequest) => {
  const r = await h.ca.issue(csr ?? (await hostKey()).csr, { host, leases: table.leasesOf(host) });
  if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  return r;
};
const trust = () => ({ roots: [h.root.certificate], intermediates: [h.ca.authority.certificate] });

describe('LocalCa.issue', () => {
  it('binds the key to exactly the blocks the host holds, valid until its earliest lease ends plus the margin', async () => {
    table.request(H1, 'port', { count: 32 });
    h.clock.advance(10_000);
    table.request(H1, 'port', { count: 8, leaseSeconds: 120 });
    table.request(H1, 'spi', { count: 64 });
    table.request(H2, 'port', { count: 32 });
    const { certificate } = await issueFor(H1);
    const mine = table.leasesOf(H1);
    const b = portsCoveredBy(certificate)!;
    expect(b.address).toBe(SHARED);
    expect(b.ports).toEqual(
      mine.filter((l) => l.kind === 'port').map(({ lowest, count }) => ({ lowest, count })),
    );
    expect(b.spis).toEqual(
      mine.filter((l) => l.kind === 'spi').map(({ lowest, count }) => ({ lowest, count })),
    );
    // Nothing of H2's.
    for (const l of table.leasesOf(H2)) expect(b.ports.some((p) => p.lowest === l.lowest)).toBe(false);
    const earliest = Math.min(...mine.map((l) => l.expiresAt));
    expect(certificate.notAfter.getTime()).toBe(earliest + 60_000);
    expect(certificate.notBefore.getTime()).toBe(h.clock.now() - 60_000);
    expect(certificate.subject).toBe(
      `O=distnat, OU=${SHARED}, CN=${SHARED} ports ${b.ports.map((p) => `${p.lowest}-${p.lowest + p.count - 1}`).join(' ')}`,
    );
  });

  it('refuses a host without a port lease, and one whose leases have lapsed', async () => {
    const { csr } = await hostKey();
    expect(await h.ca.issue(csr, { host: H1, leases: [] })).toMatchObject({ ok: false, reason: 'no-lease' });
    table.request(H1, 'spi');
    expect(await h.ca.issue(csr, { host: H1, leases: table.leasesOf(H1) })).toMatchObject({
      ok: false,
      reason: 'no-lease',
    });
    // Someone else's lease passed in is not the host's.
    table.request(H2, 'port');
    expect(await h.ca.issue(csr, { host: H1, leases: table.leasesOf(H2) })).toMatchObject({
      ok: false,
      reason: 'no-lease',
    });
    const stale = [lease(H1, 'port', 2000, 32, h.clock.now() - 1)];
    expect(await h.ca.issue(csr, { host: H1, leases: stale })).toMatchObject({
      ok: false,
      reason: 'no-lease',
    });
  });

  it('refuses a request not signed by its key, garbage, and keys outside the profile', async () => {
    table.request(H1, 'port');
    const leases = table.leasesOf(H1);
    const { csr } = await hostKey();
    const der = Buffer.from(csr.rawData);
    der[der.length - 5]! ^= 0x01; // inside the signature
    expect(await h.ca.issue(der, { host: H1, leases })).toMatchObject({ ok: false, reason: 'bad-signature' });
    expect(
      await h.ca.issue('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', {
        host: H1,
        leases,
      }),
    ).toMatchObject({ ok: false, reason: 'malformed-csr' });
    const p384 = openssl(
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-384',
      '-nodes',
      '-keyout',
      '/dev/null',
      '-subj',
      '/CN=x',
    );
    expect(await h.ca.issue(p384.out, { host: H1, leases })).toMatchObject({
      ok: false,
      reason: 'key-not-allowed',
    });
    const rsa1024 = openssl(
      'req',
      '-new',
      '-newkey',
      'rsa:1024',
      '-nodes',
      '-keyout',
      '/dev/null',
      '-subj',
      '/CN=x',
    );
    expect(await h.ca.issue(rsa1024.out, { host: H1, leases })).toMatchObject({
      ok: false,
      reason: 'key-not-allowed',
      detail: /1024/,
    });
  });

  it('accepts a CSR made by openssl (a host need not run this code)', async () => {
    table.request(H1, 'port');
    const req = openssl(
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      '/dev/null',
      '-subj',
      '/CN=whatever/O=ignored',
    );
    const r = await h.ca.issue(req.out, { host: H1, leases: table.leasesOf(H1) });
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.certificate.subject).not.toContain('ignored');
  });

  it('hands the same certificate back while key and leases are unchanged, a new one after a renewal', async () => {
    const answer = table.request(H1, 'port');
    const { csr } = await hostKey();
    const first = await issueFor(H1, csr);
    expect(first.reused).toBe(false);
    const again = await issueFor(H1, csr);
    expect(again.reused).toBe(true);
    expect(again.certificate.serialNumber).toBe(first.certificate.serialNumber);
    const otherKey = await issueFor(H1);
    expect(otherKey.reused).toBe(false);
    h.clock.advance(150_000);
    table.renew(H1, 'port', answer.lowest, answer.count);
    const renewed = await issueFor(H1, csr);
    expect(renewed.reused).toBe(false);
    expect(renewed.certificate.notAfter.getTime()).toBe(first.certificate.notAfter.getTime() + 150_000);
    expect(h.ca.authority.registry.list().filter((e) => e.role === 'host')).toHaveLength(3);
  });

  it('returns the chain: host, local CA, root', async () => {
    table.request(H1, 'port');
    const r = await issueFor(H1);
    const certs = x509.PemConverter.decode(r.chainPem).map((d) => new x509.X509Certificate(d));
    expect(certs.map((c) => c.serialNumber)).toEqual([
      r.certificate.serialNumber,
      h.ca.authority.certificate.serialNumber,
      h.root.certificate.serialNumber,
    ]);
  });

  it('never outlives the local CA', async () => {
    const short = await makeHierarchy();
    try {
      const local = await short.root.issueLocalCa(join(short.dir, 'short'), {
        sharedAddress: SHARED,
        days: 0.002,
      });
      const ca = new LocalCa(local, { clock: short.clock });
      const r = await ca.issue((await hostKey()).csr, {
        host: H1,
        leases: [lease(H1, 'port', 1026, 32, short.clock.now() + 3600_000)],
      });
      expect(r.ok && r.certificate.notAfter.getTime()).toBe(local.certificate.notAfter.getTime());
      short.clock.advance(3600_000);
      const late = await ca.issue((await hostKey()).csr, {
        host: H1,
        leases: [lease(H1, 'port', 1026, 32, short.clock.now() + 3600_000)],
      });
      expect(late).toMatchObject({ ok: false, reason: 'ca-expired' });
    } finally {
      short.cleanup();
    }
  });
});

describe('revocation when a lease ends', () => {
  it('withdrawn: privilegeWithdrawn in the CRL; openssl -crl_check says revoked; our checker says revoked', async () => {
    const a = table.request(H1, 'port');
    table.request(H1, 'spi');
    const { certificate } = await issueFor(H1);
    const hostPem = file(h.dir, 'host.pem', certificate.toString('pem'));
    const before = await h.ca.crl();
    expect(
      opensslVerify(h, hostPem, '-crl_check', '-CRLfile', file(h.dir, 'crl0.pem', crlToPem(before))).status,
    ).toBe(0);

    table.withdraw('port', a.lowest);
    const crl = await h.ca.crl();
    const crlPem = file(h.dir, 'crl1.pem', crlToPem(crl));
    const o = opensslVerify(h, hostPem, '-crl_check', '-CRLfile', crlPem);
    expect(o.status).not.toBe(0);
    expect(o.out).toContain('certificate revoked');
    const text = openssl('crl', '-in', crlPem, '-noout', '-text').out;
    expect(text).toContain(`Serial Number: ${certificate.serialNumber.toUpperCase()}`);
    expect(text).toContain('Privilege Withdrawn');
    expect(text).toMatch(/CRL Number: \s+2\n/);
    expect(text).toMatch(/Authority Key Identifier/);
    expect(openssl('crl', '-in', crlPem, '-noout', '-CAfile', h.localPem).out).toContain('verify OK');

    const v = await verifyHostCertificate(certificate, trust(), crl, { address: SHARED });
    expect(v).toMatchObject({ ok: false, reason: 'revoked', detail: /privilegeWithdrawn/ });
    // The CRL on disk is the one served.
    expect(h.ca.authority.lastCrl()?.toString('hex')).toBe(crl.toString('hex'));
  });

  it('released: cessationOfOperation; expired: privilegeWithdrawn; only the certificates naming that block', async () => {
    const p1 = table.request(H1, 'port');
    const s1 = table.request(H1, 'spi');
    table.request(H2, 'port');
    const c1 = (await issueFor(H1)).certificate;
    const c2 = (await issueFor(H2)).certificate;
    table.release(H1, 'spi', s1.lowest);
    let crl = await h.ca.crl();
    expect(crl.entries.map((e) => [e.serialNumber, e.reason])).toEqual([
      [c1.serialNumber, x509.X509CrlReason.cessationOfOperation],
    ]);
    expect(table.leasesOf(H1).some((l) => l.lowest === p1.lowest)).toBe(true);

    h.clock.advance(301_000); // every lease lapses; the table sweeps on its timer
    crl = await h.ca.crl();
    expect(crl.entries.find((e) => e.serialNumber === c2.serialNumber)?.reason).toBe(
      x509.X509CrlReason.privilegeWithdrawn,
    );
    // Not revoked twice.
    expect(crl.entries.filter((e) => e.serialNumber === c1.serialNumber)).toHaveLength(1);
  });

  it('a block the host still holds keeps its certificate valid when another block ends', async () => {
    table.request(H1, 'port');
    const { certificate: onlyFirst } = await issueFor(H1);
    const b = table.request(H1, 'port');
    table.withdraw('port', b.lowest);
    const crl = await h.ca.crl();
    expect(crl.findRevoked(onlyFirst)).toBeNull();
  });

  it('after a restart, reconcile revokes certificates for blocks the table no longer gives that host', async () => {
    const a = table.request(H1, 'port');
    table.request(H2, 'port');
    const c1 = (await issueFor(H1)).certificate;
    const c2 = (await issueFor(H2)).certificate;
    // The router comes back with H1's block gone and nobody told the CA.
    table.removeListener(h.ca);
    table.withdraw('port', a.lowest);
    const reopened = await LocalCa.open(join(h.dir, 'local'), { clock: h.clock });
    expect(reopened.reconcile(table.leases())).toEqual([c1.serialNumber.toLowerCase()]);
    const crl = await reopened.crl();
    expect(crl.findRevoked(c1)).not.toBeNull();
    expect(crl.findRevoked(c2)).toBeNull();
  });

  it('CRL numbers only go up, across a restart, and an unchanged CRL is not remade until half its life has passed', async () => {
    const one = await h.ca.crl();
    expect(await h.ca.crl()).toBe(one);
    h.clock.advance(301_000);
    const two = await h.ca.crl();
    expect(two).not.toBe(one);
    expect(two.nextUpdate!.getTime() - two.thisUpdate.getTime()).toBe(600_000);
    const reopened = await LocalCa.open(join(h.dir, 'local'), { clock: h.clock });
    h.clock.advance(301_000);
    const three = await reopened.crl();
    const number = (c: x509.X509Crl) =>
      openssl('crl', '-in', file(h.dir, 'n.pem', crlToPem(c)), '-noout', '-crlnumber').out.trim();
    expect([number(one), number(two), number(three)]).toEqual([
      'crlNumber=0x01',
      'crlNumber=0x02',
      'crlNumber=0x03',
    ]);
  });

  it('a revocation during signing still reaches the next CRL (no lost update)', async () => {
    table.request(H1, 'port');
    const a = table.request(H2, 'port');
    const c2 = (await issueFor(H2)).certificate;
    const first = h.ca.crl(); // being signed
    table.withdraw('port', a.lowest); // revokes while the first is in flight
    await first;
    expect((await h.ca.crl()).findRevoked(c2)).not.toBeNull();
  });

  it('our checker refuses a stale CRL, one from another CA and a tampered one', async () => {
    table.request(H1, 'port');
    const { certificate } = await issueFor(H1);
    const crl = await h.ca.crl();
    expect(await verifyHostCertificate(certificate, trust(), crl, { address: SHARED })).toMatchObject({
      ok: true,
    });
    const other = await makeHierarchy();
    try {
      const foreign = await other.ca.crl();
      expect(await verifyHostCertificate(certificate, trust(), foreign, { address: SHARED })).toMatchObject({
        ok: false,
        reason: 'crl-invalid',
      });
    } finally {
      other.cleanup();
    }
    const bytes = Buffer.from(crl.rawData);
    bytes[bytes.length - 3]! ^= 1;
    expect(await verifyHostCertificate(certificate, trust(), bytes, { address: SHARED })).toMatchObject({
      ok: false,
      reason: 'crl-invalid',
    });
    const longLived = await makeHierarchy('ec-p256', { crlSeconds: 30 });
    try {
      const lt = new LeaseTable({ clock: longLived.clock, randomEpoch: () => 9 });
      lt.request(H1, 'port');
      const r = await longLived.ca.issue((await hostKey()).csr, { host: H1, leases: lt.leasesOf(H1) });
      const short = await longLived.ca.crl();
      const when = new Date(longLived.clock.now() + 31_000);
      expect(
        r.ok &&
          (await verifyHostCertificate(
            r.certificate,
            { roots: [longLived.root.certificate], intermediates: [longLived.ca.authority.certificate] },
            short,
            { address: SHARED, at: when },
          )),
      ).toMatchObject({ ok: false, reason: 'crl-invalid', detail: /stale/ });
      lt.close();
    } finally {
      longLived.cleanup();
    }
  });
});

describe('CA directories', () => {
  it('keys are 0600 in a 0700 directory; a second init into the same directory is refused', async () => {
    expect(statSync(join(h.dir, 'root', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.dir, 'local', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.dir, 'local')).mode & 0o777).toBe(0o700);
    await expect(CertificateAuthority.initRoot(join(h.dir, 'root'))).rejects.toThrow(CaError);
  });

  it('the registry survives a reopen with every issued certificate and revocation', async () => {
    const a = table.request(H1, 'port');
    const { certificate } = await issueFor(H1);
    table.withdraw('port', a.lowest);
    const again = await CertificateAuthority.open(join(h.dir, 'local'), h.clock);
    const e = again.registry.find(certificate.serialNumber)!;
    expect(e).toMatchObject({
      role: 'host',
      host: H1,
      address: SHARED,
      revoked: { reason: 'privilegeWithdrawn' },
    });
    expect(e.ports).toEqual([{ lowest: a.lowest, count: a.count }]);
    expect(new x509.X509Certificate(e.pem).serialNumber).toBe(certificate.serialNumber);
    // The root remembers the local CA it signed.
    expect(h.root.registry.find(h.ca.authority.certificate.serialNumber)).toMatchObject({
      role: 'local-ca',
      address: SHARED,
    });
  });

  it('a key that does not belong to the certificate is refused on open', async () => {
    const { pem } = await generateSigningKey('ec-p256');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(h.dir, 'local', 'ca.key'), pem);
    await expect(CertificateAuthority.open(join(h.dir, 'local'))).rejects.toThrow(/does not belong/);
  });

  it('only a root signs local CAs', async () => {
    await expect(h.ca.authority.issueLocalCa(join(h.dir, 'x'), { sharedAddress: SHARED })).rejects.toThrow(
      /not a root/,
    );
    await expect(h.root.issueLocalCa(join(h.dir, 'y'), { sharedAddress: '198.51.100.300' })).rejects.toThrow(
      /not an IPv4/,
    );
  });

  it('RSA 3072 works end to end with openssl', async () => {
    const big = await makeHierarchy('rsa-3072');
    try {
      const lt = new LeaseTable({ clock: big.clock, randomEpoch: () => 3 });
      lt.request(H1, 'port');
      const { key } = await generateSigningKey('rsa-3072');
      const r = await big.ca.issue(await createCertificateRequest(key), {
        host: H1,
        leases: lt.leasesOf(H1),
      });
      lt.close();
      if (!r.ok) throw new Error(r.detail);
      expect(opensslVerify(big, file(big.dir, 'h.pem', r.certificate.toString('pem'))).status).toBe(0);
      expect(openssl('x509', '-in', big.localPem, '-noout', '-text').out).toContain('Public-Key: (3072 bit)');
    } finally {
      big.cleanup();
    }
  });
});
