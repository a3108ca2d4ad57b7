/**
 * Two real `distnat router` daemons on one LAN sharing their leases on a
 * real etcd (in the LAN's namespace), and PAP clients asking both at once:
 * no two leases overlap in etcd, every success a host was told is in etcd
 * as told, and each router's status lists the other's grants too. Also: a
 * router whose etcd does not answer exits 69 naming the endpoints.
 *
 * The namespaces are this file's own (prefix de<pid>x...): a `lan` one
 * holding the switch, etcd and the PAP clients, and one per router.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DISTNAT, PYTHON } from '../../scripts/lib/testbed/layout.ts';
import { readStatus } from '../../scripts/lib/testbed/status.ts';
import { findTable } from '../helpers/distnat.ts';
import type { EtcdBlock, EtcdCluster } from '../helpers/etcd.ts';
import { expectConsistentLeases, parseEtcdBlocks, startEtcd } from '../helpers/etcd.ts';
import { PAP_CLIENT_PY } from '../helpers/pap.ts';
import type { PapAnswer, PapReply } from '../helpers/pap.ts';
import type { Background } from '../helpers/process.ts';
import { RouterLan } from '../helpers/router-lan.ts';
import { describe as describeResult, execIn, onExitCleanup, waitUntil } from '../helpers/process.ts';

const NET = new RouterLan('de');
const LAN = NET.lan;
const ROUTERS = NET.routers;
const ETCD = '10.0.0.21';
const SHARED = '198.51.100.30';
const SECOND = '198.51.100.31';
const HOSTS = Array.from({ length: 24 }, (_, i) => `10.0.0.${100 + i}`);
const dir = mkdtempSync(join(tmpdir(), 'distnat-router-etcd-'));
let etcd: EtcdCluster | undefined;
const routers: Background[] = [];
/** The requests of the last askAll that got no grant, and why. */
let refused: string[] = [];

const startRouter = (i: number, endpoints: string): Background =>
  NET.startRouter(i, SHARED, dir, ['--etcd-endpoints', endpoints]);

/** The blocks under the prefix as etcd holds them, read with etcdctl. */
async function etcdBlocks(prefix = `/distnat/${SHARED}/`): Promise<EtcdBlock[]> {
  const r = await execIn(LAN, [
    'etcdctl',
    '--endpoints',
    `http://${ETCD}:2379`,
    'get',
    '--prefix',
    prefix,
    '-w',
    'json',
  ]);
  if (r.code !== 0) throw new Error(`etcdctl: ${describeResult(r)}`);
  return parseEtcdBlocks(r.stdout);
}

beforeAll(async () => {
  onExitCleanup(() => NET.teardown());
  NET.teardown();
  await NET.setUp([ETCD, ...HOSTS]);
  etcd = await startEtcd(1, { ns: LAN, address: ETCD });
}, 60_000);

