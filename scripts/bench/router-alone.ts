/**
 * bench:router — the router alone, eBPF fast path against kernel NAT, in
 * the testbed's topology without host agents (docs/ebpf.md). Root; makes
 * its own testbed `bn<pid>-` and always removes it.
 *
 *   npm run bench:router -- [--seconds 5] [--generators 2] [--size 64] [--hooks tc,xdp]
 *                           [--repeat 1] [--no-memory] [--no-flood] [--profile] [--profile-limit 2]
 *                           [--bpf-stats] [--json]
 *
 * Each case floods small UDP datagrams at the highest rate the generators
 * reach (lib/udp-flood.ts, one per core), one direction at a time, and
 * counts what leaves the router with nftables where it enters the next
 * interface (netdev ingress of the server's wan0, and of the LAN bridge's
 * port facing the router):
 *
 *   out, kernel NAT   h1 sends 10.0.0.1:P -> server; the router SNATs to 198.51.100.30
 *   out, eBPF         h1 sends ready-made IP-in-IP 10.0.0.1 -> 10.0.0.7 around
 *                     198.51.100.30:P -> server (P leased to h1 in the fast path's maps)
 *   in, kernel NAT    the server sends to 198.51.100.30:P; conntrack (primed by one datagram
 *                     from h1) DNATs it to 10.0.0.1:P
 *   in, eBPF          the server sends to 198.51.100.30:P; the fast path tunnels it to h1
 *   baselines         the same datagrams, dropped where they enter the router (nft netdev
 *                     ingress): what sending and the LAN or WAN cost without the router
 *
 * With veths everything a packet costs on its way runs in the softirq of the
 * system call that sent it, so the generators' CPU time per packet is the
 * whole path's cost; minus the baseline's it is the router's (and one veth
 * crossing with an nftables counter after it, the same in every case). With
 * --bpf-stats one more flood per direction measures the programs' own run
 * time (BPF statistics, which slow them down, so apart); --profile adds perf's top
 * symbols of the generators (where the whole path runs) per case. Memory: the fast path's maps
 * and the control plane with 64k ports and 1M SPIs leased, and the slow
 * path's tables with the same, each in a process of its own.
 */
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run, sleep } from '../../test/helpers/process.ts';
import { loadAverage, machineCpu, nftCounters } from './lib/counters.ts';
import { setUpNat, tearDownNat, SINK_PORT } from './lib/nft.ts';
import { count, fmt, pct, table } from './lib/report.ts';
import { BenchTestbed, ROOT, sweepStale, type Node } from './lib/testbed.ts';
import { TOPOLOGY } from '../lib/topology.ts';

const ADDR = {
  shared: TOPOLOGY.shared,
  routerLan: TOPOLOGY.router.lan,
  h1: TOPOLOGY.h1.lan,
  server: TOPOLOGY.server.wan,
  wanNet: TOPOLOGY.wanNet,
} as const;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    generators: { type: 'string', default: '2' },
    size: { type: 'string', default: '64' },
    hooks: { type: 'string', default: 'tc,xdp' },
    repeat: { type: 'string', default: '1' },
    'no-memory': { type: 'boolean', default: false },
    'no-flood': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'profile-limit': { type: 'string', default: '2' },
    'bpf-stats': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(values.seconds);
const GENERATORS = Number(values.generators);
const SIZE = Number(values.size);
const HOOKS = values.hooks
  .split(',')
  .map((h) => h.trim())
  .filter((h) => h === 'tc' || h === 'xdp');
const REPEAT = Math.max(1, Number(values.repeat));
const log = (line: string): void => console.error(line);

const bed = new BenchTestbed();
const FLOOD = join(ROOT, 'scripts', 'bench', 'lib', 'udp-flood.ts');
const AGENT = join(ROOT, 'test', 'netns', 'ebpf-agent.ts');
const PORT = 40000; // h1's block in the fast path starts here; NAT keeps the same ports
const FAR_SINK = 'bench_far_sink';
const ROUTER_DROP = 'bench_router_drop';

type Direction = 'out' | 'in';

interface CaseResult {
  name: string;
  direction: Direction;
  sent: number;
  delivered: number;
  seconds: number;
  deliveredPps: number;
  loss: number;
  /** Generators' CPU (user + system) per datagram sent: the whole path. */
  generatorNs: number;
  /** Busy CPU of the whole machine per datagram sent (other people's work included). */
  machineNs: number;
  /** The BPF programs' own run time per run, when they ran. */
  bpfNsPerRun?: number;
  bpfRuns?: number;
}

