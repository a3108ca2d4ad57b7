/**
 * bench:io — distnat's packet I/O path against the kernel, in the testbed's
 * topology (docs/benchmarks.md). Root; makes its own testbed `bn<pid>-` and
 * always removes it.
 *
 *   npm run bench:io -- [--seconds 5] [--generators 2] [--loads max,200k,100k] [--size 64]
 *                       [--tun-txqueuelen N] [--no-offload-on] [--no-tun-offload]
 *                       [--bridge-netfilter] [--profile 100k] [--json]
 *
 * The same traffic from h1 to the server, three ways:
 *   kernel forwarding  h1 (10.0.0.1) -> router forwards -> server (route back to 10.0.0.0/24)
 *   kernel NAT         the same, the router SNATs to 198.51.100.30 (nftables); no route back
 *   distnat I/O        h1's kernel routes into its TUN; io-forwarder.ts reads it, prepends
 *                      the IP-in-IP header, sendmmsg to the router, whose io-forwarder.ts
 *                      receives (recvmmsg), strips and writes into its TUN; the router's
 *                      kernel forwards out of the WAN. Replies the reverse way. Once with
 *                      plain TUNs, once with the TUN offloads the daemons use by default.
 * Each: small UDP datagrams (lib/udp-flood.ts generators) at each offered load, delivered
 * pps at the server's nftables sink and loss; one TCP stream each way (iperf3); CPU time
 * of the forwarding processes per packet. The kernel baselines run with the veths'
 * checksum offload off (the testbed's default) and again on.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sleep, waitUntil, type Background } from '../../test/helpers/process.ts';
import { loadAverage } from './lib/counters.ts';
import { iperf3Server, type Observed, type Watch } from './lib/measure.ts';
import { setUpNat, setUpSink, tearDownNat } from './lib/nft.ts';
import { count, fmt, ratioLine } from './lib/report.ts';
import {
  cpuPerPacket,
  measurePath,
  profileFlood,
  senderCpu,
  loadTable,
  mainTable,
  whereTimeGoes,
  type Forwarder,
  type PathResult,
  type SuiteOptions,
} from './lib/suite.ts';
import { COMMON_OPTIONS, commonSettings } from './lib/options.ts';
import { perfAvailable } from './lib/profile.ts';
import { TOPOLOGY } from '../lib/topology.ts';
import { BenchTestbed, renice, ROOT, sweepStale } from './lib/testbed.ts';

const { values } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    'no-offload-on': { type: 'boolean', default: false },
    'no-tun-offload': { type: 'boolean', default: false },
  },
});
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
const PORTS = Array.from({ length: GENERATORS }, (_, i) => 40000 + i);
const log = (line: string): void => console.error(line);

const FORWARDER = join(ROOT, 'scripts', 'bench', 'io-forwarder.ts');
const own =
  (label: string) =>
  (o: Observed): number | undefined => {
    const out = o.counters.get(`${label}:out`);
    const inn = o.counters.get(`${label}:in`);
    return out === undefined || inn === undefined ? undefined : out + inn;
  };
const FORWARDERS: Forwarder[] = [
  { label: 'host', process: 'host', tun: 'h1 dn0', raw: 'h1', counters: 'host', ownPackets: own('host') },
  {
    label: 'router',
    process: 'router',
    tun: 'router dn0',
    raw: 'router',
    counters: 'router',
    ownPackets: own('router'),
  },
];

const bed = new BenchTestbed();
const results: PathResult[] = [];
const loadBefore = loadAverage();

function suiteOptions(src: string, watch?: Watch): SuiteOptions {
  return {
    from: 'h1',
    src,
    ports: PORTS,
    loads: LOADS,
    seconds: SECONDS,
    size: SIZE,
    log,
    ...(watch === undefined ? {} : { watch }),
  };
}

async function path(name: string, src: string, watch?: Watch): Promise<PathResult> {
  const r = await measurePath(bed, name, suiteOptions(src, watch));
  results.push(r);
  return r;
}

async function kernelBaselines(offload: 'off' | 'on'): Promise<void> {
  // h1's own address, past the TUN's default route; and the server's route back.
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
  await bed.exec('server', ['ip', 'route', 'replace', TOPOLOGY.lanNet, 'via', TOPOLOGY.router.wan]);
  await path(`kernel forwarding (offload ${offload})`, TOPOLOGY.h1.lan);
  await setUpNat(bed);
  // Without the route back only NAT brings replies home, so the NAT is surely in the path.
  await bed.exec('server', ['ip', 'route', 'del', TOPOLOGY.lanNet]);
  await path(`kernel NAT (offload ${offload})`, TOPOLOGY.h1.lan);
  await tearDownNat(bed);
  await bed.try('h1', ['ip', 'route', 'del', TOPOLOGY.wanNet]);
}

/** The forwarders' own counts ({"forwarded":{"out","in"}} on SIGUSR2), as Watch.counters wants them. */
async function forwarderCounters(procs: Record<string, Background>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await Promise.all(
    Object.entries(procs).map(async ([label, p]) => {
      const seen = p.stdout().length;
      process.kill(p.pid, 'SIGUSR2');
      await waitUntil(`counters from the ${label} forwarder`, () => p.stdout().slice(seen).includes('\n'), {
        timeoutMs: 5000,
        intervalMs: 5,
      });
      const line = p.stdout().slice(seen).split('\n')[0] ?? '';
      const { forwarded, tunRx } = JSON.parse(line) as {
        forwarded: { out: number; in: number };
        tunRx: { packets: number; batches: number };
      };
      out[`${label}:out`] = forwarded.out;
      out[`${label}:in`] = forwarded.in;
      // Named as in the daemons' status, so the report reads both alike.
      out[`${label}:io.tun.rxPackets`] = tunRx.packets;
      out[`${label}:io.tun.rxBatches`] = tunRx.batches;
    }),
  );
  return out;
}

