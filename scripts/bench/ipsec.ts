/**
 * distnat's ESP against strongSwan's userspace ESP, in one run:
 * `npm run bench:ipsec [-- --seconds 5]` (root).
 *
 * For each suite (AES-GCM-16-128; AES-CBC-128 + HMAC-SHA-256-128), child
 * SAs negotiated with IKEv2 at both ends, tunnel mode:
 *
 * | side       | where                                                                     |
 * |------------|---------------------------------------------------------------------------|
 * | distnat    | the testbed: h1 (`distnat host --ike`) -> router (`distnat router`) ->    |
 * |            | server (`distnat peer --ike`); plain ESP, SPIs from h1's leased block     |
 * | strongSwan | two namespaces on a veth, charon with kernel-libipsec at each end, as the |
 * |            | IKE tests start it (test/helpers/charon.ts): ESP in UDP (libipsec insists)|
 *
 * and for each: TCP throughput (iperf3, one stream) and the rate of small
 * UDP datagrams delivered (iperf3 -u, 64-byte IP datagrams): the most that
 * any of a rising sweep of offered rates got through, and what got through
 * when iperf3 sends as fast as it can (the flood), each also without IPsec on
 * the same path for reference. The ratios distnat / strongSwan are the
 * figures; the goal is 2 or more. The CPU time of each side's processes per
 * delivered datagram says where a small packet costs.
 * distnat's path crosses one more userspace process (the router) than
 * strongSwan's: its ESP is not helped by the comparison.
 *
 * Then the engine's own per-packet seal and open cost in process, from
 * scripts/bench/ipsec-micro.ts's cases. Every figure is printed with the
 * load average around it: the machine has 2 cores and both ends share them.
 *
 * BENCH_PROFILE=DIR: during distnat's TCP runs and floods, perf(1) records
 * the host agent, the router and the peer (kernel entry points, user share),
 * and the agent and the peer run under node --cpu-prof (their JavaScript, by
 * function); all are summarized after the table and kept in DIR.
 *
 * The daemons are bin/distnat, built first (scripts/bench/lib/build.ts;
 * BENCH_NO_BUILD=1 runs dist/ as it is).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mbitPerS, readStatus } from '../../test/helpers/distnat.ts';
import { HAVE_CHARON, startCharon, type Charon } from '../../test/helpers/charon.ts';
import {
  startIkeHost,
  startIkePeer,
  startIkeRouter,
  tableRows,
  waitForChildSas,
} from '../../test/helpers/ike.ts';
import { startHostAgent } from '../../test/helpers/ipsec.ts';
import { describe as describeResult, execIn, onExitCleanup } from '../../test/helpers/process.ts';
import { startIperf3Server } from '../../test/helpers/servers.ts';
import { TOPOLOGY, Testbed, uniquePrefix } from '../../test/helpers/testbed.ts';
import { sealOpenCost } from './ipsec-micro.ts';
import { buildDistnat } from './lib/build.ts';
import { summarizeCpuProfile } from './lib/cpuprofile.ts';
import { cpuSeconds, linkStats, udpSocketDrops } from './lib/counters.ts';
import { describeProfile, perfAvailable, record, summarize } from './lib/profile.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    'micro-seconds': { type: 'string', default: '1' },
    only: { type: 'string' },
    'small-rates': { type: 'string', default: '10,20,30,40,50,60,80' },
    'udp-buffer': { type: 'string', default: '4M' },
  },
});
const SECONDS = Number(values.seconds);
const MICRO_SECONDS = Number(values['micro-seconds']);
const ONLY = values.only; // 'distnat' | 'strongswan'
/** Offered rates of the small-datagram sweep, datagrams per second, lowest first. */
const SMALL_RATES = values['small-rates']
  .split(',')
  .map((k) => Math.round(Number(k) * 1000))
  .filter((r) => r > 0)
  .sort((a, b) => a - b);
/** A step of the sweep that delivers less than this share of what it offered ends it: the path is full. */
const SWEEP_FULL = 0.9;
/**
 * iperf3 -w for the small datagrams: the receiving iperf3's socket buffer
 * (and the sender's), capped by net.core.rmem_max. With the default
 * (rmem_default, 208 KiB: about 300 small datagrams) the receiving iperf3,
 * one recv per datagram on a machine whose two cores the path keeps busy,
 * dropped up to 7% of what both paths had already carried; the benchmark
 * measures the path, so the last socket should not be where it loses.
 * '0' leaves iperf3's default.
 */
