/**
 * Helpers for the end-to-end tests of the testbed's own distnat processes
 * (`scripts/testbed up` starts `distnat router` in the router namespace and
 * `distnat host` in h1 and h2, each with its run directory under
 * `<run-dir>/<prefix>/<node>`): live status, leases, metrics, the pcapng
 * files the captures write, and small traffic programs.
 *
 *   const bed = useTestbed();
 *   const leases = await waitForLeases(bed());
 *   const echo = await startUdpEcho(bed(), 'server', 7000);
 *   const r = await udpExchange(bed(), 'h1', { dst: TOPOLOGY.server.wan, port: 7000, tag: 'h1' });
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOSTS, TOPOLOGY, type HostNode } from '../../scripts/lib/topology.ts';
import { DISTNAT, PYTHON } from '../../scripts/lib/testbed/layout.ts';
import { defaultProcessTable } from '../../scripts/lib/testbed/process-table.ts';
import {
  readStatus as readDaemonStatus,
  type DaemonStatus,
  type StatusTable,
} from '../../scripts/lib/testbed/status.ts';
import { isRunning, readLog, readPidFile } from '../../scripts/lib/testbed/supervisor.ts';
import { describe as describeResult, waitUntil } from './process.ts';
import type { Background } from './process.ts';
import type { Testbed, TestbedNode } from './testbed.ts';

export { DISTNAT, HOSTS, PYTHON };
export type { DaemonStatus, HostNode, StatusTable };
export type DaemonNode = 'router' | HostNode;

/** A block of ports (also ICMP query ids) and the LAN address holding it. */
export interface PortBlock {
  host: string;
  first: number;
  last: number;
}

/** The run directory the testbed's process table gives a daemon: `<run-dir>/<prefix>/<node>`. */
export function daemonRunDir(bed: Testbed, node: DaemonNode): string {
  return bed.layout.nodeDir(node);
}

/** The daemon's status from its control socket (what `distnat status --json` prints, without its start-up cost). */
export function readStatus(bed: Testbed, node: DaemonNode): Promise<DaemonStatus> {
  return readDaemonStatus(daemonRunDir(bed, node), node === 'router' ? 'router' : 'host');
}

/**
 * The daemon's status through the command line: `bin/distnat status <role> --run-dir ... --json` in its
 * namespace; the run directory is the testbed's (daemonRunDir) unless the test started the daemon itself.
 */
export async function readStatusCli(
  bed: Testbed,
  node: DaemonNode,
  runDir = daemonRunDir(bed, node),
): Promise<DaemonStatus> {
  const role = node === 'router' ? 'router' : 'host';
  const r = await bed.exec(node, [DISTNAT, 'status', role, '--run-dir', runDir, '--json'], {
    timeoutMs: 30_000,
  });
  if (r.code !== 0) throw new Error(`distnat status ${role} in ${bed.ns(node)}: ${describeResult(r)}`);
  return JSON.parse(r.stdout) as DaemonStatus;
}

/** Where a host agent a test starts itself (not from the testbed's process table) keeps its state and socket. */
export interface AgentDirs {
  stateDir: string;
  runDir: string;
}

/**
 * Starts `distnat host` in node toward the testbed's router, with the test's own directories and any
 * further flags (--mode, --datapath, --metrics ...), and waits for its first port lease.
 */
export async function startHostAgent(
  bed: Testbed,
  node: HostNode,
  dirs: AgentDirs,
  extra: readonly string[] = [],
): Promise<Background> {
  const agent = bed.spawn(node, [
    DISTNAT,
    'host',
    '--router',
    TOPOLOGY.router.lan,
    '--lan-if',
    TOPOLOGY.lanIf,
    '--state-dir',
    dirs.stateDir,
    '--run-dir',
    dirs.runDir,
    ...extra,
  ]);
  await agent.waitForOutput(/leased ports \d+-\d+/, { timeoutMs: 30_000 });
  return agent;
}

let downloads = 0;

/** curl of url in node, saved in the testbed's scratch directory: the SHA-256 of what arrived. */
export async function downloadSha256(bed: Testbed, node: TestbedNode, url: string): Promise<string> {
  const file = join(bed.scratchDir, `${node}-download-${++downloads}.bin`);
  const r = await bed.exec(node, ['curl', '-sS', '--max-time', '60', '-o', file, url], { timeoutMs: 70_000 });
  if (r.code !== 0) throw new Error(`curl ${url} in ${bed.ns(node)}: ${describeResult(r)}`);
  return sha256File(file);
}

