/**
 * One local CA and one CRL for two real `distnat router` daemons sharing
 * their leases on a real etcd: both hold a copy of the same CA key and
 * certificate (made with `distnat ca`), a host leases through router 1 and
 * is certified by it, `distnat withdraw` on router 2 takes the block back,
 * and the CRL router 1 serves lists the certificate, as does router 2's,
 * under the same CRL number; `openssl crl` reads and verifies both (an
 * independent reader), and etcd holds the revocation.
 *
 * The namespaces are this file's own (prefix dc<pid>x...): a `lan` one
 * holding the switch, etcd and the host's address, and one per router.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DISTNAT, PYTHON } from '../../scripts/lib/testbed/layout.ts';
import { readStatus } from '../../scripts/lib/testbed/status.ts';
import type { EtcdCluster } from '../helpers/etcd.ts';
import { startEtcd } from '../helpers/etcd.ts';
import { PAP_CLIENT_PY } from '../helpers/pap.ts';
import type { PapReply } from '../helpers/pap.ts';
import type { Background } from '../helpers/process.ts';
import { RouterLan } from '../helpers/router-lan.ts';
import { describe as describeResult, execIn, onExitCleanup, run, waitUntil } from '../helpers/process.ts';

const NET = new RouterLan('dc');
const LAN = NET.lan;
const ROUTERS = NET.routers;
const ETCD = '10.0.0.21';
const HOST = '10.0.0.100';
const SHARED = '198.51.100.30';
const PKI_PORT = 7033;
const dir = mkdtempSync(join(tmpdir(), 'distnat-router-etcd-ca-'));
const caDir = (i: number): string => join(dir, `r${i}`, 'ca');
let etcd: EtcdCluster | undefined;
const routers: Background[] = [];

const sh = (ns: string | undefined, argv: string[]): Promise<string> => NET.sh(ns, argv);

/** The root, router 1's local CA, and router 2's copy of it (key mode 0600), as an operator makes them. */
async function makeCa(): Promise<void> {
  const root = join(dir, 'root');
  await sh(undefined, [DISTNAT, 'ca', 'init', '--dir', root]);
  await sh(undefined, [
    DISTNAT,
    'ca',
    'issue-local',
    '--shared-address',
    SHARED,
    '--root',
    root,
    '--out',
    caDir(0),
    '--crl-url',
    `http://${ROUTERS[0]!.lan}:${PKI_PORT}/crl`,
  ]);
  await sh(undefined, ['mkdir', '-p', '-m', '0700', caDir(1)]);
  for (const f of ['ca.key', 'ca.pem', 'chain.pem', 'ca.json'])
    await sh(undefined, ['install', '-m', f === 'ca.key' ? '0600' : '0644', join(caDir(0), f), caDir(1)]);
}

const startRouter = (i: number): Background =>
  NET.startRouter(i, SHARED, dir, ['--ca-dir', caDir(i), '--etcd-endpoints', `http://${ETCD}:2379`]);

/** Router i's CRL as a client on the LAN fetches it, read by `openssl crl` (signature checked with the CA certificate). */
async function fetchCrl(i: number, name: string): Promise<{ text: string; number: number }> {
  const der = join(dir, `${name}.der`);
  await sh(LAN, [
    'curl',
    '-sS',
    '--fail',
    '--max-time',
    '10',
    '-o',
    der,
    `http://${ROUTERS[i]!.lan}:${PKI_PORT}/crl`,
  ]);
  const r = await run(
    ['openssl', 'crl', '-inform', 'DER', '-in', der, '-CAfile', join(caDir(0), 'ca.pem'), '-noout', '-text'],
    { timeoutMs: 10_000 },
  );
  expect(r.code, describeResult(r)).toBe(0);
  expect(r.stderr + r.stdout).toMatch(/verify OK/);
  const m = /X509v3 CRL Number:\s*\n?\s*(\d+)/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  return { text: r.stdout, number: Number(m![1]) };
}

beforeAll(async () => {
  onExitCleanup(() => NET.teardown());
  NET.teardown();
  await NET.setUp([ETCD, HOST]);
  etcd = await startEtcd(1, { ns: LAN, address: ETCD });
  await makeCa();
}, 90_000);

afterAll(async () => {
  for (const r of routers) await r.stop();
  await etcd?.stop();
  NET.teardown();
  rmSync(dir, { recursive: true, force: true });
});

