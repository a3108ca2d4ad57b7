/**
 * The router's TUN path on two forwarding workers (`--datapath tun
 * --workers 2`, docs/router.md "Workers"), in a testbed of this file's own
 * with a multi-queue TUN (router-setup.sh up --multi-queue) and two real host
 * agents (h1 translating, h2 native).
 *
 * Downloads arrive intact, UDP and ping go both ways, and both workers
 * carried packets (their own counters, which add up to the router's);
 * hand-made tunnels from h1 are each taken by exactly one worker (the
 * kernel running the share filters: no packet twice, none lost, both
 * shares used); after `distnat withdraw` returns, the same datagrams are
 * refused on every worker at once; FIG. 12 shows the workers' rows; SIGTERM
 * stops the workers and the router exits cleanly, a worker whose queue fails
 * stops the router with exit 70, and --pcap is refused with workers.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, UdpEcho } from '../helpers/distnat.ts';
import {
  DISTNAT,
  downloadSha256,
  findTable,
  PYTHON,
  readStatusCli,
  startHostAgent,
  startUdpEcho,
  udpExchange,
  writeScript,
} from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import { multiQueueSetupArgs } from '../../scripts/lib/testbed/process-table.ts';

const bed = useTestbed({ daemons: false });
const BIG = Buffer.alloc(3_000_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 2654435761) >>> 24;
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
const ECHO_PORT = 7013;
const SILENT_PORT = 7014;

type HostNode = 'h1' | 'h2';
const MODE: Record<HostNode, 'translate' | 'native'> = { h1: 'translate', h2: 'native' };

/**
 * Tunnelled UDP from h1's LAN address, one datagram per source port: argv
 * first-port count. To a port nothing listens on: an answer would come back
 * to h1, whose stack would answer it in turn and add to what the router reads.
 */
const TUNNELS = `
import sys
from scapy.all import IP, UDP, Raw, send, conf
conf.verb = 0
first, count = int(sys.argv[1]), int(sys.argv[2])
pkts = [IP(src='${TOPOLOGY.h1.lan}', dst='${TOPOLOGY.router.lan}', proto=4)/
        IP(src='${TOPOLOGY.shared}', dst='${TOPOLOGY.server.wan}', ttl=20)/
        UDP(sport=first + i, dport=${SILENT_PORT})/Raw(b'workers %d' % (first + i)) for i in range(count)]
send(pkts)
`;

let router: Background;

function routerArgv(): string[] {
  const b = bed();
  return [
    DISTNAT,
    'router',
    '--shared-address',
    TOPOLOGY.shared,
    '--lan-address',
    TOPOLOGY.router.lan,
    '--tun',
    TOPOLOGY.tun,
    '--datapath',
    'tun',
    '--workers',
    '2',
    '--state-dir',
    join(b.scratchDir, 'router-state'),
    '--run-dir',
    runDir('router'),
    '--fresh',
  ];
}
const agents: Partial<Record<HostNode, Background>> = {};
let http: HttpServer;
let echo: UdpEcho;

const runDir = (node: HostNode | 'router'): string => join(bed().scratchDir, `${node}-run`);

const status = (node: HostNode | 'router'): Promise<DaemonStatus> => readStatusCli(bed(), node, runDir(node));

const counter = (s: DaemonStatus, name: string): number => s.counters[name] ?? 0;
const delta = (a: DaemonStatus, b: DaemonStatus, name: string): number => counter(b, name) - counter(a, name);

async function startAgent(node: HostNode): Promise<void> {
  const dirs = { stateDir: join(bed().scratchDir, `${node}-state`), runDir: runDir(node) };
  agents[node] = await startHostAgent(bed(), node, dirs, ['--mode', MODE[node], '--datapath', 'tun']);
}

const fetchBig = (node: HostNode): Promise<string> =>
  downloadSha256(bed(), node, `http://${TOPOLOGY.server.wan}:${http.port}/big.bin`);

/** h1's port block as the router lists it (FIG. 8). */
function h1Block(s: DaemonStatus): { first: number; count: number } {
  const row = findTable(s, 'FIG. 8').rows.find((r) => r[0] === TOPOLOGY.h1.lan);
  expect(row, 'h1 in FIG. 8').toBeDefined();
  return { first: Number(row![1]), count: Number(row![2]) };
}

