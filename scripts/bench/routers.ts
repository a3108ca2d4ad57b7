/**
 * bench:routers — several routers on one shared address (docs/multi-router.md),
 * measured in the two-router testbed (`scripts/testbed --routers 2`: etcd
 * cluster of three, BGP to the server). Root; makes its own testbed
 * `bn<pid>-` and always removes it. `--help` says what each part does.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run, sleep, waitUntil, type Background } from '../../test/helpers/process.ts';
import { loadAverage } from './lib/counters.ts';
import { setUpSink, sinkCount, SINK_PORT } from './lib/nft.ts';
import { count, fmt, table } from './lib/report.ts';
import { BenchTestbed, ROOT, sweepStale, type AnyNode } from './lib/testbed.ts';
import { etcdArgs, hostArgs, routerArgs, routerLan } from '../lib/testbed/process-table.ts';
import { PYTHON } from '../lib/testbed/layout.ts';
import { TOPOLOGY, type HostNode, type RouterNode } from '../lib/topology.ts';

const HELP = `npm run bench:routers -- [options]

Measures, in one run, on a two-router testbed of its own (etcd cluster of
three members, BGP from both routers to the server):

  grants    PAP lease grants per second and their latency (p50, p99): the
            same simulated PAP clients (--clients LAN hosts, each sending
            --requests port requests one after the other) against
              - one router on its local journal (no etcd),
              - one router on the etcd cluster,
              - two routers on the etcd cluster (half the clients each);
            ratios to the journal.
  failover  the traffic gap when the router a host sends through is
            SIGKILLed: h1 lists both routers and runs a UDP echo stream
            (--udp-rate datagrams/s) and a TCP download the server paces
            (--tcp-rate, --file-mb); the
            router it sends through is killed once the download is a fifth
            done, and started again after the round (so the next round
            kills the other one). --rounds kills; each printed, and the median.
  traffic   small-packet rate and TCP throughput from both hosts at once,
            through two routers (h1 via router 1, h2 via router 2, the
            server's ECMP spreading replies over both) and through one
            (router 2 stopped, h2 moved to router 1): a flood of
            --size-byte UDP datagrams (--generators per host, --seconds)
            counted at the server, then iperf3 up and down from both
            hosts at once (--streams each); ratios two routers / one.
            The testbed's server hashes flows over its next hops by ports
            too (fib_multipath_hash_policy 1): by addresses alone every
            reply to the shared address would take the same router.

Options:
  --parts LIST        grants,failover,traffic (default: all three)
  --clients N         simulated PAP clients (LAN hosts)          default 20
  --requests N        port requests per client                   default 20
  --count N           ports per request                          default 8
  --rounds N          router kills in failover                   default 5
  --udp-rate N        UDP echo datagrams per second              default 200
  --tcp-rate RATE     the server's pace of the download (k, m)   default 800k
  --file-mb N         size of the download, MB                   default 6
  --seconds N         length of each flood and iperf3 run        default 5
  --generators N      flood generators per host                  default 1
  --streams N         parallel TCP streams per host (iperf3 -P)  default 4
  --size N            IPv4 datagram size of the flood            default 64
  --datapath tun|ebpf the routers' data path                     default tun
  --json              one JSON object instead of the tables
  --help              this text

The table goes to standard output, progress to standard error.`;

function usageError(message: string): never {
  console.error(`bench:routers: ${message} (--help lists the options)`);
  process.exit(64);
}

function parseOptions() {
  try {
    return parseArgs({
      options: {
        parts: { type: 'string', default: 'grants,failover,traffic' },
        clients: { type: 'string', default: '20' },
        requests: { type: 'string', default: '20' },
        count: { type: 'string', default: '8' },
        rounds: { type: 'string', default: '5' },
        'udp-rate': { type: 'string', default: '200' },
        'tcp-rate': { type: 'string', default: '800k' },
        'file-mb': { type: 'string', default: '6' },
        seconds: { type: 'string', default: '5' },
        generators: { type: 'string', default: '1' },
        streams: { type: 'string', default: '4' },
        size: { type: 'string', default: '64' },
        datapath: { type: 'string', default: 'tun' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (e) {
    usageError((e as Error).message);
  }
}
const values = parseOptions();
if (values.help) {
  console.log(HELP);
  process.exit(0);
}

function positive(name: string, text: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) usageError(`--${name} ${text}: a whole number, 1 to ${max}`);
  return n;
}
const PARTS = new Set(values.parts.split(',').map((p) => p.trim()));
for (const p of PARTS)
  if (!['grants', 'failover', 'traffic'].includes(p))
    usageError(`--parts: ${p} is not one of grants, failover, traffic`);
// The clients' addresses are 10.0.0.100 and up, clear of the testbed's own.
const CLIENTS = positive('clients', values.clients, 150);
const REQUESTS = positive('requests', values.requests, 10_000);
const COUNT = positive('count', values.count, 255);
const ROUNDS = positive('rounds', values.rounds, 100);
const UDP_RATE = positive('udp-rate', values['udp-rate'], 5000);
const FILE_BYTES = positive('file-mb', values['file-mb'], 1000) * 1_000_000;
const SECONDS = positive('seconds', values.seconds, 600);
const GENERATORS = positive('generators', values.generators, 8);
const STREAMS = positive('streams', values.streams, 32);
const SIZE = positive('size', values.size, 1472);
if (values.datapath !== 'tun' && values.datapath !== 'ebpf') usageError('--datapath: tun or ebpf');
const DATAPATH = values.datapath;
const TCP_RATE_BYTES = rateBytes(values['tcp-rate']);

const log = (line: string): void => console.error(line);
const bed = new BenchTestbed();
const DISTNAT = join(ROOT, 'bin', 'distnat');
const PAP_LOAD = join(ROOT, 'scripts', 'bench', 'lib', 'pap-load.ts');
const UDP_STREAM = join(ROOT, 'scripts', 'bench', 'lib', 'udp-stream.py');
const FLOOD = join(ROOT, 'scripts', 'bench', 'lib', 'udp-flood.ts');
const R1 = routerLan('router');
const R2 = routerLan('router2');
const NODE_OF: Record<string, RouterNode> = { [R1]: 'router', [R2]: 'router2' };
const ECHO_PORT = 40007;
const IPERF_PORTS: Record<HostNode, number> = { h1: 5201, h2: 5202 };

/** args with the value after `flag` replaced (or flag and value added). */
function setArg(args: readonly string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  return i < 0 ? [...args, flag, value] : [...args.slice(0, i + 1), value, ...args.slice(i + 2)];
}

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function median(xs: readonly number[]): number | undefined {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1]! + s[m]!) / 2;
}