async function agentAsk<T>(socket: string, command: object): Promise<T> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    let text = '';
    c.on('data', (d) => (text += d.toString('utf8')));
    c.on('end', () => {
      try {
        const reply = JSON.parse(text) as T & { error?: string };
        if (reply.error !== undefined) reject(new Error(reply.error));
        else resolve(reply);
      } catch (e) {
        reject(new Error(`agent: ${text}: ${(e as Error).message}`));
      }
    });
    c.on('error', reject);
    c.write(`${JSON.stringify(command)}\n`);
  });
}

interface ProgramInfo {
  runTimeNs: number;
  runCount: number;
}

class Agent {
  readonly socket: string;
  private constructor(
    private readonly bg: ReturnType<BenchTestbed['spawn']>,
    socket: string,
  ) {
    this.socket = socket;
  }

  static async start(hook: 'tc' | 'xdp'): Promise<Agent> {
    const socket = join(bed.scratchDir, `agent-${hook}.sock`);
    const bg = bed.spawn('router', [
      process.execPath,
      '--expose-gc',
      '--import',
      'tsx',
      AGENT,
      '--socket',
      socket,
      '--shared',
      ADDR.shared,
      '--lan-address',
      ADDR.routerLan,
      '--hook',
      hook,
    ]);
    await bg.waitForOutput(/^ready$/m, { timeoutMs: 30_000 });
    return new Agent(bg, socket);
  }

  ask<T>(command: object): Promise<T> {
    return agentAsk<T>(this.socket, command);
  }

  async programs(): Promise<ProgramInfo[]> {
    return (await this.ask<{ programs: ProgramInfo[] }>({ cmd: 'programs' })).programs;
  }

  async stop(): Promise<void> {
    await this.ask({ cmd: 'close' }).catch(() => undefined);
    await this.bg.stop();
  }
}

const profiles: string[] = [];

/**
 * perf record of the generators for most of the flood, then their hottest
 * symbols by self time: with veths the whole path runs in their system calls.
 */
