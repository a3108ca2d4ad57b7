/**
 * What bench:io and bench:dnat do for every path: the small-packet flood at
 * each offered load, one TCP stream up and one down, and the report of where
 * a userspace forwarder's time went.
 */
import { cpus } from 'node:os';
import { describeProfile, record, summarize } from './profile.ts';
import { count, fmt, pct, table } from './report.ts';
import {
  tcpStream,
  udpFlood,
  type FloodResult,
  type Observed,
  type StreamResult,
  type Watch,
} from './measure.ts';
import type { BenchTestbed, Node } from './testbed.ts';

const CORES = cpus().length;

export interface Load {
  label: string;
  /** Offered packets per second, all generators together; 0 = each as fast as it can. */
  ppsTotal: number;
}

/** "max,100000" -> unpaced, then 100k pps. */
export function parseLoads(text: string): Load[] {
  return text.split(',').map((part) => {
    const p = part.trim();
    if (p === 'max' || p === '0') return { label: 'max', ppsTotal: 0 };
    const n = Number(p.replace(/k$/i, '000'));
    if (!Number.isFinite(n) || n <= 0) throw new Error(`bad load ${p}: "max" or packets per second`);
    return { label: `${fmt(n / 1000, 0)}k`, ppsTotal: n };
  });
}

export interface SuiteOptions {
  from: Node;
  src: string;
  ports: readonly number[];
  loads: readonly Load[];
  seconds: number;
  size: number;
  watch?: Watch;
  log: (line: string) => void;
}

export interface PathResult {
  path: string;
  floods: FloodResult[];
  up: StreamResult;
  down: StreamResult;
}

export async function measurePath(bed: BenchTestbed, path: string, o: SuiteOptions): Promise<PathResult> {
  const floods: FloodResult[] = [];
  for (const load of o.loads) {
    o.log(`  ${path}: UDP ${o.size} B, ${o.ports.length} generator(s), load ${load.label}, ${o.seconds} s`);
    const r = await udpFlood(bed, {
      from: o.from,
      src: o.src,
      ports: o.ports,
      seconds: o.seconds,
      ppsEach: load.ppsTotal / o.ports.length,
      size: o.size,
      watch: o.watch ?? {},
    });
    o.log(
      `    offered ${count(r.offeredPps)} pps, delivered ${count(r.deliveredPps)} pps, loss ${pct(r.loss)}`,
    );
    floods.push(r);
  }
  o.log(`  ${path}: TCP up and down, ${o.seconds} s each`);
  const up = await tcpStream(bed, o.from, { seconds: o.seconds, watch: o.watch ?? {} });
  const down = await tcpStream(bed, o.from, { seconds: o.seconds, reverse: true, watch: o.watch ?? {} });
  o.log(`    ${fmt(up.gbps)} Gbit/s up, ${fmt(down.gbps)} Gbit/s down`);
  return { path, floods, up, down };
}

/** CPU ns per packet sent, of the generators (their sends, and kernel work done in their system calls). */
export function senderCpu(f: FloodResult): number | undefined {
  return f.sent === 0 ? undefined : (f.generatorCpu / f.sent) * 1e9;
}

/**
 * The main table, one row per path: small packets at the first load, TCP,
 * and CPU per packet (sender, then the caller's columns), from the first load.
 */
export function mainTable(
  results: readonly PathResult[],
  loads: readonly Load[],
  cpu: { header: string; value: (r: PathResult) => number | undefined }[] = [],
): string {
  const first = loads[0]?.label ?? '';
  const header = [
    'path',
    `UDP ${first}: offered pps`,
    'delivered pps',
    'loss',
    'TCP up Gbit/s',
    'TCP down',
    'sender ns/pkt',
    ...cpu.map((c) => c.header),
  ];
  const rows = results.map((r) => {
    const f = r.floods[0];
    return [
      r.path,
      count(f?.offeredPps),
      count(f?.deliveredPps),
      pct(f?.loss),
      fmt(r.up.gbps),
      fmt(r.down.gbps),
      count(f === undefined ? undefined : senderCpu(f)),
      ...cpu.map((c) => count(c.value(r))),
    ];
  });
  return table(header, rows);
}

/** Small packets at the other loads: offered, delivered, loss. */
export function loadTable(results: readonly PathResult[], loads: readonly Load[]): string {
  const header = ['path'];
  for (const l of loads.slice(1)) header.push(`${l.label}: offered pps`, 'delivered pps', 'loss');
  const rows = results.map((r) => {
    const row = [r.path];
    for (const f of r.floods.slice(1)) row.push(count(f.offeredPps), count(f.deliveredPps), pct(f.loss));
    return row;
  });
  return table(header, rows);
}

/** A userspace forwarder on the path: its process and its TUN device, as labelled in the Watch. */
export interface Forwarder {
  label: string;
  /** Label of its process in Watch.processes. */
  process: string;
  /** Label of its TUN device in Watch.links. */
  tun: string;
  /** Label of its namespace in Watch.rawIpip. */
  raw: string;
  /** Counters of its own that say how many packets it forwarded, if it has any. */
  ownPackets?: (o: Observed) => number | undefined;
  /** Prefix of its counters in Observed.counters (`<prefix>:io.tun.rxPackets` ...), if it has any. */
  counters?: string;
}

