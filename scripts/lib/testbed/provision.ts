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
 * - with manual keying: each host's keying file (docs/ipsec.md), fresh
 *   random keys, which the server's `distnat peer --mirror` reads as well.
 *
 * A CA directory without its certificate is what an interrupted command
 * leaves, so it is made again; a new root means a new local CA under it.
 * The `distnat ca` commands write to <run>/pki.log.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
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

/**
 * With --routers 2: router2 signs with the same local CA, so it gets a copy
 * of the key and certificate (mode 0600, as an operator copies them; docs/
 * multi-router.md, "One CA, one CRL"). Not the registry or the CRL: each
 * router records what it issued, and the CRL comes from etcd.
 */
export function copyRouterCa(layout: TestbedLayout, note: Note): void {
  const files = ['ca.key', 'ca.pem', 'chain.pem', 'ca.json'];
  const same = files.every((f) => {
    const to = join(layout.router2Ca, f);
    return existsSync(to) && readFileSync(to).equals(readFileSync(join(layout.routerCa, f)));
  });
  if (same) return;
  rmSync(layout.router2Ca, { recursive: true, force: true });
  mkdirSync(layout.router2Ca, { recursive: true, mode: 0o700 });
  for (const f of files) copyFileSync(join(layout.routerCa, f), join(layout.router2Ca, f));
  chmodSync(join(layout.router2Ca, 'ca.key'), 0o600);
  note(`copied the local CA to ${layout.router2Ca} for router2`);
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

/**
 * What the manual keying files assume each host leases: a fresh router
 * leases the first host that asks ports 1024-1055 and SPIs 256-319, the
 * second the next 32 ports and 64 SPIs, which is why `up --ipsec` starts the
 * hosts one after the other. Inbound SPIs must lie in the host's SPI block
 * (the router demultiplexes by SPI, FIG. 21). The port block is the
 * selector: both hosts send from the same shared address, so the server's
 * peer, holding both files, tells their traffic apart only by port; ICMP
 * has no ports and stays in the clear (a peer can have one ICMP policy per
 * remote address, not one per host). Outbound SPIs are the server's choice
 * and only have to differ between the hosts.
 */
export const IPSEC_LEASES: Record<string, { ports: string; inbound: number; outbound: number }> = {
  h1: { ports: '1024-1055', inbound: 0x100, outbound: 0x9000 },
  h2: { ports: '1056-1087', inbound: 0x140, outbound: 0xa000 },
};

/**
 * A manual keying file: from the host's leased ports, TCP to port 8443 of
 * the server under AH, all other TCP and UDP to it under ESP AES-GCM.
 */
export function ipsecKeying(host: string): string {
  const t = TOPOLOGY;
  const lease = IPSEC_LEASES[host];
  if (lease === undefined) throw new Error(`no leases for ${host} in IPSEC_LEASES`);
  const key = (bytes: number): string => `"0x${randomBytes(bytes).toString('hex')}"`;
  const sa = (name: string, direction: string, spi: number, policy: string, body: string): string =>
    `  - { name: ${name}, spi: 0x${spi.toString(16)}, direction: ${direction}, policy: ${policy}, ${body} }`;
  const esp = (): string => `protocol: esp, encryption: { algorithm: aes-gcm-16, key: ${key(20)} }`;
  const ah = (): string => `protocol: ah, integrity: { algorithm: hmac-sha256-128, key: ${key(32)} }`;
  const ends = `local: ${t.shared}, localPort: ${lease.ports}, remote: ${t.server.wan}`;
  return [
    `# distnat host --ipsec: made by scripts/testbed up --ipsec for ${host}, mirrored by the server's peer.`,
    'defaultAction: bypass',
    'policies:',
    `  - { name: ah, ${ends}, protocol: tcp, remotePort: 8443, action: protect, protect: [ah] }`,
    `  - { name: server, ${ends}, action: protect, protect: [esp] }`,
    'sas:',
    sa('ah-out', 'outbound', lease.outbound, 'ah', ah()),
    sa('ah-in', 'inbound', lease.inbound, 'ah', ah()),
    sa('server-out', 'outbound', lease.outbound + 1, 'server', esp()),
    sa('server-in', 'inbound', lease.inbound + 1, 'server', esp()),
    '',
  ].join('\n');
}

/** Each host's manual keying file, unless it exists (a restarted agent keeps its keys). */
export function ensureIpsec(layout: TestbedLayout, note: Note): void {
  for (const host of TOPOLOGY.hosts) {
    const file = layout.ipsecFile(host);
    if (existsSync(file)) continue;
    mkdirSync(layout.nodeDir(host), { recursive: true });
    writeFileSync(file, ipsecKeying(host), { mode: 0o600 });
    note(`wrote ${host}'s manual keying file ${file}`);
  }
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
  rmSync(layout.ipsecMarker, { force: true });
}
