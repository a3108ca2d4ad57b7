/**
 * IKE on the namespace testbed: the router as local CA (the testbed's `up`
 * makes the root and the router's CA), host agents with `--ike`, and
 * `distnat peer --ike` on the server with a certificate from the root.
 *
 * The testbed must be up with `daemons: false`; every process started here
 * is one of the testbed's background processes, stopped by its down().
 *
 *   const bed = useTestbed({ daemons: false });
 *   await startIkeRouter(bed());
 *   const h1 = await startIkeHost(bed(), 'h1', { peers: [{ address: SERVER, initiate: true }] });
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { tableRows, waitForChildSas } from '../../scripts/lib/testbed/status.ts';
import { DISTNAT, daemonLogs, daemonRunDir, readStatus } from './distnat.ts';
import type { HostNode } from './distnat.ts';
import { hostArgv, peerArgv, readPeerStatus, startRouter } from './ipsec.ts';
import { describe as describeResult, run, waitUntil } from './process.ts';
import type { Background } from './process.ts';
import { ROOT, TOPOLOGY } from './testbed.ts';
import { readCertificates } from '../../src/pki/index.ts';
import type { Testbed } from './testbed.ts';

/** The root CA certificate and the router's local CA directory that `scripts/testbed up` made. */
export function testbedPki(bed: Testbed): { root: string; rootDir: string; localCa: string } {
  const rootDir = bed.layout.rootCa;
  return { rootDir, root: join(rootDir, 'ca.pem'), localCa: bed.layout.routerCa };
}

export const PKI_URL = `http://${TOPOLOGY.router.lan}:${TOPOLOGY.pkiPort}`;
export const CRL_URL = `http://${TOPOLOGY.router.wan}:${TOPOLOGY.pkiPort}/crl`;

export interface IkePeerEntry {
  address: string;
  port?: number;
  initiate?: boolean;
}

export interface IkeFileOptions {
  peers?: IkePeerEntry[];
  crlMaxAgeSeconds?: number;
  dpdSeconds?: number;
  proposals?: { ike?: string[]; esp?: string[] };
  fragmentation?: boolean;
  fragmentSize?: number;
  childLifetime?: { rekeyBytes?: number; lifeBytes?: number; rekeyPackets?: number; lifePackets?: number };
  rekeySeconds?: { ike?: number; child?: number };
  /** Node flags for the agent (`--cpu-prof`, ...): node runs bin/distnat with them. */
  nodeArgs?: string[];
  /** For the key a host makes (its IKE file's keyType). */
  keyType?: 'ec-p256' | 'rsa-2048' | 'rsa-3072';
}

function writeIkeFile(file: string, content: Record<string, unknown>): string {
  writeFileSync(file, stringify(content));
  return file;
}

/** The router as the testbed's process table runs it: with its local CA and the CRL on the WAN address. */
export function startIkeRouter(bed: Testbed): Promise<Background> {
  return startRouter(bed, ['--ca-dir', testbedPki(bed).localCa, '--crl-address', TOPOLOGY.router.wan]);
}

