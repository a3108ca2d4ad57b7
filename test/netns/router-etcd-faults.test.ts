/**
 * The two-router testbed (scripts/testbed --routers 2: etcd cluster, BGP to
 * the server) under the faults several routers are for, one testbed for the
 * file, real `distnat router`s and host agents:
 *
 * - both routers up: both hosts download through the shared address on
 *   several flows each, and the server's ECMP sends replies in through each
 *   router (captured on both routers' WAN links); every download intact;
 * - one router cut off from etcd (nftables in its namespace dropping its
 *   traffic to the members): it answers try-later and says so (status,
 *   counter, log line), forwards for the host behind it and for the leases
 *   it knows until they expire by its clock, while the other router grants;
 *   healed, it grants again, and etcd's data shows no overlap and no grant of
 *   the cut router during the cut;
 * - one etcd member SIGKILLed: new clients get grants through both routers,
 *   no overlap in etcd's data.
 *
 * The simulated PAP clients are extra addresses on the LAN bridge.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdEndpoints } from '../../scripts/lib/testbed/etcd.ts';
import { etcdArgs, hostArgs, routerArgs, routerLan } from '../../scripts/lib/testbed/process-table.ts';
import { readStatus, type DaemonStatus } from '../../scripts/lib/testbed/status.ts';
import { runningPid } from '../../scripts/lib/testbed/supervisor.ts';
import { DISTNAT, findTable, pseudoRandomBytes } from '../helpers/distnat.ts';
import type { EtcdBlock } from '../helpers/etcd.ts';
import { expectConsistentLeases, parseEtcdBlocks } from '../helpers/etcd.ts';
import type { PapAnswer, PapReply } from '../helpers/pap.ts';
import { addLanHosts, papExchange } from '../helpers/pap.ts';
import type { Background } from '../helpers/process.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, uniquePrefix, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ prefix: uniquePrefix(), routers: 2, daemons: false });
const m = TOPOLOGY.multiRouter;
const R1 = routerLan('router');
const R2 = routerLan('router2');
const FLOWS = 6;
const FILE = pseudoRandomBytes(1_000_000);
const FILE_SHA = createHash('sha256').update(FILE).digest('hex');
/** Simulated PAP clients, each asking once: 10.0.0.150 and up. */
const CLIENTS = Array.from({ length: 40 }, (_, i) => `10.0.0.${150 + i}`);
let nextClient = 0;
const client = (): string => CLIENTS[nextClient++]!;
/** PAP status try-later (docs/pap.md). */
const TRY_LATER = 6;
/** The shortest lease a router grants (docs/pap.md): the cut router must end it by its own clock. */
const SHORT_LEASE_S = 30;

type RouterNode = 'router' | 'router2';
const routers: Record<RouterNode, Background | undefined> = { router: undefined, router2: undefined };

function startRouter(node: RouterNode): Background {
  return bed().spawn(node, [
    DISTNAT,
    ...routerArgs(bed().layout, [...etcdArgs(), '--datapath', 'tun'], node),
  ]);
}

/** A host agent listing both routers, starting with `first`. */
function startHost(host: 'h1' | 'h2', first: string): Background {
  const args = hostArgs(bed().layout, host, ['--routers', `${R1},${R2}`]);
  const i = args.indexOf('--router');
  args[i + 1] = first;
  return bed().spawn(host, [DISTNAT, ...args]);
}

const routerStatus = (node: RouterNode): Promise<DaemonStatus> =>
  readStatus(bed().layout.nodeDir(node), 'router');

/** The router's FIG. 8 rows as "host lowest+count". */
async function listed(node: RouterNode): Promise<string[]> {
  return findTable(await routerStatus(node), 'FIG. 8').rows.map(
    ([h, l, c]) => `${String(h)} ${Number(l)}+${Number(c)}`,
  );
}

/** The port blocks under the prefix as etcd holds them, read with etcdctl from `members`. */
async function etcdBlocks(members: readonly string[] = m.etcdMembers): Promise<EtcdBlock[]> {
  const r = await bed().exec('router', [
    'etcdctl',
    `--endpoints=${etcdEndpoints(members).join(',')}`,
    'get',
    '--prefix',
    `/distnat/${TOPOLOGY.shared}/port/`,
    '-w',
    'json',
  ]);
  expect(r.code, describeResult(r)).toBe(0);
  return parseEtcdBlocks(r.stdout);
}

