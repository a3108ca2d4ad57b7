/**
 * bench:dnat — distributed NAT end to end against kernel NAT, in the
 * testbed's topology (docs/benchmarks.md). Root; makes its own testbed
 * `bn<pid>-` with `distnat router`, h1's agent translating ports and h2's in
 * native mode, and always removes it.
 *
 *   npm run bench:dnat -- [--seconds 5] [--generators 2] [--loads max,200k,100k] [--size 64]
 *                         [--tun-txqueuelen N] [--tun-offload on|off] [--veth-offload off|on]
 *                         [--wan-gro off|on] [--no-native] [--native]
 *                         [--datapaths tun:1,tun:2,ebpf] [--datapath ebpf|tun [--workers N]]
 *                         [--bridge-netfilter] [--profile 100k] [--json]
 *
 * The router's data paths, each measured in turn in the same run (the router
 * restarted between them, the agents and their leases kept): `tun:N` is the
 * TUN path alone on N forwarding workers (N > 1 on a multi-queue TUN), `ebpf`
 * the eBPF fast path (`ebpf:N`: its slow path on N workers). Default: tun:1,
 * tun:2 and ebpf; `--datapath X --workers N` measures X:N alone. With more
 * than one data path only h1 (translate) is measured unless --native.
 *
 * Paths, all from a host to the server:
 *   kernel NAT         h1 routes the server's network via the router (10.0.0.1 as source);
 *                      the router SNATs to 198.51.100.30 (nftables)
 *   distnat translate  h1 through its agent (port translation) and the router
 *   distnat native     h2 through its agent (native mode: the kernel's ephemeral ports are
 *                      the leased block; the generators send from ports of that block)
 * Each: small UDP datagrams at each offered load (delivered pps at the server's nftables
 * sink, loss), one TCP stream up and one down (iperf3), and for distnat the CPU time of the
 * router and of the host agent per packet: /proc/<pid>/stat deltas divided by the packets
 * each forwarded by its own counters (`distnat status ... --json`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run, sleep, waitUntil } from '../../test/helpers/process.ts';
import { loadAverage } from './lib/counters.ts';
import { iperf3Server, type Observed, type Watch } from './lib/measure.ts';
import { setUpNat, setUpSink, tearDownNat } from './lib/nft.ts';
import { count, fmt, pct, ratioLine } from './lib/report.ts';
import {
  cpuPerPacket,
  loadTable,
  mainTable,
  measurePath,
  profileFlood,
  senderCpu,
  whereTimeGoes,
  type Forwarder,
  type PathResult,
} from './lib/suite.ts';
import { COMMON_OPTIONS, commonSettings } from './lib/options.ts';
import { perfAvailable } from './lib/profile.ts';
import { distnatCommand, hostArgs, multiQueueSetupArgs, routerArgs } from '../lib/testbed/process-table.ts';
import { TOPOLOGY } from '../lib/topology.ts';
import { BenchTestbed, renice, ROOT, sweepStale, type Node } from './lib/testbed.ts';

const { values } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    'no-native': { type: 'boolean', default: false },
    'tun-offload': { type: 'string', default: 'on' },
    'veth-offload': { type: 'string', default: 'off' },
    'wan-gro': { type: 'string', default: 'off' },
    native: { type: 'boolean', default: false },
    // The router's data paths, each measured in turn (module doc).
    datapaths: { type: 'string' },
    datapath: { type: 'string' },
    workers: { type: 'string' },
  },
});

interface DataPath {
  readonly kind: 'ebpf' | 'tun';
  readonly workers: number;
  readonly label: string;
}

function parseDataPath(text: string): DataPath {
  const m = /^(ebpf|tun)(?::(\d+))?$/.exec(text.trim());
  if (m === null) throw new Error(`data path ${text}: ebpf, tun, ebpf:N or tun:N`);
  const kind = m[1] as 'ebpf' | 'tun';
  const workers = m[2] === undefined ? 1 : Number(m[2]);
  if (!(workers >= 1 && workers <= 64)) throw new Error(`data path ${text}: 1 to 64 workers`);
  const label =
    kind === 'ebpf'
      ? `eBPF${workers > 1 ? `, slow path on ${workers} workers` : ''}`
      : `TUN, ${workers} worker${workers > 1 ? 's' : ''}`;
  return { kind, workers, label };
}

const DATAPATHS: DataPath[] =
  values.datapath !== undefined || values.workers !== undefined
    ? [parseDataPath(`${values.datapath ?? 'tun'}:${values.workers ?? '1'}`)]
    : (values.datapaths ?? 'tun:1,tun:2,ebpf').split(',').map(parseDataPath);
const MEASURE_NATIVE = !values['no-native'] && (DATAPATHS.length === 1 || values.native === true);
const {
  bridgeNetfilter: BRIDGE_NF,
  profile: PROFILE,
  nice: NICE,
  seconds: SECONDS,
  generators: GENERATORS,
  loads: LOADS,
  size: SIZE,
} = commonSettings(values);
const profiles: string[] = [];
const log = (line: string): void => console.error(line);

const bed = new BenchTestbed();
const loadBefore = loadAverage();
const DISTNAT = join(ROOT, 'bin', 'distnat');

/**
 * scripts/testbed's built-in table, with h2's agent in native mode (and,
 * with --tun-offload off, the daemons' TUN offloads turned off). With
 * workers the router's TUN is made multi-queue first: the testbed's own
 * set-up makes it single-queue on every up.
 */
