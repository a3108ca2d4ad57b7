/**
 * The router as local CA on a testbed of its own (scripts/testbed up makes
 * the root and local CAs and starts the router with --ca-dir and
 * --crl-address): h1's real `distnat host` leases, `distnat ca request` in
 * h1 (requestHostCertificate) gets a chain binding exactly h1's block, an
 * address without a lease is refused 403, `distnat withdraw` makes the CRL
 * that dn-server fetches from the WAN address list the certificate with
 * privilegeWithdrawn, and a router restart keeps the registry.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCertificates, readPortBinding, verifyHostCertificate, x509 } from '../../src/pki/index.ts';
import {
  DISTNAT,
  counter,
  daemonPid,
  daemonRunDir,
  findTable,
  readStatus,
  routerPortBlocks,
  waitForLeases,
} from '../helpers/distnat.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();
const PKI = `http://${TOPOLOGY.router.lan}:7033`;
const CRL_URL = `http://${TOPOLOGY.router.wan}:7033/crl`;
const PRIVILEGE_WITHDRAWN = 9;

const scratch = (name: string): string => join(bed().scratchDir, name);

/** A fresh P-256 key and its DER CSR, made with openssl (independent of our own code). */
async function opensslCsr(name: string): Promise<string> {
  const csr = scratch(`${name}.csr`);
  const r = await bed().exec('h1', [
    'openssl',
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    scratch(`${name}.key`),
    '-subj',
    `/CN=${name}`,
    '-outform',
    'DER',
    '-out',
    csr,
  ]);
  expect(r.code, describeResult(r)).toBe(0);
  return csr;
}

/** POSTs a CSR with curl from `node`; returns the HTTP status and the body written to `out`. */
async function postCsr(
  node: 'h1' | 'h2',
  csr: string,
  out: string,
  from?: string,
): Promise<{ status: number; body: string }> {
  const argv = ['curl', '-sS', '--max-time', '10', '-o', out, '-w', '%{http_code}'];
  if (from !== undefined) argv.push('--interface', from);
  argv.push('--data-binary', `@${csr}`, `${PKI}/csr`);
  const r = await bed().exec(node, argv);
  expect(r.code, describeResult(r)).toBe(0);
  return { status: Number(r.stdout.trim()), body: readFileSync(out, 'utf8') };
}

async function serverFetchesCrl(name: string): Promise<x509.X509Crl> {
  const file = scratch(name);
  const r = await bed().exec('server', ['curl', '-sS', '--fail', '--max-time', '10', '-o', file, CRL_URL]);
  expect(r.code, describeResult(r)).toBe(0);
  return new x509.X509Crl(readFileSync(file));
}

const roots = (): string[] => [readFileSync(join(bed().runDir, 'pki', 'root', 'ca.pem'), 'utf8')];
const hex = (s: string): string => s.toLowerCase();

