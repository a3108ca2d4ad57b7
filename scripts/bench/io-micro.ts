/**
 * Micro-benchmarks of distnat's packet I/O (docs/io.md quotes their output).
 * Needs root for everything but `gso`; makes namespaces dxio-m-* and removes them.
 *
 *   npx tsx scripts/bench/io-micro.ts [--seconds 5] [--repeat N] [--only gso,tun,raw,tunnel,path] [--json]
 *
 * - gso:    segmenting a 64 KiB TCP super-packet (MSS 1440), JS vs native; coalescing it back
 * - tun:    batched TUN read + write: a raw generator floods UDP into a TUN, io-reflect.ts
 *           bounces every packet back into it (nft drops the returns), pps read and written
 * - raw:    IPPROTO_RAW + sendmmsg of 84-byte IP-in-IP packets over a veth (the peer drops
 *           them in nft), then the same received with recvmmsg on a protocol-4 socket
 * - tunnel: single-stream TCP (iperf3) through two io-tunnel.ts endpoints: plain TUN,
 *           TSO + userspace segmentation, and TSO + segmentation + receive coalescing,
 *           against the kernel over the same veth
 * - path:   the same with a forwarding hop, as in distnat: server -> router (kernel forwards
 *           into its TUN) -> tunnel -> host, against plain kernel forwarding
 */
import { execFileSync, spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Ipv4Coalescer } from '../../src/io/coalesce.ts';
import { segmentTcp4, segmentTcp4Native } from '../../src/io/gso.ts';
import { SlotBuffer } from '../../src/io/slots.ts';
import { buildTcp4 } from './io-packets.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    only: { type: 'string', default: 'gso,tun,raw,tunnel,path' },
    json: { type: 'boolean', default: false },
    repeat: { type: 'string', default: '1' },
  },
});
const SECONDS = Number(values.seconds);
const only = new Set(values.only.split(','));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Every figure by label, one value per repetition. */
const metrics = new Map<string, { unit: string; values: number[] }>();
function metric(label: string, value: number, unit: string): void {
  const m = metrics.get(label) ?? { unit, values: [] };
  m.values.push(value);
  metrics.set(label, m);
}

const sh = (cmd: string, ...args: string[]): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (cmd: string, ...args: string[]): void => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    // cleanup
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

interface Program {
  ready: Promise<void>;
  done: Promise<Record<string, unknown>>;
  stop(): void;
}

/** Runs a script of scripts/bench in a namespace; `ready` when it says so, `done` with its last JSON line. */
function program(ns: string, script: string, args: string[]): Program {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', `${ROOT}scripts/bench/${script}`, ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (/^ready$/m.test(out)) onReady();
  });
  const done = new Promise<Record<string, unknown>>((resolve, reject) =>
    child.on('exit', (code) => {
      const line = out
        .trim()
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line) as Record<string, unknown>);
      else reject(new Error(`${script} exited ${code}: ${out}`));
    }),
  );
  return { ready, done, stop: () => child.kill('SIGTERM') };
}

function addNs(name: string): void {
  quiet('ip', 'netns', 'del', name);
  sh('ip', 'netns', 'add', name);
  sh('ip', '-n', name, 'link', 'set', 'lo', 'up');
}

function nftDropAll(ns: string, iface: string): void {
  const rules = [
    'table inet dxio {',
    '  chain pre {',
    '    type filter hook prerouting priority -300',
    `    iifname "${iface}" counter drop`,
    '  }',
    '}',
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules });
}