async function uptime(): Promise<string> {
  return (await run(['uptime'])).stdout.trim();
}

// ---------------------------------------------------------------- daemons

const running = new Map<string, Background>();

async function startRouter(
  node: RouterNode,
  {
    etcd = true,
    extra = [] as string[],
    stateDir,
  }: { etcd?: boolean; extra?: string[]; stateDir?: string } = {},
): Promise<Background> {
  let args = routerArgs(bed.layout, ['--datapath', DATAPATH, ...(etcd ? etcdArgs() : []), ...extra], node);
  if (stateDir !== undefined) args = setArg(args, '--state-dir', stateDir);
  const r = bed.spawn(node, [DISTNAT, ...args]);
  running.set(node, r);
  await r.waitForOutput(/router started/, { timeoutMs: 30_000 });
  return r;
}

async function startHost(host: HostNode, routers: readonly string[]): Promise<Background> {
  const args = setArg(hostArgs(bed.layout, host, ['--routers', routers.join(',')]), '--router', routers[0]!);
  const h = bed.spawn(host, [DISTNAT, ...args]);
  running.set(host, h);
  await h.waitForOutput(/leased ports \d+-\d+/, { timeoutMs: 30_000 });
  return h;
}

async function stop(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const p = running.get(name);
  running.delete(name);
  await p?.stop({ signal, timeoutMs: 10_000 });
}

async function stopAll(): Promise<void> {
  for (const name of ['h1', 'h2', 'router', 'router2']) await stop(name);
}

interface Status {
  summary: Record<string, unknown>;
  counters: Record<string, number>;
}