export function findTable(status: DaemonStatus, titleStart: string): StatusTable {
  const t = status.tables.find((x) => x.title.startsWith(titleStart));
  if (t === undefined)
    throw new Error(
      `no table "${titleStart}..." in ${status.role} status: ${status.tables.map((x) => x.title).join('; ')}`,
    );
  return t;
}

export function counter(status: DaemonStatus, name: string): number {
  const v = status.counters[name];
  if (v === undefined) throw new Error(`no counter ${name} in ${status.role} status`);
  return v;
}

/** The router's FIG. 8 rows. */
export function routerPortBlocks(status: DaemonStatus): PortBlock[] {
  return findTable(status, 'FIG. 8').rows.map(([host, lowest, count]) => ({
    host: String(host),
    first: Number(lowest),
    last: Number(lowest) + Number(count) - 1,
  }));
}

/** The port blocks a host agent believes it holds (its "Leased blocks" table). */
export function hostPortBlocks(status: DaemonStatus): PortBlock[] {
  const host = String(status.summary['lan address']);
  return findTable(status, 'Leased blocks')
    .rows.filter((r) => r[0] === 'port')
    .map((r) => {
      const [first, last] = String(r[1]).split('-').map(Number);
      return { host, first: first!, last: last! };
    });
}

/** The host's FIG. 11 rows: local (default) port, translated (leased) port, protocol number. */
export function translationRows(status: DaemonStatus): { local: number; leased: number; protocol: number }[] {
  return findTable(status, 'Source port translation table').rows.map((r) => ({
    local: Number(r[0]),
    leased: Number(r[1]),
    protocol: Number.parseInt(String(r[2]), 10),
  }));
}

export function inBlocks(port: number, blocks: readonly PortBlock[]): boolean {
  return blocks.some((b) => port >= b.first && port <= b.last);
}

/** Every pair of blocks that share a port (whoever holds them). */
export function overlaps(blocks: readonly PortBlock[]): [PortBlock, PortBlock][] {
  const out: [PortBlock, PortBlock][] = [];
  for (let i = 0; i < blocks.length; i++)
    for (let j = i + 1; j < blocks.length; j++) {
      const a = blocks[i]!;
      const b = blocks[j]!;
      if (a.first <= b.last && b.first <= a.last) out.push([a, b]);
    }
  return out;
}

export const blockText = (b: PortBlock): string => `${b.host} ${b.first}-${b.last}`;

export interface Leases {
  epoch: number;
  router: PortBlock[];
  h1: PortBlock[];
  h2: PortBlock[];
}

/**
 * Waits until both agents forward with at least one port block and the
 * router lists those blocks under the same hosts; returns the blocks.
 */
export async function waitForLeases(bed: Testbed, timeoutMs = 40_000): Promise<Leases> {
  let last = 'no status yet';
  let result: Leases | undefined;
  await waitUntil(
    'both host agents to hold port blocks the router lists',
    async () => {
      // A daemon that died will not lease: say so at once, with its log.
      const dead = (['router', 'h1', 'h2'] as const).filter((n) => !daemonAlive(bed, n));
      if (dead.length > 0) throw new Error(`not running: ${dead.join(', ')}`);
      try {
        const [router, h1, h2] = await Promise.all([
          readStatus(bed, 'router'),
          readStatus(bed, 'h1'),
          readStatus(bed, 'h2'),
        ]);
        const blocks = { router: routerPortBlocks(router), h1: hostPortBlocks(h1), h2: hostPortBlocks(h2) };
        last = `router ${blocks.router.map(blockText).join(', ')}; h1 ${blocks.h1.map(blockText).join(', ')} (${h1.summary['forwarding']}); h2 ${blocks.h2.map(blockText).join(', ')} (${h2.summary['forwarding']})`;
        const listed = (b: PortBlock): boolean =>
          blocks.router.some((r) => r.host === b.host && r.first === b.first && r.last === b.last);
        const ready = (s: DaemonStatus, own: PortBlock[]): boolean =>
          s.summary['forwarding'] === 'yes' && own.length > 0 && own.every(listed);
        if (!ready(h1, blocks.h1) || !ready(h2, blocks.h2)) return false;
        result = { epoch: Number(router.summary['epoch']), ...blocks };
        return true;
      } catch (e) {
        last = (e as Error).message;
        return false;
      }
    },
    { timeoutMs, intervalMs: 200 },
  ).catch((e: Error) => {
    throw new Error(`${e.message}; last seen: ${last}\n${daemonLogs(bed)}`);
  });
  return result!;
}

