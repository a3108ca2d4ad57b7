/**
 * A local CA for a router with several shared addresses: one CA, one name
 * prefix (its first address's: strongSwan 5.9.8 would need a name to match
 * every permitted subtree of a type), both addresses in its
 * subjectAltName. A host is certified on the
 * address it leases on (or the one its request asks for), with the ports on
 * that address, never the slot numbers the lease table keeps; openssl
 * accepts a host of either address and refuses a name under a third; a
 * block that ends revokes only the certificates of its own address; a CA
 * made for one address keeps certifying it and refuses the other, saying
 * what to do.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { BACKDATE_MS, CaError, CertificateAuthority } from '../../../src/pki/authority.ts';
import { createCertificateRequest } from '../../../src/pki/client.ts';
import { generateSigningKey } from '../../../src/pki/keys.ts';
import { LocalCa, requestedAddress } from '../../../src/pki/local-ca.ts';
import { portsCoveredBy } from '../../../src/pki/port-binding.ts';
import { hostExtensions, hostName, signCertificate } from '../../../src/pki/profile.ts';
import { verifyHostCertificate } from '../../../src/pki/verify.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { file, openssl } from './helpers.ts';

const A = '198.51.100.30';
const B = '198.51.100.31';
const C = '198.51.100.32';
const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const RANGE = { min: 1024, max: 1024 + 8 * 32 - 1 };

let dir: string;
let clock: FakeClock;
let root: CertificateAuthority;
let table: LeaseTable;

/** A local CA for `caAddresses` on a router serving A and B, following `table`. */
async function localCa(caAddresses: string[], name = 'local'): Promise<LocalCa> {
  await root.issueLocalCa(join(dir, name), { sharedAddress: caAddresses });
  const ca = await LocalCa.open(join(dir, name), { clock, routerAddresses: [A, B] });
  table.addListener(ca);
  return ca;
}

const csrFor = async (address?: string) =>
  createCertificateRequest((await generateSigningKey('ec-p256')).key, 'h', address);