async function status(role: 'router' | 'host', node: AnyNode): Promise<Status> {
  const r = await run([DISTNAT, 'status', role, '--run-dir', bed.layout.nodeDir(node), '--json'], {
    timeoutMs: 20_000,
  });
  if (r.code !== 0) throw new Error(`distnat status ${role} (${node}): ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout) as Status;
}

/** The routers the server's route to the shared address goes through (BGP, ECMP). */
async function nextHops(): Promise<string[]> {
  const out = await bed.exec('server', ['ip', 'route', 'show', `${TOPOLOGY.shared}/32`]);
  return [...out.matchAll(/via (\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!).sort();
}

async function waitForNextHops(n: number): Promise<void> {
  await waitUntil(
    `${n} next hop(s) for ${TOPOLOGY.shared} at the server`,
    async () => (await nextHops()).length === n,
    {
      timeoutMs: 30_000,
      intervalMs: 100,
    },
  );
}

async function waitForRouter(host: HostNode, router: string): Promise<void> {
  await waitUntil(
    `${host} to send through ${router}`,
    async () => (await status('host', host)).summary['router'] === router,
    {
      timeoutMs: 30_000,
      intervalMs: 250,
    },
  );
}

// ----------------------------------------------------------------- grants

interface GrantResult {
  path: string;
  grants: number;
  requests: number;
  lost: number;
  failures: Record<string, number>;
  seconds: number;
  perSecond: number;
  p50Ms: number | undefined;
  p99Ms: number | undefined;
  /** etcd transactions whose compare failed (another router's grant in the range), both routers together. */
  conflicts?: number;
}

const CLIENT_ADDRESSES = Array.from({ length: CLIENTS }, (_, i) => `10.0.0.${100 + i}`);

async function papLoad(path: string, routers: readonly string[]): Promise<GrantResult> {
  const r = await bed.try(
    'lan',
    [
      process.execPath,
      '--import',
      'tsx',
      PAP_LOAD,
      '--hosts',
      CLIENT_ADDRESSES.join(','),
      '--routers',
      routers.join(','),
      '--requests',
      String(REQUESTS),
      '--count',
      String(COUNT),
    ],
    { timeoutMs: 600_000, cwd: ROOT },
  );
  if (r.code !== 0) throw new Error(`PAP clients (${path}): ${r.stderr || r.stdout}`);
  const o = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as {
    grants: number;
    failures: Record<string, number>;
    lost: number;
    latenciesMs: number[];
    seconds: number;
    requests: number;
  };
  const sorted = o.latenciesMs.sort((a, b) => a - b);
  const result = {
    path,
    grants: o.grants,
    requests: o.requests,
    lost: o.lost,
    failures: o.failures,
    seconds: o.seconds,
    perSecond: o.grants / o.seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
  log(`    ${o.grants}/${o.requests} granted in ${fmt(o.seconds)} s: ${fmt(result.perSecond)}/s`);
  return result;
}

/** The result with the routers' count of failed compares (docs/multi-router.md, "Grant"). */
async function withConflicts(r: GrantResult, routers: readonly RouterNode[]): Promise<GrantResult> {
  let conflicts = 0;
  for (const node of routers)
    conflicts += (await status('router', node)).counters['leases.etcd_conflicts'] ?? 0;
  return { ...r, conflicts };
}

async function measureGrants(): Promise<GrantResult[]> {
  log('grants: simulated PAP clients on the LAN');
  for (const a of CLIENT_ADDRESSES)
    await bed.exec('lan', ['ip', 'addr', 'replace', `${a}/${TOPOLOGY.lanPrefixLen}`, 'dev', TOPOLOGY.bridge]);
  const results: GrantResult[] = [];

  // The journal: router 1 alone with a state directory of its own, no etcd.
  log('  one router, local journal');
  const journalDir = join(bed.scratchDir, 'journal-state');
  rmSync(journalDir, { recursive: true, force: true });
  await startRouter('router', { etcd: false, stateDir: journalDir });
  results.push(await papLoad('one router, local journal', [R1]));
  await stop('router');

  // etcd: a prefix of each case's own, so each starts on an empty table as the journal does.
  log('  one router, etcd');
  await startRouter('router', { extra: ['--etcd-prefix', '/bench-one/'] });
  results.push(await withConflicts(await papLoad('one router, etcd (3 members)', [R1]), ['router']));
  await stop('router');

  log('  two routers, etcd');
  await Promise.all([
    startRouter('router', { extra: ['--etcd-prefix', '/bench-two/'] }),
    startRouter('router2', { extra: ['--etcd-prefix', '/bench-two/'] }),
  ]);
  results.push(
    await withConflicts(await papLoad('two routers, etcd (3 members)', [R1, R2]), ['router', 'router2']),
  );
  await stopAll();
  return results;
}

// --------------------------------------------------------------- failover

interface Round {
  round: number;
  killed: string;
  movedTo: string;
  udpGapMs: number | undefined;
  udpLost: number;
  udpSent: number;
  tcpGapMs: number;
  intact: boolean;
}

async function measureFailover(): Promise<Round[]> {
  log(`failover: ${ROUNDS} SIGKILLs of the router h1 sends through`);
  await Promise.all([startRouter('router'), startRouter('router2')]);
  await waitForNextHops(2);
  await startHost('h1', [R1, R2]);
  const body = Buffer.alloc(FILE_BYTES);
  for (let i = 0; i < body.length; i++) body[i] = (i * 2654435761) >>> 24;
  const sha = createHash('sha256').update(body).digest('hex');
  // Paced by the server's writes, not by curl's reads: a client-side limit
  // leaves most of the file in the host's receive buffer, which then drains
  // through the kill and hides the gap (bytesPerSecond in test/helpers/servers.ts).
  const http = await bed.testbed.httpServer('server', {
    bind: TOPOLOGY.server.wan,
    files: { 'f.bin': body },
    bytesPerSecond: TCP_RATE_BYTES,
  });
  const echo = bed.spawn('server', [PYTHON, UDP_STREAM, 'echo', String(ECHO_PORT)]);
  await echo.waitForOutput(/ready/, { timeoutMs: 10_000 });

  const rounds: Round[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const from = String((await status('host', 'h1')).summary['router']);
    const victim = NODE_OF[from];
    if (victim === undefined) throw new Error(`h1 sends through ${from}, not a router of the testbed`);
    const file = join(bed.scratchDir, `f${round}.bin`);
    const size = (): number => {
      try {
        return statSync(file).size;
      } catch {
        return 0;
      }
    };
    // Long enough for the download before the kill, the gap and the rest of it.
    const udpSeconds = Math.ceil((FILE_BYTES / TCP_RATE_BYTES) * 1.2) + 10;
    const udp = bed.try(
      'h1',
      [
        PYTHON,
        UDP_STREAM,
        'send',
        TOPOLOGY.server.wan,
        String(ECHO_PORT),
        String(UDP_RATE),
        String(udpSeconds),
      ],
      {
        timeoutMs: (udpSeconds + 30) * 1000,
      },
    );
    const download = bed.try(
      'h1',
      [
        'curl',
        '-sS',
        '--max-time',
        String(udpSeconds + 20),
        '-o',
        file,
        http.url(TOPOLOGY.server.wan, 'f.bin'),
      ],
      { timeoutMs: (udpSeconds + 40) * 1000 },
    );
    let done = false;
    let killedAt = 0;
    let killedAtWall = 0;
    let lastGrowth = 0;
    let lastSize = 0;
    let tcpGapMs = 0;
    const watch = (async () => {
      while (!done) {
        const now = performance.now();
        const s = size();
        if (s !== lastSize) {
          if (killedAt > 0) tcpGapMs = Math.max(tcpGapMs, now - Math.max(lastGrowth, killedAt));
          lastSize = s;
          lastGrowth = now;
        }
        await sleep(10);
      }
    })();
    await waitUntil('a fifth of the download', () => size() > FILE_BYTES / 5, {
      timeoutMs: 60_000,
      intervalMs: 20,
    });
    killedAt = performance.now();
    killedAtWall = Date.now() / 1000;
    await stop(victim, 'SIGKILL');
    const got = await download;
    done = true;
    await watch;
    const u = await udp;
    if (u.code !== 0) throw new Error(`UDP stream: ${u.stderr || u.stdout}`);
    const stream = JSON.parse(u.stdout.trim().split('\n').pop() ?? '') as {
      sent: number;
      echoes: [number, number][];
    };
    const times = stream.echoes.map((e) => e[1]).sort((a, b) => a - b);
    let udpGap: number | undefined;
    let previous = killedAtWall;
    for (const t of times) {
      if (t < killedAtWall) continue;
      udpGap = Math.max(udpGap ?? 0, (t - previous) * 1000);
      previous = t;
    }
    const intact = got.code === 0 && createHash('sha256').update(readFileSync(file)).digest('hex') === sha;
    rmSync(file, { force: true });
    const movedTo = String((await status('host', 'h1')).summary['router']);
    const r: Round = {
      round,
      killed: from,
      movedTo,
      udpGapMs: udpGap,
      udpLost: stream.sent - new Set(stream.echoes.map((e) => e[0])).size,
      udpSent: stream.sent,
      tcpGapMs,
      intact,
    };
    rounds.push(r);
    log(
      `  round ${round}: killed ${from}, h1 now on ${movedTo}: UDP gap ${count(udpGap)} ms (${r.udpLost} of ${r.udpSent} lost), ` +
        `TCP gap ${count(tcpGapMs)} ms, download ${intact ? 'intact' : 'NOT intact'}`,
    );
    // Bring the killed router back before the next round kills the other.
    await startRouter(victim);
    await waitForNextHops(2);
  }
  await echo.stop();
  await http.stop();
  await stopAll();
  return rounds;
}

/** A rate as curl writes one (k, m, g: powers of 1024), in bytes per second. */
function rateBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(text.trim());
  if (m === null) usageError(`--tcp-rate ${text}: a number with k, m or g`);
  return Number(m[1]) * 1024 ** ['', 'k', 'm', 'g'].indexOf(m[2]!.toLowerCase());
}

// ---------------------------------------------------------------- traffic

interface TrafficResult {
  path: string;
  sent: number;
  delivered: number;
  deliveredPps: number;
  tcpUpGbps: number;
  tcpDownGbps: number;
  /** Packets each router forwarded during the phase, by its own counters: out to the WAN, in to the hosts. */
  perRouter: Record<string, { out: number; in: number }>;
}

const HOSTS: readonly HostNode[] = ['h1', 'h2'];

async function flood(): Promise<{ sent: number; delivered: number; seconds: number }> {
  const generators = HOSTS.flatMap((h, hi) =>
    Array.from({ length: GENERATORS }, (_, gi) =>
      bed.spawn(h, [
        process.execPath,
        '--import',
        'tsx',
        FLOOD,
        '--src',
        TOPOLOGY.shared,
        '--dst',
        TOPOLOGY.server.wan,
        '--sport',
        String(40000 + hi * 100 + gi),
        '--dport',
        String(SINK_PORT),
        '--size',
        String(SIZE),
        '--seconds',
        String(SECONDS),
        '--pps',
        '0',
        '--wait-signal',
      ]),
    ),
  );
  await Promise.all(generators.map((g) => g.waitForOutput(/^ready$/m, { timeoutMs: 30_000 })));
  const before = await sinkCount(bed);
  for (const g of generators) process.kill(g.pid, 'SIGUSR1');
  const results = await Promise.all(
    generators.map(async (g) => {
      await g.waitForOutput(/^\{.*\}$/m, { timeoutMs: (SECONDS + 30) * 1000 });
      await g.exited;
      return JSON.parse(g.stdout().trim().split('\n').pop() ?? '') as { sent: number; seconds: number };
    }),
  );
  await sleep(300);
  return {
    sent: results.reduce((a, r) => a + r.sent, 0),
    delivered: (await sinkCount(bed)) - before,
    seconds: Math.max(...results.map((r) => r.seconds)),
  };
}

/** iperf3 from each host at once (-R: to each), STREAMS streams each; the sum. */
async function tcpBoth(reverse: boolean): Promise<number> {
  const gbps = await Promise.all(
    HOSTS.map(async (h) => {
      const argv = [
        'iperf3',
        '-c',
        TOPOLOGY.server.wan,
        '-p',
        String(IPERF_PORTS[h]),
        '-t',
        String(SECONDS),
        '-P',
        String(STREAMS),
        '--json',
      ];
      if (reverse) argv.push('-R');
      const r = await bed.try(h, argv, { timeoutMs: (SECONDS + 30) * 1000 });
      const json = JSON.parse(r.stdout || '{}') as {
        error?: string;
        end?: { sum_received?: { bits_per_second: number } };
      };
      if (json.end?.sum_received === undefined)
        throw new Error(`iperf3 from ${h}: ${json.error ?? (r.stderr || 'no result')}`);
      return json.end.sum_received.bits_per_second / 1e9;
    }),
  );
  return gbps.reduce((a, b) => a + b, 0);
}

async function routerPackets(node: RouterNode): Promise<{ out: number; in: number }> {
  const c = (await status('router', node)).counters;
  return { out: c['traffic.outbound-packets'] ?? 0, in: c['traffic.inbound-packets'] ?? 0 };
}

async function measurePhase(path: string, routers: readonly RouterNode[]): Promise<TrafficResult> {
  log(`  ${path}`);
  const before = await Promise.all(routers.map(routerPackets));
  const f = await flood();
  const up = await tcpBoth(false);
  const down = await tcpBoth(true);
  const after = await Promise.all(routers.map(routerPackets));
  const perRouter: Record<string, { out: number; in: number }> = {};
  routers.forEach((r, i) => {
    perRouter[r] = { out: after[i]!.out - before[i]!.out, in: after[i]!.in - before[i]!.in };
  });
  const result = {
    path,
    sent: f.sent,
    delivered: f.delivered,
    deliveredPps: f.delivered / f.seconds,
    tcpUpGbps: up,
    tcpDownGbps: down,
    perRouter,
  };
  log(`    ${count(result.deliveredPps)} pps delivered; TCP up ${fmt(up)} Gbit/s, down ${fmt(down)} Gbit/s`);
  return result;
}

async function measureTraffic(): Promise<TrafficResult[]> {
  log('traffic: both hosts at once');
  await setUpSink(bed);
  for (const h of HOSTS) await bed.testbed.iperf3Server('server', { port: IPERF_PORTS[h] });
  await Promise.all([startRouter('router'), startRouter('router2')]);
  await waitForNextHops(2);
  await Promise.all([startHost('h1', [R1, R2]), startHost('h2', [R2, R1])]);
  const two = await measurePhase('two routers (h1 via router 1, h2 via router 2)', ['router', 'router2']);
  // Router 2 gone: BGP withdraws it at once, h2 moves to router 1 once router 2 stays silent.
  await stop('router2');
  await waitForNextHops(1);
  await waitForRouter('h2', R1);
  const one = await measurePhase('one router (both hosts via router 1)', ['router']);
  await stopAll();
  return [two, one];
}

// ------------------------------------------------------------------- main

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:routers needs root (network namespaces)');
  const swept = await sweepStale();
  if (swept.length > 0) log(`removed testbeds of killed benchmarks: ${swept.join(' ')}`);
  const uptimeBefore = await uptime();
  const loadBefore = loadAverage();
  log(`bench:routers: testbed ${bed.prefix} (two routers, etcd, BGP); ${uptimeBefore}`);
  await bed.up({ routers: 2, daemons: false });
  const grants = PARTS.has('grants') ? await measureGrants() : [];
  const traffic = PARTS.has('traffic') ? await measureTraffic() : [];
  const rounds = PARTS.has('failover') ? await measureFailover() : [];
  const uptimeAfter = await uptime();
  const loadAfter = loadAverage();
  await bed.down();

  const journal = grants[0];
  const udpMedian = median(rounds.flatMap((r) => (r.udpGapMs === undefined ? [] : [r.udpGapMs])));
  const tcpMedian = median(rounds.map((r) => r.tcpGapMs));
  const [two, one] = traffic;
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b;

  if (values.json) {
    console.log(
      JSON.stringify({
        bench: 'routers',
        testbed: bed.prefix,
        date: new Date().toISOString(),
        load: [loadBefore, loadAfter],
        uptime: [uptimeBefore, uptimeAfter],
        datapath: DATAPATH,
        grants: grants.map((g) => ({ ...g, ratioToJournal: ratio(g.perSecond, journal?.perSecond) })),
        failover: { rounds, udpGapMedianMs: udpMedian, tcpGapMedianMs: tcpMedian },
        traffic: {
          results: traffic,
          ratios:
            two === undefined || one === undefined
              ? undefined
              : {
                  smallPackets: ratio(two.deliveredPps, one.deliveredPps),
                  tcpUp: ratio(two.tcpUpGbps, one.tcpUpGbps),
                  tcpDown: ratio(two.tcpDownGbps, one.tcpDownGbps),
                },
        },
      }),
    );
    return;
  }
  console.log(
    `\nbench:routers  ${new Date().toISOString()}  routers' data path ${DATAPATH}\n` +
      `before: ${uptimeBefore}\nafter:  ${uptimeAfter}`,
  );
  if (grants.length > 0) {
    console.log(
      `\nlease grants: ${CLIENTS} PAP clients, ${REQUESTS} requests of ${COUNT} ports each, one after the other\n`,
    );
    console.log(
      table(
        [
          'path',
          'granted',
          'not granted',
          'lost',
          'seconds',
          'grants/s',
          'p50 ms',
          'p99 ms',
          'vs journal',
          'etcd conflicts',
        ],
        grants.map((g) => [
          g.path,
          count(g.grants),
          count(Object.values(g.failures).reduce((a, b) => a + b, 0)),
          count(g.lost),
          g.seconds,
          g.perSecond,
          g.p50Ms,
          g.p99Ms,
          fmt(ratio(g.perSecond, journal?.perSecond)),
          count(g.conflicts),
        ]),
      ),
    );
  }
  if (traffic.length > 0 && two !== undefined && one !== undefined) {
    console.log(
      `\nthrough two routers against one: both hosts at once; ${GENERATORS} generator(s) per host unpaced, ${SIZE}-byte datagrams, ${SECONDS} s; ${STREAMS} iperf3 stream(s) per host; the server's ECMP hashes addresses and ports\n`,
    );
    console.log(
      table(
        ['path', 'sent', 'delivered pps', 'TCP up Gbit/s', 'TCP down Gbit/s', 'packets per router'],
        traffic.map((t) => [
          t.path,
          count(t.sent),
          count(t.deliveredPps),
          t.tcpUpGbps,
          t.tcpDownGbps,
          Object.entries(t.perRouter)
            .map(([r, n]) => `${r} ${count(n.out)} out, ${count(n.in)} in`)
            .join('; '),
        ]),
      ),
    );
    console.log(
      `\ntwo routers / one: small packets ${fmt(ratio(two.deliveredPps, one.deliveredPps))}, ` +
        `TCP up ${fmt(ratio(two.tcpUpGbps, one.tcpUpGbps))}, TCP down ${fmt(ratio(two.tcpDownGbps, one.tcpDownGbps))}`,
    );
  }
  if (rounds.length > 0) {
    console.log(
      `\ntraffic gap at failover: SIGKILL of the router h1 sends through; UDP echo ${UDP_RATE}/s, ` +
        `TCP download ${values['tcp-rate']}B/s of ${FILE_BYTES / 1e6} MB\n`,
    );
    console.log(
      table(
        ['round', 'killed', 'moved to', 'UDP gap ms', 'UDP lost', 'TCP gap ms', 'download'],
        rounds.map((r) => [
          String(r.round),
          r.killed,
          r.movedTo,
          count(r.udpGapMs),
          `${r.udpLost}/${r.udpSent}`,
          count(r.tcpGapMs),
          r.intact ? 'intact' : 'NOT intact',
        ]),
      ),
    );
    console.log(`\nmedian gap: UDP ${count(udpMedian)} ms, TCP ${count(tcpMedian)} ms`);
  }
}

try {
  await main();
} finally {
  await bed.down();
}