/** Whether the process of the daemon's pid file still runs (a zombie does not). */
export function daemonAlive(bed: Testbed, name: DaemonNode): boolean {
  return isRunning(daemonPid(bed, name));
}

/** The testbed's pid for a daemon of its process table (`<run-dir>/<prefix>/<name>.pid`); NaN without one. */
export function daemonPid(bed: Testbed, name: DaemonNode): number {
  return readPidFile(bed.layout.pidFile(name))?.pid ?? NaN;
}

/**
 * The two data paths of the router and the host agents: the eBPF fast path
 * beside the TUN path (the default), and the TUN path alone.
 */
export const DATA_PATHS = ['ebpf', 'tun'] as const;
export type DataPath = (typeof DATA_PATHS)[number];

/**
 * Stops the testbed's host agents and router (SIGTERM) and starts all three
 * again with `--datapath`, in the same namespaces: each test of the whole
 * path runs on both data paths without building a second testbed. The
 * router keeps its state and epoch; an agent gives its blocks back when
 * stopped and leases anew when started.
 */
export async function restartDaemonsOn(bed: Testbed, datapath: DataPath): Promise<void> {
  for (const group of [['h1', 'h2'], ['router']] as const) {
    const pids = group.map((n) => daemonPid(bed, n)).filter((pid) => isRunning(pid));
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    await waitUntil(`${group.join(', ')} to stop`, () => pids.every((pid) => !isRunning(pid)), {
      timeoutMs: 15_000,
      intervalMs: 100,
    });
  }
  const table = defaultProcessTable(bed.layout).map((p) =>
    ['router', ...HOSTS].includes(p.name) ? { ...p, command: `${p.command} --datapath ${datapath}` } : p,
  );
  await bed.reconfigure({
    ...bed.current,
    daemons: true,
    daemonTable: table.map((p) => `${p.name} ${p.node} ${p.command}`).join('\n'),
  });
}

/** The `fastpath.*` counters of a daemon's status: none at all on the TUN path alone. */
export function fastPathCounters(status: Pick<DaemonStatus, 'counters'>): Record<string, number> {
  return Object.fromEntries(Object.entries(status.counters).filter(([k]) => k.startsWith('fastpath.')));
}

/** The data path a daemon's status names (the router's "data path", an agent's "datapath"). */
export function dataPathOf(status: Pick<DaemonStatus, 'summary'>): string {
  return String(status.summary['data path'] ?? status.summary['datapath']);
}

/**
 * Packets the daemon's eBPF programs forwarded themselves between two of
 * its statuses, both ways (the router's `fastpath.traffic.*-packets`, an
 * agent's `fastpath.packets.*`); NaN when there is no fast path.
 */
export function fastPathForwarded(before: DaemonStatus, after: DaemonStatus): number {
  const names =
    after.role === 'router'
      ? ['fastpath.traffic.outbound-packets', 'fastpath.traffic.inbound-packets']
      : ['fastpath.packets.outbound', 'fastpath.packets.inbound'];
  return names.reduce((sum, n) => sum + (after.counters[n] ?? NaN) - (before.counters[n] ?? NaN), 0);
}

export function daemonLog(bed: Testbed, name: DaemonNode): string {
  return readLog(bed.layout, name);
}

/** The last lines of every daemon's log, for failure messages. */
export function daemonLogs(bed: Testbed, lines = 15): string {
  return (['router', 'h1', 'h2'] as const)
    .map((n) => `--- ${n}.log\n${daemonLog(bed, n).trim().split('\n').slice(-lines).join('\n')}`)
    .join('\n');
}

// --- metrics -------------------------------------------------------------------

/** Prometheus samples by `name{labels}` (labels as printed). */
export type Metrics = Map<string, number>;

