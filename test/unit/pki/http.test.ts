import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { requestHostCertificate } from '../../../src/pki/client.ts';
import { startPkiServer } from '../../../src/pki/http.ts';
import { portsCoveredBy } from '../../../src/pki/port-binding.ts';
import { verifyHostCertificate } from '../../../src/pki/verify.ts';
import { x509 } from '../../../src/pki/x509.ts';
import { SHARED, hostKey, makeHierarchy, type Hierarchy } from './helpers.ts';

// Every 127/8 address is this machine's, so a client can speak from two "LAN hosts".
const HOST_A = '127.0.0.2';
const HOST_B = '127.0.0.3';

let h: Hierarchy;
let table: LeaseTable;
let server: Server;
let base: string;
const logs: string[] = [];

beforeAll(async () => {
  h = await makeHierarchy();
  table = new LeaseTable({ clock: h.clock, randomEpoch: () => 5 });
  table.addListener(h.ca);
  server = await startPkiServer({
    ca: h.ca,
    leases: table,
    host: '127.0.0.1',
    port: 0,
    now: () => h.clock.now(),
    log: (l) => logs.push(l),
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  table.close();
  h.cleanup();
});

function send(
  from: string,
  method: string,
  path: string,
  body?: Uint8Array | string,
): Promise<{ status: number; type: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, localAddress: from }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, type: res.headers['content-type'], body: Buffer.concat(chunks) }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the router CSR endpoint', () => {
  it('refuses an address that holds no port lease, even when another host does', async () => {
    table.request(HOST_B, 'port');
    const { csr } = await hostKey();
    const r = await send(HOST_A, 'POST', '/csr', Buffer.from(csr.rawData));
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain(`${HOST_A} holds no port lease`);
    expect(logs.at(-1)).toMatch(/refused: no port lease/);
  });

  it("issues for exactly the requester's own blocks, PEM or DER request", async () => {
    table.request(HOST_A, 'port', { count: 16 });
    table.request(HOST_A, 'spi', { count: 8 });
    const { csr } = await hostKey();
    for (const body of [csr.toString('pem'), Buffer.from(csr.rawData)]) {
      const r = await send(HOST_A, 'POST', '/csr', body);
      expect(r.status).toBeLessThan(202);
      expect(r.type).toBe('application/pem-certificate-chain');
      const [cert, local, root] = x509.PemConverter.decode(r.body.toString()).map(
        (d) => new x509.X509Certificate(d),
      );
      const b = portsCoveredBy(cert!)!;
      const own = (kind: string) =>
        table
          .leasesOf(HOST_A)
          .filter((l) => l.kind === kind)
          .map(({ lowest, count }) => ({ lowest, count }));
      expect(b).toEqual({ address: SHARED, ports: own('port'), spis: own('spi') });
      const theirs = table.leasesOf(HOST_B)[0]!;
      expect(b.ports.some((p) => p.lowest === theirs.lowest)).toBe(false);
      const v = await verifyHostCertificate(cert!, { roots: [root!], intermediates: [local!] }, null, {
        address: SHARED,
        ports: [own('port')[0]!.lowest],
      });
      expect(v.ok).toBe(true);
      expect(h.ca.authority.registry.find(cert!.serialNumber)?.host).toBe(HOST_A);
    }
  });

  it('answers a bad request with 400 and a huge one with 413', async () => {
    table.request(HOST_A, 'port');
    const bad = await send(HOST_A, 'POST', '/csr', 'hello');
    expect(bad.status).toBe(400);
    expect(bad.body.toString()).toMatch(/^malformed-csr/);
    const huge = await send(HOST_A, 'POST', '/csr', Buffer.alloc(17 * 1024, 0x41));
    expect(huge.status).toBe(413);
    const get = await send(HOST_A, 'GET', '/csr');
    expect(get.status).toBe(405);
    expect((await send(HOST_A, 'GET', '/nothing')).status).toBe(404);
  });

  it('serves the CRL as DER at /crl and at the path of the URL in the certificates, and the CA chain', async () => {
    for (const path of ['/crl', new URL(h.ca.crlUrl).pathname]) {
      const r = await send(HOST_B, 'GET', path);
      expect(r.status).toBe(200);
      expect(r.type).toBe('application/pkix-crl');
      const crl = new x509.X509Crl(r.body);
      expect(crl.issuer).toBe(h.ca.authority.certificate.subject);
      expect(await crl.verify({ publicKey: h.ca.authority.certificate.publicKey })).toBe(true);
    }
    const ca = await send(HOST_B, 'GET', '/ca');
    expect(x509.PemConverter.decode(ca.body.toString())).toHaveLength(2);
  });

  it('a withdrawn block shows up revoked in the served CRL', async () => {
    const lease = table.request(HOST_B, 'port');
    const { csr } = await hostKey();
    const r = await send(HOST_B, 'POST', '/csr', Buffer.from(csr.rawData));
    const cert = new x509.X509Certificate(x509.PemConverter.decodeFirst(r.body.toString()));
    table.withdraw('port', lease.lowest);
    const crl = new x509.X509Crl((await send(HOST_A, 'GET', '/crl')).body);
    expect(crl.findRevoked(cert)?.reason).toBe(x509.X509CrlReason.privilegeWithdrawn);
  });

  it('the host-side client gets a certificate for its key and checks it is for that key', async () => {
    // fetch speaks from 127.0.0.1: give that address a lease.
    table.request('127.0.0.1', 'port');
    const { csr } = await hostKey();
    const got = await requestHostCertificate(base, csr);
    expect(Buffer.from(got.certificate.publicKey.rawData).equals(Buffer.from(csr.publicKey.rawData))).toBe(
      true,
    );
    expect(got.chain).toHaveLength(2);
    await expect(requestHostCertificate('http://127.0.0.1:1', csr, 2000)).rejects.toMatchObject({
      status: 0,
    });
  });
});
