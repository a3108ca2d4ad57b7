/**
 * One local CA, one CRL for every router of a shared address, against a
 * real etcd on loopback: two routers (each its own etcd client, lease table
 * view, revocation list and copy of the same CA directory) sign CRLs with
 * the same entries and the same number; a certificate issued by one and
 * withdrawn through the other is on both CRLs; keys under the CRL prefix
 * that are no revocation are skipped and counted; the number only grows,
 * also across a deletion and for a router that reads the list afresh.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { crlPrefix } from '../../../src/pap/shared-lease-layout.ts';
import { SharedLeaseTable } from '../../../src/pap/shared-lease-table.ts';
import { CertificateAuthority } from '../../../src/pki/authority.ts';
import { crlToPem } from '../../../src/pki/pem.ts';
import { SharedRevocationList } from '../../../src/pki/shared-revocations.ts';
import type { x509 } from '../../../src/pki/x509.ts';
import { crlNumberOf, LocalCaService } from '../../../src/router/daemon/local-ca-service.ts';
import { SystemClock } from '../../../src/util/clock.ts';
import type { EtcdCluster } from '../../helpers/etcd.ts';
import { startEtcd } from '../../helpers/etcd.ts';
import { waitUntil } from '../../helpers/process.ts';
import { H1, H2, SHARED, hostKey, openssl } from './helpers.ts';

let etcd: EtcdCluster;
let n = 0;
const clock = new SystemClock({ unref: true });
const quiet = { info: () => undefined, warn: () => undefined };

beforeAll(async () => {
  etcd = await startEtcd(1);
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
});

interface Router {
  readonly client: Etcd3;
  readonly table: SharedLeaseTable;
  readonly list: SharedRevocationList;
  readonly service: LocalCaService;
  readonly skipped: string[];
}

let dir: string;
let prefix: string;
let routers: Router[];

/** A router as the daemon builds it: its own client, the lease view, the CRL list, the CA service. */
async function router(
  caDir: string,
  client: Etcd3 = etcd.client(),
  log: { info(m: string): unknown; warn(m: string): unknown } = quiet,
): Promise<Router> {
  const table = await SharedLeaseTable.open({
    client,
    prefix,
    clock,
    portRange: { min: 1024, max: 65535 },
    spiRange: { min: 256, max: 0xffffffff },
  });
  const skipped: string[] = [];
  const list = await SharedRevocationList.open({
    client,
    prefix: crlPrefix(prefix),
    clock,
    routerId: caDir,
    onSkip: (key, reason) => skipped.push(`${key.slice(crlPrefix(prefix).length)} ${reason}`),
  });
  const service = await LocalCaService.start({
    dir: caDir,
    lanAddress: '127.0.0.1',
    port: 0,
    leases: table,
    revocations: list,
    log,
    clock,
  });
  return { client, table, list, service, skipped };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'distnat-shared-crl-'));
  prefix = `/distnat-test/${process.pid}/crl${++n}/${SHARED}/`;
  const root = await CertificateAuthority.initRoot(join(dir, 'root'), { clock });
  await root.issueLocalCa(join(dir, 'a'), { sharedAddress: SHARED });
  // The second router gets a copy of the same key and certificate (docs/multi-router.md).
  cpSync(join(dir, 'a'), join(dir, 'b'), { recursive: true });
  routers = [await router(join(dir, 'a')), await router(join(dir, 'b'))];
}, 30_000);

