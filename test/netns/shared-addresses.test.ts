/**
 * A router with two shared addresses (sharedAddresses: [198.51.100.30,
 * 198.51.100.31], the TUN data path), its leases on etcd (one member in the
 * router's namespace, on loopback): h1 uses the first, h2 the second, each
 * with its own TUN address and its own port space on the router. Both
 * download through the router at once, intact; on the WAN each host's
 * packets leave with its own shared address and with the ports its agent
 * leased, unchanged; etcd holds each host's blocks under its address's
 * prefix; the router's status lists both addresses with the leases on each.
 * (The journal's side of several addresses: test/unit/pap/shared-addresses.test.ts.)
 *
 * The router runs a local CA made for both addresses (`distnat ca
 * issue-local --shared-address FIRST,SECOND`): h2's `distnat ca request`
 * gets a certificate naming the second address and its ports there, which
 * `openssl verify` accepts against the root; h1's names the first. FIG. 12,
 * the certificate table and the Prometheus port gauges name both addresses.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostNode, PortBlock } from '../helpers/distnat.ts';
import { DISTNAT, findTable, inBlocks, readStatus, sha256 } from '../helpers/distnat.ts';
import { readCertificates, readPortBinding } from '../../src/pki/index.ts';
import type { Capture } from '../helpers/capture.ts';
import type { EtcdCluster } from '../helpers/etcd.ts';
import { expectConsistentLeases, parseEtcdBlocks, startEtcd } from '../helpers/etcd.ts';
import { describe as describeResult, execIn } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import {
  ADDRESS_OF,
  FIRST,
  SECOND,
  SERVER,
  download,
  expectOwnAddressesOnWan,
  startTwoAddresses,
  twoAddressTable,
} from '../helpers/shared-addresses.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const BIG = randomBytes(2 * 1024 * 1024);

const ETCD = 'http://127.0.0.1:2379';
let etcd: EtcdCluster | undefined;
let http: HttpServer;
let wan: Capture;
let blocks: Record<HostNode, PortBlock[]>;

const pkiDir = (name: string): string => join(bed().scratchDir, 'pki', name);

/** A root and a local CA for both addresses, of this test's own (the testbed's local CA is the first's). */
function makePki(): void {
  const ca = (...args: string[]) => {
    const r = spawnSync(DISTNAT, ['ca', ...args], { encoding: 'utf8' });
    expect(r.status, `distnat ca ${args[0]}: ${r.stderr}${r.stdout}`).toBe(0);
  };
  ca('init', '--dir', pkiDir('root'));
  ca(
    'issue-local',
    '--shared-address',
    `${FIRST},${SECOND}`,
    '--root',
    pkiDir('root'),
    '--out',
    pkiDir('local'),
    '--crl-address',
    TOPOLOGY.router.wan,
  );
}

/** The two-address table with the router's leases on etcd and its CA of both addresses. */
function daemonTable(): string {
  return twoAddressTable(bed(), 'tun')
    .split('\n')
    .map((line) =>
      line.startsWith('router ')
        ? line.replace(`--ca-dir ${bed().layout.routerCa}`, `--ca-dir ${pkiDir('local')}`) +
          ` --etcd-endpoints ${ETCD}`
        : line,
    )
    .join('\n');
}

beforeAll(async () => {
  const b = bed();
  http = await b.httpServer('server', { bind: SERVER, files: { 'big.bin': BIG } });
  // Before the router starts: it does not start without etcd.
  etcd = await startEtcd(1, { ns: b.ns('router'), address: '127.0.0.1' });
  makePki();
  expect(daemonTable()).toContain(`--ca-dir ${pkiDir('local')}`);
  blocks = await startTwoAddresses(b, daemonTable());
  wan = await b.capture('server', TOPOLOGY.wanIf, { filter: `tcp port ${http.port}` });
}, 120_000);

afterAll(async () => {
  await etcd?.stop();
});

describe('one router, two shared addresses: h1 on the first, h2 on the second', () => {
  it('both hosts download at once, intact, each from its own shared address and leased ports', async () => {
    const b = bed();
    const shas = await Promise.all([download(b, 'h1', http, 'big.bin'), download(b, 'h2', http, 'big.bin')]);
    for (const [i, sha] of shas.entries()) expect(sha, `h${i + 1}'s download`).toBe(sha256(BIG));
    await expectOwnAddressesOnWan(wan, blocks);
  });

  it("etcd holds each host's blocks under its own address's prefix, as the host was told", async () => {
    const b = bed();
    for (const node of ['h1', 'h2'] as const) {
      const r = await execIn(b.ns('router'), [
        'etcdctl',
        '--endpoints',
        ETCD,
        'get',
        '--prefix',
        `/distnat/${ADDRESS_OF[node]}/`,
        '-w',
        'json',
      ]);
      expect(r.code, describeResult(r)).toBe(0);
      const stored = parseEtcdBlocks(r.stdout).filter((x) => x.kind === 'port' && x.state === 'leased');
      const told = blocks[node].map((x) => ({
        host: TOPOLOGY[node].lan,
        answer: { lowest: x.first, count: x.last - x.first + 1 },
      }));
      expectConsistentLeases(stored, told);
      expect(stored.map((x) => x.host)).toEqual(stored.map(() => TOPOLOGY[node].lan));
    }
  });

  it("the router's status lists both addresses, and each host's leases on its own", async () => {
    const status = await readStatus(bed(), 'router');
    expect(String(status.summary['shared addresses'])).toBe(`${FIRST}, ${SECOND}`);
    const fig8 = findTable(status, 'FIG. 8');
    expect(fig8.columns).toEqual([
      'INTERNAL NETWORK ADDRESS',
      'SHARED ADDRESS',
      'LOWEST PORT',
      'NUMBER OF PORTS',
      'LEASE LEFT',
    ]);
    for (const node of ['h1', 'h2'] as const) {
      const mine = fig8.rows.filter((r) => r[0] === TOPOLOGY[node].lan);
      expect(mine.length, `${node}: rows in FIG. 8`).toBeGreaterThan(0);
      for (const r of mine) {
        expect(r[1]).toBe(ADDRESS_OF[node]);
        expect(Number(r[2])).toBeLessThan(65536);
      }
    }
  });
});