const txqueuelen: Record<string, number> = {};

/** The minimal forwarders in router and h1, measured; `offload`: their TUNs as the daemons open them. */
async function distnatIo(offload: boolean): Promise<PathResult> {
  for (const [label, node] of [
    ['router', 'router'],
    ['host', 'h1'],
  ] as const) {
    if (values['tun-txqueuelen'] !== undefined)
      await bed.exec(node, ['ip', 'link', 'set', TOPOLOGY.tun, 'txqueuelen', values['tun-txqueuelen']]);
    txqueuelen[label] = Number(
      (await bed.exec(node, ['cat', `/sys/class/net/${TOPOLOGY.tun}/tx_queue_len`])).trim(),
    );
  }
  const start = (node: 'router' | 'h1', args: string[]) =>
    bed.spawn(node, [
      process.execPath,
      '--import',
      'tsx',
      FORWARDER,
      '--tun',
      TOPOLOGY.tun,
      ...(offload ? ['--offload'] : []),
      ...args,
    ]);
  const router = start('router', [
    '--local',
    TOPOLOGY.router.lan,
    '--remote',
    TOPOLOGY.h1.lan,
    '--device',
    TOPOLOGY.lanIf,
  ]);
  const host = start('h1', ['--local', TOPOLOGY.h1.lan, '--remote', TOPOLOGY.router.lan]);
  await Promise.all([router, host].map((p) => p.waitForOutput(/^ready$/m, { timeoutMs: 20_000 })));
  if (NICE !== undefined) await renice(NICE, [router.pid, host.pid]);
  await sleep(200);
  const watch: Watch = {
    processes: { router: router.pid, host: host.pid },
    links: {
      'router dn0': { node: 'router', iface: TOPOLOGY.tun },
      'h1 dn0': { node: 'h1', iface: TOPOLOGY.tun },
    },
    rawIpip: { router: 'router', h1: 'h1' },
    counters: () => forwarderCounters({ router, host }),
  };
  const result = await path(distnatName(offload), TOPOLOGY.shared, watch);
  if (PROFILE !== undefined && (await perfAvailable())) {
    profiles.push(`  ${result.path}:`);
    profiles.push(
      ...(await profileFlood(bed, suiteOptions(TOPOLOGY.shared), PROFILE, {
        host: host.pid,
        router: router.pid,
      })),
    );
  }
  await Promise.all([router.stop(), host.stop()]);
  return result;
}

const distnatName = (offload: boolean): string =>
  offload ? 'distnat I/O, TUN offloads' : 'distnat I/O, plain TUN';

/** CPU per packet of the host's and the router's forwarder added up, during the first load's flood. */
function forwardingCpu(r: PathResult): number | undefined {
  const o = r.floods[0]?.observed;
  if (o === undefined || o.cpu.size === 0) return undefined;
  let sum = 0;
  for (const f of FORWARDERS) {
    const ns = cpuPerPacket(o, f);
    if (ns === undefined) return undefined;
    sum += ns;
  }
  return sum;
}

