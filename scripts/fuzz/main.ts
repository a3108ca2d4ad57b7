/**
 * npm run fuzz — malformed packets at volume (scripts/fuzz/run.ts,
 * docs/benchmarks.md). Root; makes its own testbed `bn<pid>-` and always
 * removes it.
 *
 *   npm run fuzz -- [--packets 1000000] [--pps 20000] [--seed 1] [--datapath ebpf|tun] [--json]
 *
 * Prints, per stream, what was sent, forwarded and dropped by reason, and
 * whether the sums match; exits 1 when any does not, a daemon restarted or
 * stopped answering, or a valid datagram no longer gets through.
 */
import { parseArgs } from 'node:util';
import { MalformedVolume, type FuzzResult } from './run.ts';

const { values } = parseArgs({
  options: {
    packets: { type: 'string', default: '1000000' },
    pps: { type: 'string', default: '20000' },
    seed: { type: 'string', default: '1' },
    datapath: { type: 'string', default: 'ebpf' },
    json: { type: 'boolean', default: false },
  },
});
const packets = Number(values.packets);
const pps = Number(values.pps);
if (!Number.isInteger(packets) || packets < 10)
  throw new Error(`--packets ${values.packets}: a whole number >= 10`);
if (!Number.isInteger(pps) || pps < 1) throw new Error(`--pps ${values.pps}: a whole number`);
if (values.datapath !== 'ebpf' && values.datapath !== 'tun')
  throw new Error(`--datapath ${values.datapath}: ebpf or tun`);

const log = (line: string): void => console.error(line);

function report(r: FuzzResult): string {
  const lines: string[] = [];
  lines.push(`router data path: ${r.dataPath}`);
  for (const s of r.streams) {
    lines.push('');
    lines.push(`${s.name}: ${s.what}  (${s.seconds.toFixed(1)} s)`);
    lines.push(`  sent ${s.sent}${s.failed > 0 ? ` (tcpreplay failed ${s.failed} more)` : ''}`);
    lines.push(`  forwarded ${s.forwarded}`);
    lines.push(`  dropped ${s.dropped}`);
    const width = Math.max(0, ...Object.keys(s.drops).map((k) => k.length));
    for (const [k, v] of Object.entries(s.drops).sort((a, b) => b[1] - a[1]))
      lines.push(`    ${k.padEnd(width)}  ${v}`);
    lines.push(
      `  sent = forwarded + dropped: ${s.sent} ${s.balanced ? '=' : '!='} ${s.forwarded} + ${s.dropped}  ${s.balanced ? 'ok' : 'MISMATCH'}`,
    );
    if (s.fastSeen !== undefined)
      lines.push(
        `  fast path: saw ${s.fastSeen}, passed ${s.fastPassed} = slow path read ${s.slowRead} + kernel dropped ${s.kernelDropped} + lost in a full queue ${s.queueDropped}: ${s.fastBalanced ? 'ok' : 'MISMATCH'}`,
      );
  }
  lines.push('');
  lines.push(
    `pids before ${JSON.stringify(r.pids.before)}, after ${JSON.stringify(r.pids.after)}: ${r.restarted.length === 0 ? 'no restarts' : `RESTARTED ${r.restarted.join(' ')}`}`,
  );
  lines.push(`status answered: ${r.silent.length === 0 ? 'all' : `NOT ${r.silent.join(' ')}`}`);
  lines.push(`valid datagram h1 -> server -> h1 afterwards: ${r.validForwarded ? 'yes' : 'NO'}`);
  lines.push(r.ok ? 'all sums match' : 'FAILED');
  return lines.join('\n');
}

const run = new MalformedVolume({
  packets,
  pps,
  seed: Number(values.seed),
  log,
  datapath: values.datapath,
});
const result = await run.run();
console.log(values.json ? JSON.stringify(result, null, 2) : report(result));
process.exitCode = result.ok ? 0 : 1;
