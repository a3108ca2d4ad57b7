/**
 * `distnat host` driving its eBPF fast path (docs/ebpf.md, "The host"), in a
 * testbed of this file's own: `distnat router` and two agents with the
 * default `datapath: ebpf`, h1 translating ports and h2 in native mode.
 *
 * HTTP and UDP through the shared address work, the programs carried most
 * of the packets (their `fastpath.packets.*`) while the agent's own devices
 * read few of them (`io.*`), and a translated row's timestamp follows what
 * only the kernel carried; after `distnat withdraw` nothing from the old
 * block is carried by the programs (native: what the stack still sends
 * from it is left to the agent, which drops it; translate: the flow goes
 * on from a port of the new block); SIGTERM leaves no tc filter; with
 * `--datapath tun` the agent carries everything and shows no fast-path
 * counters, and with the router on `datapath: tun` too a withdrawn block
 * stops forwarding there as well (native mode: the agent drops what the
 * stack still sends from it).
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, UdpEcho } from '../helpers/distnat.ts';
import {
  DISTNAT,
  downloadSha256,
  findTable,
  hostPortBlocks,
  PYTHON,
  readStatusCli,
  startHostAgent,
  startUdpEcho,
  writeScript,
} from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { sleep, waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const BIG = Buffer.alloc(3_000_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 2654435761) >>> 24;
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
const ECHO_PORT = 7011;
const METRICS = '127.0.0.1:9741';

type HostNode = 'h1' | 'h2';
const MODE: Record<HostNode, 'translate' | 'native'> = { h1: 'translate', h2: 'native' };

/** `count` datagrams from (shared address, port) to the echo server, each waiting for its echo a moment. */
const SENDER = `
import json, socket, sys
port, count, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('${TOPOLOGY.shared}', port))
s.settimeout(0.3)
answered = 0
for i in range(count):
    msg = ('%s %d' % (tag, i)).encode()
    s.sendto(msg, ('${TOPOLOGY.server.wan}', ${ECHO_PORT}))
    try:
        while True:
            data, src = s.recvfrom(2048)
            if data == msg:
                answered += 1
                break
    except socket.timeout:
        pass
print(json.dumps({'sent': count, 'answered': answered}))
`;

let router: Background;
const agents: Partial<Record<HostNode, Background>> = {};
let http: HttpServer;
let echo: UdpEcho;

const runDir = (node: HostNode | 'router'): string => join(bed().scratchDir, `${node}-run`);

async function startAgent(node: HostNode, extra: string[] = []): Promise<Background> {
  const dirs = { stateDir: join(bed().scratchDir, `${node}-state`), runDir: runDir(node) };
  const agent = await startHostAgent(bed(), node, dirs, [
    '--mode',
    MODE[node],
    '--metrics',
    METRICS,
    ...extra,
  ]);
  agents[node] = agent;
  return agent;
}

const status = (node: HostNode): Promise<DaemonStatus> => readStatusCli(bed(), node, runDir(node));

const delta = (a: DaemonStatus, b: DaemonStatus, name: string): number =>
  (b.counters[name] ?? 0) - (a.counters[name] ?? 0);

async function send(node: HostNode, port: number, count: number, tag: string) {
  const b = bed();
  const r = await b.exec(
    node,
    [PYTHON, writeScript(b, 'sender.py', SENDER), String(port), String(count), tag],
    {
      timeoutMs: 60_000,
    },
  );
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim()) as { sent: number; answered: number };
}

const fetchBig = (node: HostNode): Promise<string> =>
  downloadSha256(bed(), node, http.url(TOPOLOGY.server.wan, 'big.bin'));

async function tcFilters(node: HostNode): Promise<string> {
  const out = await bed().exec(node, ['tc', 'filter', 'show', 'dev', TOPOLOGY.tun, 'egress']);
  const lan = await bed().exec(node, ['tc', 'filter', 'show', 'dev', TOPOLOGY.lanIf, 'ingress']);
  return out.stdout + lan.stdout;
}

