/**
 * ICMP echo from a testbed namespace through ping.py, the testbed's own
 * client (scripts/testbed ping runs the same program).
 */
import { join } from 'node:path';
import { describe, execIn } from '../../../test/helpers/process.ts';
import { PYTHON, ROOT } from './layout.ts';

export const PING_PY = join(ROOT, 'scripts', 'lib', 'testbed', 'ping.py');

export interface PingOptions {
  count?: number;
  /** How long to wait for each reply. */
  waitS?: number;
  /** Between requests. */
  intervalS?: number;
}

export interface PingResult {
  sent: number;
  received: number;
  /** Average round trip in ms, when anything came back. */
  avgMs?: number;
  /** What ping.py printed: a line per request, then the summary. */
  output: string;
}

/** Pings `address` from namespace `ns` (3 requests 0.2 s apart, 1 s wait for each, by default). */
export async function ping(
  ns: string,
  address: string,
  { count = 3, waitS = 1, intervalS = 0.2 }: PingOptions = {},
): Promise<PingResult> {
  const r = await execIn(ns, [PYTHON, PING_PY, address, String(count), String(intervalS), String(waitS)], {
    timeoutMs: 10_000 + count * (waitS + intervalS) * 1000,
  });
  const summary = /(\d+) sent, (\d+) received(?:, rtt min\/avg\/max [\d.]+\/([\d.]+)\/)?/.exec(r.stdout);
  if (!summary) throw new Error(`ping from ${ns} to ${address}: ${describe(r)}`);
  const result: PingResult = { sent: Number(summary[1]), received: Number(summary[2]), output: r.stdout };
  if (summary[3] !== undefined) result.avgMs = Number(summary[3]);
  return result;
}