function benchGso(): void {
  const mss = 1440;
  const payload = new Uint8Array(65535 - 52).map((_, i) => i & 0xff);
  const sp = buildTcp4(
    {
      src: '198.51.100.30',
      dst: '203.0.113.3',
      srcPort: 1,
      dstPort: 2,
      seq: 1,
      flags: 0x18,
      partialChecksum: true,
      options: new Uint8Array(12),
    },
    payload,
  );
  const out = new SlotBuffer(64, 2048, 64);
  const time = (f: () => unknown, n: number): number => {
    for (let i = 0; i < 50; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f();
    return ((performance.now() - t0) * 1000) / n;
  };
  const js = time(() => segmentTcp4(sp, 0, sp.length, mss, out, 0), 2000);
  const native = time(() => segmentTcp4Native(sp, 0, sp.length, mss, out, 0), 20000);
  const segments = segmentTcp4Native(sp, 0, sp.length, mss, out, 0) as number;
  const pairs = new Int32Array(segments * 2);
  for (let i = 0; i < segments; i++) {
    pairs[2 * i] = out.offset(i);
    pairs[2 * i + 1] = out.lengths[i]!;
  }
  const co = new Ipv4Coalescer(64);
  const coalesce = time(() => co.run(out.bytes, pairs, segments), 20000);
  metric('segment a 64 KiB TSO packet (46 x 1440), JS', js, 'us');
  metric('segment a 64 KiB TSO packet (46 x 1440), native', native, 'us');
  metric('coalesce the 46 segments back, native', coalesce, 'us');
  metric('native segmentation, as throughput of one core', (sp.length * 8) / native / 1000, 'Gbit/s');
}

async function benchTun(): Promise<void> {
  const ns = 'dxio-m-t';
  addNs(ns);
  try {
    const reflector = program(ns, 'io-reflect.ts', ['--name', 'dxm0', '--mtu', '1500']);
    await reflector.ready;
    sh('ip', '-n', ns, 'addr', 'add', '10.96.0.1/24', 'dev', 'dxm0');
    nftDropAll(ns, 'dxm0');
    // The generator's packets are routed into the TUN (10.96.0.2 lies behind it).
    const gen = program(ns, 'io-raw.ts', [
      'send',
      '--src',
      '10.96.0.1',
      '--dst',
      '10.96.0.2',
      '--seconds',
      String(SECONDS),
      '--plain',
    ]);
    const g = await gen.done;
    await sleep(300);
    reflector.stop();
    const r = await reflector.done;
    // Packets only flow while the generator runs.
    const secs = Number(g.seconds) || SECONDS;
    metric('generator into the TUN (raw sendmmsg, 64 B UDP), offered', Number(g.pps), 'pps');
    metric('TUN read + write loop (io-reflect): read and written back', Number(r.reflected) / secs, 'pps');
    metric('... TUN packets per wake-up', Number(r.rxPackets) / Number(r.rxBatches), '');
  } finally {
    quiet('ip', 'netns', 'del', ns);
  }
}

async function withVethPair<T>(body: (a: string, b: string) => Promise<T>): Promise<T> {
  const a = 'dxio-m-a';
  const b = 'dxio-m-b';
  addNs(a);
  addNs(b);
  try {
    sh('ip', 'link', 'add', 'dxio-ma', 'netns', a, 'type', 'veth', 'peer', 'name', 'dxio-mb', 'netns', b);
    sh('ip', '-n', a, 'addr', 'add', '10.95.0.1/24', 'dev', 'dxio-ma');
    sh('ip', '-n', b, 'addr', 'add', '10.95.0.2/24', 'dev', 'dxio-mb');
    sh('ip', '-n', a, 'link', 'set', 'dxio-ma', 'up');
    sh('ip', '-n', b, 'link', 'set', 'dxio-mb', 'up');
    return await body(a, b);
  } finally {
    quiet('ip', 'netns', 'del', a);
    quiet('ip', 'netns', 'del', b);
  }
}

async function benchRaw(): Promise<void> {
  await withVethPair(async (a, b) => {
    nftDropAll(b, 'dxio-mb');
    const s = await program(a, 'io-raw.ts', [
      'send',
      '--src',
      '10.95.0.1',
      '--dst',
      '10.95.0.2',
      '--seconds',
      String(SECONDS),
    ]).done;
    metric('IPPROTO_RAW + sendmmsg, 84 B IP-in-IP over veth (peer drops in nft)', Number(s.pps), 'pps');
    sh('ip', 'netns', 'exec', b, 'nft', 'delete', 'table', 'inet', 'dxio');
    const recv = program(b, 'io-raw.ts', ['recv', '--protocol', '4', '--seconds', String(SECONDS + 3)]);
    await recv.ready;
    const s2 = await program(a, 'io-raw.ts', [
      'send',
      '--src',
      '10.95.0.1',
      '--dst',
      '10.95.0.2',
      '--seconds',
      String(SECONDS),
    ]).done;
    const r = await recv.done;
    metric('same, received by a protocol-4 socket with recvmmsg', Number(r.pps), 'pps');
    metric('... sent meanwhile', Number(s2.pps), 'pps');
    metric('... recvmmsg packets per wake-up', Number(r.rxPackets) / Math.max(1, Number(r.rxBatches)), '');
  });
}

async function iperf(client: string, server: string, address: string): Promise<number> {
  sh('ip', 'netns', 'exec', server, 'iperf3', '-s', '-1', '-D');
  await sleep(300);
  const out = JSON.parse(
    sh('ip', 'netns', 'exec', client, 'iperf3', '-c', address, '-t', String(SECONDS), '-J'),
  ) as {
    end: { sum_received: { bits_per_second: number } };
  };
  return out.end.sum_received.bits_per_second / 1e9;
}

async function benchTunnel(): Promise<void> {
  await withVethPair(async (a, b) => {
    const kernel = await iperf(a, b, '10.95.0.2');
    metric('TCP, one stream, kernel over the veth (reference)', kernel, 'Gbit/s');
    const modes: [string, string[]][] = [
      ['TCP through the userspace tunnel, plain TUN', []],
      ['TCP through the tunnel, TSO + userspace segmentation', ['--tso', '--no-coalesce']],
      ['TCP through the tunnel, TSO + segmentation + receive coalescing', ['--tso']],
    ];
    for (const [label, extra] of modes) {
      const ea = program(a, 'io-tunnel.ts', [
        '--tun',
        'dxio-mt',
        '--local',
        '10.95.0.1',
        '--remote',
        '10.95.0.2',
        ...extra,
      ]);
      const eb = program(b, 'io-tunnel.ts', [
        '--tun',
        'dxio-mt',
        '--local',
        '10.95.0.2',
        '--remote',
        '10.95.0.1',
        ...extra,
      ]);
      await Promise.all([ea.ready, eb.ready]);
      sh('ip', '-n', a, 'addr', 'add', '172.16.0.1/32', 'peer', '172.16.0.2', 'dev', 'dxio-mt');
      sh('ip', '-n', b, 'addr', 'add', '172.16.0.2/32', 'peer', '172.16.0.1', 'dev', 'dxio-mt');
      const gbps = await iperf(a, b, '172.16.0.2');
      ea.stop();
      eb.stop();
      await Promise.all([ea.done, eb.done]);
      metric(label, gbps, 'Gbit/s');
      metric(`${label}, share of the kernel`, (gbps / kernel) * 100, '%');
    }
  });
}

/**
 * The distnat data path without distnat's tables: server -> router (kernel
 * forwarding into a TUN, io-tunnel.ts) -> IP-in-IP over the LAN veth -> host
 * (io-tunnel.ts, TUN holding the shared address), against the kernel
 * routing the same traffic across the same three namespaces.
 */
async function benchPath(): Promise<void> {
  const [S, R, H] = ['dxio-m-s', 'dxio-m-r', 'dxio-m-h'];
  for (const n of [S, R, H]) addNs(n);
  try {
    const link = (a: string, ia: string, addrA: string, b: string, ib: string, addrB: string) => {
      sh('ip', 'link', 'add', ia, 'netns', a, 'type', 'veth', 'peer', 'name', ib, 'netns', b);
      sh('ip', '-n', a, 'addr', 'add', addrA, 'dev', ia);
      sh('ip', '-n', b, 'addr', 'add', addrB, 'dev', ib);
      sh('ip', '-n', a, 'link', 'set', ia, 'up');
      sh('ip', '-n', b, 'link', 'set', ib, 'up');
    };
    link(S, 'dxio-msr', '203.0.113.3/24', R, 'dxio-mrs', '203.0.113.1/24');
    link(R, 'dxio-mrh', '10.95.0.1/24', H, 'dxio-mhr', '10.95.0.2/24');
    sh('ip', '-n', S, 'route', 'add', '198.51.100.30/32', 'via', '203.0.113.1');
    sh('ip', 'netns', 'exec', R, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');

    // Kernel: the router routes the shared address to the host, which holds it on lo.
    sh('ip', '-n', R, 'route', 'add', '198.51.100.30/32', 'via', '10.95.0.2');
    sh('ip', '-n', H, 'addr', 'add', '198.51.100.30/32', 'dev', 'lo');
    sh('ip', '-n', H, 'route', 'add', 'default', 'via', '10.95.0.1');
    const kernel = await iperf(S, H, '198.51.100.30');
    metric('path: TCP server -> router -> host, kernel forwarding', kernel, 'Gbit/s');
    sh('ip', '-n', R, 'route', 'del', '198.51.100.30/32');
    sh('ip', '-n', H, 'addr', 'del', '198.51.100.30/32', 'dev', 'lo');
    sh('ip', '-n', H, 'route', 'del', 'default');

    const modes: [string, string[]][] = [
      ['path: the same through TUN + IP-in-IP in userspace, plain', []],
      ['path: ... with TSO, segmentation and receive coalescing', ['--tso']],
    ];
    for (const [label, extra] of modes) {
      const r = program(R, 'io-tunnel.ts', [
        '--tun',
        'dxio-mt',
        '--local',
        '10.95.0.1',
        '--remote',
        '10.95.0.2',
        ...extra,
      ]);
      const h = program(H, 'io-tunnel.ts', [
        '--tun',
        'dxio-mt',
        '--local',
        '10.95.0.2',
        '--remote',
        '10.95.0.1',
        ...extra,
      ]);
      await Promise.all([r.ready, h.ready]);
      sh('ip', '-n', R, 'route', 'add', '198.51.100.30/32', 'dev', 'dxio-mt');
      sh('ip', '-n', H, 'addr', 'add', '198.51.100.30/32', 'dev', 'dxio-mt');
      sh('ip', '-n', H, 'route', 'add', 'default', 'dev', 'dxio-mt', 'src', '198.51.100.30');
      const gbps = await iperf(S, H, '198.51.100.30');
      r.stop();
      h.stop();
      await Promise.all([r.done, h.done]);
      metric(label, gbps, 'Gbit/s');
      metric(`${label}, share of the kernel`, (gbps / kernel) * 100, '%');
    }
  } finally {
    for (const n of [S, R, H]) quiet('ip', 'netns', 'del', n);
  }
}

const load = sh('cat', '/proc/loadavg').split(' ').slice(0, 3).join(' ');
for (let i = 0; i < Number(values.repeat); i++) {
  if (only.has('gso')) benchGso();
  if (only.has('tun')) await benchTun();
  if (only.has('raw')) await benchRaw();
  if (only.has('tunnel')) await benchTunnel();
  if (only.has('path')) await benchPath();
}
const loadAfter = sh('cat', '/proc/loadavg').split(' ').slice(0, 3).join(' ');

const median = (v: number[]): number => {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const show = (n: number): string =>
  Math.abs(n) >= 1000 ? fmt(n) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2);

if (values.json) {
  console.log(
    JSON.stringify({ seconds: SECONDS, load: [load, loadAfter], metrics: Object.fromEntries(metrics) }),
  );
} else {
  const rows = [...metrics].map(([label, m]) => [
    label,
    `${show(median(m.values))} ${m.unit}`.trim(),
    m.values.length > 1 ? `${show(Math.min(...m.values))} .. ${show(Math.max(...m.values))}` : '',
  ]);
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.max(...rows.map((r) => r[1]!.length));
  console.log(
    `io-micro: ${SECONDS} s per run, ${values.repeat} run(s): median and range; load average ${load} -> ${loadAfter}`,
  );
  for (const r of rows) console.log(`${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}`);
}
