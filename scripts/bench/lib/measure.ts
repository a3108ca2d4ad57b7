/**
 * The two measurements of the topology benchmarks, each with what the
 * machine did meanwhile:
 *
 * - udpFlood: generators (lib/udp-flood.ts) in a host namespace offer small
 *   datagrams to the server for a few seconds; the server's nftables sink
 *   counts what arrives. Delivered pps and loss.
 * - tcpStream: one iperf3 stream (-t seconds, --json) between a host and the
 *   server.
 *
 * Around each, a Watch takes counters before and after: CPU seconds of given
 * processes (/proc/<pid>/stat), of the machine (/proc/stat), packets and
 * drops of given interfaces (TUN queues), and raw socket drops.
 */
import { join } from 'node:path';
import { sleep } from '../../../test/helpers/process.ts';
import { startIperf3Server } from '../../../test/helpers/servers.ts';
import {
  cpuSeconds,
  linkDelta,
  linkStats,
  machineCpu,
  rawSocketDrops,
  schedStat,
  type LinkStats,
  type MachineCpu,
} from './counters.ts';
import { sinkCount, SINK_PORT } from './nft.ts';
import { TOPOLOGY } from '../../lib/topology.ts';
import { ROOT, type BenchTestbed, type Node } from './testbed.ts';

export interface Watch {
  /** Processes whose CPU time to take, by label. */
  processes?: Record<string, number>;
  /** Interfaces whose counters to take, by label. */
  links?: Record<string, { node: Node; iface: string }>;
  /** Namespaces whose protocol-4 raw socket drops to take, by label. */
  rawIpip?: Record<string, Node>;
  /** Any other counters (a daemon's own, from `distnat status --json`), by name. */
  counters?: () => Promise<Record<string, number>>;
}

/** CPU times at the moment traffic starts or ends: cheap reads of /proc only. */
interface Mark {
  at: number;
  machine: MachineCpu;
  processes: Map<string, { user: number; system: number; waitNs: number }>;
}

function mark(watch: Watch): Mark {
  const processes = new Map<string, { user: number; system: number; waitNs: number }>();
  for (const [label, pid] of Object.entries(watch.processes ?? {}))
    processes.set(label, { ...cpuSeconds(pid), waitNs: schedStat(pid).waitNs });
  return { at: performance.now(), machine: machineCpu(), processes };
}

/** Counters that take longer to read (commands in namespaces), before and after the marks. */
interface Snapshot {
  links: Map<string, LinkStats>;
  raw: Map<string, number>;
  counters: Record<string, number>;
}

export interface Observed {
  /** How long the traffic ran (CPU shares of the processes are of this). */
  seconds: number;

  /** CPU seconds (user + system) per watched process. */
  cpu: Map<string, number>;
  /** ... of which in the kernel (system calls, and the softirq work done in them). */
  cpuSystem: Map<string, number>;
  /** Seconds the process's main thread was runnable but waited for a CPU. */
  runQueueWait: Map<string, number>;
  /** Busy CPU seconds of the whole machine while the traffic ran (all cores, every process, other people's work too). */
  machineBusy: number;
  machineSoftirq: number;
  links: Map<string, LinkStats>;
  rawDrops: Map<string, number>;
  counters: Map<string, number>;
}

async function snapshot(bed: BenchTestbed, watch: Watch): Promise<Snapshot> {
  const links = new Map<string, LinkStats>();
  const raw = new Map<string, number>();
  let counters: Record<string, number> = {};
  await Promise.all([
    (async () => {
      if (watch.counters !== undefined) counters = await watch.counters();
    })(),
    ...Object.entries(watch.links ?? {}).map(async ([label, l]) =>
      links.set(label, await linkStats(bed.ns(l.node), l.iface)),
    ),
    ...Object.entries(watch.rawIpip ?? {}).map(async ([label, node]) =>
      raw.set(label, await rawSocketDrops(bed.ns(node), 4)),
    ),
  ]);
  return { links, raw, counters };
}

function difference(before: Snapshot, start: Mark, end: Mark, after: Snapshot): Observed {
  const cpu = new Map<string, number>();
  const cpuSystem = new Map<string, number>();
  const runQueueWait = new Map<string, number>();
  for (const [k, v] of end.processes) {
    const b = start.processes.get(k) ?? { user: 0, system: 0, waitNs: 0 };
    cpu.set(k, v.user + v.system - b.user - b.system);
    cpuSystem.set(k, v.system - b.system);
    runQueueWait.set(k, (v.waitNs - b.waitNs) / 1e9);
  }
  const links = new Map<string, LinkStats>();
  for (const [k, v] of after.links) {
    const b = before.links.get(k);
    if (b !== undefined) links.set(k, linkDelta(v, b));
  }
  const rawDrops = new Map<string, number>();
  for (const [k, v] of after.raw) rawDrops.set(k, v - (before.raw.get(k) ?? 0));
  const counters = new Map<string, number>();
  for (const [k, v] of Object.entries(after.counters)) counters.set(k, v - (before.counters[k] ?? 0));
  return {
    counters,
    seconds: (end.at - start.at) / 1000,
    cpu,
    cpuSystem,
    runQueueWait,
    machineBusy: end.machine.busy - start.machine.busy,
    machineSoftirq: end.machine.softirq - start.machine.softirq,
    links,
    rawDrops,
  };
}

