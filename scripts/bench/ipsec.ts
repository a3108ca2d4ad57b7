/**
 * What IPsec costs through distnat: `npm run bench:ipsec [-- --seconds 5]`.
 *
 * One testbed of its own (torn down whatever happens), iperf3 TCP from h1
 * to the server (203.0.113.3) through the shared address, in turn:
 *
 *   plain     router + h1 without --ipsec, no peer: the distnat path alone
 *   bypass    h1 with --ipsec and `distnat peer` on the server, to a port no
 *             policy names: clear, but through both IPsec-capable processes
 *   esp-gcm   same, to the port of the ESP transport AES-GCM-128 SA
 *
 * The goal (docs/ipsec.md): ESP costs no more than half the plain
 * throughput. Then the engine's own per-packet seal and open cost in
 * process, from scripts/bench/ipsec-micro.ts's cases.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { mbitPerS } from '../../test/helpers/distnat.ts';
import { KEYS, startHostAgent, startPeer, startRouter } from '../../test/helpers/ipsec.ts';
import { describe as describeResult } from '../../test/helpers/process.ts';
import { TOPOLOGY, Testbed, uniquePrefix } from '../../test/helpers/testbed.ts';
import { writeKeying } from '../../test/netns/ipsec-keys.ts';
import { sealOpenCost } from './ipsec-micro.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    'micro-seconds': { type: 'string', default: '1' },
  },
});
const SECONDS = Number(values.seconds);
const MICRO_SECONDS = Number(values['micro-seconds']);
const SERVER = TOPOLOGY.server.wan;
const CLEAR_PORT = 5299;
const GOAL = 0.5;

interface Row {
  path: string;
  bitsPerSecond: number;
  retransmits: number;
}

async function iperf(bed: Testbed, port: number, path: string): Promise<Row> {
  const server = await bed.iperf3Server('server', { port, bind: SERVER });
  try {
    const r = await bed.exec(
      'h1',
      ['iperf3', '-c', SERVER, '-p', String(port), '-t', String(SECONDS), '-O', '1', '-J'],
      { timeoutMs: (SECONDS + 30) * 1000 },
    );
    if (r.code !== 0) throw new Error(`iperf3 (${path}): ${describeResult(r)}`);
    const j = JSON.parse(r.stdout) as {
      end: { sum_sent: { retransmits?: number }; sum_received: { bits_per_second: number } };
    };
    return {
      path,
      bitsPerSecond: j.end.sum_received.bits_per_second,
      retransmits: j.end.sum_sent.retransmits ?? 0,
    };
  } finally {
    await server.stop();
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((row) => row[j]!.length)));
  return rows
    .map((row) =>
      row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join('  '),
    )
    .join('\n');
}

async function throughput(): Promise<Row[]> {
  const bed = await Testbed.up({ prefix: uniquePrefix(), daemons: false });
  try {
    await startRouter(bed);
    // Plain first: h1 then leases no SPIs, so the SPI block its keying file names is still the first one free.
    const plainAgent = await startHostAgent(bed, 'h1');
    const plain = await iperf(bed, KEYS.h1.iperf, 'plain (no --ipsec, no peer)');
    await plainAgent.stop({ timeoutMs: 10_000 });

    const file = join(bed.scratchDir, 'h1-ipsec.yaml');
    writeKeying(file, KEYS.h1);
    await startHostAgent(bed, 'h1', file);
    await startPeer(bed, [file], join(bed.scratchDir, 'peer'));
    const bypass = await iperf(bed, CLEAR_PORT, 'bypass (--ipsec and peer, no SA)');
    const esp = await iperf(bed, KEYS.h1.iperf, 'ESP transport AES-GCM-128');
    return [plain, bypass, esp];
  } finally {
    await bed.down();
  }
}

const t0 = Date.now();
console.log(
  `IPsec through distnat: iperf3 TCP h1 -> server, ${SECONDS} s each (first second omitted), ${process.version}\n`,
);
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
console.log(`load average before: ${load()} (the figures need a quiet machine: 2 cores run both ends)`);
const rows = await throughput();
console.log(`load average after: ${load()}\n`);
const plain = rows[0]!.bitsPerSecond;
console.log(
  table([
    ['path', 'throughput', 'of plain', 'retransmits'],
    ...rows.map((r) => [
      r.path,
      mbitPerS(r.bitsPerSecond),
      `${((r.bitsPerSecond / plain) * 100).toFixed(0)}%`,
      String(r.retransmits),
    ]),
  ]),
);
const ratio = rows[2]!.bitsPerSecond / plain;
console.log(
  `\nESP / plain = ${ratio.toFixed(2)}; goal >= ${GOAL} (IPsec costs no more than half): ${ratio >= GOAL ? 'met' : 'NOT met'}\n`,
);

console.log(
  `engine per packet in process (scripts/bench/ipsec-micro.ts cases, ${MICRO_SECONDS} s each, median):`,
);
const micro: string[][] = [
  ['suite', 'size', 'seal ns', 'open ns', 'seal + open ns', 'Mbit/s one core, both'],
];
for (const size of [64, 1400]) {
  const c = await sealOpenCost('gcm128', size, MICRO_SECONDS);
  const both = c.seal + c.open;
  micro.push([
    'ESP AES-GCM-128',
    `${size} B`,
    c.seal.toFixed(0),
    c.open.toFixed(0),
    both.toFixed(0),
    ((size * 8 * 1e3) / both).toFixed(0),
  ]);
}
console.log(table(micro));
console.log(`\n(${((Date.now() - t0) / 1000).toFixed(0)} s in all)`);
