/**
 * `distnat ca issue-local` writes into every host certificate a CRL URL
 * that the router really serves: it asks for the router's WAN address
 * (--crl-address, as `distnat router --crl-address`) instead of guessing one,
 * and the URL it makes is the one a router started with that address answers
 * on. Shown end to end: the real command makes the local CA, the router's
 * local CA service runs on loopback with it, a host certificate is issued
 * over its LAN endpoint, and the URL read back from that certificate returns
 * the local CA's CRL.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import {
  createCertificateRequest,
  crlUrls,
  generateSigningKey,
  requestHostCertificate,
  x509,
} from '../../../src/pki/index.ts';
import { LocalCaService } from '../../../src/router/daemon/local-ca-service.ts';
import { SystemClock } from '../../../src/util/clock.ts';

const DISTNAT = resolve(import.meta.dirname, '../../../bin/distnat');
const LAN = '127.0.0.1';
const WAN = '127.0.0.2';
const dir = mkdtempSync(join(tmpdir(), 'dxi-issue-local-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function distnat(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const p = spawn(DISTNAT, args, { cwd: dir });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', fail);
    p.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** A TCP port free on `host` just now. */
function freePort(host: string): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

const base = ['ca', 'issue-local', '--shared-address', '198.51.100.30', '--root', 'root'];

describe('distnat ca issue-local: the CRL URL', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    const init = await distnat('ca', 'init', '--dir', 'root');
    expect(init.code, init.stderr).toBe(0);
  });

  it('without --crl-address or --crl-url: a usage error that says which address to give (64)', async () => {
    const r = await distnat(...base, '--out', 'none');
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      "distnat: give --crl-address with the router's WAN address (where `distnat router --crl-address` " +
        'serves the CRL), or --crl-url, but not both\n' +
        "Try 'distnat ca issue-local --help' for more information.\n",
    );
  });

  it('both, a bad address or a bad port: usage errors naming the flag (64)', async () => {
    const both = await distnat(...base, '--out', 'x', '--crl-address', WAN, '--crl-url', 'http://x/crl');
    expect(both.code).toBe(64);
    const address = await distnat(...base, '--out', 'x', '--crl-address', '203.0.113.999');
    expect([address.code, address.stderr.split('\n')[0]]).toEqual([
      64,
      'distnat: --crl-address: got "203.0.113.999"; expected an IPv4 address such as 198.51.100.30',
    ]);
    const port = await distnat(...base, '--out', 'x', '--crl-address', WAN, '--ca-port', '70000');
    expect([port.code, port.stderr.split('\n')[0]]).toEqual([
      64,
      'distnat: --ca-port: got 70000; expected a TCP port, 1-65535',
    ]);
  });

  it('--crl-address: host certificates name a URL the router serves, and it returns the CRL', async () => {
    const port = await freePort(WAN);
    const made = await distnat(...base, '--out', 'ca', '--crl-address', WAN, '--ca-port', String(port));
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain(`its certificates name the CRL at http://${WAN}:${port}/crl\n`);

    const warnings: string[] = [];
    const leases = new LeaseTable({ clock: new SystemClock() });
    const service = await LocalCaService.start({
      dir: join(dir, 'ca'),
      lanAddress: LAN,
      port,
      wanAddress: WAN,
      leases,
      log: { info: () => undefined, warn: (m) => warnings.push(m) },
    });
    try {
      expect(warnings).toEqual([]);
      leases.request(LAN, 'port', { count: 32 });
      const { key } = await generateSigningKey('ec-p256');
      const issued = await requestHostCertificate(
        `http://${LAN}:${port}`,
        await createCertificateRequest(key),
      );
      const urls = crlUrls(issued.certificate);
      expect(urls).toEqual([`http://${WAN}:${port}/crl`]);
      const res = await fetch(urls[0]!);
      expect(res.status).toBe(200);
      const crl = new x509.X509Crl(Buffer.from(await res.arrayBuffer()));
      const localCa = service.ca.authority.certificate;
      expect(crl.issuer).toBe(localCa.subject);
      expect(await crl.verify({ publicKey: localCa.publicKey })).toBe(true);
    } finally {
      await service.close();
    }
  });
});
