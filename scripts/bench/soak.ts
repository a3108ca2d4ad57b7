/**
 * soak — distnat under mixed traffic and churn for a long time, watching
 * every daemon for growth (docs/soak.md). Root; makes its own testbed
 * `bn<pid>-` and always removes it.
 *
 *   npm run soak -- [--minutes 30] [--interval 10] [--withdraw-kind spi|port|all] [--out DIR]
 *   npm run soak -- --report DIR     verdicts and picture again from DIR's CSV
 *
 * Daemons: the router with its local CA, both host agents with IKE (each
 * initiates a child SA with the server, rekeyed by volume every few rounds),
 * and `distnat peer --ike` on the server. Each is started with the soak
 * probe (lib/soak-probe.mjs) so that its heap is read after a full GC.
 *
 * While it runs:
 * - traffic from both hosts at once (lib/soak-traffic.ts): TCP through
 *   ESP (iperf3 and curl of a checked file), UDP (iperf3 -u), ICMP echo;
 * - lease churn: a third PAP client on the LAN leases a port block and an
 *   SPI block and gives them back, every 10 s;
 * - a withdrawal every minute, of h1 and h2 in turn (`distnat withdraw`);
 * - a sample of every daemon every --interval seconds (lib/soak-sample.ts).
 *
 * Writes soak.csv, soak.svg and summary.json to --out (default a new
 * directory under /tmp), prints the summary as JSON on stdout, and exits 1
 * when a daemon grew, a TCP transfer failed, or a daemon stopped.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findTable, pseudoRandomBytes, readStatus } from '../../test/helpers/distnat.ts';
import type { HostNode } from '../../test/helpers/distnat.ts';
import {
  readPeerStatus,
  startIkeHost,
  tableRows,
  startIkePeer,
  startIkeRouter,
  waitForChildSas,
  withdraw,
} from '../../test/helpers/ike.ts';
import { addLanHosts, papExchange, type PapReply } from '../../test/helpers/pap.ts';
import { sleep } from '../../test/helpers/process.ts';
import type { Background } from '../../test/helpers/process.ts';
import type { Testbed } from '../../test/helpers/testbed.ts';
import { waitForStatus, type DaemonStatus } from '../lib/testbed/status.ts';
import { TOPOLOGY } from '../lib/topology.ts';
import { growth, plot, readCsv, writeCsv, type Growth, type Sample } from './lib/soak-report.ts';
import { probeEnv, sampleDaemon, type SoakDaemon } from './lib/soak-sample.ts';
import { newTally, runTraffic, Turns, type TrafficTally } from './lib/soak-traffic.ts';
import { BenchTestbed, sweepStale } from './lib/testbed.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    interval: { type: 'string', default: '10' },
    'withdraw-kind': { type: 'string', default: 'spi' },
    out: { type: 'string' },
    report: { type: 'string' },
  },
});
const MINUTES = Number(values.minutes);
const INTERVAL_S = Number(values.interval);
const KIND = values['withdraw-kind'];
if (!(MINUTES > 0)) throw new Error(`--minutes ${values.minutes}: a positive number`);
if (!(INTERVAL_S >= 1)) throw new Error(`--interval ${values.interval}: at least 1 (seconds)`);
if (KIND !== 'port' && KIND !== 'spi' && KIND !== 'all')
  throw new Error(`--withdraw-kind ${KIND}: port, spi or all`);
const OUT = values.out ?? join(tmpdir(), `distnat-soak-${new Date().toISOString().replace(/[:.]/g, '-')}`);

const log = (line: string): void => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${line}`);
const HOSTS: readonly HostNode[] = ['h1', 'h2'];
/** The third PAP client's address: on the LAN, used by no daemon. */
const CHURN_CLIENT = '10.0.0.42';
/** Each host's child SA is rekeyed after this many bytes (every few traffic rounds) ... */
const REKEY_BYTES = 16_000_000;
/** ... and after this many seconds: SA churn, beside the lease churn. */
const CHILD_REKEY_S = 20;
/** A host that has not recovered from a withdrawal by then is a failure of the run. */
const RECOVERY_LIMIT_S = 60;
const FILE = pseudoRandomBytes(256 * 1024);

interface Churn {
  rounds: number;
  granted: number;
  refused: number;
}