const UDP_BUFFER = values['udp-buffer'];
const PROFILE = process.env.BENCH_PROFILE;
/** What the profiles said, printed after the table. */
const profileNotes: string[] = [];
const GOAL = 2;
const SERVER = TOPOLOGY.server.wan;
const PORT = 5301;
/** IPv4 + UDP + 36 bytes of iperf3 payload: the small-packet case. */
const SMALL_PAYLOAD = 36;

const SUITES = [
  { name: 'AES-GCM-128', esp: 'aes128gcm16' },
  { name: 'AES-CBC-128/HMAC-SHA-256', esp: 'aes128-sha256' },
] as const;

interface Figure {
  /** TCP bits per second. */
  tcp: number;
  /** Small UDP datagrams delivered per second: the most any offered rate of the sweep got through. */
  pps: number;
  /** The offered rate (datagrams per second, 0: the flood) that delivered `pps`. */
  ppsOffered: number;
  /** Small UDP datagrams delivered per second when iperf3 sends as fast as it can. */
  flood: number;
  /** Every step of the sweep: offered (0: the flood) and delivered per second. */
  sweep: [offered: number, delivered: number][];
  /** Load average (1 min) before and after. */
  load: [number, number];
  /** CPU microseconds per delivered small datagram at the best step, by process (user + system, all threads). */
  cpuPerSmall: [name: string, us: number][];
  /** Where the best step's lost datagrams went (LossPoints), when known. */
  lost?: Losses;
}

/** Where a small datagram can be lost on either path, read before and after each step. */
interface LossPoints {
  /** The sending iperf3's namespace and the TUN its datagrams are routed into (the sealing daemon reads it). */
  senderNs: string;
  tun: string;
  /** The receiving iperf3's namespace; its socket is the one on PORT. */
  receiverNs: string;
}

interface Losses {
  /** Datagrams iperf3 sent but the server did not count. */
  total: number;
  /** Dropped at the sender's TUN: the sealing side did not read them in time (the device's tx_dropped). */
  tun: number;
  /** Dropped at the receiving iperf3's full socket (the drops column of /proc/net/udp). */
  socket: number;
}

async function lossCounters(p: LossPoints): Promise<{ tun: number; socket: number }> {
  const [link, socket] = await Promise.all([
    linkStats(p.senderNs, p.tun),
    udpSocketDrops(p.receiverNs, PORT),
  ]);
  return { tun: link.txDropped, socket };
}

const load1 = (): number => loadavg()[0]!;

async function iperfTcp(ns: string, server: string, bind?: string): Promise<number> {
  const r = await execIn(
    ns,
    [
      'iperf3',
      '-c',
      server,
      '-p',
      String(PORT),
      '-t',
      String(SECONDS),
      '-O',
      '1',
      '-J',
      ...(bind ? ['-B', bind] : []),
    ],
    { timeoutMs: (SECONDS + 30) * 1000 },
  );
  if (r.code !== 0) throw new Error(`iperf3 TCP in ${ns}: ${describeResult(r)}`);
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
    .bits_per_second;
}

/**
 * Small datagrams delivered per second, and how many were lost; `rate`
 * datagrams per second offered, 0 for as fast as iperf3 sends.
 */
async function iperfSmallUdp(
  ns: string,
  server: string,
  rate: number,
  bind?: string,
): Promise<{ delivered: number; lost: number }> {
  const r = await execIn(
    ns,
    [
      'iperf3',
      '-c',
      server,
      '-p',
      String(PORT),
      '-u',
      '-b',
      // iperf3 counts its payload's bits.
      String(rate * SMALL_PAYLOAD * 8),
      '-l',
      String(SMALL_PAYLOAD),
      ...(UDP_BUFFER !== '0' ? ['-w', UDP_BUFFER] : []),
      '-t',
      String(SECONDS),
      '-J',
      ...(bind ? ['-B', bind] : []),
    ],
    { timeoutMs: (SECONDS + 30) * 1000 },
  );
  if (r.code !== 0) throw new Error(`iperf3 UDP in ${ns}: ${describeResult(r)}`);
  // iperf3 -J can exit 0 with no summary when the test broke off (its control connection lost under load).
  const j = JSON.parse(r.stdout) as {
    error?: string;
    end: { sum?: { packets: number; lost_packets: number; seconds: number } };
  };
  const end = j.end.sum;
  if (end === undefined) throw new Error(`iperf3 UDP in ${ns}: no result (${j.error ?? 'no error given'})`);
  return { delivered: (end.packets - end.lost_packets) / end.seconds, lost: end.lost_packets };
}

