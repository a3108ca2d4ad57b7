/**
 * `distnat host` for real, in a testbed of this file's own: `distnat router`
 * and two host agents started by hand, h1 translating ports (Methods
 * 170/184, PAP over UDP) and h2 in native mode (Method 130, PAP over ICMP).
 * Ping and HTTP from both hosts to the server through the shared address,
 * path MTU discovery through the agent's "fragmentation needed", and a
 * SIGTERM that gives the block back and restores the kernel's port range.
 *
 * On both data paths in the same namespaces, router and agents on the same
 * one: the default `datapath: ebpf`, whose programs carry part of the
 * download (their counters grow), then `datapath: tun`, which has no
 * fast-path counters at all.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, DataPath } from '../helpers/distnat.ts';
import { DATA_PATHS, dataPathOf, fastPathCounters, fastPathForwarded } from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const DISTNAT = join(ROOT, 'bin', 'distnat');
const BIG = Buffer.alloc(3_000_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 2654435761) >>> 24;
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');

type HostNode = 'h1' | 'h2';

type HostStatus = DaemonStatus;

/** Each data path's daemons keep their own state and control sockets. */
const dirOf = (node: HostNode | 'router', datapath: DataPath, kind: 'state' | 'run'): string =>
  join(bed().scratchDir, `${node}-${kind}-${datapath}`);

function hostArgs(node: HostNode, datapath: DataPath, extra: string[]): string[] {
  return [
    DISTNAT,
    'host',
    '--router',
    TOPOLOGY.router.lan,
    '--lan-if',
    TOPOLOGY.lanIf,
    '--datapath',
    datapath,
    '--state-dir',
    dirOf(node, datapath, 'state'),
    '--run-dir',
    dirOf(node, datapath, 'run'),
    ...extra,
  ];
}

const EXTRA: Record<HostNode, string[]> = {
  h1: [],
  h2: ['--mode', 'native', '--pap-transport', 'icmp'],
};

async function startHostAgent(node: HostNode, datapath: DataPath): Promise<Background> {
  const agent = bed().spawn(node, hostArgs(node, datapath, EXTRA[node]));
  await agent.waitForOutput(/leased ports \d+-\d+/, { timeoutMs: 30_000 });
  return agent;
}

