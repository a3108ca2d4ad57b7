/**
 * The soak's traffic: each host runs, round after round until told to stop,
 * a short TCP transfer (iperf3, through the host's IKE child SA, so ESP on
 * the WAN), a short UDP stream (iperf3 -u, plain), a file fetched with curl
 * and checked byte for byte (TCP through ESP again) and a few ICMP echoes.
 * Rates are kept low on purpose: a soak looks for what grows with time and
 * with events (leases, SAs, withdrawals), not for throughput, and the
 * machine is shared.
 *
 * A TCP failure is an iperf3 TCP run that does not complete or moves no
 * data, or a curl that fails or brings back other bytes than were served.
 */
import { join } from 'node:path';
import { sha256, sha256File } from '../../../test/helpers/distnat.ts';
import type { HostNode } from '../../../test/helpers/distnat.ts';
import { describe as describeResult, sleep } from '../../../test/helpers/process.ts';
import type { Testbed } from '../../../test/helpers/testbed.ts';
import { TOPOLOGY } from '../../lib/topology.ts';

export interface TrafficTally {
  tcpRuns: number;
  tcpFailures: number;
  tcpBytes: number;
  udpRuns: number;
  udpFailures: number;
  udpPackets: number;
  udpLost: number;
  curlRuns: number;
  curlFailures: number;
  pingSent: number;
  pingReceived: number;
  /** The last failures, newest last, for the report. */
  failures: string[];
}

export const newTally = (): TrafficTally => ({
  tcpRuns: 0,
  tcpFailures: 0,
  tcpBytes: 0,
  udpRuns: 0,
  udpFailures: 0,
  udpPackets: 0,
  udpLost: 0,
  curlRuns: 0,
  curlFailures: 0,
  pingSent: 0,
  pingReceived: 0,
  failures: [],
});

export interface TrafficTarget {
  /** The server's iperf3 port this host uses (an iperf3 server runs one test at a time). */
  iperfPort: number;
  /** The URL of the file curl fetches, and the file's bytes. */
  url: string;
  file: Buffer;
}

interface Iperf3Json {
  error?: string;
  end?: {
    sum_received?: { bytes?: number };
    sum?: { packets?: number; lost_packets?: number };
  };
}

function failed(t: TrafficTally, what: string): void {
  t.failures.push(`${new Date().toISOString()} ${what}`);
  console.error(`[soak] ${what}`);
  if (t.failures.length > 20) t.failures.shift();
}

/** iperf3's refusal while it still serves another run, and how often to ask before counting it. */
const SERVER_BUSY = /server is busy/;
const BUSY_ATTEMPTS = 5;

async function iperf3(
  bed: Testbed,
  node: HostNode,
  port: number,
  extra: readonly string[],
  seconds: number,
): Promise<{ ok: boolean; json: Iperf3Json; text: string }> {
  const argv = ['iperf3', '-c', TOPOLOGY.server.wan, '-p', String(port), '-t', String(seconds), '-J'];
  argv.push('--connect-timeout', '5000');
  for (let attempt = 1; ; attempt++) {
    const r = await bed.exec(node, [...argv, ...extra], { timeoutMs: (seconds + 30) * 1000 });
    let json: Iperf3Json = {};
    try {
      json = JSON.parse(r.stdout) as Iperf3Json;
    } catch {
      // no JSON: the run did not get that far; the exit status says so too
    }
    // The server answers "busy" while it still winds up this host's previous
    // run (its closing exchange can outlast the client's): the path carried
    // that answer, so it is no failure of distnat; ask again.
    if (json.error !== undefined && SERVER_BUSY.test(json.error) && attempt < BUSY_ATTEMPTS) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    return { ok: r.code === 0 && json.error === undefined, json, text: describeResult(r).slice(0, 300) };
  }
}

/** One round of every kind of traffic from `node`. */
async function round(bed: Testbed, node: HostNode, target: TrafficTarget, t: TrafficTally): Promise<void> {
  const tcp = await iperf3(bed, node, target.iperfPort, ['-b', '20M'], 4);
  t.tcpRuns++;
  const received = tcp.json.end?.sum_received?.bytes ?? 0;
  t.tcpBytes += received;
  if (!tcp.ok || received === 0) {
    t.tcpFailures++;
    failed(t, `${node} iperf3 TCP: ${tcp.json.error ?? tcp.text}`);
  }

  const udp = await iperf3(bed, node, target.iperfPort, ['-u', '-b', '2M', '-l', '1000'], 2);
  t.udpRuns++;
  if (!udp.ok) {
    t.udpFailures++;
    failed(t, `${node} iperf3 UDP: ${udp.json.error ?? udp.text}`);
  } else {
    t.udpPackets += udp.json.end?.sum?.packets ?? 0;
    t.udpLost += udp.json.end?.sum?.lost_packets ?? 0;
  }

  const out = join(bed.scratchDir, `soak-${node}.bin`);
  const curl = await bed.exec(node, ['curl', '-sS', '--max-time', '20', '-o', out, target.url], {
    timeoutMs: 30_000,
  });
  t.curlRuns++;
  const intact = curl.code === 0 && (await sha256File(out).catch(() => '')) === sha256(target.file);
  if (!intact) {
    t.curlFailures++;
    failed(t, `${node} curl: ${curl.code === 0 ? 'content differs' : describeResult(curl).slice(0, 300)}`);
  }

  const ping = await bed.exec(node, ['ping', '-c', '5', '-i', '0.2', '-W', '1', '-q', TOPOLOGY.server.wan], {
    timeoutMs: 15_000,
  });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(ping.stdout);
  t.pingSent += Number(m?.[1] ?? 5);
  t.pingReceived += Number(m?.[2] ?? 0);
}

/**
 * One host's turns: its traffic rounds and its withdrawals take turns, in
 * the order they ask. A withdrawal takes a host's ports away, and with them
 * every connection on them: what must survive it is the host, whose next
 * transfers must work, not a transfer under way on ports it no longer holds.
 */
export class Turns {
  #last: Promise<unknown> = Promise.resolve();

  take<T>(work: () => Promise<T>): Promise<T> {
    const done = this.#last.then(work);
    this.#last = done.catch(() => undefined);
    return done;
  }
}

/** Rounds from `node`, each in its turn, until `stop()` says so; resolves when the round under way has ended. */
export async function runTraffic(
  bed: Testbed,
  node: HostNode,
  target: TrafficTarget,
  tally: TrafficTally,
  turns: Turns,
  stop: () => boolean,
): Promise<void> {
  while (!stop()) {
    await turns.take(() => round(bed, node, target, tally));
    await sleep(500);
  }
}