/** The third PAP client: a port block and an SPI block leased, then given back, over and over. */
async function leaseChurn(bed: BenchTestbed, churn: Churn, stop: () => boolean): Promise<void> {
  while (!stop()) {
    const asked = (await papExchange(bed.testbed, CHURN_CLIENT, [
      { op: 'request', kind: 'port' },
      { op: 'request', kind: 'spi' },
    ])) as PapReply[];
    const held = asked.map((r) => r.answer).filter((a) => a?.success === true);
    churn.granted += held.length;
    churn.refused += asked.length - held.length;
    await sleep(5000);
    if (held.length > 0)
      await papExchange(
        bed.testbed,
        CHURN_CLIENT,
        held.map((a) => ({ op: 'invalidate' as const, kind: a!.kind, value: a!.lowest, epoch: a!.epoch })),
      );
    churn.rounds++;
    await sleep(5000);
  }
}

/**
 * Whether the host has recovered from a withdrawal: it holds blocks of both
 * kinds again and forwards, IKE runs (on a new port, when its port went with
 * the withdrawn blocks), and it has child SAs, every one of whose inbound
 * SPIs lies in an SPI block it holds now: the router forwards ESP only to
 * the SPIs of a leased block, so until then ESP to the host is dropped. That
 * its traffic flows again is shown by its next rounds, which the TCP failure
 * count covers.
 */
function recovered(s: DaemonStatus, oldIkePort: string | undefined): boolean {
  const port = /^UDP [\d.]+:(\d+)/.exec(String(s.summary['ike']))?.[1];
  const leased = findTable(s, 'Leased blocks').rows;
  const spiBlocks = leased
    .filter((r) => r[0] === 'spi')
    .map((r) => String(r[1]).split('-').map(Number) as [number, number]);
  const children = tableRows(s, 'Child SAs (ESP)').map((r) => Number(r[0]));
  return (
    s.summary['forwarding'] === 'yes' &&
    leased.some((r) => r[0] === 'port') &&
    port !== undefined &&
    (KIND === 'spi' || port !== oldIkePort) &&
    children.length > 0 &&
    children.every((spi) => spiBlocks.some(([first, last]) => spi >= first && spi <= last))
  );
}

/**
 * `distnat withdraw` of one host, then the wait for the host to recover
 * (see recovered()). Resolves with when it began and how long that took.
 */
async function withdrawAndRecover(
  b: Testbed,
  host: HostNode,
): Promise<{ t: number; revoked: number; recoverySeconds: number }> {
  const before = await readStatus(b, host);
  const oldIkePort = /^UDP [\d.]+:(\d+)/.exec(String(before.summary['ike']))?.[1];
  const t0 = Date.now();
  const revoked = await withdraw(b, TOPOLOGY[host].lan, KIND as 'port' | 'spi' | 'all');
  await waitForStatus(
    `${host} to recover from the withdrawal (blocks, IKE, child SAs on SPIs it holds)`,
    () => readStatus(b, host),
    (s) => recovered(s, oldIkePort),
    RECOVERY_LIMIT_S * 1000,
  );
  return { t: t0 / 1000, revoked: revoked.length, recoverySeconds: (Date.now() - t0) / 1000 };
}

const rounded = (g: Growth): Growth => ({
  ...g,
  slopePerMinute: Number(g.slopePerMinute.toFixed(3)),
  ...(g.halvesPerMinute !== undefined && {
    halvesPerMinute: g.halvesPerMinute.map((h) => Number(h.toFixed(3))) as [number, number],
  }),
});
const halvesText = (g: Growth): string =>
  g.halvesPerMinute === undefined
    ? ''
    : `; halves ${g.halvesPerMinute.map((h) => h.toFixed(1)).join(', ')}/min`;