/**
 * TCP then small UDP from `ns` to `server` (an iperf3 server in `serverNs`).
 *
 * Small datagrams go at rising offered rates (SMALL_RATES) until a step
 * delivers less than SWEEP_FULL of what it offered, then as fast as iperf3
 * sends. The figure is the most any step delivered: the path's capacity.
 * The flood alone would measure something else on two cores: the sender
 * takes whatever CPU the path leaves, so a path that needs less CPU per
 * datagram hands more of it to its own sender.
 *
 * `during` runs beside the TCP stream and the flood (profilers); the CPU
 * time of `pids` over each step says which process a datagram costs most.
 */
async function measure(
  ns: string,
  serverNs: string,
  server: string,
  bind?: string,
  pids: Record<string, number> = {},
  during?: (phase: 'tcp' | 'small') => Promise<void>,
  lossPoints?: LossPoints,
): Promise<Figure> {
  const before = load1();
  const s = await startIperf3Server(serverNs, { port: PORT, bind: server });
  try {
    const [tcp] = await Promise.all([iperfTcp(ns, server, bind), during?.('tcp')]);
    const cpu = (): number[] =>
      Object.values(pids).map((pid) => {
        const c = cpuSeconds(pid);
        return c.user + c.system;
      });
    const sweep: [number, number][] = [];
    let best = {
      offered: 0,
      delivered: -1,
      cpuPerSmall: [] as [string, number][],
      lost: undefined as Losses | undefined,
    };
    const step = async (rate: number): Promise<number> => {
      const cpu0 = cpu();
      const l0 = lossPoints && (await lossCounters(lossPoints));
      const [{ delivered, lost }] = await Promise.all([
        iperfSmallUdp(ns, server, rate, bind),
        rate === 0 ? during?.('small') : undefined,
      ]);
      const cpu1 = cpu();
      const l1 = lossPoints && (await lossCounters(lossPoints));
      sweep.push([rate, delivered]);
      if (delivered > best.delivered) {
        const count = delivered * SECONDS;
        best = {
          offered: rate,
          delivered,
          cpuPerSmall: Object.keys(pids).map((name, i) => [name, ((cpu1[i]! - cpu0[i]!) * 1e6) / count]),
          lost: l0 && l1 ? { total: lost, tun: l1.tun - l0.tun, socket: l1.socket - l0.socket } : undefined,
        };
      }
      return delivered;
    };
    for (const rate of SMALL_RATES) if ((await step(rate)) < SWEEP_FULL * rate) break;
    const flood = await step(0);
    return {
      tcp,
      pps: best.delivered,
      ppsOffered: best.offered,
      flood,
      sweep,
      load: [before, load1()],
      cpuPerSmall: best.cpuPerSmall,
      ...(best.lost ? { lost: best.lost } : {}),
    };
  } finally {
    await s.stop();
  }
}

// ---- distnat: the testbed ---------------------------------------------------------------

/** perf on the distnat processes while the traffic runs, summarized into profileNotes. */
async function perfDuring(label: string, pids: Record<string, number>): Promise<void> {
  if (PROFILE === undefined || !(await perfAvailable())) return;
  await new Promise((r) => setTimeout(r, 1000));
  const files = await Promise.all(
    Object.entries(pids).map(
      async ([name, pid]) => [name, await record(pid, SECONDS - 2, PROFILE, `${label}-${name}`)] as const,
    ),
  );
  for (const [name, file] of files)
    profileNotes.push(describeProfile(`${label}, ${name}`, await summarize(file)));
}