async function status(node: HostNode | 'router', datapath: DataPath): Promise<HostStatus> {
  const r = await bed().exec(node, [
    DISTNAT,
    'status',
    node === 'router' ? 'router' : 'host',
    '--json',
    '--run-dir',
    dirOf(node, datapath, 'run'),
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as HostStatus;
}

async function fetchBig(node: HostNode, http: HttpServer): Promise<{ sha: string; localPort: number }> {
  const file = join(bed().scratchDir, `${node}-big.bin`);
  const r = await bed().exec(
    node,
    [
      'curl',
      '-sS',
      '--max-time',
      '60',
      '-w',
      '%{local_port}',
      '-o',
      file,
      http.url(TOPOLOGY.server.wan, 'big.bin'),
    ],
    { timeoutMs: 70_000 },
  );
  expect(r.code, r.stderr).toBe(0);
  return {
    sha: createHash('sha256').update(readFileSync(file)).digest('hex'),
    localPort: Number(r.stdout.trim()),
  };
}

/** The JSON log lines a daemon wrote (its stderr is not a terminal, so it logs JSON). */
function logLines(proc: Background): Record<string, unknown>[] {
  return (proc.stdout() + '\n' + proc.stderr())
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const blockOf = (s: HostStatus): [number, number] => {
  const [lo, hi] = String(s.tables[0]!.rows[0]![1]).split('-').map(Number);
  return [lo!, hi!];
};

describe.for(DATA_PATHS)('distnat host in the testbed, datapath: %s', (datapath) => {
  let router: Background;
  const agents: Partial<Record<HostNode, Background>> = {};
  let http: HttpServer;

  beforeAll(async () => {
    const b = bed();
    router = b.spawn('router', [
      DISTNAT,
      'router',
      '--shared-address',
      TOPOLOGY.shared,
      '--lan-address',
      TOPOLOGY.router.lan,
      '--datapath',
      datapath,
      '--state-dir',
      dirOf('router', datapath, 'state'),
      '--run-dir',
      dirOf('router', datapath, 'run'),
      '--fresh',
    ]);
    await router.waitForOutput(/router started/, { timeoutMs: 30_000 });
    [agents.h1, agents.h2] = await Promise.all([
      startHostAgent('h1', datapath),
      startHostAgent('h2', datapath),
    ]);
    http = await b.httpServer('server', { bind: TOPOLOGY.server.wan, files: { 'big.bin': BIG } });
  });

  afterAll(async () => {
    await Promise.all(Object.values(agents).map((a) => a?.stop()));
    await router?.stop();
    await http?.stop();
  });

  it('leases each host its own block', async () => {
    const [s1, s2] = await Promise.all([status('h1', datapath), status('h2', datapath)]);
    const [a1, b1] = blockOf(s1);
    const [a2, b2] = blockOf(s2);
    expect(b1 - a1 + 1).toBe(32);
    expect(b2 - a2 + 1).toBe(32);
    expect(b1 < a2 || b2 < a1).toBe(true);
    expect(s1.summary['forwarding']).toBe('yes');
    expect(s2.summary['mode']).toBe('native');
    // Native mode: the kernel's ephemeral range is the block.
    const range = await bed().exec('h2', ['cat', '/proc/sys/net/ipv4/ip_local_port_range']);
    expect(range.stdout.trim().split(/\s+/).map(Number)).toEqual([a2, b2]);
  });

  it('pings the server from both hosts through the shared address', async () => {
    for (const node of ['h1', 'h2'] as const) {
      const p = await bed().ping(node, TOPOLOGY.server.wan, { count: 3 });
      expect(p.received, p.output).toBe(3);
    }
    const s1 = await status('h1', datapath);
    // The echo identifier went through FIG. 11 on h1 ...
    expect(s1.tables[1]!.rows.some((r) => r[2] === '1 (ICMP)')).toBe(true);
    // ... and on h2 too, native mode or not.
    expect((await status('h2', datapath)).counters['translate.outbound.translated']).toBeGreaterThanOrEqual(
      3,
    );
  });

  it('fetches 3 MB over HTTP on both hosts at once, intact', async () => {
    const nodes = ['router', 'h1', 'h2'] as const;
    const before = await Promise.all(nodes.map((n) => status(n, datapath)));
    const [r1, r2] = await Promise.all([fetchBig('h1', http), fetchBig('h2', http)]);
    expect(r1.sha).toBe(BIG_SHA);
    expect(r2.sha).toBe(BIG_SHA);
    const [s1, s2] = await Promise.all([status('h1', datapath), status('h2', datapath)]);
    // h1 translated its kernel's port into its block; h2's kernel picked one from its block itself.
    const [a1, b1] = blockOf(s1);
    const row = s1.tables[1]!.rows.find((r) => r[0] === r1.localPort && r[2] === '6 (TCP)');
    expect(row).toBeDefined();
    expect(Number(row![1])).toBeGreaterThanOrEqual(a1);
    expect(Number(row![1])).toBeLessThanOrEqual(b1);
    const [a2, b2] = blockOf(s2);
    expect(r2.localPort).toBeGreaterThanOrEqual(a2);
    expect(r2.localPort).toBeLessThanOrEqual(b2);
    // Which path carried it: the programs of all three forwarded some of it, or none of them exists.
    const after = await Promise.all(nodes.map((n) => status(n, datapath)));
    for (const [i, node] of nodes.entries()) {
      if (datapath === 'ebpf') {
        expect(dataPathOf(after[i]!), node).toMatch(/^eBPF \(/);
        expect(fastPathForwarded(before[i]!, after[i]!), node).toBeGreaterThan(0);
      } else {
        expect(dataPathOf(after[i]!), node).toMatch(/^TUN \(datapath: tun\)/);
        expect(fastPathCounters(after[i]!), node).toEqual({});
      }
    }
    for (const s of [s1, s2]) {
      expect(s.counters['packets.inbound']).toBeGreaterThan(2000);
      expect(s.counters['drop.inbound.no-mapping']).toBe(0);
      expect(s.counters['drop.outbound.no-lease']).toBe(0);
    }
  });

  it('tells the local stack the path MTU when the LAN is smaller than the TUN device assumes', async () => {
    const b = bed();
    await agents.h1!.stop();
    expect((await b.exec('h1', ['ip', 'link', 'set', TOPOLOGY.lanIf, 'mtu', '1400'])).code).toBe(0);
    try {
      agents.h1 = await startHostAgent('h1', datapath);
      const iperf = await b.iperf3Server('server', { bind: TOPOLOGY.server.wan, oneOff: true });
      // Upload: the stack sends 1480-byte segments into the TUN device; 1500 does not fit a 1400 LAN.
      const up = await b.exec(
        'h1',
        ['iperf3', '-c', TOPOLOGY.server.wan, '-p', String(iperf.port), '-n', '4M', '-J'],
        {
          timeoutMs: 60_000,
        },
      );
      expect(up.code, up.stderr).toBe(0);
      const s = await status('h1', datapath);
      expect(s.counters['packets.fragmentation-needed']).toBeGreaterThan(0);
      // One error per batch and destination: a burst of big segments is answered once.
      expect(s.counters['drop.outbound.too-big']).toBeGreaterThanOrEqual(
        s.counters['packets.fragmentation-needed']!,
      );
      const route = await b.exec('h1', ['ip', 'route', 'get', TOPOLOGY.server.wan]);
      expect(route.stdout).toMatch(/mtu 1380/);
    } finally {
      await b.exec('h1', ['ip', 'link', 'set', TOPOLOGY.lanIf, 'mtu', '1500']);
      await b.exec('h1', ['ip', 'route', 'flush', 'cache']);
    }
  });

  it('gives the block back and restores the port range on SIGTERM', async () => {
    const b = bed();
    const before = await status('h2', datapath);
    const [lowest] = blockOf(before);
    const exit = await agents.h2!.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
    expect(exit.code).toBe(0);
    expect(logLines(agents.h2!).some((l) => String(l.message).startsWith('released ports'))).toBe(true);
    const range = await b.exec('h2', ['cat', '/proc/sys/net/ipv4/ip_local_port_range']);
    expect(range.stdout.trim().split(/\s+/).map(Number)).toEqual([32768, 60999]);
    await waitUntil('the router to log the release', () =>
      Promise.resolve(
        logLines(router).some(
          (l) =>
            l.message === 'lease ended' &&
            l.host === TOPOLOGY.h2.lan &&
            l.lowest === lowest &&
            l.reason === 'released',
        ),
      ),
    );
  });
});
