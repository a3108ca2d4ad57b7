/**
 * Malformed packets at volume (docs/benchmarks.md, "Malformed packets"):
 * a corpus of damaged and truncated datagrams (scripts/fuzz/corpus.py,
 * scapy) sent with tcpreplay into the router from the WAN, from a host's
 * address and from a stranger on the LAN, and into h1's agent from the
 * router's side (IP-in-IP) and from its kernel's side (its TUN), in a
 * testbed of its own (`bn<pid>-`, always removed). For each stream it
 * checks that what was sent is what the target forwarded plus what it
 * dropped, by reason, to the packet; afterwards that no daemon restarted,
 * each still answers status, and h1 still reaches the server and back.
 *
 * The accounting of one stream, from counter deltas around it:
 *
 *   sent = forwarded + drops by reason
 *
 *   router: forwarded = traffic.outbound-packets + traffic.inbound-packets (fast and
 *           slow path together; a hairpinned datagram is inbound) less what a device
 *           refused; drops = every drop.* (both paths), the refusals, fragments that
 *           expired or were evicted from the hold, the TUN queue's and the raw
 *           socket's overflows, and from the WAN what the kernel dropped before the
 *           TUN (/proc/net/snmp of the router's namespace: header, length, checksum,
 *           TTL, options);
 *   host:   forwarded = packets.inbound (router side) or packets.outbound less the
 *           extra packets fragmentation made (kernel side); drops = drop.inbound.* or
 *           drop.outbound.*, and the device's overflows.
 *
 * and, with the eBPF fast path, that it saw every packet and that what it
 * passed to the kernel is what the slow path read plus what the kernel
 * dropped.
 *
 * The router and the agents run on one data path at a time, the same for
 * all three; runOn() takes the testbed through several in turn, restarting
 * the daemons in the same namespaces instead of building another testbed.
 *
 * While the streams run, nftables rules (a table of their own) keep the
 * kernels' answers to what was forwarded (ICMP errors, resets, PAP replies)
 * from coming back as traffic nobody sent: the server's, the router's own
 * and the hosts' output to or from the shared address is dropped. A packet
 * socket's sends (tcpreplay) pass no such hook.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultProcessTable } from '../lib/testbed/process-table.ts';
import { readStatus, type DaemonStatus } from '../lib/testbed/status.ts';
import { isRunning } from '../lib/testbed/supervisor.ts';
import { macOf, TOPOLOGY } from '../lib/topology.ts';
import { run, waitUntil } from '../../test/helpers/process.ts';
import { BenchTestbed, ROOT, sweepStale, type Node } from '../bench/lib/testbed.ts';

const PYTHON = '/usr/bin/python3';
const CORPUS = join(ROOT, 'scripts', 'fuzz', 'corpus.py');
const QUIET_TABLE = 'fuzz_quiet';
/** An address on the LAN that holds no lease and is no node. */
const STRANGER = '10.0.0.66';
/** Longer than the fragment hold keeps a datagram (2 s) plus a maintenance tick. */
const SETTLE_MIN_MS = 3500;

export type Target = 'router' | 'h1';

interface StreamSpec {
  readonly name: string;
  /** What it tries, in a few words. */
  readonly what: string;
  readonly target: Target;
  /** Where tcpreplay sends it from, and on which interface. */
  readonly node: Node;
  readonly iface: string;
  readonly share: number;
  readonly kind: 'wan' | 'tunnel' | 'tun';
  readonly corpus: Record<string, unknown>;
  /** Which of the target's counters are this stream's (see accounting below). */
  readonly side: 'wan' | 'lan' | 'tunnel' | 'tun';
}

