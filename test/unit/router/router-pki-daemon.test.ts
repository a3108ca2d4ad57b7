/**
 * startRouter with a pki section, over in-memory devices on loopback: the
 * endpoint runs beside PAP, status and metrics show the CA's figures, the
 * control socket's withdraw ends the lease and revokes, and stop closes the
 * endpoint. A router without the section has none of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { afterEach, describe, expect, it } from 'vitest';
import { UserError } from '../../../src/util/exit-codes.ts';
import type { DaemonStatus } from '../../../src/control/status.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { controlRequest } from '../../../src/control/client.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import {
  CertificateAuthority,
  createCertificateRequest,
  generateSigningKey,
  requestHostCertificate,
} from '../../../src/pki/index.ts';
import { startRouter } from '../../../src/router/daemon/start.ts';

const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dxr-pki-daemon-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const quietLog = () =>
  winston.createLogger({
    level: 'error',
    transports: [
      new winston.transports.Stream({ stream: new Writable({ write: (_c, _e, done) => done() }) }),
    ],
  });

async function startWithCa(pki: Record<string, unknown> | undefined) {
  const dir = tempDir();
  const scheduler = new MemoryScheduler();
  const config = RouterConfigSchema.parse({
    sharedAddress: '198.51.100.30',
    lanAddress: '127.0.0.1',
    stateDir: join(dir, 'state'),
    runDir: join(dir, 'run'),
    pap: { icmp: false },
    metrics: '127.0.0.1:0',
    ...(pki === undefined ? {} : { pki }),
  });
  const router = await startRouter(config, quietLog(), {
    devices: {
      tun: new MemoryDevice({ name: 'tun', scheduler }),
      lanRx: new MemoryDevice({ name: 'lan-rx', scheduler }),
      lanTx: new MemoryDevice({ name: 'lan-tx', scheduler }),
    },
    papUdpPort: 0,
    pkiPort: 0,
  });
  cleanup.push(() => router.stop());
  return router;
}

async function localCa(): Promise<string> {
  const dir = tempDir();
  const root = await CertificateAuthority.initRoot(join(dir, 'root'));
  await root.issueLocalCa(join(dir, 'ca'), { sharedAddress: '198.51.100.30' });
  return join(dir, 'ca');
}

describe('router daemon with a local CA', () => {
  it('serves CSRs, shows the CA in status and metrics, withdraws over the control socket, closes on stop', async () => {
    const router = await startWithCa({ dir: await localCa(), wanAddress: '127.0.0.2' });
    const pki = router.pki!;
    router.leases.request('127.0.0.1', 'port', {});
    const { key } = await generateSigningKey('ec-p256');
    const issued = await requestHostCertificate(
      `http://${pki.lanEndpoint}`,
      await createCertificateRequest(key),
    );
    const serial = issued.certificate.serialNumber.toLowerCase();

    const s = router.status();
    expect(s.summary['local CA']).toMatch(/distnat local CA 198\.51\.100\.30/);
    expect(s.counters).toMatchObject({
      'pki.certificates_issued': 1,
      'pki.certificates_valid': 1,
      'pki.certificates_revoked': 0,
    });
    expect(s.counters['pki.crl_next_update']).toBeGreaterThan(Date.now() / 1000);
    expect(s.tables.at(-1)?.rows.map((r) => r[1])).toEqual([issued.certificate.serialNumber]);

    const reply = await controlRequest(router.controlSocket, {
      command: 'withdraw',
      host: '127.0.0.1',
      kind: 'all',
    });
    expect(reply.ok && reply.withdrawn?.revoked).toEqual([serial]);
    expect(router.leases.leasesOf('127.0.0.1')).toEqual([]);
    const after = (await controlRequest(router.controlSocket, { command: 'status' })) as {
      status: DaemonStatus;
    };
    expect(after.status.counters).toMatchObject({
      'pki.certificates_valid': 0,
      'pki.certificates_revoked': 1,
      'pki.crl_number': reply.ok ? reply.withdrawn?.crlNumber : -1,
    });

    const metrics = await (await fetch(`http://${router.metricsAddress}/metrics`)).text();
    expect(metrics).toMatch(/distnat_router_pki_certificates\{state="revoked"\} 1/);
    expect(metrics).toMatch(
      new RegExp(`distnat_router_pki_crl_number ${after.status.counters['pki.crl_number']}\\b`),
    );
    expect(metrics).toMatch(/distnat_router_pki_crl_next_update_timestamp_seconds \d{10}/);

    const endpoint = pki.lanEndpoint;
    await router.stop();
    await expect(fetch(`http://${endpoint}/ca`)).rejects.toThrow();
  });

  it('without the section: no endpoint, no CA counters, withdraw still ends leases', async () => {
    const router = await startWithCa(undefined);
    expect(router.pki).toBeUndefined();
    router.leases.request('127.0.0.1', 'port', {});
    expect(Object.keys(router.status().counters).some((k) => k.startsWith('pki.'))).toBe(false);
    const reply = await controlRequest(router.controlSocket, {
      command: 'withdraw',
      host: '127.0.0.1',
      kind: 'port',
    });
    expect(reply).toMatchObject({ ok: true, withdrawn: { revoked: [] } });
    expect(router.leases.leasesOf('127.0.0.1')).toEqual([]);
  });

  it('a directory without a local CA stops the start with exit 78 naming pki.dir', async () => {
    const e = await startWithCa({ dir: tempDir() }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UserError);
    expect((e as UserError).exitCode).toBe(78);
    expect((e as Error).message).toMatch(/pki\.dir.*\n.*distnat ca issue-local/);
  });
});