export interface FloodOptions {
  /** Where the generators run. */
  from: Node;
  /** Source address of the datagrams (the host's LAN address, or the shared address through distnat). */
  src: string;
  /** One generator per source port. */
  ports: readonly number[];
  seconds: number;
  /** Offered packets per second per generator; 0 = as fast as each can. */
  ppsEach: number;
  size: number;
  watch?: Watch;
}

export interface FloodResult {
  sent: number;
  delivered: number;
  /** The generators' own send time (they start together). */
  seconds: number;
  offeredPps: number;
  deliveredPps: number;
  /** 1 - delivered/sent. */
  loss: number;
  /** CPU seconds of the generators (sending, and whatever the kernel did in their system calls). */
  generatorCpu: number;
  generatorCpuSystem: number;
  observed: Observed;
}

const FLOOD = join(ROOT, 'scripts', 'bench', 'lib', 'udp-flood.ts');

export async function udpFlood(bed: BenchTestbed, o: FloodOptions): Promise<FloodResult> {
  const generators = o.ports.map((port) =>
    bed.spawn(o.from, [
      process.execPath,
      '--import',
      'tsx',
      FLOOD,
      '--src',
      o.src,
      '--dst',
      TOPOLOGY.server.wan,
      '--sport',
      String(port),
      '--dport',
      String(SINK_PORT),
      '--size',
      String(o.size),
      '--seconds',
      String(o.seconds),
      '--pps',
      String(o.ppsEach),
      '--wait-signal',
    ]),
  );
  await Promise.all(generators.map((g) => g.waitForOutput(/^ready$/m, { timeoutMs: 20_000 })));
  const deliveredBefore = await sinkCount(bed);
  const before = await snapshot(bed, o.watch ?? {});
  // `ip netns exec` execs the command, so the pid is the generator's own.
  const start = mark(o.watch ?? {});
  for (const g of generators) process.kill(g.pid, 'SIGUSR1');
  const results = await Promise.all(
    generators.map(async (g) => {
      await g.waitForOutput(/^\{.*\}$/m, { timeoutMs: (o.seconds + 30) * 1000 });
      await g.exited;
      const line = g.stdout().trim().split('\n').pop() ?? '';
      return JSON.parse(line) as {
        sent: number;
        seconds: number;
        cpuSeconds: number;
        cpuSystemSeconds: number;
      };
    }),
  );
  // What is still queued (TUN queues, socket buffers) drains within milliseconds.
  await sleep(100);
  const end = mark(o.watch ?? {});
  await sleep(200);
  const after = await snapshot(bed, o.watch ?? {});
  const delivered = (await sinkCount(bed)) - deliveredBefore;
  const sent = results.reduce((a, r) => a + r.sent, 0);
  const seconds = Math.max(...results.map((r) => r.seconds));
  return {
    sent,
    delivered,
    seconds,
    offeredPps: sent / seconds,
    deliveredPps: delivered / seconds,
    loss: sent > 0 ? Math.max(0, 1 - delivered / sent) : 0,
    generatorCpu: results.reduce((a, r) => a + r.cpuSeconds, 0),
    generatorCpuSystem: results.reduce((a, r) => a + r.cpuSystemSeconds, 0),
    observed: difference(before, start, end, after),
  };
}

export interface StreamResult {
  gbps: number;
  retransmits: number;
  observed: Observed;
}

/**
 * One TCP stream with iperf3 from `from` to the server's iperf3 (-R: from the
 * server to the host), --json parsed. The server must be listening (see
 * iperf3Server).
 */
export async function tcpStream(
  bed: BenchTestbed,
  from: Node,
  { seconds, reverse = false, watch = {} }: { seconds: number; reverse?: boolean; watch?: Watch },
): Promise<StreamResult> {
  const before = await snapshot(bed, watch);
  const argv = ['iperf3', '-c', TOPOLOGY.server.wan, '-t', String(seconds), '--json'];
  if (reverse) argv.push('-R');
  const start = mark(watch);
  const r = await bed.try(from, argv, { timeoutMs: (seconds + 30) * 1000 });
  const end = mark(watch);
  const after = await snapshot(bed, watch);
  let json: {
    error?: string;
    end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } };
  };
  try {
    json = JSON.parse(r.stdout) as typeof json;
  } catch {
    throw new Error(`iperf3 from ${from}: ${r.stderr || r.stdout}`);
  }
  if (json.error !== undefined || json.end?.sum_received === undefined)
    throw new Error(`iperf3 from ${from}: ${json.error ?? 'no result'}`);
  return {
    gbps: json.end.sum_received.bits_per_second / 1e9,
    retransmits: json.end.sum_sent?.retransmits ?? 0,
    observed: difference(before, start, end, after),
  };
}

/** An iperf3 server in the server namespace for the rest of the benchmark. */
export async function iperf3Server(bed: BenchTestbed): Promise<void> {
  bed.track(await startIperf3Server(bed.ns('server')));
}
