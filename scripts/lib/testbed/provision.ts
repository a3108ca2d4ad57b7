/**
 * The testbed's certificates and IKE files, made once and kept across `up`s
 * (so that certificates issued earlier stay valid), removed by `down`:
 *
 * - the root CA (the patent's higher CA) and, under it, the router's local
 *   CA for the shared address. The CRL URL written into every host
 *   certificate is the router's WAN listener, where the server (a remote
 *   peer) can fetch it.
 * - with IKE: the server's certificate from the root, and the IKE files of
 *   the hosts (keep an SA with the server up) and of the server (answer
 *   them).
 *
 * A CA directory without its certificate is what an interrupted command
 * leaves, so it is made again; a new root means a new local CA under it.
 * The `distnat ca` commands write to <run>/pki.log.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TOPOLOGY } from '../topology.ts';
import { DISTNAT, ROOT, type TestbedLayout } from './layout.ts';
import type { Note } from './supervisor.ts';

async function distnatCa(layout: TestbedLayout, args: readonly string[]): Promise<void> {
  const log = openSync(layout.pkiLog, 'a');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(DISTNAT, ['ca', ...args], { cwd: ROOT, stdio: ['ignore', log, log] });
    child.on('error', reject);
    child.on('close', resolve);
  }).finally(() => closeSync(log));
  if (code === 0) return;
  const tail = readFileSync(layout.pkiLog, 'utf8').trimEnd().split('\n').slice(-5).join('\n');
  process.stderr.write(`${tail}\n`);
  throw new Error(`distnat ca ${args[0]} failed; see ${layout.pkiLog}`);
}

/** The root CA and the router's local CA, unless both exist. */
export async function ensurePki(layout: TestbedLayout, note: Note): Promise<void> {
  let newRoot = false;
  if (!existsSync(join(layout.rootCa, 'ca.pem'))) {
    rmSync(layout.rootCa, { recursive: true, force: true });
    mkdirSync(dirname(layout.rootCa), { recursive: true });
    await distnatCa(layout, ['init', '--dir', layout.rootCa]);
    newRoot = true;
    note(`created the root CA in ${layout.rootCa}`);
  }
  if (newRoot || !existsSync(join(layout.routerCa, 'ca.pem'))) {
    rmSync(layout.routerCa, { recursive: true, force: true });
    mkdirSync(dirname(layout.routerCa), { recursive: true });
    await distnatCa(layout, [
      'issue-local',
      '--shared-address',
      TOPOLOGY.shared,
      '--root',
      layout.rootCa,
      '--out',
      layout.routerCa,
      '--crl-url',
      `http://${TOPOLOGY.router.wan}:${TOPOLOGY.pkiPort}/crl`,
    ]);
    note(`created the router's local CA in ${layout.routerCa}`);
  }
}

/** The server's certificate and every IKE file (rewritten each time: they only name files). */
export async function ensureIke(layout: TestbedLayout, note: Note): Promise<void> {
  const rootPem = join(layout.rootCa, 'ca.pem');
  if (!existsSync(join(layout.serverPki, 'cert.pem'))) {
    rmSync(layout.serverPki, { recursive: true, force: true });
    await distnatCa(layout, [
      'issue-peer',
      '--root',
      layout.rootCa,
      '--address',
      TOPOLOGY.server.wan,
      '--out',
      layout.serverPki,
    ]);
    note(`created the server's certificate in ${layout.serverPki}`);
  }
  for (const host of TOPOLOGY.hosts) {
    mkdirSync(layout.nodeDir(host), { recursive: true });
    writeFileSync(
      layout.ikeFile(host),
      `trust: [${rootPem}]\npeers:\n  - { address: ${TOPOLOGY.server.wan}, initiate: true }\n`,
    );
  }
  mkdirSync(layout.nodeDir('server'), { recursive: true });
  writeFileSync(
    layout.ikeFile('server'),
    `trust: [${rootPem}]\ncertificate: ${join(layout.serverPki, 'cert.pem')}\nkey: ${join(layout.serverPki, 'key.pem')}\n`,
  );
}

/** What is missing for the router's --ca-dir. */
export function pkiProblems(layout: TestbedLayout): string[] {
  return existsSync(join(layout.routerCa, 'ca.pem'))
    ? []
    : [`${layout.ns('router')}: no local CA in ${layout.routerCa}`];
}

/** Removes what provisioning made (down). */
export function removePki(layout: TestbedLayout): void {
  rmSync(join(layout.runDir, 'pki'), { recursive: true, force: true });
  rmSync(layout.pkiLog, { force: true });
  rmSync(layout.ikeMarker, { force: true });
}