/** No two blocks in etcd overlap, and every grant a client was told is there, leased to it as told. */
async function checkEtcd(
  granted: readonly { host: string; answer: PapAnswer }[],
  members?: readonly string[],
): Promise<EtcdBlock[]> {
  const stored = await etcdBlocks(members);
  expect(stored.length).toBeGreaterThan(0);
  return expectConsistentLeases(stored, granted);
}

/**
 * One port request from a new simulated client through `router`; its answer
 * (null: none). With `again`, a try-later (or no answer) is asked again
 * after the seconds it names, as a host does, up to 10 times; `tryLater`
 * counts them.
 */
let tryLater = 0;
async function ask(
  router: string,
  { lease, again = false }: { lease?: number; again?: boolean } = {},
): Promise<{ host: string; answer: PapAnswer | null }> {
  const host = client();
  for (let i = 0; ; i++) {
    const [reply] = (await papExchange(
      bed(),
      host,
      [{ op: 'request', kind: 'port', count: 16, ...(lease === undefined ? {} : { lease }), attempts: 6 }],
      router,
    )) as PapReply[];
    const answer = reply!.answer;
    if (!again || i === 10 || answer?.success === true || (answer !== null && answer.status !== TRY_LATER))
      return { host, answer };
    tryLater++;
    await sleep(Math.max(1, answer?.lease ?? 1) * 1000);
  }
}

const granted = (a: { host: string; answer: PapAnswer | null }): a is { host: string; answer: PapAnswer } =>
  a.answer?.success === true;

/** `FLOWS` parallel downloads of the file from the server by `host`; each file's sha256. */
async function downloads(host: 'h1' | 'h2', tag: string): Promise<string[]> {
  const dir = bed().scratchDir;
  const files = Array.from({ length: FLOWS }, (_, i) => join(dir, `${host}-${tag}-${i}.bin`));
  const script = files
    .map((f) => `curl -sS --max-time 60 -o ${f} ${http.url(TOPOLOGY.server.wan, 'file.bin')} &`)
    .join('\n');
  const r = await bed().sh(
    host,
    `${script}\nfail=0; for p in $(jobs -p); do wait $p || fail=1; done; exit $fail`,
    {
      timeoutMs: 90_000,
    },
  );
  expect(r.code, describeResult(r)).toBe(0);
  return files.map((f) => createHash('sha256').update(readFileSync(f)).digest('hex'));
}

let http: HttpServer;
const agents: Background[] = [];

beforeAll(async () => {
  routers.router = startRouter('router');
  routers.router2 = startRouter('router2');
  await Promise.all([
    routers.router.waitForOutput(/router started/, { timeoutMs: 30_000 }),
    routers.router2.waitForOutput(/router started/, { timeoutMs: 30_000 }),
  ]);
  // h1 sends through router 1, h2 through router 2.
  agents.push(startHost('h1', R1), startHost('h2', R2));
  await Promise.all(agents.map((a) => a.waitForOutput(/leased ports \d+-\d+/, { timeoutMs: 30_000 })));
  http = await bed().httpServer('server', { bind: TOPOLOGY.server.wan, files: { 'file.bin': FILE } });
  await addLanHosts(bed(), CLIENTS);
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await Promise.all([routers.router?.stop(), routers.router2?.stop()]);
  await http?.stop();
});