describe('the router as local CA on the testbed', () => {
  let firstSerial = '';

  it('certifies the block h1 leased with its real host agent, and nothing more', async () => {
    const leases = await waitForLeases(bed());
    const h1Blocks = leases.router.filter((b) => b.host === TOPOLOGY.h1.lan);
    expect(h1Blocks.length).toBeGreaterThan(0);

    const out = scratch('h1-first.pem');
    const r = await bed().exec(
      'h1',
      [DISTNAT, 'ca', 'request', '--key', scratch('h1-first.key'), '--out', out, '--router', PKI],
      { timeoutMs: 30_000 },
    );
    expect(r.code, describeResult(r)).toBe(0);
    const [cert, local, root] = readCertificates(readFileSync(out, 'utf8'));
    expect(local?.subject).toMatch(/distnat local CA 198\.51\.100\.30/);
    expect(root?.subject).toMatch(/root CA/);
    const binding = readPortBinding(cert!);
    expect(binding.ok && binding.binding.address).toBe(TOPOLOGY.shared);
    expect(binding.ok && binding.binding.ports).toEqual(
      h1Blocks.map((b) => ({ lowest: b.first, count: b.last - b.first + 1 })),
    );
    firstSerial = hex(cert!.serialNumber);

    // A remote peer's whole check: path to the testbed's root, constraints, the CRL from the WAN, the port.
    const crl = await serverFetchesCrl('crl-0.der');
    const verdict = await verifyHostCertificate(cert!, { roots: roots(), intermediates: [local!] }, crl, {
      address: TOPOLOGY.shared,
      ports: [h1Blocks[0]!.first],
    });
    expect(verdict.ok, JSON.stringify(verdict)).toBe(true);

    const status = await readStatus(bed(), 'router');
    expect(counter(status, 'pki.certificates_valid')).toBe(1);
    expect(findTable(status, 'LOCAL CA').rows.map((row) => [row[0], hex(String(row[1]))])).toEqual([
      [TOPOLOGY.h1.lan, firstSerial],
    ]);
  });

  it('refuses 403 a request from a LAN address that holds no lease', async () => {
    const csr = await opensslCsr('stranger');
    const stranger = '10.0.0.9';
    const add = await bed().exec('h2', ['ip', 'addr', 'add', `${stranger}/24`, 'dev', TOPOLOGY.lanIf]);
    expect(add.code, describeResult(add)).toBe(0);
    try {
      const r = await postCsr('h2', csr, scratch('stranger.out'), stranger);
      expect(r.status).toBe(403);
      expect(r.body).toMatch(/10\.0\.0\.9 holds no port lease/);
    } finally {
      await bed().exec('h2', ['ip', 'addr', 'del', `${stranger}/24`, 'dev', TOPOLOGY.lanIf]);
    }
  });

  it('distnat withdraw: the CRL dn-server fetches lists the certificate, privilegeWithdrawn', async () => {
    expect(firstSerial).not.toBe('');
    const before = counter(await readStatus(bed(), 'router'), 'pki.crl_number');
    const r = await bed().exec(
      'router',
      [DISTNAT, 'withdraw', TOPOLOGY.h1.lan, '--run-dir', daemonRunDir(bed(), 'router')],
      { timeoutMs: 30_000 },
    );
    expect(r.code, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`withdrew ports \\d+-\\d+ from ${TOPOLOGY.h1.lan}`));
    expect(r.stdout).toContain(`revoked certificate ${firstSerial} (privilegeWithdrawn)`);

    // Fetched right after the command returned: the withdrawal waited for this CRL.
    const crl = await serverFetchesCrl('crl-1.der');
    const entry = crl.entries.find((e) => hex(e.serialNumber) === firstSerial);
    expect(entry?.reason).toBe(PRIVILEGE_WITHDRAWN);
    const status = await readStatus(bed(), 'router');
    expect(counter(status, 'pki.crl_number')).toBeGreaterThan(before);
    expect(counter(status, 'pki.certificates_revoked')).toBe(1);
    const openssl = await bed().exec('server', [
      'openssl',
      'crl',
      '-inform',
      'DER',
      '-in',
      scratch('crl-1.der'),
      '-noout',
      '-text',
    ]);
    expect(openssl.stdout).toMatch(/Privilege Withdrawn/);

    const [cert, local] = readCertificates(readFileSync(scratch('h1-first.pem'), 'utf8'));
    const verdict = await verifyHostCertificate(cert!, { roots: roots(), intermediates: [local!] }, crl, {
      address: TOPOLOGY.shared,
    });
    expect(verdict).toMatchObject({ ok: false, reason: 'revoked' });

    // The host was told (PAP withdraw) and leased again; the router's log says the block was withdrawn.
    await waitUntil(
      'h1 to hold a new block',
      async () => routerPortBlocks(await readStatus(bed(), 'router')).some((b) => b.host === TOPOLOGY.h1.lan),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  });

  it('a router restart keeps the registry: counts, CRL, and the same certificate for the same request', async () => {
    const csr = await opensslCsr('h1-second');
    const issued = await postCsr('h1', csr, scratch('h1-second.pem'));
    expect(issued.status).toBe(201);
    const serial = hex(readCertificates(issued.body)[0]!.serialNumber);
    const before = await readStatus(bed(), 'router');
    expect(counter(before, 'pki.certificates_issued')).toBe(2);
    expect(counter(before, 'pki.certificates_valid')).toBe(1);

    const pid = daemonPid(bed(), 'router');
    process.kill(pid, 'SIGTERM');
    await waitUntil(
      'the router to exit',
      () => {
        try {
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
        } catch {
          return true;
        }
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    await sleep(200);
    const up = await bed().script(['up']);
    expect(up.code, describeResult(up)).toBe(0);
    await waitUntil(
      'the restarted router to answer',
      async () => (await readStatus(bed(), 'router').catch(() => undefined)) !== undefined,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(daemonPid(bed(), 'router')).not.toBe(pid);

    const after = await readStatus(bed(), 'router');
    for (const name of [
      'pki.certificates_issued',
      'pki.certificates_valid',
      'pki.certificates_revoked',
      'pki.crl_number',
    ])
      expect(counter(after, name), name).toBe(counter(before, name));
    const crl = await serverFetchesCrl('crl-2.der');
    expect(crl.entries.map((e) => hex(e.serialNumber))).toEqual([firstSerial]);

    // Same key, same leases (recovered from the journal): the registry's certificate again, 200 not 201.
    const again = await postCsr('h1', csr, scratch('h1-again.pem'));
    expect(again.status).toBe(200);
    expect(hex(readCertificates(again.body)[0]!.serialNumber)).toBe(serial);
  });
});