async function distnat(): Promise<Map<string, Figure>> {
  const out = new Map<string, Figure>();
  const bed = await Testbed.up({ prefix: uniquePrefix(), daemons: false });
  try {
    // The LAN is a switch: with br_netfilter loaded, its bridge would run the
    // IPv4 netfilter hooks for every frame, in the sender's system call (the
    // host agent's sendmmsg; 15% of its CPU with small packets). The other
    // benchmarks turn that off the same way (scripts/bench/lib/testbed.ts,
    // bridgeNetfilter); strongSwan's path below has no bridge at all.
    await bed.exec('lan', ['sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0']);
    const router = await startIkeRouter(bed);
    const plainAgent = await startHostAgent(bed, 'h1');
    out.set(
      'plain',
      await measure(bed.ns('h1'), bed.ns('server'), SERVER, undefined, {
        'host agent': plainAgent.pid,
        router: router.pid,
      }),
    );
    await plainAgent.stop({ timeoutMs: 10_000 });
    // The peer answers either suite; h1 asks for one at a time.
    const peer = await startIkePeer(bed, {
      proposals: { esp: SUITES.map((s) => s.esp) },
      dpdSeconds: 0,
      ...(PROFILE !== undefined
        ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE, 'peer')}`] }
        : {}),
    });
    for (const suite of SUITES) {
      const tag = suite.esp;
      const h1 = await startIkeHost(bed, 'h1', {
        peers: [{ address: SERVER, initiate: true }],
        proposals: { esp: [suite.esp] },
        dpdSeconds: 0,
        ...(PROFILE !== undefined
          ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE, `agent-${tag}`)}`] }
          : {}),
      });
      const s = await waitForChildSas('h1 with a child SA', () => readStatus(bed, 'h1'), 1, 30_000);
      const cipher = String(tableRows(s, 'Child SAs (ESP)')[0]![3]);
      const pids = { 'host agent': h1.pid, router: router.pid, peer: peer.proc.pid! };
      const f = await measure(
        bed.ns('h1'),
        bed.ns('server'),
        SERVER,
        undefined,
        pids,
        (phase) => perfDuring(`distnat ${suite.name} ${phase}`, pids),
        // dn0: the host agent's TUN (its --tun default), which h1's routes lead into.
        { senderNs: bed.ns('h1'), tun: 'dn0', receiverNs: bed.ns('server') },
      );
      const after = await readStatus(bed, 'h1');
      const protectedOut = after.counters['ipsec.outbound.protected'] ?? 0;
      if (protectedOut < 1000)
        throw new Error(`distnat ${suite.name}: only ${protectedOut} packets went through ESP`);
      out.set(suite.name, f);
      console.log(`  distnat ${suite.name}: child SA ${cipher}, ${protectedOut} packets sealed by h1`);
      await h1.stop({ timeoutMs: 10_000 });
      if (PROFILE !== undefined) jsProfile(suite.name, 'host agent', join(PROFILE, `agent-${tag}`));
    }
    return out;
  } finally {
    await bed.down();
    // The peer writes its profile as it stops, which bed.down() has it do.
    if (PROFILE !== undefined) jsProfile('both suites', 'peer', join(PROFILE, 'peer'));
  }
}

/** A daemon's JavaScript over its whole run (TCP and small UDP), by function. */
function jsProfile(label: string, who: string, dir: string): void {
  const file = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.cpuprofile')) : undefined;
  if (file === undefined) return;
  const p = summarizeCpuProfile(join(dir, file));
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
  const top = p.self.slice(0, 12).map(([f, x]) => `${pct(x)} ${f}`);
  profileNotes.push(
    `  distnat ${label}, ${who} JavaScript (node --cpu-prof, ${p.busyMs.toFixed(0)} ms busy), self: ${top.join('; ')}`,
  );
}

// ---- strongSwan: charon and charon ---------------------------------------------------------

const NS = { a: 'dxe-sa', b: 'dxe-sb' } as const;
const OUTER = { a: '192.0.2.1', b: '192.0.2.2' } as const;
const INNER = { a: '10.99.0.1', b: '10.99.0.2' } as const;

