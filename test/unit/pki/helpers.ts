import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lease } from '../../../src/pap/lease.ts';
import { CertificateAuthority } from '../../../src/pki/authority.ts';
import { createCertificateRequest } from '../../../src/pki/client.ts';
import { generateSigningKey, type KeyType, type SigningKey } from '../../../src/pki/keys.ts';
import { LocalCa, type LocalCaOptions } from '../../../src/pki/local-ca.ts';
import type { x509 } from '../../../src/pki/x509.ts';
import { FakeClock } from '../../../src/util/clock.ts';

export const SHARED = '198.51.100.30';
export const H1 = '10.0.0.1';
export const H2 = '10.0.0.3';

/** A root and a local CA for SHARED in a fresh temporary directory, on a fake clock that starts at the real now. */
export interface Hierarchy {
  readonly dir: string;
  readonly clock: FakeClock;
  readonly root: CertificateAuthority;
  readonly ca: LocalCa;
  readonly rootPem: string;
  readonly localPem: string;
  cleanup(): void;
}

export async function makeHierarchy(
  keyType: KeyType = 'ec-p256',
  options: LocalCaOptions = {},
): Promise<Hierarchy> {
  const dir = mkdtempSync(join(tmpdir(), 'distnat-pki-'));
  // Whole seconds: X.509 times have no fractions, so expectations stay exact.
  const clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000);
  const root = await CertificateAuthority.initRoot(join(dir, 'root'), { keyType, clock });
  await root.issueLocalCa(join(dir, 'local'), { sharedAddress: SHARED, keyType });
  const ca = await LocalCa.open(join(dir, 'local'), { clock, ...options });
  const rootPem = file(dir, 'root.pem', root.certificate.toString('pem'));
  const localPem = file(dir, 'local.pem', ca.authority.certificate.toString('pem'));
  return {
    dir,
    clock,
    root,
    ca,
    rootPem,
    localPem,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function file(dir: string, name: string, content: string | Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

export function lease(
  host: string,
  kind: 'port' | 'spi',
  lowest: number,
  count: number,
  expiresAt: number,
): Lease {
  return { kind, host, lowest, count, grantedAt: expiresAt - 300_000, expiresAt, leaseSeconds: 300 };
}

export async function hostKey(
  type: KeyType = 'ec-p256',
): Promise<{ key: SigningKey; csr: x509.Pkcs10CertificateRequest }> {
  const { key } = await generateSigningKey(type);
  return { key, csr: await createCertificateRequest(key) };
}

/** Runs openssl; status and everything it printed. */
export function openssl(...args: string[]): { status: number; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** `openssl verify` of host against root, with the local CA as untrusted intermediate. */
export function opensslVerify(
  h: Hierarchy,
  hostPem: string,
  ...extra: string[]
): { status: number; out: string } {
  return openssl('verify', ...extra, '-CAfile', h.rootPem, '-untrusted', h.localPem, hostPem);
}