describe('the local CA of both addresses', () => {
  const PKI = `http://${TOPOLOGY.router.lan}:${TOPOLOGY.pkiPort}`;

  /** `distnat ca request` in the host's namespace; the chain it wrote. */
  async function request(node: HostNode, ...extra: string[]) {
    const out = join(bed().scratchDir, `${node}-cert.pem`);
    const key = join(bed().scratchDir, `${node}-cert.key`);
    const r = await bed().exec(
      node,
      [DISTNAT, 'ca', 'request', '--key', key, '--out', out, '--router', PKI, ...extra],
      { timeoutMs: 30_000 },
    );
    expect(r.code, describeResult(r)).toBe(0);
    return { out, chain: readCertificates(readFileSync(out, 'utf8')) };
  }

  /** openssl verify of the host certificate in `chainFile` against this test's root, the local CA untrusted. */
  function opensslVerify(chainFile: string): { status: number; out: string } {
    const [host, local] = readCertificates(readFileSync(chainFile, 'utf8'));
    const hostPem = `${chainFile}.host.pem`;
    const localPem = `${chainFile}.local.pem`;
    writeFileSync(hostPem, host!.toString('pem'));
    writeFileSync(localPem, local!.toString('pem'));
    const r = spawnSync(
      'openssl',
      ['verify', '-CAfile', join(pkiDir('root'), 'ca.pem'), '-untrusted', localPem, hostPem],
      { encoding: 'utf8' },
    );
    return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  }

  it('h2 gets a certificate naming the second address and its ports there; openssl verifies it, and h1 its own', async () => {
    for (const node of ['h2', 'h1'] as const) {
      const extra = node === 'h2' ? ['--shared-address', SECOND] : [];
      const { out, chain } = await request(node, ...extra);
      const [cert, local] = chain;
      expect(local?.subject).toContain(`distnat local CA ${FIRST} ${SECOND}`);
      const address = ADDRESS_OF[node];
      // The CA's one name prefix (its first address), the host's own address in the CN.
      expect(cert?.subject.startsWith(`O=distnat, OU=${FIRST}, CN=${address} ports `), cert?.subject).toBe(
        true,
      );
      const binding = readPortBinding(cert!);
      expect(binding.ok && binding.binding.address, node).toBe(address);
      // The ports the host holds, as it sees them: never the router's slots.
      expect(binding.ok && binding.binding.ports, node).toEqual(
        blocks[node].map((b) => ({ lowest: b.first, count: b.last - b.first + 1 })),
      );
      const v = opensslVerify(out);
      expect(v.out, node).toContain(': OK');
      expect(v.status, node).toBe(0);
    }
    const status = await readStatus(bed(), 'router');
    const certs = findTable(status, 'LOCAL CA');
    expect(certs.columns.slice(0, 2)).toEqual(['INTERNAL NETWORK ADDRESS', 'SHARED ADDRESS']);
    for (const node of ['h1', 'h2'] as const)
      expect(
        certs.rows.some((r) => r[0] === TOPOLOGY[node].lan && r[1] === ADDRESS_OF[node]),
        node,
      ).toBe(true);
  });

  it("the router's FIG. 12 rows and its Prometheus port gauges name both addresses", async () => {
    const status = await readStatus(bed(), 'router');
    const fig12 = findTable(status, 'FIG. 12');
    expect(fig12.columns[0]).toBe('SHARED ADDRESS');
    // The downloads' connections: each on its host's address, at one of its ports there.
    for (const node of ['h1', 'h2'] as const) {
      const mine = fig12.rows.filter((r) => r[2] === TOPOLOGY[node].lan && r[3] === '6 (TCP)');
      expect(mine.length, `${node}: TCP rows in FIG. 12`).toBeGreaterThan(0);
      for (const r of mine) {
        expect(r[0], node).toBe(ADDRESS_OF[node]);
        expect(inBlocks(Number(r[1]), blocks[node]), `${node}: port ${String(r[1])}`).toBe(true);
      }
    }
    const r = await bed().exec('router', [
      'curl',
      '-sS',
      '--max-time',
      '10',
      `http://127.0.0.1:${TOPOLOGY.metricsPort}/metrics`,
    ]);
    expect(r.code, describeResult(r)).toBe(0);
    const gauge = (name: string, labels: string): number =>
      Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
    for (const address of [FIRST, SECOND]) {
      expect(gauge('distnat_router_flows', `address="${address}"`), address).toBeGreaterThan(0);
      expect(
        gauge('distnat_router_leased_blocks', `kind="port",address="${address}"`),
        address,
      ).toBeGreaterThan(0);
      expect(
        gauge('distnat_router_free_values', `kind="port",address="${address}"`),
        address,
      ).toBeGreaterThan(0);
    }
  });
});