describe('two routers on etcd, under faults', () => {
  it('ECMP: both hosts download on several flows, replies enter through both routers, all intact', async () => {
    const filter = `tcp and src host ${TOPOLOGY.server.wan} and src port ${http.port} and dst host ${TOPOLOGY.shared}`;
    const caps = {
      router: await bed().capture('router', TOPOLOGY.wanIf, { filter }),
      router2: await bed().capture('router2', TOPOLOGY.wanIf, { filter }),
    };
    const shas = (await Promise.all([downloads('h1', 'ecmp'), downloads('h2', 'ecmp')])).flat();
    expect(shas).toEqual(Array.from({ length: 2 * FLOWS }, () => FILE_SHA));
    const flows: Record<RouterNode, Set<string>> = { router: new Set(), router2: new Set() };
    const packets: Record<RouterNode, number> = { router: 0, router2: 0 };
    for (const node of ['router', 'router2'] as const) {
      await caps[node].stop();
      const rows = await caps[node].fields(['tcp.dstport', 'tcp.len']);
      packets[node] = rows.length;
      for (const [port, len] of rows) if (Number(len) > 0) flows[node].add(port!);
    }
    console.log(
      `ECMP: ${2 * FLOWS} downloads; replies with data entered router 1 on ${flows.router.size} flows ` +
        `(${packets.router} packets), router 2 on ${flows.router2.size} flows (${packets.router2} packets)`,
    );
    // Each flow hashes to one next hop: none appears on both, and each router carried some.
    expect(flows.router.size).toBeGreaterThan(0);
    expect(flows.router2.size).toBeGreaterThan(0);
    expect([...flows.router].filter((p) => flows.router2.has(p))).toEqual([]);
    expect(flows.router.size + flows.router2.size).toBe(2 * FLOWS);
  }, 120_000);

  it('a router cut off from etcd says so, grants nothing, forwards for what it knows until it expires', async () => {
    // A short lease granted by router 1 before the cut: router 2 knows it and must end it by its own clock.
    const short = await ask(R1, { lease: SHORT_LEASE_S });
    expect(short.answer?.success, JSON.stringify(short)).toBe(true);
    expect(short.answer!.lease).toBe(SHORT_LEASE_S);
    const shortRow = `${short.host} ${short.answer!.lowest}+${short.answer!.count}`;
    await waitUntil('router 2 lists the short lease', async () =>
      (await listed('router2')).includes(shortRow),
    );
    const before = await routerStatus('router2');

    const members = m.etcdMembers.map((e) => m.addresses[e]!.lan!).join(', ');
    const port = m.etcdClientPort;
    const cut = await bed().sh(
      'router2',
      [
        'nft -f - <<EOF',
        'table inet dn_etcd_cut {',
        '  chain out { type filter hook output priority 0; ' +
          `ip daddr { ${members} } tcp dport ${port} drop; }`,
        '  chain in { type filter hook input priority 0; ' +
          `ip saddr { ${members} } tcp sport ${port} drop; }`,
        '}',
        'EOF',
      ].join('\n'),
    );
    expect(cut.code, describeResult(cut)).toBe(0);
    const cutAt = Date.now();
    let healed = false;
    const heal = async (): Promise<void> => {
      if (healed) return;
      healed = true;
      const r = await bed().exec('router2', ['nft', 'delete', 'table', 'inet', 'dn_etcd_cut']);
      expect(r.code, describeResult(r)).toBe(0);
    };
    try {
      // Router 2 learns of the cut from its first failed call: a request.
      const refused = [await ask(R2), await ask(R2), await ask(R2)];
      for (const r of refused) {
        expect(r.answer, JSON.stringify(r)).not.toBeNull();
        expect(r.answer!.success, JSON.stringify(r)).toBe(false);
        expect(r.answer!.status).toBe(TRY_LATER);
      }
      const cutStatus = await routerStatus('router2');
      expect(cutStatus.counters['leases.etcd_available']).toBe(0);
      expect(cutStatus.counters['leases.etcd_unavailable_refusals']).toBeGreaterThanOrEqual(
        (before.counters['leases.etcd_unavailable_refusals'] ?? 0) + refused.length,
      );
      expect(routers.router2!.stdout() + routers.router2!.stderr()).toMatch(
        /etcd does not answer: no grants \(try-later\), known leases forwarded until they expire/,
      );
      // What an operator sees: distnat status in the router's namespace.
      const cli = await bed().exec('router2', [
        DISTNAT,
        'status',
        'router',
        '--run-dir',
        bed().layout.nodeDir('router2'),
      ]);
      expect(cli.code, describeResult(cli)).toBe(0);
      expect(cli.stdout).toMatch(/^leases\.etcd_available\s+0$/m);

      // Router 1 grants meanwhile.
      const viaR1 = [await ask(R1), await ask(R1), await ask(R1)];
      for (const r of viaR1) expect(r.answer?.success, JSON.stringify(r)).toBe(true);
      // The host behind router 2 still downloads: router 2 forwards for the leases it knows.
      expect(await downloads('h2', 'cut')).toEqual(Array.from({ length: FLOWS }, () => FILE_SHA));
      const h2 = await readStatus(bed().layout.nodeDir('h2'), 'host');
      expect(h2.summary.router).toBe(R2);
      // ...until they expire by its own clock: the short lease leaves its view, no etcd needed.
      expect(await listed('router2')).toContain(shortRow);
      await waitUntil(
        'router 2 ends the short lease by its clock',
        async () => !(await listed('router2')).includes(shortRow),
        {
          timeoutMs: (SHORT_LEASE_S + 15) * 1000,
          intervalMs: 500,
        },
      );
      expect((await routerStatus('router2')).counters['leases.etcd_available']).toBe(0);
      console.log(
        `cut off from etcd: router 2 refused ${refused.length} requests with try-later, router 1 granted ` +
          `${viaR1.length}; the ${SHORT_LEASE_S} s lease left router 2's view ${Math.round((Date.now() - cutAt) / 1000)} s after the cut`,
      );

      await heal();
      const healedAt = Date.now();
      await routers.router2!.waitForOutput(/etcd answers again: granting/, { timeoutMs: 30_000 });
      tryLater = 0;
      const after = await ask(R2, { again: true });
      expect(after.answer?.success, JSON.stringify(after)).toBe(true);
      console.log(
        `healed: router 2 granted again ${((Date.now() - healedAt) / 1000).toFixed(1)} s after the cut ` +
          `ended (${tryLater} try-later or unanswered requests before)`,
      );
      const stored = await checkEtcd([...viaR1, after].filter(granted));
      // Nothing in etcd was granted by router 2 while it was cut off.
      const byR2DuringCut = stored.filter(
        (b) => b.by?.endsWith(R2) === true && (b.grantedAt ?? 0) >= cutAt && b.host !== after.host,
      );
      expect(byR2DuringCut).toEqual([]);
      for (const r of refused)
        expect(stored.some((b) => b.host === r.host && b.state === 'leased')).toBe(false);
    } finally {
      await heal();
    }
  }, 180_000);

  it('one etcd member SIGKILLed: both routers go on granting, no overlap', async () => {
    // Both routers reach etcd again after the cut before the member goes.
    for (const node of ['router', 'router2'] as const)
      await waitUntil(
        `${node} reaches etcd`,
        async () => (await routerStatus(node)).counters['leases.etcd_available'] === 1,
      );
    const pid = runningPid(bed().layout, 'etcd1');
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    const rest = m.etcdMembers.filter((e) => e !== 'etcd1');
    tryLater = 0;
    const asks = await Promise.all([R1, R2, R1, R2, R1, R2].map((r) => ask(r, { again: true })));
    for (const a of asks) expect(a.answer?.success, JSON.stringify(a)).toBe(true);
    console.log(
      `etcd1 SIGKILLed: ${asks.length} new clients granted through both routers, ${tryLater} try-later on the way`,
    );
    await checkEtcd(asks.filter(granted), rest);
    // Both routers list every lease etcd holds.
    const leased = (await etcdBlocks(rest))
      .filter((b) => b.state === 'leased')
      .map((b) => `${b.host} ${b.lowest}+${b.count}`)
      .sort();
    for (const node of ['router', 'router2'] as const) {
      await waitUntil(
        `${node} lists every lease`,
        async () => JSON.stringify((await listed(node)).sort()) === JSON.stringify(leased),
        { timeoutMs: 30_000 },
      ).catch(() => undefined);
      expect((await listed(node)).sort(), node).toEqual(leased);
    }
    // The hosts never lost a block meanwhile.
    for (const a of agents) expect(a.stdout() + a.stderr()).not.toMatch(/"lost (ports|SPIs) /);
  }, 120_000);
});