function verify(ca: LocalCa, pem: string, ...extra: string[]) {
  const rootPem = file(dir, 'root.pem', root.certificate.toString('pem'));
  const localPem = file(dir, 'local.pem', ca.authority.certificate.toString('pem'));
  return openssl('verify', ...extra, '-CAfile', rootPem, '-untrusted', localPem, file(dir, 'host.pem', pem));
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'distnat-pki-shared-'));
  clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000);
  root = await CertificateAuthority.initRoot(join(dir, 'root'), { clock });
  table = new LeaseTable({ clock, addresses: [A, B], portRange: RANGE, leaseSeconds: 300 });
});
afterEach(() => {
  table.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a local CA of two shared addresses', () => {
  it('permits one name prefix and names both addresses, as openssl reads it', async () => {
    const ca = await localCa([A, B]);
    const text = openssl('x509', '-noout', '-text', '-in', join(dir, 'local', 'ca.pem')).out;
    expect(text).toMatch(
      /Permitted:\s+DirName:O = distnat, OU = 198\.51\.100\.30\s+DNS:invalid\s+email:invalid/,
    );
    expect(text).toContain(`IP Address:${A}, IP Address:${B}`);
    expect(ca.authority.certificate.subject).toBe(`O=distnat, OU=${A}, CN=distnat local CA ${A} ${B}`);
    expect(JSON.parse(readFileSync(join(dir, 'local', 'ca.json'), 'utf8'))).toMatchObject({
      sharedAddress: A,
      sharedAddresses: [A, B],
    });
    expect(ca.sharedAddresses).toEqual([A, B]);
    expect(ca.uncertifiedAddresses()).toEqual([]);
  });

  it('certifies each host on the address it leases on, with its ports there, and openssl accepts both', async () => {
    const ca = await localCa([A, B]);
    // The same ports on both addresses: two leases, two certificates that differ only by address.
    table.request(H1, 'port', { count: 32 });
    table.request(H2, 'port', { count: 32, address: 1 });
    table.request(H2, 'spi', { count: 64 });
    const r1 = await ca.issue(await csrFor(), { host: H1, leases: table.leasesOf(H1) });
    const r2 = await ca.issue(await csrFor(), { host: H2, leases: table.leasesOf(H2) });
    if (!r1.ok || !r2.ok) throw new Error('not issued');
    expect(r1.certificate.subject).toBe(`O=distnat, OU=${A}, CN=${A} ports 1024-1055`);
    expect(r2.certificate.subject).toBe(`O=distnat, OU=${A}, CN=${B} ports 1024-1055`);
    expect(portsCoveredBy(r2.certificate)).toEqual({
      address: B,
      ports: [{ lowest: 1024, count: 32 }],
      spis: [{ lowest: table.leasesOf(H2).find((l) => l.kind === 'spi')!.lowest, count: 64 }],
    });
    for (const r of [r1, r2]) {
      const v = verify(ca, r.certificate.toString('pem'));
      expect(v.out).toContain(': OK');
      expect(v.status).toBe(0);
    }
    const trust = { roots: [root.certificate], intermediates: [ca.authority.certificate] };
    expect(
      await verifyHostCertificate(r2.certificate, trust, null, { address: B, ports: [1030] }),
    ).toMatchObject({
      ok: true,
    });
    // Port 1030 on A is H1's, not what H2's certificate binds.
    expect(
      await verifyHostCertificate(r2.certificate, trust, null, { address: A, ports: [1030] }),
    ).toMatchObject({
      ok: false,
      reason: 'not-covered',
    });
    expect(ca.authority.registry.find(r2.certificate.serialNumber.toLowerCase())?.address).toBe(B);
  });

  it('certifies the address the request asks for, and refuses one the host holds no ports on or the router does not serve', async () => {
    const ca = await localCa([A, B]);
    table.request(H1, 'port', { count: 32 });
    table.request(H1, 'port', { count: 32, address: 1 });
    const onB = await ca.issue(await csrFor(B), { host: H1, leases: table.leasesOf(H1) });
    expect(onB.ok && onB.certificate.subject).toBe(`O=distnat, OU=${A}, CN=${B} ports 1024-1055`);
    // Without asking: the first of the router's addresses the host leases on.
    const plain = await ca.issue(await csrFor(), { host: H1, leases: table.leasesOf(H1) });
    expect(plain.ok && portsCoveredBy(plain.certificate)?.address).toBe(A);
    table.request(H2, 'port', { count: 32 });
    expect(await ca.issue(await csrFor(B), { host: H2, leases: table.leasesOf(H2) })).toMatchObject({
      ok: false,
      reason: 'no-lease',
      detail: expect.stringContaining(`holds no port block on ${B}`),
    });
    expect(await ca.issue(await csrFor(C), { host: H2, leases: table.leasesOf(H2) })).toMatchObject({
      ok: false,
      reason: 'unknown-address',
    });
  });

  it('reads the address a request asks for from its subjectAltName', async () => {
    expect(requestedAddress(await csrFor(B))).toBe(B);
    expect(requestedAddress(await csrFor())).toBeUndefined();
    // openssl's own request, the way docs/pki.md shows it.
    const key = join(dir, 'h.key');
    const csr = join(dir, 'h.csr');
    const made = openssl(
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-subj',
      '/CN=h',
      '-addext',
      `subjectAltName=IP:${B}`,
      '-out',
      csr,
    );
    expect(made.status, made.out).toBe(0);
    const ca = await localCa([A, B]);
    table.request(H2, 'port', { count: 32, address: 1 });
    const r = await ca.issue(readFileSync(csr, 'utf8'), { host: H2, leases: table.leasesOf(H2) });
    expect(r.ok && portsCoveredBy(r.certificate)?.address).toBe(B);
  });

  it('openssl refuses a host name under a third address the CA may not certify', async () => {
    const ca = await localCa([A, B]);
    const csr = await csrFor();
    const a = ca.authority;
    const now = clock.now();
    const outside = await signCertificate({
      subject: hostName('distnat', C, [{ lowest: 1024, count: 32 }]),
      issuer: a.certificate.subjectName,
      publicKey: csr.publicKey,
      signer: a.key,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + 300_000),
      extensions: await hostExtensions({
        subjectKey: csr.publicKey,
        issuerKey: a.key.publicKey,
        sharedAddress: C,
        ports: [{ lowest: 1024, count: 32 }],
        spis: [],
        crlUrl: ca.crlUrl,
      }),
    });
    const v = verify(ca, outside.toString('pem'));
    expect(v.status).not.toBe(0);
    expect(v.out).toMatch(/name constraint|permitted subtree/i);
    const trust = { roots: [root.certificate], intermediates: [ca.authority.certificate] };
    expect(await verifyHostCertificate(outside, trust, null, { address: C })).toMatchObject({
      ok: false,
      reason: 'name-constraints-violated',
    });
  });

  it('a block that ends revokes the certificates of its own address only', async () => {
    const ca = await localCa([A, B]);
    table.request(H1, 'port', { count: 32 });
    table.request(H1, 'port', { count: 32, address: 1 });
    const onA = await ca.issue(await csrFor(A), { host: H1, leases: table.leasesOf(H1) });
    const onB = await ca.issue(await csrFor(B), { host: H1, leases: table.leasesOf(H1) });
    if (!onA.ok || !onB.ok) throw new Error('not issued');
    const slotOnB = table.leasesOf(H1).find((l) => l.lowest >= 65536)!;
    expect(table.release(H1, 'port', slotOnB.lowest).status).toBe('ok');
    const registry = ca.authority.registry;
    expect(registry.find(onB.certificate.serialNumber.toLowerCase())?.revoked?.reason).toBe(
      'cessationOfOperation',
    );
    // Port 1024 on A is still H1's: its certificate stays valid.
    expect(registry.find(onA.certificate.serialNumber.toLowerCase())?.revoked).toBeUndefined();
    // And after a restart, reconcile keeps it too (the A block is held, the B one is gone).
    expect(ca.reconcile(table.leases())).toEqual([]);
  });

  it('reconcile revokes a certificate whose block on its address ended, even when the same ports are held on the other', async () => {
    const ca = await localCa([A, B]);
    table.request(H1, 'port', { count: 32, address: 1 });
    const onB = await ca.issue(await csrFor(B), { host: H1, leases: table.leasesOf(H1) });
    if (!onB.ok) throw new Error('not issued');
    // As recovered after a restart: H1 holds 1024-1055 on A now, nothing on B.
    const recovered = table.leasesOf(H1).map((l) => ({ ...l, lowest: l.lowest - 65536 }));
    expect(ca.reconcile(recovered)).toEqual([onB.certificate.serialNumber.toLowerCase()]);
  });
});