export interface StreamResult {
  readonly name: string;
  readonly what: string;
  readonly target: Target;
  readonly sent: number;
  /** tcpreplay's own failures (never reached the wire). */
  readonly failed: number;
  readonly forwarded: number;
  /** Packets the target itself read from the device the stream arrives on (the slow path's, for the router). */
  readonly read: number;
  readonly drops: Record<string, number>;
  readonly dropped: number;
  /** sent == forwarded + dropped */
  readonly balanced: boolean;
  /** Router with the fast path: packets its programs saw, and the check that they passed on exactly what the slow path read plus what the kernel dropped. */
  readonly fastSeen?: number;
  readonly fastPassed?: number;
  readonly slowRead?: number;
  readonly kernelDropped?: number;
  /** Passed on, then lost in the TUN queue or the raw socket's buffer before the slow path read them. */
  readonly queueDropped?: number;
  readonly fastBalanced?: boolean;
  readonly seconds: number;
  /** Every counter of the target that moved (for --json). */
  readonly deltas: Counters;
}

export type DataPath = 'ebpf' | 'tun';

export interface FuzzResult {
  readonly prefix: string;
  /** The router's data path, as its status names it. */
  readonly dataPath: string;
  /** h1's data path, as its status names it. */
  readonly hostDataPath: string;
  readonly streams: StreamResult[];
  readonly pids: { readonly before: Record<string, number>; readonly after: Record<string, number> };
  readonly restarted: string[];
  /** Daemons that did not answer status afterwards. */
  readonly silent: string[];
  /** A UDP datagram from h1 to the server and its echo, through both agents' and the router's paths, afterwards. */
  readonly validForwarded: boolean;
  readonly ok: boolean;
}

export interface FuzzOptions {
  readonly packets: number;
  /** tcpreplay's rate, packets per second. */
  readonly pps: number;
  readonly seed: number;
  readonly log: (line: string) => void;
  /** The data path of the router and the agents (default: their own default, ebpf). */
  readonly datapath?: DataPath;
}

type Counters = Record<string, number>;

function delta(before: Counters, after: Counters): Counters {
  const out: Counters = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

const sumOf = (c: Counters, pick: (k: string) => boolean): number =>
  Object.entries(c)
    .filter(([k]) => pick(k))
    .reduce((a, [, v]) => a + v, 0);

/**
 * The kernel's drops of IPv4 input (its namespace's /proc/net/snmp and
 * netstat): each packet it refuses before routing it is counted in exactly
 * one of these (checksum errors are also in InHdrErrors, so not added).
 */
const KERNEL_DROPS = [
  'Ip.InHdrErrors',
  'Ip.InAddrErrors',
  'Ip.InUnknownProtos',
  'Ip.InDiscards',
  'Ip.FragFails',
  'IpExt.InTruncatedPkts',
  'TcpExt.IPReversePathFilter',
];

function parseSnmp(text: string): Counters {
  const out: Counters = {};
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const head = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/);
    if (head[0] !== values[0] || !head[0]!.endsWith(':')) continue;
    const section = head[0]!.slice(0, -1);
    for (let j = 1; j < head.length; j++) out[`${section}.${head[j]}`] = Number(values[j]);
    i++;
  }
  return out;
}

export class MalformedVolume {
  readonly bed = new BenchTestbed();
  readonly #o: FuzzOptions;

  constructor(options: FuzzOptions) {
    this.#o = options;
  }