function sh(...argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}${r.stdout}`);
}

function dropSwanNamespaces(): void {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns]);
}

function swanctlConf(self: 'a' | 'b', esp: string): string {
  const peer = self === 'a' ? 'b' : 'a';
  return `connections {
  bench {
    version = 2
    local_addrs = ${OUTER[self]}
    remote_addrs = ${OUTER[peer]}
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = pubkey
      certs = me.pem
    }
    remote {
      auth = pubkey
      cacerts = root.pem
    }
    children {
      bench {
        mode = tunnel
        esp_proposals = ${esp}
        local_ts = ${INNER[self]}/32
        remote_ts = ${INNER[peer]}/32
        start_action = none
      }
    }
  }
}
`;
}

async function strongswan(
  pki: { root: string; a: { cert: string; key: string }; b: { cert: string; key: string } },
  dir: string,
): Promise<Map<string, Figure>> {
  const out = new Map<string, Figure>();
  dropSwanNamespaces();
  for (const ns of Object.values(NS)) {
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  sh(
    'ip',
    'link',
    'add',
    `${NS.a}0`,
    'netns',
    NS.a,
    'type',
    'veth',
    'peer',
    'name',
    `${NS.b}0`,
    'netns',
    NS.b,
  );
  for (const side of ['a', 'b'] as const) {
    sh('ip', '-n', NS[side], 'addr', 'add', `${OUTER[side]}/24`, 'dev', `${NS[side]}0`);
    sh('ip', '-n', NS[side], 'addr', 'add', `${INNER[side]}/32`, 'dev', 'lo');
    sh('ip', '-n', NS[side], 'link', 'set', `${NS[side]}0`, 'up');
  }
  out.set('plain', await measure(NS.a, NS.b, OUTER.b, OUTER.a));
  const charons: Charon[] = [];
  try {
    for (const side of ['b', 'a'] as const) {
      const c = await startCharon(NS[side], { dir: join(dir, `swan-${side}`), ikeLogLevel: 1 });
      c.writeCredential('x509', 'me.pem', readFileSync(pki[side].cert, 'utf8'));
      c.writeCredential('private', 'me.key', readFileSync(pki[side].key, 'utf8'));
      c.writeCredential('x509ca', 'root.pem', readFileSync(pki.root, 'utf8'));
      charons.push(c);
    }
    const [b, a] = charons as [Charon, Charon];
    for (const suite of SUITES) {
      for (const [c, side] of [
        [a, 'a'],
        [b, 'b'],
      ] as const) {
        c.writeSwanctlConf(swanctlConf(side, suite.esp));
        c.loadAll();
      }
      a.swanctl('--initiate', '--child', 'bench', '--timeout', '20');
      const list = a.swanctl('--list-sas');
      const f = await measure(
        NS.a,
        NS.b,
        INNER.b,
        INNER.a,
        { 'charon a': a.proc.pid!, 'charon b': b.proc.pid! },
        undefined,
        { senderNs: NS.a, tun: 'ipsec0', receiverNs: NS.b },
      );
      const counted = /in\s+[0-9a-f]{8},\s+(\d+) bytes/.exec(b.swanctl('--list-sas'))?.[1];
      if (Number(counted ?? 0) < 1_000_000)
        throw new Error(`strongSwan ${suite.name}: only ${counted} bytes went through the child SA\n${list}`);
      out.set(suite.name, f);
      console.log(`  strongSwan ${suite.name}: ${/INSTALLED, ([^\n]+)/.exec(list)?.[1] ?? '?'}`);
      a.swanctl('--terminate', '--ike', 'bench', '--timeout', '10');
    }
    return out;
  } finally {
    for (const c of charons) await c.stop();
    dropSwanNamespaces();
  }
}

// ---- report ----------------------------------------------------------------------------------

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((row) => row[j]!.length)));
  return rows
    .map((row) =>
      row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join('  '),
    )
    .join('\n');
}

const kpps = (x: number | undefined): string => (x === undefined ? '-' : `${(x / 1000).toFixed(1)} kpps`);
const mbit = (x: number | undefined): string => (x === undefined ? '-' : mbitPerS(x));
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined ? '-' : (a / b).toFixed(2);
const loads = (f: Figure | undefined): string =>
  f === undefined ? '-' : `${f.load[0].toFixed(1)}-${f.load[1].toFixed(1)}`;

/** iperf3 -w asks with SO_RCVBUF, which the kernel silently caps at net.core.rmem_max (208 KiB on a stock kernel). */
function warnBufferCap(): void {
  const m = /^(\d+)([KMG]?)$/i.exec(UDP_BUFFER);
  if (UDP_BUFFER === '0' || m === null) return;
  const want = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
  const max = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
  if (max < want)
    console.log(
      `note: net.core.rmem_max is ${max}: the receiving iperf3's buffer (--udp-buffer ${UDP_BUFFER}) is capped ` +
        `there; \`sysctl -w net.core.rmem_max=${want}\` lifts the cap (a global setting)\n`,
    );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench:ipsec needs root (namespaces, TUN devices, charon)');
    process.exit(77);
  }
  if (ONLY !== 'strongswan') buildDistnat();
  const t0 = Date.now();
  console.log(
    `ESP, distnat against strongSwan 5.9.8 (kernel-libipsec), IKEv2 child SAs in tunnel mode: iperf3 TCP, ` +
      `one stream, and small UDP (${SMALL_PAYLOAD + 28}-byte datagrams), ${SECONDS} s each, ${process.version}`,
  );
  warnBufferCap();
  console.log(
    `load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (2 cores run both ends: figures need a quiet machine)\n`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'dxe-'));
  const unregister = onExitCleanup(() => {
    dropSwanNamespaces();
    rmSync(dir, { recursive: true, force: true });
  });
  let ours: Map<string, Figure> | string = 'not run';
  let theirs: Map<string, Figure> | string = 'not run';
  try {
    if (ONLY !== 'strongswan') ours = await distnat().catch((e: Error) => e.message);
    if (ONLY !== 'distnat') {
      if (!HAVE_CHARON) theirs = 'charon or swanctl missing';
      else {
        // Certificates for the two charons from a root of the project's own CA code.
        const { CertificateAuthority, issuePeerCertificate } = await import('../../src/pki/index.ts');
        const { writeFileSync } = await import('node:fs');
        mkdirSync(join(dir, 'pki'), { recursive: true });
        const root = await CertificateAuthority.initRoot(join(dir, 'pki', 'root'));
        const rootFile = join(dir, 'pki', 'root.pem');
        writeFileSync(rootFile, root.certificate.toString('pem'));
        const issue = async (side: 'a' | 'b'): Promise<{ cert: string; key: string }> => {
          const c = await issuePeerCertificate(root, { address: OUTER[side] });
          const cert = join(dir, 'pki', `${side}.pem`);
          const key = join(dir, 'pki', `${side}.key`);
          writeFileSync(cert, c.certificate.toString('pem'));
          writeFileSync(key, c.keyPem, { mode: 0o600 });
          return { cert, key };
        };
        theirs = await strongswan({ root: rootFile, a: await issue('a'), b: await issue('b') }, dir).catch(
          (e: Error) => e.message,
        );
      }
    }
  } finally {
    dropSwanNamespaces();
    rmSync(dir, { recursive: true, force: true });
    unregister();
  }
  console.log(
    `\nload average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const get = (m: Map<string, Figure> | string, k: string): Figure | undefined =>
    typeof m === 'string' ? undefined : m.get(k);
  const rows = [
    [
      'case',
      'distnat TCP',
      'strongSwan TCP',
      'ratio',
      'distnat small',
      'strongSwan small',
      'ratio',
      'flood: distnat',
      'strongSwan',
      'ratio',
      'load 1-min (d | s)',
    ],
  ];
  for (const k of ['plain', ...SUITES.map((s) => s.name)]) {
    const d = get(ours, k);
    const s = get(theirs, k);
    rows.push([
      k === 'plain' ? 'no IPsec (each path alone)' : `ESP ${k}`,
      mbit(d?.tcp),
      mbit(s?.tcp),
      ratio(d?.tcp, s?.tcp),
      kpps(d?.pps),
      kpps(s?.pps),
      ratio(d?.pps, s?.pps),
      kpps(d?.flood),
      kpps(s?.flood),
      ratio(d?.flood, s?.flood),
      `${loads(d)} | ${loads(s)}`,
    ]);
  }
  console.log(table(rows));
  console.log(
    `small: the most delivered at any offered rate of the sweep (${SMALL_RATES.map((r) => r / 1000).join(', ')} kpps, ` +
      `on until a step delivers under ${SWEEP_FULL * 100}% of its offer, then the flood); flood: iperf3 -b 0 alone`,
  );
  /** Every figure measured, side by side: distnat's cases, then strongSwan's. */
  const everyFigure = (): [who: string, label: string, f: Figure][] =>
    (
      [
        ['distnat', ours],
        ['strongSwan', theirs],
      ] as const
    ).flatMap(([who, m]) =>
      ['plain', ...SUITES.map((s) => s.name)].flatMap((k) => {
        const f = get(m, k);
        return f === undefined ? [] : [[who, k === 'plain' ? 'no IPsec' : k, f] as [string, string, Figure]];
      }),
    );
  for (const [who, label, f] of everyFigure()) {
    const steps = f.sweep.map(([o, got]) => `${o === 0 ? 'flood' : o / 1000} -> ${(got / 1000).toFixed(1)}`);
    console.log(`  ${who} ${label}, kpps offered -> delivered: ${steps.join(', ')}`);
  }
  for (const suite of SUITES) {
    const part = (m: Map<string, Figure> | string, who: string): string => {
      const esp = get(m, suite.name);
      const plain = get(m, 'plain');
      return esp && plain ? `${who} ${(esp.tcp / plain.tcp).toFixed(2)}` : `${who} -`;
    };
    console.log(
      `ESP ${suite.name} TCP / the same path in clear: ${part(ours, 'distnat')}, ${part(theirs, 'strongSwan')}`,
    );
  }
  if (typeof ours === 'string') console.log(`distnat: not measured (${ours})`);
  if (typeof theirs === 'string') console.log(`strongSwan: not measured (${theirs})`);
  if (typeof ours !== 'string' && typeof theirs !== 'string') {
    const holds = (pick: (f: Figure) => number): boolean =>
      SUITES.every((s) => {
        const d = ours instanceof Map ? ours.get(s.name) : undefined;
        const t = theirs instanceof Map ? theirs.get(s.name) : undefined;
        return d !== undefined && t !== undefined && pick(d) >= GOAL * pick(t);
      });
    const word = (ok: boolean): string => (ok ? 'met' : 'NOT met');
    console.log(
      `\ngoal: distnat >= ${GOAL}x strongSwan on both suites: TCP ${word(holds((f) => f.tcp))}, ` +
        `small packets ${word(holds((f) => f.pps))}, small packets under a flood ${word(holds((f) => f.flood))}`,
    );
  }

  const perSmall = everyFigure()
    .filter(([, , f]) => f.cpuPerSmall.length > 0)
    .map(
      ([who, label, f]) =>
        `  ${who} ${label}: ${f.cpuPerSmall.map(([n, us]) => `${n} ${us.toFixed(1)}`).join(', ')}; ` +
        `sum ${f.cpuPerSmall.reduce((a, [, us]) => a + us, 0).toFixed(1)}`,
    );
  if (perSmall.length > 0)
    console.log(
      `\nCPU µs per small datagram delivered at the best step, by process (user + system, the step's whole iperf3 run):\n${perSmall.join('\n')}`,
    );
  const lost = everyFigure()
    .filter(([, , f]) => f.lost !== undefined)
    .map(([who, label, f]) => {
      const l = f.lost!;
      // The TUN also drops the odd packet of iperf3's control connection, so the sum can pass the total.
      const other = Math.max(0, l.total - l.tun - l.socket);
      return (
        `  ${who} ${label}: ${l.total} of ${Math.round(f.pps * SECONDS + l.total)} sent; ` +
        `at the sender's TUN ${l.tun}, in the receiving iperf3's socket ${l.socket}, elsewhere ${other}`
      );
    });
  if (lost.length > 0)
    console.log(
      `\nsmall datagrams lost at the best step, and where (the sender's TUN: the sealing side did not read them in time; ` +
        `iperf3 -w ${UDP_BUFFER === '0' ? 'default' : UDP_BUFFER}):\n${lost.join('\n')}`,
    );
  if (profileNotes.length > 0) console.log(`\nprofiles (kept in ${PROFILE}):\n${profileNotes.join('\n')}`);
  console.log(
    `\nengine per packet in process (scripts/bench/ipsec-micro.ts cases, ${MICRO_SECONDS} s each, median):`,
  );
  const micro: string[][] = [
    ['suite', 'size', 'seal ns', 'open ns', 'seal + open ns', 'Mbit/s one core, both'],
  ];
  for (const [name, kind] of [
    ['ESP AES-GCM-128', 'gcm128'],
    ['ESP AES-CBC-128/HMAC-SHA-256', 'cbc128'],
  ] as const)
    for (const size of [64, 1400]) {
      const c = await sealOpenCost(kind, size, MICRO_SECONDS);
      const both = c.seal + c.open;
      micro.push([
        name,
        `${size} B`,
        c.seal.toFixed(0),
        c.open.toFixed(0),
        both.toFixed(0),
        ((size * 8 * 1e3) / both).toFixed(0),
      ]);
    }
  console.log(table(micro));
  console.log(
    `\n(${((Date.now() - t0) / 1000).toFixed(0)} s in all; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')})`,
  );
}

await main();
