/**
 * The router's local CA service over an in-memory (or on-disk) lease table
 * on loopback: the LAN endpoint certifies exactly the leased blocks of the
 * requesting address and refuses an address without a lease, a withdrawal
 * revokes with privilegeWithdrawn and the CRL served on the WAN listener
 * lists it before the withdrawal returns, a restart reconciles with the
 * leases that survived, and a directory without a local CA is refused
 * naming the field.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UserError } from '../../../src/util/exit-codes.ts';
import { FileStateDir, LeaseStore } from '../../../src/pap/lease-store.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import {
  CertificateAuthority,
  createCertificateRequest,
  CertificateRequestError,
  generateSigningKey,
  readPortBinding,
  requestHostCertificate,
  x509,
} from '../../../src/pki/index.ts';
import { crlNumberOf, LocalCaService } from '../../../src/router/daemon/local-ca-service.ts';
import { withdrawHost } from '../../../src/router/daemon/withdraw.ts';
import { FakeClock } from '../../../src/util/clock.ts';

const SHARED = '198.51.100.30';
const LAN = '127.0.0.1';
const WAN = '127.0.0.2';
const PRIVILEGE_WITHDRAWN = 9;

const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

interface Log {
  info(m: string, meta?: Record<string, unknown>): void;
  warn(m: string, meta?: Record<string, unknown>): void;
  lines: string[];
}
function memoryLog(): Log {
  const lines: string[] = [];
  return {
    lines,
    info: (m, meta) => lines.push(`info ${m} ${JSON.stringify(meta ?? {})}`),
    warn: (m, meta) => lines.push(`warn ${m} ${JSON.stringify(meta ?? {})}`),
  };
}

async function hierarchy(crlUrl?: string): Promise<{ dir: string; caDir: string; clock: FakeClock }> {
  const dir = mkdtempSync(join(tmpdir(), 'dxr-lca-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  // Whole seconds: certificate times have no fractions.
  const clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000);
  const root = await CertificateAuthority.initRoot(join(dir, 'root'), { clock });
  await root.issueLocalCa(join(dir, 'ca'), { sharedAddress: SHARED, crlUrl });
  return { dir, caDir: join(dir, 'ca'), clock };
}

function table(clock: FakeClock, stateDir?: string): LeaseTable {
  const t = new LeaseTable({
    clock,
    store: stateDir === undefined ? undefined : new LeaseStore(new FileStateDir(stateDir)),
  });
  return t;
}

async function start(
  caDir: string,
  clock: FakeClock,
  leases: LeaseTable,
  log = memoryLog(),
): Promise<LocalCaService> {
  const s = await LocalCaService.start({
    dir: caDir,
    lanAddress: LAN,
    port: 0,
    wanAddress: WAN,
    leases,
    log,
    clock,
  });
  cleanup.push(() => s.close());
  return s;
}

async function csr(): Promise<x509.Pkcs10CertificateRequest> {
  const { key } = await generateSigningKey('ec-p256');
  return createCertificateRequest(key);
}

async function fetchCrl(endpoint: string): Promise<x509.X509Crl> {
  const res = await fetch(`http://${endpoint}/crl`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/pkix-crl');
  return new x509.X509Crl(Buffer.from(await res.arrayBuffer()));
}

describe('LocalCaService', () => {
  it('certifies exactly the blocks the requesting address leases, and refuses one without a lease', async () => {
    const { caDir, clock } = await hierarchy();
    const leases = table(clock);
    const service = await start(caDir, clock, leases);
    const base = `http://${service.lanEndpoint}`;

    const refused = await requestHostCertificate(base, await csr()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(CertificateRequestError);
    expect((refused as CertificateRequestError).status).toBe(403);

    const port = leases.request(LAN, 'port', { count: 32 });
    const spi = leases.request(LAN, 'spi', { count: 64 });
    leases.request('10.0.0.3', 'port', { count: 32 }); // someone else's block, never in LAN's certificate
    const issued = await requestHostCertificate(base, await csr());
    const binding = readPortBinding(issued.certificate);
    expect(binding.ok && binding.binding).toEqual({
      address: SHARED,
      ports: [{ lowest: port.lowest, count: 32 }],
      spis: [{ lowest: spi.lowest, count: 64 }],
    });
    expect(issued.chain.map((c) => c.subject)).toEqual([
      service.ca.authority.certificate.subject,
      service.ca.authority.chain[0]!.subject,
    ]);
    expect(service.stats()).toMatchObject({ issued: 1, valid: 1, revoked: 0 });
    expect(service.statusTable().rows).toEqual([
      [
        LAN,
        issued.certificate.serialNumber,
        `${port.lowest}-${port.lowest + 31}`,
        `${spi.lowest}-${spi.lowest + 63}`,
        '360s',
      ],
    ]);
  });

  it('takes no CSR on the WAN listener, which publishes the CRL and the CA only', async () => {
    const { caDir, clock } = await hierarchy();
    const leases = table(clock);
    const service = await start(caDir, clock, leases);
    expect(service.wanEndpoint).toMatch(/^127\.0\.0\.2:\d+$/);
    const post = await fetch(`http://${service.wanEndpoint}/csr`, {
      method: 'POST',
      body: Buffer.from((await csr()).rawData),
    });
    expect(post.status).toBe(404);
    const ca = await fetch(`http://${service.wanEndpoint}/ca`);
    expect(await ca.text()).toContain('BEGIN CERTIFICATE');
    expect(crlNumberOf(await fetchCrl(service.wanEndpoint!))).toBe(service.stats().crlNumber);
  });

  it('withdrawal revokes with privilegeWithdrawn and the CRL lists it before the call returns', async () => {
    const { caDir, clock } = await hierarchy();
    const leases = table(clock);
    const pap = new PapServer(leases);
    const service = await start(caDir, clock, leases);
    const port = leases.request(LAN, 'port', {});
    leases.request(LAN, 'spi', {});
    const { certificate } = await requestHostCertificate(`http://${service.lanEndpoint}`, await csr());
    const before = service.stats().crlNumber;

    const outcome = await withdrawHost({ leases, pap, ca: service }, LAN, 'port');
    expect(outcome.blocks).toEqual([{ kind: 'port', lowest: port.lowest, count: 32 }]);
    expect(outcome.revoked).toEqual([certificate.serialNumber.toLowerCase()]);
    expect(outcome.crlNumber).toBeGreaterThan(before);
    expect(leases.leasesOf(LAN).map((l) => l.kind)).toEqual(['spi']);

    const crl = await fetchCrl(service.wanEndpoint!);
    expect(crlNumberOf(crl)).toBe(outcome.crlNumber);
    const entry = crl.entries.find(
      (e) => e.serialNumber.toLowerCase() === certificate.serialNumber.toLowerCase(),
    );
    expect(entry?.reason).toBe(PRIVILEGE_WITHDRAWN);
    expect(service.stats()).toMatchObject({ issued: 1, valid: 0, revoked: 1, crlNumber: outcome.crlNumber });

    // Nothing left of that kind: nothing withdrawn, nothing revoked.
    const again = await withdrawHost({ leases, pap, ca: service }, LAN, 'port');
    expect(again.blocks).toEqual([]);
    expect(again.revoked).toEqual([]);
  });

  it('withdraws without a CA too (no CRL number then)', async () => {
    const clock = new FakeClock(1_700_000_000_000);
    const leases = table(clock);
    const pap = new PapServer(leases);
    leases.request(LAN, 'port', {});
    leases.request(LAN, 'spi', {});
    const outcome = await withdrawHost({ leases, pap }, LAN, 'all');
    expect(outcome.blocks.map((b) => b.kind)).toEqual(['port', 'spi']);
    expect(outcome).not.toHaveProperty('crlNumber');
    expect(leases.leasesOf(LAN)).toEqual([]);
  });

  it('after a restart keeps the registry and revokes what ended while the router was down', async () => {
    const { dir, caDir, clock } = await hierarchy();
    const stateDir = join(dir, 'state');
    mkdirSync(stateDir);
    const first = table(clock, stateDir);
    first.request(LAN, 'port', {});
    first.request('127.0.0.3', 'port', {});
    const service = await start(caDir, clock, first);
    const a = await requestHostCertificate(`http://${service.lanEndpoint}`, await csr());
    await service.close();
    first.close();

    // Down for longer than the lease, not longer than the certificate's margin: LAN's lease is gone.
    clock.advance(301_000);
    const second = table(clock, stateDir);
    expect(second.leasesOf(LAN)).toEqual([]);
    const log = memoryLog();
    const restarted = await start(caDir, clock, second, log);
    expect(restarted.stats()).toMatchObject({ issued: 1, valid: 0, revoked: 1 });
    expect(log.lines.join('\n')).toMatch(/revoked certificates whose blocks ended while the router was down/);
    const crl = await fetchCrl(restarted.lanEndpoint);
    expect(crl.entries.map((e) => e.serialNumber.toLowerCase())).toEqual([
      a.certificate.serialNumber.toLowerCase(),
    ]);
    second.close();
  });

  it('keeps the CRL fresh on a timer: a new one before half its lifetime has passed', async () => {
    const { caDir, clock } = await hierarchy();
    const service = await start(caDir, clock, table(clock));
    const first = service.stats();
    clock.advance(150_000); // a quarter of 600 s: the timer asks, the CRL is still fresh
    await service.publishCrl();
    expect(service.stats().crlNumber).toBe(first.crlNumber);
    clock.advance(150_000); // half: remade
    await service.publishCrl();
    const later = service.stats();
    expect(later.crlNumber).toBe(first.crlNumber + 1);
    expect(later.crlNextUpdate).toBe(first.crlNextUpdate + 300_000);
  });

  it('warns when the CRL URL in the certificates is not served by this router', async () => {
    const { caDir, clock } = await hierarchy();
    const log = memoryLog();
    await start(caDir, clock, table(clock), log);
    expect(log.lines.join('\n')).toMatch(
      /CRL URL in the certificates is not served.*198\.51\.100\.30\/distnat\/crl/,
    );
  });

  it('refuses a directory without a local CA, naming pki.dir and issue-local', async () => {
    const { dir, clock } = await hierarchy();
    for (const bad of [join(dir, 'nothing-here'), join(dir, 'root')]) {
      const e = await LocalCaService.start({
        dir: bad,
        lanAddress: LAN,
        port: 0,
        leases: table(clock),
        log: memoryLog(),
        clock,
      }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UserError);
      expect((e as UserError).exitCode).toBe(78);
      expect((e as Error).message).toMatch(/field `pki\.dir`/);
      expect((e as Error).message).toMatch(/distnat ca issue-local/);
    }
  });

  it('refuses a taken port, naming pki.port', async () => {
    const { caDir, clock } = await hierarchy();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, LAN, r));
    cleanup.push(() => new Promise<void>((r) => busy.close(() => r())));
    const port = (busy.address() as { port: number }).port;
    const e = await LocalCaService.start({
      dir: caDir,
      lanAddress: LAN,
      port,
      leases: table(clock),
      log: memoryLog(),
      clock,
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UserError);
    expect((e as UserError).exitCode).toBe(73);
    expect((e as Error).message).toMatch(/field `pki\.port`: TCP 127\.0\.0\.1:\d+ is taken/);
  });
});