  async #status(node: Target | 'h2'): Promise<DaemonStatus> {
    return readStatus(this.bed.layout.nodeDir(node), node === 'router' ? 'router' : 'host');
  }

  async #kernel(node: Node): Promise<Counters> {
    return parseSnmp(await this.bed.exec(node, ['cat', '/proc/net/snmp', '/proc/net/netstat']));
  }

  async #leasedPorts(host: 'h1' | 'h2'): Promise<number[]> {
    let ports: number[] = [];
    await waitUntil(
      `a port lease for ${host}`,
      async () => {
        try {
          const s = await this.#status(host);
          const rows = s.tables.find((t) => t.title.startsWith('Leased blocks'))?.rows ?? [];
          ports = [];
          for (const r of rows) {
            const m = /^(\d+)-(\d+)$/.exec(String(r[1]));
            if (r[0] === 'port' && m) for (let p = Number(m[1]); p <= Number(m[2]); p++) ports.push(p);
          }
          return ports.length > 0 && s.summary['forwarding'] === 'yes';
        } catch {
          return false;
        }
      },
      { timeoutMs: 40_000, intervalMs: 300 },
    );
    return ports;
  }

  #streams(h1Ports: number[], h2Ports: number[]): StreamSpec[] {
    const t = TOPOLOGY;
    const tunnel = (src: string, dst: string) => ({
      outerSrc: src,
      outerDst: dst,
      srcMac: macOf(src),
      dstMac: macOf(dst),
    });
    const fromHost = {
      innerSrc: t.shared,
      innerDst: t.server.wan,
      otherDst: t.router.lan,
      ownPorts: h1Ports,
    };
    return [
      {
        name: 'wan',
        what: 'router from the WAN, for the shared address',
        target: 'router',
        node: 'server',
        iface: t.wanIf,
        share: 0.3,
        kind: 'wan',
        side: 'wan',
        corpus: {
          innerSrc: t.server.wan,
          innerDst: t.shared,
          otherDst: t.shared,
          ownPorts: [...h1Ports, ...h2Ports],
          srcMac: macOf(t.server.wan),
          dstMac: macOf(t.router.wan),
        },
      },
      {
        name: 'lan-host',
        what: "router from h1's address (IP-in-IP)",
        target: 'router',
        node: 'h1',
        iface: t.lanIf,
        share: 0.2,
        kind: 'tunnel',
        side: 'lan',
        corpus: { ...fromHost, ...tunnel(t.h1.lan, t.router.lan) },
      },
      {
        name: 'lan-stranger',
        what: `router from a stranger on the LAN (${STRANGER}, IP-in-IP)`,
        target: 'router',
        node: 'lan',
        iface: t.bridge,
        share: 0.1,
        kind: 'tunnel',
        side: 'lan',
        corpus: { ...fromHost, ...tunnel(STRANGER, t.router.lan) },
      },
      {
        name: 'host-tunnel',
        what: "h1's agent from the router's side (IP-in-IP from the router)",
        target: 'h1',
        node: 'router',
        iface: t.lanIf,
        share: 0.2,
        kind: 'tunnel',
        side: 'tunnel',
        corpus: {
          innerSrc: t.server.wan,
          innerDst: t.shared,
          otherDst: t.h1.lan,
          ownPorts: h1Ports,
          ...tunnel(t.router.lan, t.h1.lan),
        },
      },
      {
        name: 'host-tun',
        what: "h1's agent from its kernel's side (written into its TUN)",
        target: 'h1',
        node: 'h1',
        iface: t.tun,
        share: 0.2,
        kind: 'tun',
        side: 'tun',
        corpus: fromHost,
      },
    ];
  }

  /** Drops the kernels' answers to forwarded junk (see the top of the file). */
  async #quiet(on: boolean): Promise<void> {
    const s = TOPOLOGY.shared;
    const rules: Record<string, string> = {
      server: `ip daddr ${s} counter drop`,
      router: `ip daddr ${s} counter drop`,
      h1: `ip saddr ${s} counter drop`,
      h2: `ip saddr ${s} counter drop`,
    };
    for (const [node, rule] of Object.entries(rules)) {
      await this.bed.try(node as Node, ['nft', 'delete', 'table', 'ip', QUIET_TABLE]);
      if (!on) continue;
      const text = `table ip ${QUIET_TABLE} {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ${rule}\n }\n}\n`;
      await this.bed.exec(node as Node, ['nft', '-f', '-'], { input: text });
    }
  }

  async #snapshot(): Promise<{ router: Counters; h1: Counters; kernel: Counters; heldNow: number }> {
    const [router, h1, kernel] = await Promise.all([
      this.#status('router'),
      this.#status('h1'),
      this.#kernel('router'),
    ]);
    return {
      router: router.counters,
      h1: h1.counters,
      kernel,
      heldNow: router.counters['fragments.held_now'] ?? 0,
    };
  }

  /** Waits until the target's counters stop moving (and the fragment hold has let go). */
  async #settle(target: Target): Promise<void> {
    const start = Date.now();
    let last = '';
    let still = 0;
    await waitUntil(
      `the ${target}'s counters to settle`,
      async () => {
        const s = await this.#status(target);
        const now = JSON.stringify(s.counters, (k, v: unknown) => (k.startsWith('pap.') ? undefined : v));
        still = now === last ? still + 1 : 0;
        last = now;
        return (
          still >= 2 && Date.now() - start >= SETTLE_MIN_MS && (s.counters['fragments.held_now'] ?? 0) === 0
        );
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  }

  async #replay(spec: StreamSpec, file: string): Promise<{ sent: number; failed: number }> {
    const r = await this.bed.try(
      spec.node,
      ['tcpreplay', '--intf1', spec.iface, `--pps=${this.#o.pps}`, file],
      { timeoutMs: 3_600_000 },
    );
    const out = r.stdout + r.stderr;
    const sent = /Successful packets:\s+(\d+)/.exec(out);
    const failed = /Failed packets:\s+(\d+)/.exec(out);
    if (r.code !== 0 || sent === null) throw new Error(`tcpreplay in ${spec.node} on ${spec.iface}: ${out}`);
    return { sent: Number(sent[1]), failed: Number(failed?.[1] ?? 0) };
  }

  /** Runs everything on the configured data path; the testbed is removed whatever happens. */
  async run(): Promise<FuzzResult> {
    return (await this.runOn([this.#o.datapath ?? 'ebpf']))[0]!;
  }

  /**
   * Runs everything on each data path in turn, in one testbed (the daemons
   * restarted on the next path, the corpus made again for the blocks the
   * agents then hold); the testbed is removed whatever happens.
   */
  async runOn(datapaths: readonly DataPath[]): Promise<FuzzResult[]> {
    const { log } = this.#o;
    const swept = await sweepStale();
    if (swept.length > 0) log(`removed testbeds of killed runs: ${swept.join(' ')}`);
    try {
      log(`fuzz: testbed ${this.bed.prefix}`);
      await this.bed.up({ daemons: true });
      const results: FuzzResult[] = [];
      let current: DataPath = 'ebpf';
      for (const datapath of datapaths) {
        if (datapath !== current) await this.#restartDaemonsOn(datapath);
        current = datapath;
        results.push(await this.#run());
      }
      return results;
    } finally {
      await this.bed.down();
    }
  }

  async #run(): Promise<FuzzResult> {
    const { log } = this.#o;
    const bed = this.bed;
    const [h1Ports, h2Ports] = await Promise.all([this.#leasedPorts('h1'), this.#leasedPorts('h2')]);
    const [routerStatus, h1Status] = await Promise.all([this.#status('router'), this.#status('h1')]);
    const dataPath = String(routerStatus.summary['data path'] ?? '?');
    const hostDataPath = String(h1Status.summary['datapath'] ?? '?');
    log(
      `  leases: h1 ${h1Ports.length} ports, h2 ${h2Ports.length}; data path: router ${dataPath}, h1 ${hostDataPath}`,
    );
    const daemons = ['router', 'h1', 'h2'];
    const pidsBefore = Object.fromEntries(daemons.map((d) => [d, bed.daemonPid(d)]));

    const streams = this.#streams(h1Ports, h2Ports);
    const dir = join(bed.scratchDir, 'corpus');
    mkdirSync(dir, { recursive: true });
    const counts = streams.map((s) => Math.round(this.#o.packets * s.share));
    counts[0]! += this.#o.packets - counts.reduce((a, b) => a + b, 0);
    const spec = {
      seed: this.#o.seed,
      streams: streams.map((s, i) => ({
        name: s.name,
        kind: s.kind,
        count: counts[i],
        file: join(dir, `${s.name}.pcap`),
        ...s.corpus,
      })),
    };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec, null, 1));
    const made = Date.now();
    const gen = await run([PYTHON, CORPUS, join(dir, 'spec.json')], { timeoutMs: 1_800_000 });
    if (gen.code !== 0) throw new Error(`corpus.py: ${gen.stderr || gen.stdout}`);
    log(`  corpus: ${this.#o.packets} packets in ${((Date.now() - made) / 1000).toFixed(1)} s`);

    await this.#quiet(true);
    const results: StreamResult[] = [];
    for (const [i, s] of streams.entries()) {
      const before = await this.#snapshot();
      const t0 = Date.now();
      const { sent, failed } = await this.#replay(s, spec.streams[i]!.file);
      const seconds = (Date.now() - t0) / 1000;
      await this.#settle(s.target);
      const after = await this.#snapshot();
      const r = account(s, sent, failed, before, after, seconds);
      results.push(r);
      log(
        `  ${s.name}: sent ${sent}, forwarded ${r.forwarded}, dropped ${r.dropped}: ${r.balanced ? 'balanced' : 'NOT BALANCED'}`,
      );
    }
    await this.#quiet(false);

    const pidsAfter = Object.fromEntries(
      daemons.map((d) => {
        try {
          return [d, bed.daemonPid(d)];
        } catch {
          return [d, 0];
        }
      }),
    );
    const restarted = daemons.filter((d) => pidsAfter[d] !== pidsBefore[d]);
    const silent: string[] = [];
    for (const d of ['router', 'h1', 'h2'] as const) {
      try {
        await this.#status(d);
      } catch {
        silent.push(d);
      }
    }
    const validForwarded = await this.#echo();
    const ok =
      restarted.length === 0 &&
      silent.length === 0 &&
      validForwarded &&
      results.every((r) => r.balanced && r.fastBalanced !== false);
    return {
      prefix: bed.prefix,
      dataPath,
      hostDataPath,
      streams: results,
      pids: { before: pidsBefore, after: pidsAfter },
      restarted,
      silent,
      validForwarded,
      ok,
    };
  }

  /**
   * The testbed's agents and router again (agents first: they give their
   * blocks back to a router still there), all three on `datapath`; the
   * router keeps its state, the agents lease anew.
   */
  async #restartDaemonsOn(datapath: DataPath): Promise<void> {
    for (const group of [['h1', 'h2'], ['router']]) {
      const pids = group.map((d) => this.bed.daemonPid(d));
      for (const pid of pids) process.kill(pid, 'SIGTERM');
      await waitUntil(`${group.join(', ')} to stop`, () => pids.every((pid) => !isRunning(pid)), {
        timeoutMs: 15_000,
        intervalMs: 100,
      });
    }
    const table = defaultProcessTable(this.bed.layout).map((p) =>
      ['router', 'h1', 'h2'].includes(p.name) ? { ...p, command: `${p.command} --datapath ${datapath}` } : p,
    );
    await this.bed.up({
      daemons: true,
      daemonTable: table.map((p) => `${p.name} ${p.node} ${p.command}`).join('\n'),
    });
  }

  /** One UDP datagram from an unmodified socket on h1 to an echo on the server, and back. */
  async #echo(): Promise<boolean> {
    const port = 7007;
    const echo = this.bed.spawn('server', [
      PYTHON,
      '-c',
      [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        `s.bind(("0.0.0.0", ${port}))`,
        'print("ready", flush=True)',
        'while True:',
        '    d, a = s.recvfrom(2048)',
        '    s.sendto(d, a)',
      ].join('\n'),
    ]);
    try {
      await echo.waitForOutput(/ready/, { timeoutMs: 10_000 });
      const r = await this.bed.try(
        'h1',
        [
          PYTHON,
          '-c',
          [
            'import socket',
            's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
            's.settimeout(1)',
            'for _ in range(5):',
            `    s.sendto(b"after the fuzz", ("${TOPOLOGY.server.wan}", ${port}))`,
            '    try:',
            '        print(s.recv(2048).decode()); break',
            '    except socket.timeout:',
            '        pass',
          ].join('\n'),
        ],
        { timeoutMs: 20_000 },
      );
      return r.stdout.includes('after the fuzz');
    } finally {
      await echo.stop();
    }
  }
}

/** The accounting of one stream (see the top of the file). */
export function account(
  s: Pick<StreamSpec, 'name' | 'what' | 'target' | 'side'>,
  sent: number,
  failed: number,
  before: { router: Counters; h1: Counters; kernel: Counters },
  after: { router: Counters; h1: Counters; kernel: Counters; heldNow: number },
  seconds: number,
): StreamResult {
  const drops: Counters = {};
  const add = (name: string, n: number | undefined) => {
    if (n !== undefined && n !== 0) drops[name] = (drops[name] ?? 0) + n;
  };
  let forwarded: number;
  let read: number;
  const deltas = delta(
    s.target === 'router' ? before.router : before.h1,
    s.target === 'router' ? after.router : after.h1,
  );
  let fast: Pick<
    StreamResult,
    'fastSeen' | 'fastPassed' | 'slowRead' | 'kernelDropped' | 'queueDropped' | 'fastBalanced'
  > = {};
  if (s.target === 'router') {
    const d = delta(before.router, after.router);
    const refused = (d['traffic.tun-tx-refused'] ?? 0) + (d['traffic.lan-tx-refused'] ?? 0);
    forwarded = (d['traffic.outbound-packets'] ?? 0) + (d['traffic.inbound-packets'] ?? 0) - refused;
    for (const [k, v] of Object.entries(d)) if (k.startsWith('drop.')) add(k.slice(5), v);
    add('tun-tx-refused', d['traffic.tun-tx-refused']);
    add('lan-tx-refused', d['traffic.lan-tx-refused']);
    add('fragment-hold-expired', d['fragments.hold.expired']);
    add('fragment-hold-evicted', d['fragments.hold.evicted']);
    add('still-held', after.heldNow);
    add('tun-queue-full', d['io.tun.rxDropped']);
    add('lan-socket-full', d['io.lan-rx.rxDropped']);
    add('slot-too-short', (d['io.tun.rxTruncated'] ?? 0) + (d['io.lan-rx.rxTruncated'] ?? 0));
    // From the WAN the kernel checks the datagram's header before routing it into the TUN.
    let kernel = 0;
    if (s.side === 'wan') {
      const k = delta(before.kernel, after.kernel);
      for (const name of KERNEL_DROPS) {
        add(`kernel:${name}`, k[name]);
        kernel += k[name] ?? 0;
      }
    }
    const dir = s.side === 'wan' ? 'wan' : 'lan';
    read = (d[`traffic.${dir}-rx-packets`] ?? 0) - (d[`fastpath.traffic.${dir}-rx-packets`] ?? 0);
    if (after.router['fastpath.active'] !== undefined) {
      const taken = d[`fastpath.traffic.${dir}-rx-packets`] ?? 0;
      const passed = sumOf(
        d,
        (k) => k.startsWith(`fastpath.pass.${dir}.`) && k !== `fastpath.pass.${dir}.other`,
      );
      const rx = `traffic.${dir}-rx-packets`;
      const slowRead = (d[rx] ?? 0) - (d[`fastpath.${rx}`] ?? 0);
      const overflow = dir === 'wan' ? (d['io.tun.rxDropped'] ?? 0) : (d['io.lan-rx.rxDropped'] ?? 0);
      fast = {
        fastSeen: taken + passed,
        fastPassed: passed,
        slowRead,
        kernelDropped: kernel,
        queueDropped: overflow,
        fastBalanced: taken + passed === sent && passed === slowRead + kernel + overflow,
      };
    }
  } else {
    const d = delta(before.h1, after.h1);
    if (s.side === 'tunnel') {
      forwarded = d['packets.inbound'] ?? 0;
      read = d['io.tunnel-in.rxPackets'] ?? 0;
      for (const [k, v] of Object.entries(d)) if (k.startsWith('drop.inbound.')) add(k.slice(13), v);
      add('tunnel-socket-full', d['io.tunnel-in.rxDropped']);
    } else {
      // A datagram split into n fragments is n packets sent for one read.
      forwarded =
        (d['packets.outbound'] ?? 0) - (d['packets.fragments'] ?? 0) + (d['packets.fragmented'] ?? 0);
      read = d['io.tun.rxPackets'] ?? 0;
      for (const [k, v] of Object.entries(d)) if (k.startsWith('drop.outbound.')) add(k.slice(14), v);
      add('tun-queue-full', d['io.tun.rxDropped']);
    }
  }
  const dropped = Object.values(drops).reduce((a, b) => a + b, 0);
  return {
    name: s.name,
    what: s.what,
    target: s.target,
    sent,
    failed,
    forwarded,
    read,
    drops,
    dropped,
    balanced: sent === forwarded + dropped,
    ...fast,
    seconds,
    deltas,
  };
}