async function main(): Promise<void> {
  const swept = await sweepStale();
  if (swept.length > 0) log(`removed testbeds of killed benchmarks: ${swept.join(' ')}`);
  log(`bench:io: testbed ${bed.prefix}, load average ${loadBefore}`);
  await bed.up({ offload: false, bridgeNetfilter: BRIDGE_NF });
  await iperf3Server(bed);
  await setUpSink(bed);

  await kernelBaselines('off');
  const distnat = [await distnatIo(false)];
  if (!values['no-tun-offload']) distnat.push(await distnatIo(true));
  if (!values['no-offload-on']) {
    await bed.up({ offload: true, bridgeNetfilter: BRIDGE_NF });
    await kernelBaselines('on');
  }
  const loadAfter = loadAverage();
  await bed.down();

  const find = (p: string) => results.find((r) => r.path === p);
  const ratios = distnat.flatMap((io) =>
    (['off', 'on'] as const).flatMap((offload) => {
      const nat = find(`kernel NAT (offload ${offload})`);
      const fwd = find(`kernel forwarding (offload ${offload})`);
      if (nat === undefined || fwd === undefined) return [];
      return [
        {
          path: io.path,
          offload,
          smallPackets: LOADS.map(
            (_, i) => (io.floods[i]?.deliveredPps ?? 0) / (nat.floods[i]?.deliveredPps ?? 0),
          ),
          tcpUp: io.up.gbps / fwd.up.gbps,
          tcpDown: io.down.gbps / fwd.down.gbps,
        },
      ];
    }),
  );

  if (values.json) {
    console.log(
      JSON.stringify({
        bench: 'io',
        date: new Date().toISOString(),
        load: [loadBefore, loadAfter],
        seconds: SECONDS,
        generators: PORTS.length,
        loads: LOADS,
        size: SIZE,
        txqueuelen,
        bridgeNetfilter: BRIDGE_NF,
        nice: NICE ?? 0,
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
          forwardingCpuNsPerPkt: forwardingCpu(r),
          perForwarder: distnat.includes(r)
            ? FORWARDERS.map((f) => ({
                forwarder: f.label,
                nsPerPkt: LOADS.map((_, i) => {
                  const o = r.floods[i]?.observed;
                  return o === undefined ? undefined : cpuPerPacket(o, f);
                }),
              }))
            : undefined,
        })),
        ratios,
      }),
    );
    return;
  }
  const loads = LOADS.map((l) => (l.ppsTotal === 0 ? 'max (unpaced)' : `${count(l.ppsTotal)} pps`)).join(
    ', ',
  );
  console.log(
    `\nbench:io  ${new Date().toISOString()}  load average ${loadBefore} -> ${loadAfter}\n` +
      `UDP: ${PORTS.length} generators, ${SIZE}-byte datagrams, offered ${loads}, ${SECONDS} s each; TCP: one stream, ${SECONDS} s;\n` +
      `netfilter on the LAN bridge ${BRIDGE_NF ? 'on' : 'off'}; forwarders' nice ${NICE ?? 0}; TUN txqueuelen router ${txqueuelen['router']}, host ${txqueuelen['host']}\n`,
  );
  console.log(mainTable(results, LOADS, [{ header: 'forwarders ns/pkt', value: forwardingCpu }]));
  if (LOADS.length > 1) {
    console.log('\nsmall packets at paced loads:');
    console.log(loadTable(results, LOADS));
  }
  console.log('\nratios to the kernel (veth offload of the kernel row):');
  for (const r of ratios) {
    const small = LOADS.map((l, i) =>
      ratioLine(`small packets (${l.label}) / kernel NAT`, r.smallPackets[i], 0.7),
    );
    console.log(`  ${r.path}, veth offload ${r.offload}: ${small.join('; ')}`);
    console.log(
      `  ${r.path}, veth offload ${r.offload}: ${ratioLine('TCP up / kernel forwarding', r.tcpUp, 0.1)}; TCP down / kernel forwarding = ${fmt(r.tcpDown)}`,
    );
  }
  for (const io of distnat) {
    console.log(`\nwhere ${io.path} spends its time:`);
    console.log(whereTimeGoes(io, LOADS, FORWARDERS, txqueuelen));
  }
  if (profiles.length > 0) {
    console.log(`\nperf profile of the forwarders (share of their samples; nested, so not a sum):`);
    console.log(profiles.join('\n'));
  }
  console.log(
    '\nsender ns/pkt: CPU time of the generators per datagram sent; with kernel forwarding most of the\n' +
      '  path runs in their system calls. forwarders ns/pkt: CPU time (user + system, /proc/<pid>/stat) of\n' +
      '  the host and the router io-forwarder, each per packet it forwarded, added up (first load).\n' +
      'pkts: what a forwarder encapsulated and decapsulated (its own count); where its TUN device counted\n' +
      '  fewer (TCP super-packets with TUN offloads), that count follows.\n' +
      '~ in the kernel: the stime share of utime + stime, which the kernel splits by sampling ticks (rough;\n' +
      '  --profile LOAD gives a perf breakdown). waited for a CPU: runnable but not running (schedstat).',
  );
}

try {
  await main();
} finally {
  await bed.down();
}