/** Starts a host agent with `--ike` and waits until IKE runs (a port leased, a certificate held). */
export async function startIkeHost(
  bed: Testbed,
  node: HostNode,
  o: IkeFileOptions = {},
): Promise<Background> {
  const file = writeIkeFile(join(bed.scratchDir, `${node}-ike.yaml`), {
    trust: [testbedPki(bed).root],
    ...(o.crlMaxAgeSeconds !== undefined ? { crlMaxAgeSeconds: o.crlMaxAgeSeconds } : {}),
    ...(o.dpdSeconds !== undefined ? { dpdSeconds: o.dpdSeconds } : {}),
    ...(o.proposals !== undefined ? { proposals: o.proposals } : {}),
    ...(o.fragmentation !== undefined ? { fragmentation: o.fragmentation } : {}),
    ...(o.fragmentSize !== undefined ? { fragmentSize: o.fragmentSize } : {}),
    ...(o.keyType !== undefined ? { keyType: o.keyType } : {}),
    ...(o.childLifetime !== undefined ? { childLifetime: o.childLifetime } : {}),
    ...(o.rekeySeconds !== undefined ? { rekeySeconds: o.rekeySeconds } : {}),
    retrySeconds: 1,
    peers: o.peers ?? [],
  });
  const argv = hostArgv(bed, node, ['--ike', file]);
  const proc = bed.spawn(node, o.nodeArgs === undefined ? argv : [process.execPath, ...o.nodeArgs, ...argv]);
  let last = '';
  await waitUntil(
    `${node} running IKE`,
    async () => {
      if (!proc.running()) throw new Error(`${node} agent exited: ${proc.stdout()}\n${proc.stderr()}`);
      try {
        const s = await readStatus(bed, node);
        last = String(s.summary['ike']);
        return last.startsWith('UDP ');
      } catch (e) {
        last = (e as Error).message;
        return false;
      }
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  ).catch((e: Error) => {
    throw new Error(`${e.message}; last seen: ${last}\n${daemonLogs(bed)}`);
  });
  return proc;
}

/** The leased UDP port a host runs IKE on, from its status line "UDP 198.51.100.30:1024, ...". */
export async function hostIkePort(bed: Testbed, node: HostNode): Promise<number> {
  const s = await readStatus(bed, node);
  const m = /^UDP [\d.]+:(\d+)/.exec(String(s.summary['ike']));
  if (m === null) throw new Error(`${node} runs no IKE: ${String(s.summary['ike'])}`);
  return Number(m[1]);
}

/** The server's certificate from the root (once per testbed): key.pem and cert.pem in the scratch directory. */
export async function issueServerIdentity(bed: Testbed): Promise<{ cert: string; key: string }> {
  const out = join(bed.scratchDir, 'server-identity');
  const cert = join(out, 'cert.pem');
  const key = join(out, 'key.pem');
  const r = await run(
    [
      DISTNAT,
      'ca',
      'issue-peer',
      '--root',
      testbedPki(bed).rootDir,
      '--address',
      TOPOLOGY.server.wan,
      '--out',
      out,
    ],
    { timeoutMs: 30_000 },
  );
  if (r.code !== 0 && !/EEXIST|exists/.test(r.stderr)) throw new Error(`ca issue-peer: ${describeResult(r)}`);
  return { cert, key };
}

/** `distnat peer --ike` on the server; resolves once IKE listens. */
export async function startIkePeer(
  bed: Testbed,
  o: IkeFileOptions & { runDir?: string } = {},
): Promise<{ proc: Background; runDir: string }> {
  const identity = await issueServerIdentity(bed);
  const runDir = o.runDir ?? join(bed.scratchDir, 'peer');
  const file = writeIkeFile(join(bed.scratchDir, `peer-ike-${Date.now()}.yaml`), {
    trust: [testbedPki(bed).root],
    certificate: identity.cert,
    key: identity.key,
    crlMaxAgeSeconds: o.crlMaxAgeSeconds ?? 1,
    ...(o.dpdSeconds !== undefined ? { dpdSeconds: o.dpdSeconds } : {}),
    ...(o.proposals !== undefined ? { proposals: o.proposals } : {}),
    ...(o.fragmentation !== undefined ? { fragmentation: o.fragmentation } : {}),
    ...(o.fragmentSize !== undefined ? { fragmentSize: o.fragmentSize } : {}),
    retrySeconds: 1,
    peers: o.peers ?? [],
  });
  const argv = peerArgv(['--ike', file], runDir);
  const proc = bed.spawn(
    'server',
    o.nodeArgs === undefined ? argv : [process.execPath, ...o.nodeArgs, ...argv],
  );
  await proc.waitForOutput(/peer running/, { timeoutMs: 30_000 });
  return { proc, runDir };
}

export { readPeerStatus, tableRows, waitForChildSas };

/** A host's current IKE certificate and key, copied aside (they change when the router re-issues). */
export function saveHostIdentity(
  bed: Testbed,
  node: HostNode,
): { cert: string; key: string; serial: string } {
  const state = join(daemonRunDir(bed, node), 'state');
  const cert = join(bed.scratchDir, `${node}-old-cert.pem`);
  const key = join(bed.scratchDir, `${node}-old-key.pem`);
  copyFileSync(join(state, 'ike-cert.pem'), cert);
  copyFileSync(join(state, 'ike-key.pem'), key);
  return { cert, key, serial: readCertificates(readFileSync(cert, 'utf8'))[0]!.serialNumber.toLowerCase() };
}

/** `distnat withdraw HOST --kind KIND` against the testbed's router; the serials it revoked (lower case). */
export async function withdraw(bed: Testbed, host: string, kind: 'port' | 'spi' | 'all'): Promise<string[]> {
  const w = await run(
    [DISTNAT, 'withdraw', host, '--kind', kind, '--run-dir', daemonRunDir(bed, 'router'), '--json'],
    { timeoutMs: 20_000 },
  );
  if (w.code !== 0) throw new Error(`distnat withdraw: ${describeResult(w)}`);
  return (JSON.parse(w.stdout) as { revoked: string[] }).revoked.map((s) => s.toLowerCase());
}

/**
 * One IKE_SA_INIT + IKE_AUTH from `node`'s shared address (port 0: the agent
 * maps it into its block) with the given certificate and key
 * (test/helpers/ike-initiate.ts).
 */
export async function initiateOnce(
  bed: Testbed,
  node: HostNode,
  o: { cert: string; key: string; remote: { address: string; port: number } },
): Promise<{ ok: boolean; reason: string; output: string }> {
  const r = await bed.exec(
    node,
    [
      process.execPath,
      '--import',
      'tsx',
      join(ROOT, 'test/helpers/ike-initiate.ts'),
      JSON.stringify({ address: TOPOLOGY.shared, port: 0, root: testbedPki(bed).root, ...o }),
    ],
    { timeoutMs: 30_000, cwd: ROOT },
  );
  const last = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as { ok?: boolean; reason?: string };
  return { ok: last.ok === true, reason: last.reason ?? '', output: describeResult(r) };
}