describe('a local CA made for the first address only, on a router with two', () => {
  it('goes on certifying the first and refuses the second, naming the command that makes a CA for both', async () => {
    const ca = await localCa([A]);
    expect(ca.uncertifiedAddresses()).toEqual([B]);
    table.request(H1, 'port', { count: 32 });
    table.request(H2, 'port', { count: 32, address: 1 });
    const r1 = await ca.issue(await csrFor(), { host: H1, leases: table.leasesOf(H1) });
    expect(r1.ok && r1.certificate.subject).toBe(`O=distnat, OU=${A}, CN=${A} ports 1024-1055`);
    const r2 = await ca.issue(await csrFor(), { host: H2, leases: table.leasesOf(H2) });
    expect(r2).toMatchObject({ ok: false, reason: 'address-not-certified' });
    expect(!r2.ok && r2.detail).toContain(
      `distnat ca issue-local --shared-address ${A} --shared-address ${B}`,
    );
  });
});

describe('issueLocalCa', () => {
  it('refuses an address named twice and one that is not IPv4', async () => {
    await expect(root.issueLocalCa(join(dir, 'x'), { sharedAddress: [A, A] })).rejects.toThrow(CaError);
    await expect(root.issueLocalCa(join(dir, 'y'), { sharedAddress: [A, '198.51.100.300'] })).rejects.toThrow(
      /not an IPv4 address/,
    );
  });

  it('keeps a one-address CA exactly as before: one subtree, one SAN, no list in ca.json', async () => {
    const ca = await localCa([A]);
    expect(ca.authority.certificate.subject).toBe(`O=distnat, OU=${A}, CN=distnat local CA ${A}`);
    expect(JSON.parse(readFileSync(join(dir, 'local', 'ca.json'), 'utf8')).sharedAddresses).toBeUndefined();
    const text = openssl('x509', '-noout', '-text', '-in', join(dir, 'local', 'ca.pem')).out;
    expect(text.match(/DirName:/g)).toHaveLength(1);
  });
});