async function recordPerf(pids: number[], label: string): Promise<string> {
  const file = join(bed.scratchDir, `perf-${label.replace(/\W+/g, '_')}.data`);
  const rec = await run(
    [
      'perf',
      'record',
      '-q',
      '-o',
      file,
      '-p',
      pids.join(','),
      '--',
      'sleep',
      String(Math.max(1, SECONDS - 1)),
    ],
    { timeoutMs: (SECONDS + 30) * 1000 },
  );
  if (rec.code !== 0) return `${label}: perf record failed: ${rec.stderr.trim()}`;
  const rep = await run(
    [
      'perf',
      'report',
      '-i',
      file,
      '--no-children',
      '--sort',
      'sym',
      '--stdio',
      '--percent-limit',
      values['profile-limit'],
    ],
    { timeoutMs: 120_000 },
  );
  const rows = rep.stdout
    .split('\n')
    .map((l) => /^\s*([\d.]+)%\s+\[([k.])\]\s+(\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[3]} ${m[1]}%`);
  return `${label}: ${rows.join(', ')}`;
}

/** Starts the generators in `from`, releases them together, returns their reports. */
async function flood(
  from: Node,
  o: {
    src: string;
    dst: string;
    sport: number;
    dport: number;
    tunnel?: { src: string; dst: string };
    /** perf the generators under this label (--profile). */
    profile?: string;
  },
): Promise<{ sent: number; seconds: number; cpu: number; machineBusy: number }> {
  const gens = Array.from({ length: GENERATORS }, (_, i) =>
    bed.spawn(from, [
      process.execPath,
      '--import',
      'tsx',
      FLOOD,
      '--src',
      o.src,
      '--dst',
      o.dst,
      '--sport',
      String(o.sport + (o.dport === SINK_PORT ? i : 0)),
      '--dport',
      String(o.dport + (o.dport === SINK_PORT ? 0 : i)),
      '--size',
      String(SIZE),
      '--seconds',
      String(SECONDS),
      '--wait-signal',
      ...(o.tunnel ? ['--tunnel-src', o.tunnel.src, '--tunnel-dst', o.tunnel.dst] : []),
    ]),
  );
  await Promise.all(gens.map((g) => g.waitForOutput(/^ready$/m, { timeoutMs: 30_000 })));
  const m0 = machineCpu();
  for (const g of gens) process.kill(g.pid, 'SIGUSR1');
  const perf =
    o.profile === undefined
      ? undefined
      : recordPerf(
          gens.map((g) => g.pid),
          o.profile,
        );
  const reports = await Promise.all(
    gens.map(async (g) => {
      await g.exited;
      return JSON.parse(g.stdout().trim().split('\n').pop() ?? '{}') as {
        sent: number;
        seconds: number;
        cpuSeconds: number;
      };
    }),
  );
  const m1 = machineCpu();
  if (perf !== undefined) profiles.push(await perf);
  await sleep(200);
  return {
    sent: reports.reduce((a, r) => a + r.sent, 0),
    seconds: Math.max(...reports.map((r) => r.seconds)),
    cpu: reports.reduce((a, r) => a + r.cpuSeconds, 0),
    machineBusy: m1.busy - m0.busy,
  };
}

/** Datagrams that left the router, counted (and dropped) where they enter the next interface. */
async function outDelivered(): Promise<number> {
  return (await nftCounters(bed.ns('server'), 'netdev', FAR_SINK)).get('out') ?? 0;
}

async function inDelivered(): Promise<number> {
  const c = await nftCounters(bed.ns('lan'), 'netdev', FAR_SINK);
  return (c.get('tunnelled') ?? 0) + (c.get('natted') ?? 0);
}

async function routerDropped(): Promise<number> {
  return (await nftCounters(bed.ns('router'), 'netdev', ROUTER_DROP)).get('dropped') ?? 0;
}

/** nft netdev ingress drop on one of the router's interfaces: the baseline. */
async function dropAtRouter(iface: string | undefined): Promise<void> {
  await bed.try('router', ['nft', 'delete', 'table', 'netdev', ROUTER_DROP]);
  if (iface === undefined) return;
  const rules = [
    `table netdev ${ROUTER_DROP} {`,
    `  chain in { type filter hook ingress device "${iface}" priority -500; policy accept;`,
    `    meta l4proto { udp, 4 } counter drop comment "dropped"`,
    '  }',
    '}',
  ].join('\n');
  await bed.exec('router', ['nft', '-f', '-'], { input: rules });
}

async function measure(
  name: string,
  direction: Direction,
  delivered: () => Promise<number>,
  send: () => ReturnType<typeof flood>,
  agent?: Agent,
): Promise<CaseResult> {
  const d0 = await delivered();
  const p0 = agent ? await agent.programs() : [];
  const f = await send();
  const d1 = await delivered();
  const p1 = agent ? await agent.programs() : [];
  const runs = p1.reduce((a, p) => a + p.runCount, 0) - p0.reduce((a, p) => a + p.runCount, 0);
  const runNs = p1.reduce((a, p) => a + p.runTimeNs, 0) - p0.reduce((a, p) => a + p.runTimeNs, 0);
  const r: CaseResult = {
    name,
    direction,
    sent: f.sent,
    delivered: d1 - d0,
    seconds: f.seconds,
    deliveredPps: (d1 - d0) / f.seconds,
    loss: f.sent > 0 ? Math.max(0, 1 - (d1 - d0) / f.sent) : 0,
    generatorNs: (f.cpu / f.sent) * 1e9,
    machineNs: (f.machineBusy / f.sent) * 1e9,
    ...(agent && runs > 0 ? { bpfNsPerRun: runNs / runs, bpfRuns: runs } : {}),
  };
  log(
    `  ${direction} ${name}: ${count(r.deliveredPps)} pps delivered (loss ${pct(r.loss)}), generators ${fmt(r.generatorNs)} ns/pkt`,
  );
  return r;
}

const outbound = (tunnel: boolean, profile?: string) => () =>
  flood('h1', {
    src: tunnel ? ADDR.shared : ADDR.h1,
    dst: ADDR.server,
    sport: PORT,
    dport: SINK_PORT,
    ...(tunnel ? { tunnel: { src: ADDR.h1, dst: ADDR.routerLan } } : {}),
    ...(profile !== undefined && values.profile ? { profile } : {}),
  });
const inbound = (profile?: string) => () =>
  flood('server', {
    src: ADDR.server,
    dst: ADDR.shared,
    sport: SINK_PORT,
    dport: PORT,
    ...(profile !== undefined && values.profile ? { profile } : {}),
  });

/**
 * The sinks: on the first interface after the router (the server's wan0 out,
 * the LAN bridge's port facing the router in), at netdev ingress, so what is
 * measured past the router is one veth crossing, the same for every path.
 */
async function setUpFarSinks(): Promise<void> {
  const sink = async (node: Node, device: string, rules: string[]) => {
    await bed.try(node, ['nft', 'delete', 'table', 'netdev', FAR_SINK]);
    const text = [
      `table netdev ${FAR_SINK} {`,
      `  chain in { type filter hook ingress device "${device}" priority -500; policy accept;`,
      ...rules.map((r) => `    ${r}`),
      '  }',
      '}',
    ].join('\n');
    await bed.exec(node, ['nft', '-f', '-'], { input: text });
  };
  await sink('server', 'wan0', [`udp dport ${SINK_PORT} counter drop comment "out"`]);
  await sink('lan', 'router', [
    `ip protocol 4 ip saddr ${ADDR.routerLan} counter drop comment "tunnelled"`,
    `ip saddr ${ADDR.server} udp sport ${SINK_PORT} counter drop comment "natted"`,
  ]);
}

/** Makes the veths on the far side of an XDP redirect take XDP frames (NAPI via GRO). */
async function vethNapi(on: boolean): Promise<void> {
  const v = on ? 'on' : 'off';
  await bed.exec('server', ['ethtool', '-K', 'wan0', 'gro', v]);
  await bed.exec('lan', ['ethtool', '-K', 'router', 'gro', v]);
}

interface Memory {
  maps: Record<string, number>;
  mapsTotal: number;
  agentRssBefore: number;
  agentRssAfter: number;
  agentHeapBefore: number;
  agentHeapAfter: number;
  slowTablesRss: number;
  slowTablesHeap: number;
}

/** 64k ports and 1M SPIs leased: the fast path's maps and control plane, and the slow path's tables. */
async function memory(): Promise<Memory> {
  const agent = await Agent.start('tc');
  try {
    const before = await agent.ask<{ rssBytes: number; heapBytes: number }>({ cmd: 'info' });
    const hosts = 1000;
    const host = (i: number) => `10.1.${i >> 7}.${(i & 127) + 1}`;
    // 64512 ports (1024-65535) in blocks of 32, 1M SPIs (from 256) in blocks of 64.
    for (let b = 0; b < (65536 - 1024) / 32; b++)
      await agent.ask({ cmd: 'add', host: host(b % hosts), kind: 'port', lowest: 1024 + b * 32, count: 32 });
    for (let b = 0; b < (1 << 20) / 64; b++)
      await agent.ask({ cmd: 'add', host: host(b % hosts), kind: 'spi', lowest: 256 + b * 64, count: 64 });
    const after = await agent.ask<{
      rssBytes: number;
      heapBytes: number;
      memory: { byMap: Record<string, number>; total: number };
    }>({
      cmd: 'info',
    });
    const slow = await run(
      [
        process.execPath,
        '--expose-gc',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `
import { RouterTables } from '${ROOT}src/router/data-path/tables/router-tables.ts';
const t = new RouterTables();
const host = (i) => '10.1.' + (i >> 7) + '.' + ((i & 127) + 1);
for (let b = 0; b < 2016; b++) t.onLeaseAdded({ host: host(b % 1000), kind: 'port', lowest: 1024 + b * 32, count: 32 });
for (let b = 0; b < 16384; b++) t.onLeaseAdded({ host: host(b % 1000), kind: 'spi', lowest: 256 + b * 64, count: 64 });
globalThis.gc?.();
console.log(JSON.stringify({ rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers, spis: t.ownership.spiCount }));
`,
      ],
      { timeoutMs: 120_000, cwd: ROOT },
    );
    const s = JSON.parse(slow.stdout.trim().split('\n').pop() ?? '{}') as { rss: number; heap: number };
    return {
      maps: after.memory.byMap,
      mapsTotal: after.memory.total,
      agentRssBefore: before.rssBytes,
      agentRssAfter: after.rssBytes,
      agentHeapBefore: before.heapBytes,
      agentHeapAfter: after.heapBytes,
      slowTablesRss: s.rss,
      slowTablesHeap: s.heap,
    };
  } finally {
    await agent.stop();
  }
}

async function main(): Promise<void> {
  const swept = await sweepStale();
  if (swept.length > 0) log(`removed testbeds of killed benchmarks: ${swept.join(' ')}`);
  const loadBefore = loadAverage();
  log(`bench:router: testbed ${bed.prefix}, load average ${loadBefore}`);
  await bed.up({ daemons: false });
  await setUpFarSinks();
  // Kernel NAT's hosts route the WAN through the router by their own address.
  await bed.exec('h1', [
    'ip',
    'route',
    'replace',
    ADDR.wanNet,
    'via',
    ADDR.routerLan,
    'dev',
    'lan0',
    'src',
    ADDR.h1,
  ]);

  const results: CaseResult[] = [];
  for (let rep = 0; rep < (values['no-flood'] ? 0 : REPEAT); rep++) {
    log(`round ${rep + 1} of ${REPEAT}`);
    // Baselines: the router drops at its door.
    await dropAtRouter('lan0');
    results.push(
      await measure(
        'baseline, plain UDP (dropped at the router)',
        'out',
        routerDropped,
        outbound(false, `round ${rep + 1} out baseline plain`),
      ),
    );
    results.push(
      await measure(
        'baseline, IP-in-IP (dropped at the router)',
        'out',
        routerDropped,
        outbound(true, `round ${rep + 1} out baseline IP-in-IP`),
      ),
    );
    await dropAtRouter('wan0');
    results.push(
      await measure(
        'baseline (dropped at the router)',
        'in',
        routerDropped,
        inbound(`round ${rep + 1} in baseline`),
      ),
    );
    await dropAtRouter(undefined);

    // Kernel NAT.
    await setUpNat(bed);
    results.push(
      await measure('kernel NAT', 'out', outDelivered, outbound(false, `round ${rep + 1} out kernel NAT`)),
    );
    // Conntrack entries for the generators' ports, then the reverse flood.
    await bed.exec('h1', [
      'sh',
      '-c',
      Array.from(
        { length: GENERATORS },
        (_, i) =>
          `python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('${ADDR.h1}', ${PORT + i})); s.sendto(b'prime', ('${ADDR.server}', ${SINK_PORT}))"`,
      ).join('; '),
    ]);
    results.push(await measure('kernel NAT', 'in', inDelivered, inbound(`round ${rep + 1} in kernel NAT`)));
    await tearDownNat(bed);

    for (const hook of HOOKS as ('tc' | 'xdp')[]) {
      if (hook === 'xdp') await vethNapi(true);
      const agent = await Agent.start(hook);
      try {
        await agent.ask({ cmd: 'add', host: ADDR.h1, kind: 'port', first: PORT, count: 32 });
        results.push(
          await measure(
            `eBPF ${hook}`,
            'out',
            outDelivered,
            outbound(true, `round ${rep + 1} out eBPF ${hook}`),
          ),
        );
        results.push(
          await measure(`eBPF ${hook}`, 'in', inDelivered, inbound(`round ${rep + 1} in eBPF ${hook}`)),
        );
        if (values['bpf-stats']) {
          // The programs' own time: the kernel's statistics cost two clock reads per run,
          // so they are on only for these extra floods, not for the figures above.
          await agent.ask({ cmd: 'stats-on' });
          const label = `eBPF ${hook}, BPF statistics on`;
          results.push(await measure(label, 'out', outDelivered, outbound(true), agent));
          results.push(await measure(label, 'in', inDelivered, inbound(), agent));
        }
        const c = await agent.ask<{ counters: Record<string, number> }>({ cmd: 'counters' });
        const refused = Object.entries(c.counters).filter(
          ([k, v]) =>
            v > 0 && (k.startsWith('drop.') || (k.startsWith('fastpath.pass') && !k.endsWith('.other'))),
        );
        if (refused.length > 0)
          log(`  eBPF ${hook} refused or passed: ${refused.map(([k, v]) => `${k} ${v}`).join(', ')}`);
      } finally {
        await agent.stop();
        if (hook === 'xdp') await vethNapi(false);
      }
    }
  }
  const mem = values['no-memory'] ? undefined : await memory();
  const loadAfter = loadAverage();
  await bed.down();

  // Medians over rounds, per case.
  const names = [...new Set(results.map((r) => `${r.direction}|${r.name}`))];
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
  };
  const summary = names.map((key) => {
    const [direction, name] = key.split('|') as [Direction, string];
    const rs = results.filter((r) => r.direction === direction && r.name === name);
    const bpf = rs.map((r) => r.bpfNsPerRun).filter((x): x is number => x !== undefined);
    return {
      name,
      direction,
      deliveredPps: median(rs.map((r) => r.deliveredPps)),
      loss: median(rs.map((r) => r.loss)),
      generatorNs: median(rs.map((r) => r.generatorNs)),
      machineNs: median(rs.map((r) => r.machineNs)),
      bpfNsPerRun: bpf.length > 0 ? median(bpf) : undefined,
    };
  });
  const find = (direction: Direction, prefix: string) =>
    summary.find((s) => s.direction === direction && s.name.startsWith(prefix));
  const routerNs = (s: (typeof summary)[number] | undefined): number | undefined => {
    if (s === undefined) return undefined;
    const base =
      s.direction === 'in'
        ? find('in', 'baseline')
        : s.name.startsWith('kernel NAT')
          ? find('out', 'baseline, plain')
          : find('out', 'baseline, IP-in-IP');
    return base === undefined || s.name.startsWith('baseline') ? undefined : s.generatorNs - base.generatorNs;
  };

  if (values.json) {
    console.log(
      JSON.stringify({
        bench: 'router',
        date: new Date().toISOString(),
        load: [loadBefore, loadAfter],
        seconds: SECONDS,
        generators: GENERATORS,
        size: SIZE,
        repeat: REPEAT,
        results: summary.map((s) => ({ ...s, routerNs: routerNs(s) })),
        rounds: results,
        memory: mem,
      }),
    );
    return;
  }
  console.log(
    `\nbench:router  ${new Date().toISOString()}  load average ${loadBefore} -> ${loadAfter}\n` +
      `${GENERATORS} generators at the highest rate they reach, ${SIZE}-byte datagrams, ${SECONDS} s per case, ` +
      `median of ${REPEAT} round(s); veth offloads off\n`,
  );
  console.log(
    table(
      [
        'direction, path',
        'delivered pps',
        'loss',
        'path ns/pkt',
        'router ns/pkt',
        'BPF ns/run',
        'machine ns/pkt',
      ],
      summary.map((s) => [
        `${s.direction}, ${s.name}`,
        count(s.deliveredPps),
        pct(s.loss),
        fmt(s.generatorNs, 0),
        fmt(routerNs(s), 0),
        fmt(s.bpfNsPerRun, 0),
        fmt(s.machineNs, 0),
      ]),
    ),
  );
  console.log('\nratios, eBPF to kernel NAT:');
  for (const direction of ['out', 'in'] as const) {
    const nat = find(direction, 'kernel NAT');
    for (const hook of HOOKS) {
      const e = summary.find((s) => s.direction === direction && s.name === `eBPF ${hook}`);
      if (nat === undefined || e === undefined) continue;
      const cpu = (routerNs(e) ?? NaN) / (routerNs(nat) ?? NaN);
      console.log(
        `  ${direction} ${hook}: rate ${fmt(e.deliveredPps / nat.deliveredPps)} (goal >= 1.00: ${e.deliveredPps >= nat.deliveredPps ? 'met' : 'NOT met'}); ` +
          `router CPU per packet ${fmt(cpu)} (goal <= 0.50: ${cpu <= 0.5 ? 'met' : 'NOT met'})`,
      );
    }
  }
  if (profiles.length > 0) {
    console.log(`\nperf, the generators' hottest symbols by self time (>= ${values['profile-limit']}%):`);
    for (const p of profiles) console.log(`  ${p}`);
  }
  if (mem !== undefined) {
    const mb = (b: number) => `${fmt(b / 2 ** 20, 1)} MiB`;
    console.log(
      '\nmemory with 64,512 ports (2016 blocks of 32) and 1,048,576 SPIs (16384 blocks of 64) leased:',
    );
    console.log(
      `  BPF maps (kernel, fdinfo memlock): ${mb(mem.mapsTotal)}: ` +
        Object.entries(mem.maps)
          .map(([k, v]) => `${k} ${mb(v)}`)
          .join(', '),
    );
    console.log(
      `  fast path control plane (its own process): RSS ${mb(mem.agentRssBefore)} before the leases, ${mb(mem.agentRssAfter)} after; ` +
        `heap + buffers after a collection ${mb(mem.agentHeapBefore)} before, ${mb(mem.agentHeapAfter)} after`,
    );
    console.log(
      `  slow path tables (RouterTables, a process of their own): RSS ${mb(mem.slowTablesRss)}, heap + buffers ${mb(mem.slowTablesHeap)}`,
    );
  }
  console.log(
    "\npath ns/pkt: the generators' CPU time (user + system) per datagram sent; with veths the whole path runs in\n" +
      '  their system calls. router ns/pkt: path ns/pkt minus the baseline (the same datagrams dropped where they\n' +
      "  enter the router). BPF ns/run: the programs' own run time per run (kernel BPF statistics, which add\n" +
      '  two clock reads per run). machine ns/pkt: busy CPU of the whole machine per datagram, other work included.',
  );
}

try {
  await main();
} finally {
  await bed.down();
}