afterAll(async () => {
  for (const r of routers) await r.stop();
  await etcd?.stop();
  NET.teardown();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Every host asks both routers (those still given) at once: 24 hosts x routers x 5 requests.
 * `second`: every other host asks for ports of that shared address instead of the first.
 */
async function askAll(
  targets: readonly { lan: string }[],
  onStarted?: () => void,
  second?: string,
): Promise<{ host: string; via: string; answer: PapAnswer }[]> {
  const script = join(dir, 'pap-client.py');
  writeFileSync(script, PAP_CLIENT_PY);
  const asksOf = (i: number) =>
    [8, 16, 24, 32, 8].map((count) =>
      JSON.stringify({
        op: 'request',
        kind: 'port',
        count,
        ...(second !== undefined && i % 2 === 1 ? { address: second } : {}),
        // Patient: on a loaded machine a router's queue of grants outlasted the client's three tries
        // of a second now and then; a retransmission gets the same grant (the answer cache).
        ...(second !== undefined ? { attempts: 6 } : {}),
      }),
    );
  const runs = HOSTS.flatMap((h, i) =>
    targets.map(async (r) => {
      const asks = asksOf(i);
      const res = await execIn(LAN, [PYTHON, script, h, r.lan, ...asks], { timeoutMs: 60_000 });
      if (res.code !== 0) throw new Error(`PAP client ${h}: ${describeResult(res)}`);
      return res.stdout
        .trim()
        .split('\n')
        .map((l) => ({ host: h, via: r.lan, answer: (JSON.parse(l) as PapReply).answer }));
    }),
  );
  onStarted?.();
  const answers = (await Promise.all(runs)).flat();
  refused = answers
    .filter((a) => a.answer?.success !== true)
    .map((a) => `${a.host} via ${a.via}: ${a.answer === null ? 'no answer' : `status ${a.answer.status}`}`);
  return answers.filter(
    (a): a is { host: string; via: string; answer: PapAnswer } => a.answer?.success === true,
  );
}

/** No two blocks overlap in etcd, and every success a host was told is there as told; the leases, as text. */
async function checkEtcd(granted: readonly { host: string; answer: PapAnswer }[]): Promise<string[]> {
  const stored = expectConsistentLeases(await etcdBlocks(), granted);
  return stored
    .filter((s) => s.state === 'leased')
    .map((s) => `${s.host} ${s.lowest}+${s.count}`)
    .sort();
}

async function waitForListing(i: number, leased: readonly string[]): Promise<void> {
  await waitUntil(`router ${i + 1} lists every lease`, async () => {
    const status = await readStatus(join(dir, `r${i}`, 'run'), 'router');
    const rows = findTable(status, 'FIG. 8').rows.map(
      ([h, l, c]) => `${String(h)} ${Number(l)}+${Number(c)}`,
    );
    return JSON.stringify(rows.sort()) === JSON.stringify(leased);
  });
}

describe('routers sharing leases on etcd', () => {
  it('no etcd member answering: exit 69, naming the endpoints tried', async () => {
    const r = await execIn(
      ROUTERS[0]!.ns,
      [
        DISTNAT,
        'router',
        '--shared-address',
        SHARED,
        '--lan-address',
        ROUTERS[0]!.lan,
        '--datapath',
        'tun',
        '--state-dir',
        join(dir, 'x', 'state'),
        '--run-dir',
        join(dir, 'x', 'run'),
        '--etcd-endpoints',
        `http://${ETCD}:2999,http://10.0.0.22:2379`,
        '--fresh',
      ],
      { timeoutMs: 30_000 },
    );
    expect(r.code, describeResult(r)).toBe(69);
    expect(r.stderr).toContain(`tried http://${ETCD}:2999, http://10.0.0.22:2379`);
    // Refused before any device was made.
    expect((await execIn(ROUTERS[0]!.ns, ['ip', 'link', 'show', 'dn0'])).code).not.toBe(0);
  }, 60_000);

  it('two routers on one LAN, PAP clients asking both at once: leases consistent, from etcd and both statuses', async () => {
    const endpoints = `http://${ETCD}:2379`;
    for (const i of [0, 1]) {
      const r = startRouter(i, endpoints);
      routers.push(r);
      await r.waitForOutput(/router started/, { timeoutMs: 30_000 });
    }
    const granted = await askAll(ROUTERS);
    expect(granted.length).toBeGreaterThanOrEqual(230);
    const leased = await checkEtcd(granted);
    // Each router forwards for every lease, whichever router granted it.
    for (const i of [0, 1]) await waitForListing(i, leased);
  }, 180_000);

  it('router 1 SIGKILLed while both grant: still no overlap, and router 2 goes on', async () => {
    let killed: Promise<unknown> | undefined;
    const granted = await askAll(ROUTERS, () => {
      killed = new Promise((r) => setTimeout(r, 300)).then(() => routers[0]!.stop({ signal: 'SIGKILL' }));
    });
    await killed;
    expect(routers[0]!.running()).toBe(false);
    // Router 2 answered every one of its requests: 24 hosts x 5.
    expect(granted.filter((g) => g.via === ROUTERS[1]!.lan)).toHaveLength(HOSTS.length * 5);
    const leased = await checkEtcd(granted);
    await waitForListing(1, leased);
  }, 180_000);

  it('two shared addresses on etcd: both routers grant on both, the same ports twice, never twice on one', async () => {
    for (const r of routers.splice(0)) await r.stop();
    // A prefix of their own, so that the leases of the tests before do not count.
    const extra = [
      '--etcd-endpoints',
      `http://${ETCD}:2379`,
      '--etcd-prefix',
      '/two/',
      '--shared-addresses',
      `${SHARED},${SECOND}`,
    ];
    for (const i of [0, 1]) {
      const r = NET.startRouter(i, SHARED, dir, extra);
      routers.push(r);
      await r.waitForOutput(/router started/, { timeoutMs: 30_000 });
    }
    // Half the hosts ask for the second address's ports, half name none (the first), through both routers.
    const granted = await askAll(ROUTERS, undefined, SECOND);
    expect(granted.length, refused.join('\n')).toBeGreaterThanOrEqual(230);
    const onSecond = granted.filter((g) => HOSTS.indexOf(g.host) % 2 === 1);
    const onFirst = granted.filter((g) => HOSTS.indexOf(g.host) % 2 === 0);
    // Every answer names the address its block is on: the second by its address, the first by none.
    expect(onSecond.map((g) => g.answer.address)).toEqual(onSecond.map(() => SECOND));
    expect(onFirst.map((g) => g.answer.address)).toEqual(onFirst.map(() => null));
    // etcd's own data: each address's blocks under its prefix, none overlapping there, every grant as told.
    const first = expectConsistentLeases(await etcdBlocks(`/two/${SHARED}/`), onFirst);
    const second = expectConsistentLeases(await etcdBlocks(`/two/${SECOND}/`), onSecond);
    // Each block is on the address its host asked for (a grant whose answer the client gave up on is there too).
    expect(first.filter((b) => HOSTS.indexOf(b.host) % 2 !== 0)).toEqual([]);
    expect(second.filter((b) => HOSTS.indexOf(b.host) % 2 !== 1)).toEqual([]);
    // Both routers start low and in their own stretch: ports leased on both addresses, to different hosts.
    const firstPorts = new Set(first.map((b) => b.lowest));
    const twice = second.filter((b) => firstPorts.has(b.lowest));
    expect(twice.length).toBeGreaterThan(0);
    for (const b of twice) expect(first.find((f) => f.lowest === b.lowest)!.host).not.toBe(b.host);
    // Each router lists every lease of both addresses, by address.
    const leased = [
      ...first.map((b) => `${b.host} ${SHARED} ${b.lowest}+${b.count}`),
      ...second.map((b) => `${b.host} ${SECOND} ${b.lowest}+${b.count}`),
    ].sort();
    for (const i of [0, 1])
      await waitUntil(`router ${i + 1} lists every lease of both addresses`, async () => {
        const status = await readStatus(join(dir, `r${i}`, 'run'), 'router');
        const rows = findTable(status, 'FIG. 8').rows.map(
          ([h, a, l, c]) => `${String(h)} ${String(a)} ${Number(l)}+${Number(c)}`,
        );
        return JSON.stringify(rows.sort()) === JSON.stringify(leased);
      });
  }, 180_000);
});