/** Scrapes `http://127.0.0.1:<metrics port>/metrics` inside the node's namespace (the testbed's --metrics). */
export async function scrapeMetrics(bed: Testbed, node: DaemonNode): Promise<Metrics> {
  const url = `http://127.0.0.1:${TOPOLOGY.metricsPort}/metrics`;
  const r = await bed.exec(node, ['curl', '-sS', '--max-time', '10', url], { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`scraping metrics in ${bed.ns(node)}: ${describeResult(r)}`);
  const m: Metrics = new Map();
  for (const line of r.stdout.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    m.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return m;
}

export function metric(m: Metrics, key: string): number {
  const v = m.get(key);
  if (v === undefined)
    throw new Error(
      `no metric ${key} (have ${[...m.keys()]
        .filter((k) => k.startsWith('distnat_'))
        .slice(0, 40)
        .join(', ')} ...)`,
    );
  return v;
}

// --- files ---------------------------------------------------------------------

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

/** Deterministic pseudo-random bytes (xorshift32), so a failing run can be repeated byte for byte. */
export function pseudoRandomBytes(length: number, seed = 0x2545f491): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out;
}

// --- pcapng --------------------------------------------------------------------

export interface Frame {
  /** Link type of the interface (1 Ethernet, 101 raw IP). */
  linkType: number;
  /** Seconds since the epoch. */
  time: number;
  data: Buffer;
}

/**
 * Reads the packets of a pcapng file (what dumpcap writes): Section Header,
 * Interface Description, Enhanced and Simple Packet Blocks; other blocks are
 * skipped. Read here rather than through tshark so the bytes compared are
 * the captured bytes, not a dissector's rendering of them.
 */
export function readPcapng(file: string): Frame[] {
  const buf = readFileSync(file);
  const frames: Frame[] = [];
  let le = true;
  let links: { linkType: number; tsPerSecond: number }[] = [];
  let off = 0;
  const u32 = (at: number): number => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const u16 = (at: number): number => (le ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
  while (off + 12 <= buf.length) {
    const type = buf.readUInt32LE(off);
    if (type === 0x0a0d0d0a) {
      le = buf.readUInt32LE(off + 8) === 0x1a2b3c4d;
      links = [];
    }
    const len = u32(off + 4);
    if (len < 12 || off + len > buf.length) throw new Error(`${file}: broken block at ${off}`);
    const body = off + 8;
    if (type === 1) {
      // Interface Description: the resolution option (if_tsresol, code 9) is rare; dumpcap uses microseconds.
      let tsPerSecond = 1e6;
      let o = body + 8;
      while (o + 4 <= off + len - 4) {
        const code = u16(o);
        const olen = u16(o + 2);
        if (code === 0) break;
        if (code === 9) {
          const v = buf[o + 4]!;
          tsPerSecond = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
        }
        o += 4 + ((olen + 3) & ~3);
      }
      links.push({ linkType: u16(body), tsPerSecond });
    } else if (type === 6) {
      const link = links[u32(body)];
      const caplen = u32(body + 12);
      const ts = u32(body + 4) * 2 ** 32 + u32(body + 8);
      frames.push({
        linkType: link?.linkType ?? 1,
        time: ts / (link?.tsPerSecond ?? 1e6),
        data: Buffer.from(buf.subarray(body + 20, body + 20 + caplen)),
      });
    } else if (type === 3) {
      const link = links[0];
      const orig = u32(body);
      frames.push({
        linkType: link?.linkType ?? 1,
        time: 0,
        data: Buffer.from(buf.subarray(body + 4, body + 4 + Math.min(orig, len - 16))),
      });
    }
    off += len;
  }
  return frames;
}

/** The IPv4 datagram of a frame (Ethernet or raw IP), or undefined for anything else. */
export function ipv4Of(frame: Frame): Buffer | undefined {
  let ip: Buffer;
  if (frame.linkType === 1) {
    if (frame.data.length < 34 || frame.data.readUInt16BE(12) !== 0x0800) return undefined;
    ip = frame.data.subarray(14);
  } else if (frame.linkType === 101 || frame.linkType === 228) {
    ip = frame.data;
  } else {
    return undefined;
  }
  if (ip.length < 20 || ip[0]! >> 4 !== 4) return undefined;
  // Ethernet pads short frames; the IPv4 total length says where the datagram ends.
  return ip.subarray(0, Math.min(ip.length, ip.readUInt16BE(2)));
}

/** Dotted quad of 4 bytes at `at`. */
export function addr(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 1071 sum over an IPv4 header, independent of src/wire: 0xffff means the checksum verifies. */
export function ipv4HeaderSum(ip: Buffer): number {
  const ihl = (ip[0]! & 15) * 4;
  let sum = 0;
  for (let i = 0; i < ihl; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

// --- traffic programs ----------------------------------------------------------

let scriptWrites = 0;

/**
 * Writes a helper program into the testbed's scratch directory and returns its path.
 * Renamed into place, so a program of the same name started a moment earlier
 * (several clients at once) never reads a file truncated by the rewrite.
 */
export function writeScript(bed: Testbed, name: string, text: string): string {
  const path = join(bed.scratchDir, name);
  const staging = `${path}.${process.pid}.${scriptWrites++}`;
  writeFileSync(staging, text);
  renameSync(staging, path);
  return path;
}

const UDP_ECHO_PY = `
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
print('listening', flush=True)
while True:
    data, (host, port) = s.recvfrom(65535)
    print(json.dumps({'src': host, 'port': port, 'data': data[:64].decode('latin-1')}), flush=True)
    s.sendto(data, (host, port))
`;

export interface UdpDatagramSeen {
  src: string;
  port: number;
  data: string;
}

export interface UdpEcho extends Background {
  readonly port: number;
  /** Every datagram the server received so far, with the source it saw. */
  seen(): UdpDatagramSeen[];
}

/** A UDP echo server (Debian's python3) that logs the source address and port of every datagram. */
export async function startUdpEcho(bed: Testbed, node: TestbedNode, port: number): Promise<UdpEcho> {
  const proc = bed.spawn(node, [PYTHON, writeScript(bed, `udp-echo-${port}.py`, UDP_ECHO_PY), String(port)]);
  await proc.waitForOutput(/^listening$/m, { timeoutMs: 15_000 });
  return Object.assign(proc, {
    port,
    seen: () =>
      proc
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as UdpDatagramSeen),
  });
}

const UDP_CLIENT_PY = `
import json, socket, sys, time
dst, port, tag, flows, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
result = {'flows': [], 'answered': 0, 'sent': 0}
for f in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', 0))
    s.settimeout(1.0)
    answered = 0
    for i in range(count):
        msg = ('%s flow=%d seq=%d' % (tag, f, i)).encode()
        for attempt in range(5):
            s.sendto(msg, (dst, port))
            result['sent'] += 1
            try:
                while True:
                    data, src = s.recvfrom(2048)
                    if data == msg:
                        answered += 1
                        break
                break
            except socket.timeout:
                continue
    result['flows'].append({'localPort': s.getsockname()[1], 'answered': answered})
    result['answered'] += answered
    s.close()
print(json.dumps(result))
`;

export interface UdpExchangeResult {
  flows: { localPort: number; answered: number }[];
  answered: number;
  sent: number;
}

/**
 * UDP request/response from an unmodified socket program: `flows` sockets
 * (each its own kernel-chosen local port), `count` requests each, a request
 * retried on a 1 s timeout (the machine may be loaded), each tagged
 * "<tag> flow=F seq=N" so the server's log tells who sent it.
 */
export async function udpExchange(
  bed: Testbed,
  node: TestbedNode,
  o: { dst: string; port: number; tag: string; flows?: number; count?: number },
): Promise<UdpExchangeResult> {
  const script = writeScript(bed, 'udp-client.py', UDP_CLIENT_PY);
  const r = await bed.exec(
    node,
    [PYTHON, script, o.dst, String(o.port), o.tag, String(o.flows ?? 4), String(o.count ?? 3)],
    { timeoutMs: 60_000 },
  );
  if (r.code !== 0) throw new Error(`UDP client in ${bed.ns(node)}: ${describeResult(r)}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as UdpExchangeResult;
}

export function mbitPerS(bitsPerSecond: number): string {
  return `${(bitsPerSecond / 1e6).toFixed(0)} Mbit/s`;
}

/** The hosts' LAN addresses, by node. */
export const LAN_OF: Record<HostNode, string> = { h1: TOPOLOGY.h1.lan, h2: TOPOLOGY.h2.lan };
