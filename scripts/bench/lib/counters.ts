/**
 * Counters read before and after a measurement: a process's CPU time
 * (/proc/<pid>/stat), the machine's (/proc/stat), an interface's packets and
 * drops (`ip -s -j link` in its namespace), raw socket drops (/proc/net/raw)
 * and nftables rule counters.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { execIn } from '../../../test/helpers/process.ts';

/** Clock ticks per second of utime/stime (sysconf(_SC_CLK_TCK)); 100 on Linux/x86 in practice. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds (user + system, all threads) a process has used. Field 14 and
 * 15 of /proc/<pid>/stat; the command name (field 2) may hold spaces and
 * parentheses, so fields are counted from the last ')'.
 */
export function cpuSeconds(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
}

/**
 * Scheduler statistics of a process's main thread (for Node, the event loop
 * that forwards): /proc/<pid>/schedstat, nanoseconds on a CPU and runnable
 * but waiting for one.
 */
export function schedStat(pid: number): { runNs: number; waitNs: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
  return { runNs: run ?? 0, waitNs: wait ?? 0 };
}

export interface MachineCpu {
  /** Seconds of CPU time spent not idle, summed over all cores. */
  busy: number;
  /** ... of which in softirq (where the kernel forwards most packets). */
  softirq: number;
  total: number;
}

/** The machine's CPU time from the first line of /proc/stat. */
export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) / CLK_TCK, softirq: (v[6] ?? 0) / CLK_TCK, total: total / CLK_TCK };
}

export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

export interface LinkStats {
  rxPackets: number;
  rxDropped: number;
  txPackets: number;
  /** For a TUN device: packets the kernel could not queue for the reader (its queue was full). */
  txDropped: number;
}

/** An interface's counters, read in its namespace. */
export async function linkStats(ns: string, iface: string): Promise<LinkStats> {
  const r = await execIn(ns, ['ip', '-s', '-j', 'link', 'show', 'dev', iface]);
  if (r.code !== 0) throw new Error(`ip link show ${iface} in ${ns}: ${r.stderr}`);
  const [link] = JSON.parse(r.stdout) as {
    stats64: { rx: { packets: number; dropped: number }; tx: { packets: number; dropped: number } };
  }[];
  if (link === undefined) throw new Error(`no ${iface} in ${ns}`);
  const { rx, tx } = link.stats64;
  return { rxPackets: rx.packets, rxDropped: rx.dropped, txPackets: tx.packets, txDropped: tx.dropped };
}

export function linkDelta(after: LinkStats, before: LinkStats): LinkStats {
  return {
    rxPackets: after.rxPackets - before.rxPackets,
    rxDropped: after.rxDropped - before.rxDropped,
    txPackets: after.txPackets - before.txPackets,
    txDropped: after.txDropped - before.txDropped,
  };
}

/**
 * Packets the kernel dropped because a raw socket of `protocol` had a full
 * receive buffer, summed over such sockets in the namespace (the last column
 * of /proc/net/raw; the protocol is the local "port").
 */
export function rawSocketDrops(ns: string, protocol: number): Promise<number> {
  return socketDrops(ns, 'raw', protocol);
}

/** Likewise for UDP sockets bound to local `port` (the last column of /proc/net/udp). */
export function udpSocketDrops(ns: string, port: number): Promise<number> {
  return socketDrops(ns, 'udp', port);
}

async function socketDrops(ns: string, table: 'raw' | 'udp', port: number): Promise<number> {
  const r = await execIn(ns, ['cat', `/proc/net/${table}`]);
  let drops = 0;
  for (const line of r.stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    if (local === undefined || parseInt(local.split(':')[1] ?? '', 16) !== port) continue;
    drops += Number(cols[cols.length - 1]) || 0;
  }
  return drops;
}

/** The packet counts of every counter in an nftables table, by the rule's comment. */
export async function nftCounters(ns: string, family: string, table: string): Promise<Map<string, number>> {
  const r = await execIn(ns, ['nft', '-j', 'list', 'table', family, table]);
  if (r.code !== 0) throw new Error(`nft list table ${family} ${table} in ${ns}: ${r.stderr}`);
  const out = new Map<string, number>();
  const doc = JSON.parse(r.stdout) as { nftables: { rule?: { comment?: string; expr: unknown[] } }[] };
  for (const item of doc.nftables) {
    const rule = item.rule;
    if (rule?.comment === undefined) continue;
    for (const e of rule.expr) {
      const counter = (e as { counter?: { packets: number } }).counter;
      if (counter !== undefined) out.set(rule.comment, counter.packets);
    }
  }
  return out;
}