describe('one local CA and one CRL for two routers on etcd', () => {
  it('a host certified by router 1 and withdrawn on router 2 is on router 1’s CRL, and router 2’s, one number', async () => {
    expect(statSync(join(caDir(1), 'ca.key')).mode & 0o777).toBe(0o600);
    for (const i of [0, 1]) {
      const r = startRouter(i);
      routers.push(r);
      await r.waitForOutput(/router started/, { timeoutMs: 30_000 });
    }

    // The host leases a port block through router 1.
    const script = join(dir, 'pap-client.py');
    writeFileSync(script, PAP_CLIENT_PY);
    const asked = await sh(LAN, [
      PYTHON,
      script,
      HOST,
      ROUTERS[0]!.lan,
      JSON.stringify({ op: 'request', kind: 'port', count: 16 }),
    ]);
    const answer = (JSON.parse(asked.trim()) as PapReply).answer;
    expect(answer?.success, asked).toBe(true);

    // ... and router 1 certifies it (a CSR made by openssl, posted from the host's address).
    const csr = join(dir, 'host.csr');
    await sh(undefined, [
      'openssl',
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(dir, 'host.key'),
      '-subj',
      '/CN=host',
      '-outform',
      'DER',
      '-out',
      csr,
    ]);
    const chain = join(dir, 'host-chain.pem');
    const code = await sh(LAN, [
      'curl',
      '-sS',
      '--max-time',
      '10',
      '--interface',
      HOST,
      '-o',
      chain,
      '-w',
      '%{http_code}',
      '--data-binary',
      `@${csr}`,
      `http://${ROUTERS[0]!.lan}:${PKI_PORT}/csr`,
    ]);
    expect(code.trim(), readFileSync(chain, 'utf8')).toBe('201');
    const serialLine = await sh(undefined, ['openssl', 'x509', '-in', chain, '-noout', '-serial']);
    const serial = serialLine.trim().replace(/^serial=/, '');
    expect(serial).toMatch(/^[0-9A-F]{16,}$/);

    const before = await fetchCrl(0, 'crl-before');
    expect(before.text).not.toContain(serial);

    // Router 2 takes the block back (it knows the lease from etcd; it never saw the certificate).
    await waitUntil('router 2 lists the host’s lease', async () => {
      const s = await readStatus(join(dir, 'r1', 'run'), 'router');
      return JSON.stringify(s.tables).includes(HOST);
    });
    const withdrawn = await execIn(ROUTERS[1]!.ns, [
      DISTNAT,
      'withdraw',
      HOST,
      '--run-dir',
      join(dir, 'r1', 'run'),
      '--json',
    ]);
    expect(withdrawn.code, describeResult(withdrawn)).toBe(0);
    expect(withdrawn.stdout).toContain(String(answer!.lowest));

    // Router 1's CRL lists it; router 2's too, under the same number.
    let after = before;
    await waitUntil('router 1’s CRL lists the withdrawn host’s certificate', async () => {
      after = await fetchCrl(0, 'crl-after-1');
      return after.text.includes(serial);
    });
    expect(after.text).toMatch(
      new RegExp(
        `Serial Number: ${serial}\\s*\\n\\s*Revocation Date: .*\\n\\s*CRL entry extensions:\\s*\\n\\s*X509v3 CRL Reason Code:\\s*\\n\\s*Privilege Withdrawn`,
      ),
    );
    expect(after.number).toBeGreaterThan(before.number);
    let second = before;
    await waitUntil('router 2’s CRL says the same, under the same number', async () => {
      second = await fetchCrl(1, 'crl-after-2');
      return second.number === after.number;
    });
    expect(second.text).toContain(`Serial Number: ${serial}`);

    // etcd holds the revocation, written by router 1 (whose registry knew the certificate).
    const stored = await sh(LAN, [
      'etcdctl',
      '--endpoints',
      `http://${ETCD}:2379`,
      'get',
      '--print-value-only',
      `/distnat/${SHARED}/crl/${serial.toLowerCase()}`,
    ]);
    expect(JSON.parse(stored.trim())).toMatchObject({
      reason: 'privilegeWithdrawn',
      by: expect.stringContaining(ROUTERS[0]!.lan),
    });

    // Both routers' status shows the shared list.
    for (const i of [0, 1]) {
      const s = await readStatus(join(dir, `r${i}`, 'run'), 'router');
      expect(s.counters['pki.crl_number'], `router ${i + 1}`).toBe(after.number);
      expect(s.counters['pki.crl_etcd_entries'], `router ${i + 1}`).toBe(1);
    }
  }, 180_000);
});