/** The JSON log lines a daemon wrote. */
function logLines(proc: Background): Record<string, unknown>[] {
  return (proc.stdout() + '\n' + proc.stderr())
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function withdraw(node: HostNode): Promise<void> {
  const agent = agents[node]!;
  const lost = (): number =>
    logLines(agent).filter((l) => String(l.message).startsWith('lost ports') && l.reason === 'withdrawn')
      .length;
  const leased = (): number =>
    logLines(agent).filter((l) => String(l.message).startsWith('leased ports')).length;
  const [lostBefore, leasedBefore] = [lost(), leased()];
  const r = await bed().exec('router', [
    DISTNAT,
    'withdraw',
    TOPOLOGY[node].lan,
    '--kind',
    'port',
    '--run-dir',
    runDir('router'),
  ]);
  expect(r.code, r.stderr).toBe(0);
  await waitUntil(
    `${node} to lose its block and lease another`,
    () => lost() > lostBefore && leased() > leasedBefore,
    {
      timeoutMs: 30_000,
    },
  );
}

/** The router, on its default data path or the one `extra` names; a restart keeps its state and leases. */
async function startRouter(extra: string[] = []): Promise<Background> {
  const b = bed();
  router = b.spawn('router', [
    DISTNAT,
    'router',
    '--shared-address',
    TOPOLOGY.shared,
    '--lan-address',
    TOPOLOGY.router.lan,
    '--state-dir',
    join(b.scratchDir, 'router-state'),
    '--run-dir',
    runDir('router'),
    '--fresh',
    ...extra,
  ]);
  await router.waitForOutput(/router started/, { timeoutMs: 30_000 });
  return router;
}

beforeAll(async () => {
  const b = bed();
  await startRouter();
  await Promise.all([startAgent('h1'), startAgent('h2')]);
  http = await b.httpServer('server', { bind: TOPOLOGY.server.wan, files: { 'big.bin': BIG } });
  echo = await startUdpEcho(b, 'server', ECHO_PORT);
}, 120_000);

afterAll(async () => {
  await Promise.all(Object.values(agents).map((a) => a?.stop({ timeoutMs: 10_000 })));
  await router?.stop();
});

describe('distnat host with its eBPF fast path', () => {
  it('attaches the programs to the TUN egress and the LAN ingress, and says so', async () => {
    for (const node of ['h1', 'h2'] as const) {
      const s = await status(node);
      expect(String(s.summary['datapath'])).toMatch(/^eBPF \(tc on .* egress and .* ingress\) \+ TUN$/);
      expect(s.counters['fastpath.active']).toBe(1);
      const tc = await tcFilters(node);
      expect(tc).toMatch(/dn_host_out/);
      expect(tc).toMatch(/dn_host_in/);
      const attached = logLines(agents[node]!).filter((l) => l.message === 'eBPF data path attached');
      expect(attached).toHaveLength(1);
    }
  });

  describe.for(['h2', 'h1'] as const)('%s', (node) => {
    it(`${MODE[node]} mode: UDP through the shared address, the programs carry it and the agent reads next to nothing`, async () => {
      const before = await status(node);
      // Native: a port of the block, as the kernel would pick; translating: any port.
      const port = MODE[node] === 'native' ? hostPortBlocks(before)[0]!.first + 1 : 45001;
      const r = await send(node, port, 200, `${node}-udp`);
      expect(r.answered).toBeGreaterThanOrEqual(r.sent - 2);
      const after = await status(node);
      // Native: every datagram is from a leased port. Translating: the first makes the FIG. 11
      // row and its echo hands it over; the rest are the programs'.
      const first = MODE[node] === 'native' ? 0 : 1;
      expect(delta(before, after, 'fastpath.packets.outbound')).toBeGreaterThanOrEqual(r.sent - first);
      expect(delta(before, after, 'fastpath.packets.inbound')).toBeGreaterThanOrEqual(r.answered - first);
      expect(delta(before, after, 'io.tun.rxPackets')).toBeLessThan(r.sent / 10);
      expect(delta(before, after, 'io.tunnel-in.rxPackets')).toBeLessThan(r.sent / 10);
      // packets.* counts both paths.
      expect(delta(before, after, 'packets.outbound')).toBeGreaterThanOrEqual(r.sent);
      if (MODE[node] !== 'translate') return;
      // The row's idle timer counts what only the kernel carried: a second exchange a while
      // later, none of it seen by the agent, moves the row's FIG. 11 timestamp.
      const t0 = Date.now();
      await sleep(1200);
      const again = await send(node, port, 5, `${node}-later`);
      expect(again.answered).toBeGreaterThanOrEqual(4);
      const later = await status(node);
      expect(delta(after, later, 'io.tun.rxPackets')).toBe(0);
      const row = findTable(later, 'Source port translation table').rows.find(
        (x) => x[0] === port && x[2] === '17 (UDP)',
      );
      expect(Number(row?.[3])).toBeGreaterThanOrEqual(t0 + 1000);
    });

    it(`${MODE[node]} mode: a 3 MB download over TCP is intact and mostly carried by the programs`, async () => {
      const before = await status(node);
      expect(await fetchBig(node)).toBe(BIG_SHA);
      const after = await status(node);
      const fastIn = delta(before, after, 'fastpath.packets.inbound');
      const allIn = delta(before, after, 'packets.inbound');
      expect(allIn).toBeGreaterThan(2000);
      expect(fastIn / allIn).toBeGreaterThan(0.9);
      expect(
        delta(before, after, 'fastpath.packets.outbound') / delta(before, after, 'packets.outbound'),
      ).toBeGreaterThan(0.8);
      // What the agent read itself: the control segments and a flow's first packets.
      expect(delta(before, after, 'io.tunnel-in.rxPackets')).toBeLessThan(fastIn / 10);
      expect(after.counters['fastpath.error']).toBe(0);
      // The same counts in Prometheus, beside the agent's.
      const m = await bed().exec(node, ['curl', '-sS', `http://${METRICS}/metrics`]);
      expect(m.code, m.stderr).toBe(0);
      const value = (re: RegExp): number => Number(re.exec(m.stdout)?.[1] ?? NaN);
      expect(value(/^distnat_host_fastpath_packets_total\{event="inbound"\} (\d+)$/m)).toBeGreaterThanOrEqual(
        after.counters['fastpath.packets.inbound']!,
      );
      expect(value(/^distnat_host_packets_total\{event="inbound"\} (\d+)$/m)).toBeGreaterThanOrEqual(
        after.counters['packets.inbound']!,
      );
      expect(value(/^distnat_host_fastpath_active (\d+)$/m)).toBe(1);
    });
  });

  it('native mode: after a withdrawal the programs carry nothing from the old block', async () => {
    const s = await status('h2');
    const old = hostPortBlocks(s)[0]!;
    const port = old.first + 5;
    const warm = await send('h2', port, 20, 'before');
    expect(warm.answered).toBeGreaterThanOrEqual(18);
    await withdraw('h2');
    const seenBefore = echo.seen().length;
    const before = await status('h2');
    expect(hostPortBlocks(before).some((b) => b.first === old.first)).toBe(false);
    const r = await send('h2', port, 20, 'after');
    const after = await status('h2');
    expect(r.answered).toBe(0);
    expect(delta(before, after, 'fastpath.packets.outbound')).toBe(0);
    expect(delta(before, after, 'fastpath.pass.out.unleased')).toBe(r.sent);
    expect(delta(before, after, 'drop.outbound.unleased-port')).toBe(r.sent);
    expect(
      echo
        .seen()
        .slice(seenBefore)
        .filter((d) => d.port >= old.first && d.port <= old.last),
    ).toEqual([]);
  });

  it('translate mode: after a withdrawal the flow goes on from the new block, never from the old one', async () => {
    const s = await status('h1');
    const old = hostPortBlocks(s)[0]!;
    const local = 40123;
    const warm = await send('h1', local, 20, 'warm');
    expect(warm.answered).toBeGreaterThanOrEqual(18);
    const leased = echo
      .seen()
      .filter((d) => d.data.startsWith('warm '))
      .at(-1)!.port;
    expect(leased).toBeGreaterThanOrEqual(old.first);
    expect(leased).toBeLessThanOrEqual(old.last);
    await withdraw('h1');
    const seenBefore = echo.seen().length;
    const before = await status('h1');
    const r = await send('h1', local, 20, 'moved');
    const after = await status('h1');
    expect(r.answered).toBeGreaterThanOrEqual(18);
    const seen = echo.seen().slice(seenBefore);
    expect(seen.length).toBeGreaterThanOrEqual(r.answered);
    expect(seen.filter((d) => d.port >= old.first && d.port <= old.last)).toEqual([]);
    // The handed-over row was taken back: the first datagram after went to the agent.
    expect(delta(before, after, 'fastpath.pass.out.no-mapping')).toBeGreaterThanOrEqual(1);
    expect(delta(before, after, 'fastpath.packets.outbound')).toBeGreaterThanOrEqual(r.sent - 2);
  });

  it('SIGTERM leaves no tc filter behind', async () => {
    for (const node of ['h1', 'h2'] as const) {
      const exit = await agents[node]!.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
      expect(exit.code).toBe(0);
      expect(await tcFilters(node)).not.toMatch(/bpf|dn_host/);
    }
  });

  it('--datapath tun: the agent carries everything and no fast-path counter exists', async () => {
    const agent = await startAgent('h1', ['--datapath', 'tun']);
    expect(logLines(agent).some((l) => String(l.message).startsWith('eBPF'))).toBe(false);
    expect(await tcFilters('h1')).not.toMatch(/bpf|dn_host/);
    const before = await status('h1');
    expect(before.summary['datapath']).toBe('TUN (datapath: tun)');
    expect(Object.keys(before.counters).filter((k) => k.startsWith('fastpath.'))).toEqual([]);
    const r = await send('h1', 45003, 50, 'tun');
    expect(r.answered).toBeGreaterThanOrEqual(48);
    const after = await status('h1');
    expect(delta(before, after, 'io.tun.rxPackets')).toBeGreaterThanOrEqual(r.sent);
    expect(delta(before, after, 'packets.outbound')).toBeGreaterThanOrEqual(r.sent);
    const m = await bed().exec('h1', ['curl', '-sS', `http://${METRICS}/metrics`]);
    expect(m.stdout).toMatch(/^distnat_host_packets_total/m);
    expect(m.stdout).not.toMatch(/distnat_host_fastpath_/);
  });

  it('datapath: tun on the router and the agent (native mode): after a withdrawal nothing from the old block leaves', async () => {
    await router.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
    await startRouter(['--datapath', 'tun']);
    await startAgent('h2', ['--datapath', 'tun']);
    const r0 = await bed().exec('router', [
      DISTNAT,
      'status',
      'router',
      '--json',
      '--run-dir',
      runDir('router'),
    ]);
    const routerStatus = JSON.parse(r0.stdout) as DaemonStatus;
    expect(routerStatus.summary['data path']).toBe('TUN (datapath: tun)');
    expect(Object.keys(routerStatus.counters).filter((k) => k.startsWith('fastpath.'))).toEqual([]);
    const old = hostPortBlocks(await status('h2'))[0]!;
    const port = old.first + 5;
    const warm = await send('h2', port, 20, 'tun-before');
    expect(warm.answered).toBeGreaterThanOrEqual(18);
    await withdraw('h2');
    const seenBefore = echo.seen().length;
    const before = await status('h2');
    expect(before.summary['datapath']).toBe('TUN (datapath: tun)');
    expect(hostPortBlocks(before).some((b) => b.first === old.first)).toBe(false);
    const r = await send('h2', port, 20, 'tun-after');
    const after = await status('h2');
    expect(r.answered).toBe(0);
    expect(delta(before, after, 'drop.outbound.unleased-port')).toBe(r.sent);
    expect(Object.keys(after.counters).filter((k) => k.startsWith('fastpath.'))).toEqual([]);
    expect(
      echo
        .seen()
        .slice(seenBefore)
        .filter((d) => d.port >= old.first && d.port <= old.last),
    ).toEqual([]);
  });
});