afterEach(async () => {
  for (const r of routers ?? []) {
    await r.service.close();
    await r.list.close();
    await r.table.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

const serialsOf = (crl: x509.X509Crl): string[] =>
  crl.entries.map((e) => e.serialNumber.toLowerCase()).sort();

/** Waits until both routers' CRLs are made from the same list and returns them. */
async function agreedCrls(): Promise<[x509.X509Crl, x509.X509Crl]> {
  let crls: x509.X509Crl[] = [];
  await waitUntil(
    'both routers sign the same CRL number',
    async () => {
      crls = await Promise.all(routers.map((r) => r.service.publishCrl()));
      return crlNumberOf(crls[0]!) === crlNumberOf(crls[1]!);
    },
    { timeoutMs: 5000 },
  );
  return [crls[0]!, crls[1]!];
}

async function certify(r: Router, host: string): Promise<string> {
  const granted = await r.table.request(host, 'port', { count: 16 });
  expect(granted.status).toBe('ok');
  const issued = await r.service.ca.issue((await hostKey()).csr, { host, leases: r.table.leasesOf(host) });
  if (!issued.ok) throw new Error(issued.detail);
  return issued.certificate.serialNumber.toLowerCase();
}

describe('one CRL for every router (etcd)', () => {
  it('a certificate issued by router A and withdrawn on router B is on both CRLs, with one number', async () => {
    const [a, b] = routers as [Router, Router];
    const serial = await certify(a, H1);
    const other = await certify(a, H2);
    const before = await agreedCrls();
    expect(serialsOf(before[0])).toEqual([]);

    // B withdraws what A granted; A's view hears it through the watch and revokes what it issued.
    await waitUntil('B sees the lease', () => b.table.leasesOf(H1).length === 1, { timeoutMs: 5000 });
    const lease = b.table.leasesOf(H1)[0]!;
    expect(await b.table.withdraw('port', lease.lowest)).toBeDefined();
    await waitUntil('the revocation in both routers’ lists', () => b.list.has(serial) && a.list.has(serial), {
      timeoutMs: 5000,
    });

    const [crlA, crlB] = await agreedCrls();
    expect(serialsOf(crlA)).toEqual([serial]);
    expect(serialsOf(crlB)).toEqual([serial]);
    expect(crlNumberOf(crlA)).toBeGreaterThan(crlNumberOf(before[0]));
    // Both signed by the one CA key: either verifies with the CA certificate both hold.
    expect(await crlB.verify({ publicKey: a.service.ca.authority.certificate.publicKey })).toBe(true);

    // The CRL as an independent reader sees it.
    const pem = join(dir, 'b-crl.pem');
    writeFileSync(pem, crlToPem(crlB));
    const text = openssl('crl', '-in', pem, '-noout', '-text');
    expect(text.status).toBe(0);
    expect(text.out).toMatch(new RegExp(`Serial Number: ${serial.toUpperCase()}`));
    expect(text.out).toMatch(/Privilege Withdrawn/);
    expect(text.out).toMatch(new RegExp(`X509v3 CRL Number: \\s*\\n?\\s*${crlNumberOf(crlB)}\\b`));
    expect(text.out).not.toMatch(new RegExp(other.toUpperCase()));

    // What etcd holds, read with a client of its own.
    const c = etcd.client();
    const stored = JSON.parse((await c.get(crlPrefix(prefix) + serial).string())!) as Record<string, unknown>;
    expect(stored).toMatchObject({ reason: 'privilegeWithdrawn', by: join(dir, 'a') });
    expect(stored.notAfter).toBeGreaterThan(Date.now());
    // The lease table reads the revocations as no foreign key of its own.
    expect(a.table.counters.skipped['foreign-key']).toBe(0);
    expect(b.table.counters.skipped['foreign-key']).toBe(0);
  });

  it('skips and counts keys under the CRL prefix that are no revocation; the CRL goes on without them', async () => {
    const [a, b] = routers as [Router, Router];
    const c = etcd.client();
    await c.put(crlPrefix(prefix) + 'not-a-serial').value('{}');
    await c.put(crlPrefix(prefix) + 'abcdef').value('not json');
    await c.put(crlPrefix(prefix) + '0123').value(JSON.stringify({ at: 1, reason: 'bogus', notAfter: 2 }));
    await waitUntil('corrupt values skipped', () => b.list.counters.skipped['corrupt-value'] === 2, {
      timeoutMs: 5000,
    });
    expect(b.list.counters.skipped['foreign-key']).toBe(1);
    expect(b.skipped.sort()).toEqual([
      '0123 corrupt-value',
      'abcdef corrupt-value',
      'not-a-serial foreign-key',
    ]);
    // The same key written again is not counted again.
    await c.put(crlPrefix(prefix) + 'abcdef').value('still not json');
    const serial = await certify(a, H1);
    expect((await a.table.release(H1, 'port', a.table.leasesOf(H1)[0]!.lowest)).status).toBe('ok');
    await waitUntil('the release revoked on both', () => b.list.has(serial) && a.list.has(serial), {
      timeoutMs: 5000,
    });
    const [crlA, crlB] = await agreedCrls();
    expect(serialsOf(crlA)).toEqual([serial]);
    expect(serialsOf(crlB)).toEqual([serial]);
    expect(b.list.counters.skipped['corrupt-value']).toBe(2);
    expect(b.service.stats().shared).toMatchObject({
      crl_etcd_entries: 1,
      crl_etcd_skipped_corrupt_value: 2,
      crl_etcd_skipped_foreign_key: 1,
    });
  });

  it('the number only grows: a revocation, a refresh, a pruned entry; a router reading afresh agrees', async () => {
    const [a] = routers as [Router, Router];
    const list = a.list;
    const n0 = list.number;
    expect(n0).toBeGreaterThan(0);
    const now = Date.now();
    await list.add({ serial: '0abc', at: now, reason: 'keyCompromise', notAfter: now + 60_000 });
    const n1 = list.number;
    expect(n1).toBeGreaterThan(n0);
    // Offered a second time (by another router, say): the first stands, nothing moves.
    await list.add({ serial: '0abc', at: now + 5, reason: 'superseded', notAfter: now + 60_000 });
    expect(list.number).toBe(n1);
    expect(list.entries(now)).toEqual([
      { serial: '0abc', at: now, reason: 'keyCompromise', notAfter: now + 60_000 },
    ]);
    const n2 = await list.bump();
    expect(n2).toBeGreaterThan(n1);
    await list.add({ serial: '0def', at: now, reason: 'privilegeWithdrawn', notAfter: now - 10_000 });
    const n3 = list.number;
    expect(await list.prune(now, 5_000)).toBe(1);
    const n4 = list.number;
    expect(n4).toBeGreaterThan(n3);
    expect(list.has('0def')).toBe(false);
    // A router starting now reads the same entries and the same number as one that watched it happen.
    const fresh = await SharedRevocationList.open({ client: a.client, prefix: crlPrefix(prefix), clock });
    try {
      expect(fresh.number).toBe(n4);
      expect(fresh.entries(now)).toEqual(list.entries(now));
      await waitUntil('B follows', () => routers[1]!.list.number === n4, { timeoutMs: 5000 });
      expect(routers[1]!.list.has('0def')).toBe(false);
    } finally {
      await fresh.close();
    }
  });
});

describe('one CRL for every router, etcd gone', () => {
  it('a revocation etcd does not take is in the router’s own CRL at once, counted, warned about once', async () => {
    const own = await startEtcd(1);
    // As the daemon configures its client: every call but the watch gives up (etcd.callTimeoutSeconds).
    const client = new Etcd3({
      hosts: own.endpoints,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1000 }),
    });
    const warnings: string[] = [];
    // Only what etcd's absence says (the CA's CRL URL is not served on 127.0.0.1, which it also says).
    const log = { info: () => undefined, warn: (m: string) => void (m.includes('etcd') && warnings.push(m)) };
    const r = await router(join(dir, 'a'), client, log);
    try {
      const serial = await certify(r, H1);
      const before = await r.service.publishCrl();
      await own.kill(0);
      expect(r.service.ca.revoke(serial, 'keyCompromise')).toBe('revoked');
      const crl = await r.service.publishCrl();
      expect(serialsOf(crl)).toEqual([serial]);
      // The number stays: only etcd moves it.
      expect(crlNumberOf(crl)).toBe(crlNumberOf(before));
      await waitUntil('the failed offer reported', () => warnings.length > 0, { timeoutMs: 10_000 });
      expect(r.service.stats().shared).toMatchObject({ crl_etcd_unshared: 1, crl_etcd_entries: 0 });
      // Offered again every second, reported once.
      await new Promise((done) => setTimeout(done, 3500));
      expect(warnings).toEqual(['etcd did not take a revocation: in this router’s CRL, offered again']);
      expect(r.service.ca.unshared).toBe(1);
    } finally {
      await r.service.close();
      await r.list.close();
      await r.table.close();
      client.close();
      await own.stop();
    }
  }, 60_000);
});