function daemonTable(dp: DataPath): string {
  const env = values['tun-offload'] === 'off' ? 'env DISTNAT_TUN_OFFLOAD=off ' : '';
  let router = `${env}${distnatCommand(
    routerArgs(bed.layout, ['--datapath', dp.kind, '--workers', String(dp.workers)]),
  )}`;
  if (dp.workers > 1) {
    const setup = multiQueueSetupArgs(join(bed.scratchDir, 'router-setup-mq')).join(' ');
    router = `sh -c '${setup} && exec ${router.replace(/'/g, `'"'"'`)}'`;
  }
  return [
    `router router ${router}`,
    `h1 h1 ${env}${distnatCommand(hostArgs(bed.layout, 'h1'))}`,
    `h2 h2 ${env}${distnatCommand(hostArgs(bed.layout, 'h2', ['--mode', 'native']))}`,
    '',
  ].join('\n');
}

interface Status {
  summary: Record<string, unknown>;
  tables: { title: string; columns: string[]; rows: unknown[][] }[];
  counters: Record<string, number>;
}

/** `distnat status <role> --run-dir <testbed run dir>/<name> --json`. */
async function status(role: 'router' | 'host', name: string): Promise<Status> {
  const r = await run([DISTNAT, 'status', role, '--run-dir', join(bed.runDir, name), '--json'], {
    timeoutMs: 20_000,
  });
  if (r.code !== 0) throw new Error(`distnat status ${role} (${name}): ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout) as Status;
}

/** The agent's first leased port block, once it has one. */
async function leasedBlock(name: string): Promise<{ low: number; high: number }> {
  let block: { low: number; high: number } | undefined;
  await waitUntil(
    `a port lease for ${name}`,
    async () => {
      try {
        const s = await status('host', name);
        const rows = s.tables.find((t) => t.title.startsWith('Leased blocks'))?.rows ?? [];
        const m = rows.map((r) => /^(\d+)-(\d+)$/.exec(String(r[1]))).find((x) => x !== null);
        if (m && s.summary['forwarding'] === 'yes') block = { low: Number(m[1]), high: Number(m[2]) };
      } catch {
        // the agent is still starting
      }
      return block !== undefined;
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
  return block!;
}

/** Packets each daemon says it forwarded, both directions. */
const ROUTER_PACKETS = ['traffic.outbound-packets', 'traffic.inbound-packets', 'traffic.hairpin-packets'];
const HOST_PACKETS = ['packets.outbound', 'packets.inbound'];
const sumOf =
  (prefix: string, names: readonly string[]) =>
  (o: Observed): number | undefined => {
    let sum = 0;
    for (const n of names) {
      const v = o.counters.get(`${prefix}:${n}`);
      if (v === undefined) return undefined;
      sum += v;
    }
    return sum;
  };

function forwarders(host: 'h1' | 'h2'): Forwarder[] {
  return [
    {
      label: 'router',
      process: 'router',
      tun: 'router dn0',
      raw: 'router',
      counters: 'router',
      ownPackets: sumOf('router', ROUTER_PACKETS),
    },
    {
      label: `host ${host}`,
      process: host,
      tun: `${host} dn0`,
      raw: host,
      counters: host,
      ownPackets: sumOf(host, HOST_PACKETS),
    },
  ];
}

function watchFor(host: 'h1' | 'h2'): Watch {
  return {
    processes: { router: bed.daemonPid('router'), [host]: bed.daemonPid(host) },
    links: {
      'router dn0': { node: 'router', iface: TOPOLOGY.tun },
      [`${host} dn0`]: { node: host, iface: TOPOLOGY.tun },
    },
    rawIpip: { router: 'router', [host]: host },
    counters: async () => {
      const [r, h] = await Promise.all([status('router', 'router'), status('host', host)]);
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(r.counters)) out[`router:${k}`] = v;
      for (const [k, v] of Object.entries(h.counters)) out[`${host}:${k}`] = v;
      return out;
    },
  };
}

interface DistnatRun {
  result: PathResult;
  host: 'h1' | 'h2';
}

async function main(): Promise<void> {
  const swept = await sweepStale();
  if (swept.length > 0) log(`removed testbeds of killed benchmarks: ${swept.join(' ')}`);
  log(`bench:dnat: testbed ${bed.prefix}, load average ${loadBefore}`);
  const bedOptions = (dp: DataPath) => ({
    daemons: true,
    daemonTable: daemonTable(dp),
    bridgeNetfilter: BRIDGE_NF,
    offload: values['veth-offload'] === 'on',
  });
  await bed.up(bedOptions(DATAPATHS[0]!));
  // GRO on the router's WAN veth (a real NIC's default; a veth's is off):
  // the server's segments reach the router's TUN as super-packets.
  if (values['wan-gro'] === 'on') await bed.exec('router', ['ethtool', '-K', TOPOLOGY.wanIf, 'gro', 'on']);
  const blocks = { h1: await leasedBlock('h1'), h2: await leasedBlock('h2') };
  if (NICE !== undefined)
    await renice(NICE, [bed.daemonPid('router'), bed.daemonPid('h1'), bed.daemonPid('h2')]);
  log(
    `  leases: h1 ${blocks.h1.low}-${blocks.h1.high} (translate), h2 ${blocks.h2.low}-${blocks.h2.high} (native)`,
  );
  await iperf3Server(bed);
  await setUpSink(bed);
  const txqueuelen: Record<string, number> = {};
  for (const node of ['router', 'h1', 'h2'] as const) {
    if (values['tun-txqueuelen'] !== undefined)
      await bed.exec(node, ['ip', 'link', 'set', TOPOLOGY.tun, 'txqueuelen', values['tun-txqueuelen']]);
    const q = Number((await bed.exec(node, ['cat', `/sys/class/net/${TOPOLOGY.tun}/tx_queue_len`])).trim());
    txqueuelen[node === 'router' ? 'router' : `host ${node}`] = q;
  }

  const suite = (from: Node, src: string, ports: number[], watch?: Watch) => ({
    from,
    src,
    ports,
    loads: LOADS,
    seconds: SECONDS,
    size: SIZE,
    log,
    ...(watch === undefined ? {} : { watch }),
  });
  const range = (low: number) => Array.from({ length: GENERATORS }, (_, i) => low + i);

  // Kernel NAT: h1's own address past the TUN's default route; the daemons stay up, idle.
  await bed.exec('h1', [
    'ip',
    'route',
    'replace',
    TOPOLOGY.wanNet,
    'via',
    TOPOLOGY.router.lan,
    'dev',
    TOPOLOGY.lanIf,
    'src',
    TOPOLOGY.h1.lan,
  ]);
  await setUpNat(bed);
  const nat = await measurePath(
    bed,
    'kernel NAT (nftables snat)',
    suite('h1', TOPOLOGY.h1.lan, range(40000)),
  );
  await tearDownNat(bed);
  await bed.exec('h1', ['ip', 'route', 'del', TOPOLOGY.wanNet]);

  const runs: DistnatRun[] = [];
  const rss: { path: string; kib: number | undefined }[] = [];
  for (const [i, dp] of DATAPATHS.entries()) {
    if (i > 0) await restartRouter(dp, bedOptions(dp));
    await sleep(200);
    log(`  router data path: ${dp.label}`);
    const name = (what: string) => (DATAPATHS.length > 1 ? `${what}, ${dp.label}` : what);
    runs.push({
      host: 'h1',
      result: await measurePath(
        bed,
        name('distnat translate (h1)'),
        suite('h1', TOPOLOGY.shared, range(40000), watchFor('h1')),
      ),
    });
    if (PROFILE !== undefined && (await perfAvailable())) {
      profiles.push(
        ...(await profileFlood(bed, suite('h1', TOPOLOGY.shared, range(40000)), PROFILE, {
          router: bed.daemonPid('router'),
          'host agent h1': bed.daemonPid('h1'),
        })),
      );
    }
    if (MEASURE_NATIVE) {
      // Native mode forwards only datagrams from the leased ports.
      const ports = range(blocks.h2.high - GENERATORS + 1);
      runs.push({
        host: 'h2',
        result: await measurePath(
          bed,
          name('distnat native (h2)'),
          suite('h2', TOPOLOGY.shared, ports, watchFor('h2')),
        ),
      });
    }
    rss.push({ path: dp.label, kib: routerRssKib(bed.daemonPid('router')) });
  }
  const drops = await status('router', 'router');
  const loadAfter = loadAverage();
  await bed.down();

  const cpuOf = (r: DistnatRun, which: 0 | 1): number | undefined => {
    const o = r.result.floods[0]?.observed;
    const f = forwarders(r.host)[which];
    return o === undefined || f === undefined ? undefined : cpuPerPacket(o, f);
  };
  const results = [nat, ...runs.map((r) => r.result)];
  const cpuColumn = (which: 0 | 1) => (p: PathResult) => {
    const r = runs.find((x) => x.result === p);
    return r === undefined ? undefined : cpuOf(r, which);
  };
  const ratios = runs.map((r) => ({
    path: r.result.path,
    smallPackets: LOADS.map(
      (_, i) => (r.result.floods[i]?.deliveredPps ?? 0) / (nat.floods[i]?.deliveredPps ?? 0),
    ),
    tcpUp: r.result.up.gbps / nat.up.gbps,
    tcpDown: r.result.down.gbps / nat.down.gbps,
    routerNsPerPkt: cpuOf(r, 0),
    hostNsPerPkt: cpuOf(r, 1),
  }));
  const routerDrops = Object.entries(drops.counters).filter(([k, v]) => k.startsWith('drop.') && v > 0);

  if (values.json) {
    console.log(
      JSON.stringify({
        bench: 'dnat',
        date: new Date().toISOString(),
        load: [loadBefore, loadAfter],
        seconds: SECONDS,
        generators: GENERATORS,
        loads: LOADS,
        size: SIZE,
        txqueuelen,
        bridgeNetfilter: BRIDGE_NF,
        nice: NICE ?? 0,
        tunOffload: values['tun-offload'],
        vethOffload: values['veth-offload'],
        wanGro: values['wan-gro'],
        datapaths: DATAPATHS.map((d) => d.label),
        routerRssKib: rss,
        results: results.map((r) => ({
          path: r.path,
          udp: r.floods.map((f) => ({
            offeredPps: f.offeredPps,
            deliveredPps: f.deliveredPps,
            loss: f.loss,
            senderNsPerPkt: senderCpu(f),
          })),
          tcpUpGbps: r.up.gbps,
          tcpDownGbps: r.down.gbps,
        })),
        ratios,
        routerDrops: Object.fromEntries(routerDrops),
      }),
    );
    return;
  }
  const loads = LOADS.map((l) => (l.ppsTotal === 0 ? 'max (unpaced)' : `${count(l.ppsTotal)} pps`)).join(
    ', ',
  );
  console.log(
    `\nbench:dnat  ${new Date().toISOString()}  load average ${loadBefore} -> ${loadAfter}\n` +
      `UDP: ${GENERATORS} generators, ${SIZE}-byte datagrams, offered ${loads}, ${SECONDS} s each; ` +
      `TCP: one stream, ${SECONDS} s;\nveth offload ${values['veth-offload']}; GRO on the router's WAN ${values['wan-gro']}; daemons' TUN offloads ${values['tun-offload']}; router data paths ${DATAPATHS.map((d) => d.label).join(' / ')}; netfilter on the LAN bridge ${BRIDGE_NF ? 'on' : 'off'}; daemons' nice ${NICE ?? 0}; ` +
      `TUN txqueuelen ${Object.entries(txqueuelen)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}\n`,
  );
  console.log(
    mainTable(results, LOADS, [
      { header: 'router ns/pkt', value: cpuColumn(0) },
      { header: 'host ns/pkt', value: cpuColumn(1) },
    ]),
  );
  if (LOADS.length > 1) {
    console.log('\nsmall packets at paced loads:');
    console.log(loadTable(results, LOADS));
  }
  console.log('\nratios to kernel NAT:');
  for (const r of ratios) {
    const small = LOADS.map((l, i) => ratioLine(`small packets (${l.label})`, r.smallPackets[i], 0.5));
    console.log(`  ${r.path}: ${small.join('; ')}`);
    console.log(`  ${r.path}: ${ratioLine('TCP up', r.tcpUp, 0.1)}; TCP down = ${fmt(r.tcpDown)}`);
    const rh =
      r.routerNsPerPkt !== undefined && r.hostNsPerPkt ? r.routerNsPerPkt / r.hostNsPerPkt : undefined;
    console.log(
      `  ${r.path}: router ${count(r.routerNsPerPkt)} ns/pkt, host ${count(r.hostNsPerPkt)} ns/pkt: ` +
        `the router spends ${pct(rh)} of the host's CPU per packet (${rh !== undefined && rh < 1 ? 'less' : 'not less'})`,
    );
  }
  console.log(
    `\nrouter RSS after each data path's runs: ${rss.map((r) => `${r.path} ${r.kib === undefined ? '?' : `${(r.kib / 1024).toFixed(1)} MiB`}`).join('; ')}`,
  );
  for (const r of runs) {
    console.log(`\nwhere ${r.result.path} spends its time:`);
    console.log(whereTimeGoes(r.result, LOADS, forwarders(r.host), txqueuelen));
  }
  if (profiles.length > 0) {
    console.log(
      `\nperf profile of the daemons, distnat translate (share of their samples; nested, so not a sum):`,
    );
    console.log(profiles.join('\n'));
  }
  console.log(
    `\nrouter drops by reason over the whole run: ${routerDrops.length === 0 ? 'none' : routerDrops.map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
  console.log(
    '\nsender ns/pkt: CPU time of the generators per datagram sent (with kernel NAT most of the path runs\n' +
      '  in their system calls). router / host ns/pkt: CPU time (user + system, /proc/<pid>/stat) of the\n' +
      '  daemon during the first flood, per packet it forwarded by its own counters (both directions).\n' +
      'pkts: packets a daemon forwarded by its own counters (distnat status --json), both directions; where\n' +
      '  the TUN device counted fewer (TCP super-packets with offloads), that count follows.\n' +
      '~ in the kernel: the stime share of utime + stime, which the kernel splits by sampling ticks (rough;\n' +
      '  --profile LOAD gives a perf breakdown). waited for a CPU: runnable but not running (schedstat).',
  );
}

/** The router's resident memory (VmRSS), KiB. */
function routerRssKib(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Stops the router and starts it on another data path; the agents keep their leases (its state is kept). */
async function restartRouter(dp: DataPath, options: Parameters<BenchTestbed['up']>[0]): Promise<void> {
  const pid = bed.daemonPid('router');
  process.kill(pid, 'SIGTERM');
  await waitUntil('the router to stop', () => !existsSync(`/proc/${pid}`), {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  await bed.up(options);
  await waitUntil(
    `the router on ${dp.label} to list both hosts`,
    async () => {
      try {
        const s = await status('router', 'router');
        const hosts = s.tables.find((t) => t.title.startsWith('FIG. 8'))?.rows.map((r) => r[0]) ?? [];
        return hosts.includes(TOPOLOGY.h1.lan) && hosts.includes(TOPOLOGY.h2.lan);
      } catch {
        return false;
      }
    },
    { timeoutMs: 40_000, intervalMs: 500 },
  );
}

try {
  await main();
} finally {
  await bed.down();
}