async function tunnels(first: number, count: number): Promise<void> {
  const b = bed();
  const r = await b.exec(
    'h1',
    [PYTHON, writeScript(b, 'tunnels.py', TUNNELS), String(first), String(count)],
    {
      timeoutMs: 60_000,
    },
  );
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  const b = bed();
  // A multi-queue TUN for the workers' queues, as an operator makes it.
  const setup = await b.exec('router', multiQueueSetupArgs(join(b.scratchDir, 'router-setup')));
  expect(setup.code, setup.stderr).toBe(0);
  router = b.spawn('router', routerArgv());
  await router.waitForOutput(/router started/, { timeoutMs: 30_000 });
  await Promise.all([startAgent('h1'), startAgent('h2')]);
  http = await b.httpServer('server', { bind: TOPOLOGY.server.wan, files: { 'big.bin': BIG } });
  echo = await startUdpEcho(b, 'server', ECHO_PORT);
}, 120_000);

afterAll(async () => {
  await Promise.all(Object.values(agents).map((a) => a?.stop({ timeoutMs: 10_000 })));
  if (router?.running()) await router.stop();
});

describe('router TUN path on two workers', () => {
  it('refuses --pcap with workers above 1, saying why', async () => {
    const b = bed();
    const argv = routerArgv().map((a) =>
      a === runDir('router')
        ? join(b.scratchDir, 'pcap-run')
        : a.endsWith('router-state')
          ? join(b.scratchDir, 'pcap-state')
          : a,
    );
    const r = await b.exec('router', [...argv, '--pcap', join(b.scratchDir, 'x.pcap')], {
      timeoutMs: 30_000,
    });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/--pcap records the TUN path of one thread: run with workers: 1/);
  });

  it('says it forwards on 2 workers, on the TUN path', async () => {
    await router.waitForOutput(/forwarding on 2 workers/, { timeoutMs: 1000 });
    const s = await status('router');
    expect(s.summary['workers']).toBe(2);
    expect(String(s.summary['data path'])).toMatch(/TUN/);
  });

  it('downloads arrive intact, UDP and ping go both ways, and both workers carried packets', async () => {
    const b = bed();
    const before = await status('router');
    const [sha1, sha2] = await Promise.all([fetchBig('h1'), fetchBig('h2')]);
    expect(sha1).toBe(BIG_SHA);
    expect(sha2).toBe(BIG_SHA);
    for (const node of ['h1', 'h2'] as const) {
      const u = await udpExchange(b, node, {
        dst: TOPOLOGY.server.wan,
        port: ECHO_PORT,
        tag: node,
        flows: 8,
      });
      expect(u.answered, node).toBe(24);
      const p = await b.ping(node, TOPOLOGY.server.wan, { count: 3, waitS: 2 });
      expect(p.received, p.output).toBe(3);
    }
    // The server saw the shared address only.
    const seen = echo.seen();
    expect(seen.length).toBeGreaterThanOrEqual(48);
    for (const d of seen) expect(d.src).toBe(TOPOLOGY.shared);
    const after = await status('router');
    for (const w of [0, 1]) {
      expect(delta(before, after, `worker.${w}.lan-rx-packets`), `worker ${w} from the LAN`).toBeGreaterThan(
        0,
      );
      expect(delta(before, after, `worker.${w}.outbound-packets`), `worker ${w} to the WAN`).toBeGreaterThan(
        0,
      );
    }
    // The router's counters are the workers' sum.
    for (const name of ['lan-rx-packets', 'wan-rx-packets', 'outbound-packets', 'inbound-packets'])
      expect(counter(after, `traffic.${name}`)).toBe(
        counter(after, `worker.0.${name}`) + counter(after, `worker.1.${name}`),
      );
    expect(delta(before, after, 'traffic.inbound-packets')).toBeGreaterThan(2000);
  });

  it("FIG. 12 lists the workers' rows with timestamps", async () => {
    const s = await status('router');
    const rows = findTable(s, 'FIG. 12').rows;
    const hosts = new Set(rows.map((r) => r[1]));
    expect(hosts.has(TOPOLOGY.h1.lan), JSON.stringify(rows.slice(0, 10))).toBe(true);
    expect(hosts.has(TOPOLOGY.h2.lan)).toBe(true);
    for (const r of rows) expect(Date.parse(String(r[3]))).toBeGreaterThan(Date.now() - 600_000);
  });

  it('each tunnelled datagram is taken by exactly one worker (the kernel runs the share filters)', async () => {
    const block = h1Block(await status('router'));
    const count = Math.min(block.count, 40);
    const before = await status('router');
    await tunnels(block.first, count);
    const after = await waitForRx(before, count);
    expect(delta(before, after, 'traffic.lan-rx-packets')).toBe(count);
    expect(delta(before, after, 'traffic.outbound-packets')).toBe(count);
    expect(delta(before, after, 'worker.0.lan-rx-packets')).toBeGreaterThan(0);
    expect(delta(before, after, 'worker.1.lan-rx-packets')).toBeGreaterThan(0);
  });

  it('a withdrawn block is refused on every worker as soon as `distnat withdraw` returns', async () => {
    const b = bed();
    const block = h1Block(await status('router'));
    const count = Math.min(block.count, 40);
    const r = await b.exec('router', [
      DISTNAT,
      'withdraw',
      TOPOLOGY.h1.lan,
      '--kind',
      'port',
      '--run-dir',
      runDir('router'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const before = await status('router');
    await tunnels(block.first, count);
    const after = await waitForRx(before, count);
    expect(delta(before, after, 'traffic.outbound-packets')).toBe(0);
    expect(delta(before, after, 'drop.spoofed-port')).toBe(count);
    expect(delta(before, after, 'worker.0.lan-rx-packets')).toBeGreaterThan(0);
    expect(delta(before, after, 'worker.1.lan-rx-packets')).toBeGreaterThan(0);
    // h1 leases another block and carries on.
    await waitUntil(
      'h1 to hold a new block',
      async () => {
        const rows = findTable(await status('router'), 'FIG. 8').rows;
        return rows.some((row) => row[0] === TOPOLOGY.h1.lan && Number(row[1]) !== block.first);
      },
      { timeoutMs: 30_000 },
    );
    expect(await fetchBig('h1')).toBe(BIG_SHA);
  });

  it('SIGTERM stops the workers and the router exits cleanly', async () => {
    const exit = await router.stop({ timeoutMs: 15_000 });
    expect(exit.code).toBe(0);
    const log = router.stdout() + router.stderr();
    expect(log).toMatch(/forwarding workers stopped/);
    expect(log).toMatch(/router stopped/);
    expect(log).not.toMatch(/forwarding worker \d+ (failed|exited)/);
  });

  it('a worker whose queue fails stops the router with exit 70 (for systemd to restart it)', async () => {
    const b = bed();
    router = b.spawn('router', routerArgv());
    await router.waitForOutput(/forwarding on 2 workers/, { timeoutMs: 30_000 });
    // The device going away under the workers' queues: their reads fail.
    const del = await b.exec('router', ['ip', 'link', 'del', 'dev', TOPOLOGY.tun]);
    expect(del.code, del.stderr).toBe(0);
    const exit = await Promise.race([
      router.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
    ]);
    expect(exit, router.stdout() + router.stderr()).toBeDefined();
    expect(exit!.code).toBe(70);
    const log = router.stdout() + router.stderr();
    expect(log).toMatch(/forwarding worker \d+ failed/);
    expect(log).toMatch(/router stopped/);
  });
});

/** Status once the router has read `count` more datagrams from the LAN (or after 10 s, for the failure message). */
async function waitForRx(before: DaemonStatus, count: number): Promise<DaemonStatus> {
  let last = before;
  await waitUntil(
    `the router to read ${count} tunnelled datagrams`,
    async () => {
      last = await status('router');
      return delta(before, last, 'traffic.lan-rx-packets') >= count;
    },
    { timeoutMs: 10_000, intervalMs: 200 },
  ).catch(() => undefined);
  // A moment for anything more (a duplicate) to arrive, and for the counts to settle.
  await new Promise((r) => setTimeout(r, 500));
  return status('router');
}