/** Packets per TUN read wake-up (a batch), from the forwarder's I/O counters. */
export function tunBatch(o: Observed, f: Forwarder): number | undefined {
  if (f.counters === undefined) return undefined;
  const packets = o.counters.get(`${f.counters}:io.tun.rxPackets`);
  const batches = o.counters.get(`${f.counters}:io.tun.rxBatches`);
  return packets === undefined || !batches ? undefined : packets / batches;
}

/**
 * Packets a forwarder handled: what its kernel queued for it on the TUN
 * (tx) plus what it wrote into the TUN (rx), i.e. both directions.
 */
export function tunPackets(o: Observed, f: Forwarder): number | undefined {
  const t = o.links.get(f.tun);
  return t === undefined ? undefined : t.txPackets + t.rxPackets;
}

/**
 * Packets it forwarded: by its own counters when it has them, else by its
 * TUN device's. The two differ when the TUN carries TCP super-packets
 * (offloads): the device counts one where the forwarder sends 40 segments.
 */
export function forwardedPackets(o: Observed, f: Forwarder): number | undefined {
  const own = f.ownPackets?.(o);
  return own !== undefined && own > 0 ? own : tunPackets(o, f);
}

/** CPU ns per packet it forwarded (`system`: the kernel part only). */
export function cpuPerPacket(o: Observed, f: Forwarder, system = false): number | undefined {
  const cpu = (system ? o.cpuSystem : o.cpu).get(f.process);
  const pkts = forwardedPackets(o, f);
  return cpu === undefined || pkts === undefined || pkts === 0 ? undefined : (cpu / pkts) * 1e9;
}

/** Per measurement: each forwarder's packets, CPU share and cost, and the drops on the way. */
export function whereTimeGoes(
  result: PathResult,
  loads: readonly Load[],
  forwarders: readonly Forwarder[],
  txqueuelen: Record<string, number>,
): string {
  const lines: string[] = [];
  const runs: [string, Observed, string][] = [
    ...result.floods.map(
      (f, i) =>
        [
          `UDP ${loads[i]?.label}`,
          f.observed,
          `generators ${pct(f.generatorCpu / f.observed.seconds)} of a core, ${count(senderCpu(f))} ns/pkt sent`,
        ] as [string, Observed, string],
    ),
    ['TCP up', result.up.observed, `${count(result.up.retransmits)} retransmits`],
    ['TCP down', result.down.observed, `${count(result.down.retransmits)} retransmits`],
  ];
  for (const [label, o, extra] of runs) {
    const parts = forwarders.map((f) => {
      const cpu = o.cpu.get(f.process) ?? 0;
      const own = f.ownPackets?.(o);
      const tun = tunPackets(o, f);
      return (
        `${f.label} ${count(forwardedPackets(o, f))} pkts${own === undefined || own === tun ? '' : ` (TUN reads + writes ${count(tun)})`}, ` +
        `${pct(cpu / o.seconds)} of a core, ${count(cpuPerPacket(o, f))} ns/pkt ` +
        `(~${count(cpuPerPacket(o, f, true))} in the kernel), ` +
        `waited for a CPU ${pct((o.runQueueWait.get(f.process) ?? 0) / o.seconds)} of the time` +
        (tunBatch(o, f) === undefined ? '' : `, ${fmt(tunBatch(o, f), 1)} packets per TUN wake-up`)
      );
    });
    lines.push(`  ${label} (${fmt(o.seconds, 1)} s): ${parts.join('; ')}; ${extra}`);
    const drops = forwarders.map((f) => {
      const t = o.links.get(f.tun);
      return `${f.label} TUN queue ${count(t?.txDropped)} (txqueuelen ${txqueuelen[f.label] ?? '?'}), protocol-4 socket ${count(o.rawDrops.get(f.raw))}`;
    });
    lines.push(
      `      drops: ${drops.join('; ')}; machine ${pct(o.machineBusy / o.seconds / CORES)} busy (softirq ${pct(o.machineSoftirq / o.seconds / CORES)})`,
    );
  }
  return lines.join('\n');
}

/**
 * One more flood at `load` with perf recording each forwarder meanwhile;
 * one line per forwarder: user space share and the kernel entry points.
 */
export async function profileFlood(
  bed: BenchTestbed,
  o: SuiteOptions,
  load: Load,
  pids: Record<string, number>,
): Promise<string[]> {
  o.log(`  profiling ${Object.keys(pids).join(' and ')} with perf during a ${load.label} flood`);
  const recordings = Object.entries(pids).map(async ([label, pid]) => ({
    label,
    file: await record(pid, o.seconds + 2, bed.scratchDir, label),
  }));
  const flood = await udpFlood(bed, {
    from: o.from,
    src: o.src,
    ports: o.ports,
    seconds: o.seconds,
    ppsEach: load.ppsTotal / o.ports.length,
    size: o.size,
  });
  const lines = [
    `  (flood meanwhile, slowed by perf itself: offered ${count(flood.offeredPps)} pps, delivered ${count(flood.deliveredPps)} pps, loss ${pct(flood.loss)})`,
  ];
  for (const r of await Promise.all(recordings))
    lines.push(describeProfile(r.label, await summarize(r.file)));
  return lines;
}
