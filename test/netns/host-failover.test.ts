/**
 * A host agent listing both routers of the two-router testbed (leases on
 * its etcd cluster, BGP to the server), downloading several megabytes from
 * the server through the shared address; the router it sends through is
 * SIGKILLed in the middle. The download completes intact (sha256), the
 * agent moved to the other router (status, log, router.switches), its port
 * block is the one it had, still leased to it in etcd. The traffic gap (the
 * longest time the file did not grow) is printed, not asserted: a figure,
 * not a test of speed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdEndpoints } from '../../scripts/lib/testbed/etcd.ts';
import { etcdArgs, hostArgs, routerArgs, routerLan } from '../../scripts/lib/testbed/process-table.ts';
import type { Background } from '../helpers/process.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { ROOT, TOPOLOGY, uniquePrefix, useTestbed } from '../helpers/testbed.ts';

const DISTNAT = join(ROOT, 'bin', 'distnat');
const bed = useTestbed({ prefix: uniquePrefix(), routers: 2, daemons: false });

const SIZE = 8_000_000;
const BIG = Buffer.alloc(SIZE);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 2654435761) >>> 24;
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
/** Slow enough that the download is still under way seconds after the kill (the gap is a few seconds). */
const RATE = '800k';

interface HostStatus {
  summary: Record<string, string | number>;
  tables: { title: string; rows: (string | number)[][] }[];
  counters: Record<string, number>;
}

const R1 = routerLan('router');
const R2 = routerLan('router2');

function startRouter(node: 'router' | 'router2'): Background {
  return bed().spawn(node, [
    DISTNAT,
    ...routerArgs(bed().layout, [...etcdArgs(), '--datapath', 'tun'], node),
  ]);
}

function withoutRouter(args: string[]): string[] {
  const i = args.indexOf('--router');
  return i < 0 ? args : [...args.slice(0, i), ...args.slice(i + 2)];
}

async function hostStatus(): Promise<HostStatus> {
  const r = await bed().exec('h1', [
    DISTNAT,
    'status',
    'host',
    '--json',
    '--run-dir',
    bed().layout.nodeDir('h1'),
  ]);
  expect(r.code, describeResult(r)).toBe(0);
  return JSON.parse(r.stdout) as HostStatus;
}

/** The h1 port blocks etcd holds as leased: "lowest+count". */
async function etcdLeasesOfH1(): Promise<string[]> {
  const r = await bed().exec('router2', [
    'etcdctl',
    `--endpoints=${etcdEndpoints().join(',')}`,
    'get',
    '--prefix',
    `/distnat/${TOPOLOGY.shared}/port/`,
    '-w',
    'json',
  ]);
  expect(r.code, describeResult(r)).toBe(0);
  const kvs = (JSON.parse(r.stdout) as { kvs?: { value: string }[] }).kvs ?? [];
  return kvs
    .map((kv) => JSON.parse(Buffer.from(kv.value, 'base64').toString()) as Record<string, unknown>)
    .filter((v) => v.state === 'leased' && v.host === TOPOLOGY.h1.lan)
    .map((v) => String(v.count));
}

describe('a host listing two routers moves when the one it sends through is killed', () => {
  let router1: Background;
  let router2: Background;
  let agent: Background;
  let http: HttpServer;

  beforeAll(async () => {
    router1 = startRouter('router');
    router2 = startRouter('router2');
    await Promise.all([
      router1.waitForOutput(/router started/, { timeoutMs: 30_000 }),
      router2.waitForOutput(/router started/, { timeoutMs: 30_000 }),
    ]);
    agent = bed().spawn('h1', [
      DISTNAT,
      // routers alone, no --router: the host starts with the first.
      ...withoutRouter(hostArgs(bed().layout, 'h1', ['--routers', `${R1},${R2}`])),
    ]);
    await agent.waitForOutput(/leased ports \d+-\d+/, { timeoutMs: 30_000 });
    http = await bed().httpServer('server', { bind: TOPOLOGY.server.wan, files: { 'big.bin': BIG } });
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await Promise.all([router1?.stop(), router2?.stop()]);
    await http?.stop();
  });

  it('starts through the first router and says which it may move to', async () => {
    const s = await hostStatus();
    expect(s.summary.router).toBe(R1);
    expect(s.summary.routers).toBe(`${R1}, ${R2}`);
    expect(s.counters['router.switches']).toBe(0);
  });

  it('completes a download intact across a SIGKILL of that router, on the same lease', async () => {
    const before = await hostStatus();
    const blocksBefore = before.tables[0]!.rows.map((r) => String(r[1]));
    expect(blocksBefore.length).toBeGreaterThan(0);

    const file = join(bed().scratchDir, 'h1-big.bin');
    const download = bed().exec(
      'h1',
      [
        'curl',
        '-sS',
        '--limit-rate',
        RATE,
        '--max-time',
        '90',
        '-o',
        file,
        http.url(TOPOLOGY.server.wan, 'big.bin'),
      ],
      { timeoutMs: 100_000 },
    );
    // The file's growth, polled: its longest standstill is the traffic gap.
    const size = (): number => {
      try {
        return statSync(file).size;
      } catch {
        return 0;
      }
    };
    let done = false;
    let killedAt = 0;
    let sizeAtKill = 0;
    let lastGrowth = performance.now();
    let lastSize = 0;
    let gapMs = 0;
    const watch = (async () => {
      while (!done) {
        const now = performance.now();
        const s = size();
        if (s !== lastSize) {
          if (killedAt > 0) gapMs = Math.max(gapMs, now - Math.max(lastGrowth, killedAt));
          lastSize = s;
          lastGrowth = now;
        }
        await sleep(10);
      }
    })();
    await waitUntil('a quarter of the download', () => size() > SIZE / 4, { timeoutMs: 30_000 });
    sizeAtKill = size();
    killedAt = performance.now();
    await router1.stop({ signal: 'SIGKILL' });

    const r = await download;
    done = true;
    await watch;
    expect(r.code, describeResult(r)).toBe(0);
    expect(sizeAtKill).toBeLessThan(SIZE);
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(BIG_SHA);
    console.log(
      `traffic gap at failover: ${Math.round(gapMs)} ms (router 1 SIGKILLed at ${sizeAtKill} of ${SIZE} bytes, ` +
        `curl --limit-rate ${RATE})`,
    );

    const after = await hostStatus();
    expect(after.summary.router).toBe(R2);
    expect(after.counters['router.switches']).toBe(1);
    expect(String(after.summary['router switches'])).toMatch(new RegExp(`^1 \\(last ${R1} -> ${R2}`));
    // No lease lost: the same blocks, still leased to h1 in etcd, renewed through router 2.
    expect(after.tables[0]!.rows.map((row) => String(row[1]))).toEqual(blocksBefore);
    expect(agent.stdout() + agent.stderr()).toMatch(
      /router stopped answering PAP; moving to the next router/,
    );
    expect(agent.stdout() + agent.stderr()).not.toMatch(/"lost (ports|SPIs) /);
    expect(await etcdLeasesOfH1()).toHaveLength(blocksBefore.length);
    const renewedAfter = after.counters['pap.sent'] ?? 0;
    expect(renewedAfter).toBeGreaterThan(before.counters['pap.sent'] ?? 0);
  }, 120_000);
});