/** --report DIR: the verdicts and the picture again, from a run's CSV and summary (after a change of limits or plot). */
async function report(dir: string): Promise<number> {
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as {
    minutes: number;
    withdrawals: { t: number }[];
    growth: unknown;
    grew: string[];
  };
  const samples = readCsv(join(dir, 'soak.csv'));
  const grew = growth(samples, summary.minutes * 60);
  await plot(
    dir,
    samples,
    summary.withdrawals.map((w) => w.t),
  );
  summary.growth = grew.map(rounded);
  summary.grew = grew.filter((g) => g.grew).map((g) => `${g.daemon} ${g.metric}`);
  writeFileSync(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  for (const g of grew)
    log(
      `${g.daemon.padEnd(6)} ${g.metric.padEnd(13)} ${g.slopePerMinute.toFixed(1).padStart(12)}/min (limit ${g.limit}${halvesText(g)}) ${g.grew ? 'GREW' : 'flat'}`,
    );
  return summary.grew.length === 0 ? 0 : 1;
}

async function main(): Promise<number> {
  mkdirSync(OUT, { recursive: true });
  const swept = await sweepStale();
  if (swept.length > 0) log(`removed testbeds left by killed runs: ${swept.join(' ')}`);
  const bed = new BenchTestbed();
  try {
    await bed.up({ daemons: false });
    const b = bed.testbed;
    const probeDir = join(bed.scratchDir, 'probe');
    mkdirSync(probeDir);

    // Only the daemons get the probe: they are started while the environment names it.
    const saved = { ...process.env };
    Object.assign(process.env, probeEnv(probeDir));
    let router: Background;
    const hosts: Partial<Record<HostNode, Background>> = {};
    let peer: { proc: Background; runDir: string };
    try {
      router = await startIkeRouter(b);
      for (const h of HOSTS)
        hosts[h] = await startIkeHost(b, h, {
          peers: [{ address: TOPOLOGY.server.wan, initiate: true }],
          childLifetime: { rekeyBytes: REKEY_BYTES },
          rekeySeconds: { child: CHILD_REKEY_S },
        });
      peer = await startIkePeer(b);
    } finally {
      process.env = saved;
    }
    for (const h of HOSTS) await waitForChildSas(`${h} with a child SA`, () => readStatus(b, h), 1, 30_000);
    log(`testbed ${bed.prefix} up: router, h1, h2 with IKE, peer on the server`);

    const daemons: SoakDaemon[] = [
      { name: 'router', pid: router.pid, status: () => readStatus(b, 'router') },
      ...HOSTS.map((h) => ({ name: h, pid: hosts[h]!.pid, status: () => readStatus(b, h) })),
      { name: 'peer', pid: peer.proc.pid, status: () => readPeerStatus(peer.runDir) },
    ];
    const procs = [router, ...HOSTS.map((h) => hosts[h]!), peer.proc];

    const http = await b.httpServer('server', { files: { 'soak.bin': FILE } });
    const iperfPort: Record<HostNode, number> = { h1: 5201, h2: 5202 };
    for (const h of HOSTS) await b.iperf3Server('server', { port: iperfPort[h] });
    await addLanHosts(b, [CHURN_CLIENT]);

    const tallies: Record<HostNode, TrafficTally> = { h1: newTally(), h2: newTally() };
    const turns: Record<HostNode, Turns> = { h1: new Turns(), h2: new Turns() };
    const churn: Churn = { rounds: 0, granted: 0, refused: 0 };
    const withdrawals: { t: number; host: string; kind: string; revoked: number; recoverySeconds: number }[] =
      [];
    const samples: Sample[] = [];
    const problems: string[] = [];
    const start = Date.now();
    const elapsed = (): number => (Date.now() - start) / 1000;
    const end = start + MINUTES * 60_000;
    let stopping = false;
    const stop = (): boolean => stopping || Date.now() >= end;

    const events = (): Record<string, number> => {
      const e: Record<string, number> = {};
      for (const h of HOSTS)
        for (const [k, v] of Object.entries(tallies[h])) if (typeof v === 'number') e[`${h}.${k}`] = v;
      e['churn.rounds'] = churn.rounds;
      e['churn.granted'] = churn.granted;
      e['withdrawals'] = withdrawals.length;
      return e;
    };
    const sampleAll = async (): Promise<void> => {
      const t = elapsed();
      const s: Sample = { t, daemons: {}, events: events() };
      for (const [i, d] of daemons.entries()) {
        if (!procs[i]!.running()) {
          problems.push(`${d.name} stopped at ${t.toFixed(0)} s: ${procs[i]!.stderr().slice(-500)}`);
          continue;
        }
        try {
          s.daemons[d.name] = await sampleDaemon(d, probeDir);
        } catch (e) {
          problems.push(`${d.name} not sampled at ${t.toFixed(0)} s: ${(e as Error).message}`);
        }
      }
      samples.push(s);
    };

    const sampler = (async () => {
      while (!stop()) {
        await sampleAll();
        const m = samples.at(-1)!;
        const line = daemons
          .map((d) => {
            const x = m.daemons[d.name];
            return x === undefined
              ? `${d.name} -`
              : `${d.name} rss ${(x.rssBytes / 2 ** 20).toFixed(1)} heap ${(x.heapUsedBytes / 2 ** 20).toFixed(2)} fds ${x.openFds}`;
          })
          .join(' | ');
        const tcp = HOSTS.map(
          (h) => `${h} ${tallies[h].tcpRuns - tallies[h].tcpFailures}/${tallies[h].tcpRuns}`,
        );
        log(`${m.t.toFixed(0)} s: ${line} | tcp ok ${tcp.join(' ')}`);
        await sleep(Math.max(0, start + samples.length * INTERVAL_S * 1000 - Date.now()));
      }
    })();
    // Every minute from 30 s on, each host in turn: by the second half of even a short run every
    // withdrawal path has run once, so what the second half shows is repetition, not first use.
    const withdrawer = (async () => {
      for (let n = 0; ; n++) {
        while (!stop() && Date.now() < start + 30_000 + n * 60_000) await sleep(250);
        if (stop()) return;
        for (const host of HOSTS) {
          const w = await turns[host]
            .take(() => withdrawAndRecover(b, host))
            .catch((e: Error) => {
              problems.push(`${host} at ${elapsed().toFixed(0)} s: ${e.message}`);
              log(`PROBLEM: ${problems.at(-1)!}`);
              return undefined;
            });
          if (w === undefined) continue;
          withdrawals.push({
            t: w.t - start / 1000,
            host,
            kind: KIND,
            revoked: w.revoked,
            recoverySeconds: w.recoverySeconds,
          });
          log(
            `withdrew ${host}'s ${KIND} blocks (${w.revoked} certificates revoked); recovered after ${w.recoverySeconds.toFixed(1)} s`,
          );
        }
      }
    })();
    const loops = [
      sampler,
      withdrawer,
      leaseChurn(bed, churn, stop),
      ...HOSTS.map((h) =>
        runTraffic(
          b,
          h,
          { iperfPort: iperfPort[h], url: http.url(TOPOLOGY.server.wan, 'soak.bin'), file: FILE },
          tallies[h],
          turns[h],
          stop,
        ),
      ),
    ];
    const settled = await Promise.allSettled(loops);
    stopping = true;
    for (const s of settled)
      if (s.status === 'rejected') problems.push(String((s.reason as Error).stack ?? s.reason));
    await sampleAll();

    // The daemons' own logs, for whoever looks into a failure afterwards (the testbed goes).
    for (const [i, d] of daemons.entries())
      writeFileSync(join(OUT, `${d.name}.log`), `${procs[i]!.stdout()}\n${procs[i]!.stderr()}`);
    const csv = join(OUT, 'soak.csv');
    writeCsv(csv, samples);
    const svg = await plot(
      OUT,
      samples,
      withdrawals.map((w) => w.t),
    );
    const grew = growth(samples, MINUTES * 60);
    const tcpFailures = HOSTS.reduce((n, h) => n + tallies[h].tcpFailures + tallies[h].curlFailures, 0);
    const summary = {
      minutes: MINUTES,
      seconds: Math.round(elapsed()),
      samples: samples.length,
      withdrawKind: KIND,
      withdrawals,
      churn,
      traffic: tallies,
      tcpFailures,
      // What went through ESP: packets the hosts sealed and the peer opened, and the other way.
      esp: Object.fromEntries(
        Object.entries(samples.at(-1)?.daemons ?? {}).map(([name, d]) => [
          name,
          {
            protected: d.counters['ipsec.outbound.protected'] ?? 0,
            accepted: d.counters['ipsec.inbound.accepted'] ?? 0,
          },
        ]),
      ),
      growth: grew.map(rounded),
      grew: grew.filter((g) => g.grew).map((g) => `${g.daemon} ${g.metric}`),
      problems,
      csv,
      picture: svg,
    };
    writeFileSync(join(OUT, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    for (const g of grew)
      log(
        `${g.daemon.padEnd(6)} ${g.metric.padEnd(13)} ${g.slopePerMinute.toFixed(1).padStart(12)}/min (limit ${g.limit}${halvesText(g)}) ${g.grew ? 'GREW' : 'flat'}`,
      );
    log(`TCP failures: ${tcpFailures}; problems: ${problems.length}; ${csv}, ${svg}`);
    console.log(JSON.stringify(summary));
    return summary.grew.length === 0 && tcpFailures === 0 && problems.length === 0 ? 0 : 1;
  } finally {
    await bed.down();
  }
}

process.exitCode = values.report !== undefined ? await report(values.report) : await main();
