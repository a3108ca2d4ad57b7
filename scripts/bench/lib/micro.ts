/**
 * The in-process timing harness of the per-packet benchmarks (codec.ts,
 * ipsec-micro.ts): a case prepares its packets and returns a step called
 * with a running packet number; the harness warms it up, collects garbage,
 * then times ROUNDS rounds, counting collections and heap growth.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface BenchCase {
  readonly name: string;
  /** Builds the packets; returns the step, called with a running packet number. Its result feeds a sink. */
  prepare(): (i: number) => number;
}

export interface MicroResult {
  /** ns per packet of the median round: the figure. */
  readonly median: number;
  /** ns per packet of the best round: what a quiet machine gives (a shared 2-core box is rarely quiet). */
  readonly best: number;
  readonly heapPerPacket: number;
  /** Collections while timing, and per million packets. */
  readonly gcs: number;
  readonly gcsPerMillion: number;
}

export interface MicroOptions {
  /** Steps between two clock reads. */
  readonly batch: number;
  readonly warmupMs: number;
  /** Call the step once first and refuse a negative result (a case that cannot run). */
  readonly checkFirst?: boolean;
}

const ROUNDS = 5;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
let gcCount = 0;
new PerformanceObserver((list) => {
  gcCount += list.getEntries().length;
}).observe({ entryTypes: ['gc'] });

/** Keeps the steps' results alive, so that nothing is optimised away. */
let sink = 0;

function loop(step: (i: number) => number, from: number, n: number): void {
  let acc = 0;
  for (let i = from; i < from + n; i++) acc ^= step(i);
  sink ^= acc;
}

export async function measure(c: BenchCase, seconds: number, o: MicroOptions): Promise<MicroResult> {
  const step = c.prepare();
  let i = 0;
  if (o.checkFirst === true && step(i++) < 0) throw new Error(`${c.name}: the step failed`);
  const warmEnd = performance.now() + o.warmupMs;
  while (performance.now() < warmEnd) {
    loop(step, i, o.batch);
    i += o.batch;
  }
  gc();
  await new Promise((r) => setTimeout(r, 50)); // let the observer see the warm-up's collections first
  const gcBefore = gcCount;
  const heapBefore = process.memoryUsage().heapUsed;
  const perRound: number[] = [];
  let total = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // performance.now() returns a double: unlike hrtime.bigint() it puts nothing on the heap per batch.
    const t0 = performance.now();
    const deadline = t0 + (seconds / ROUNDS) * 1e3;
    let n = 0;
    let now = t0;
    while (now < deadline) {
      loop(step, i, o.batch);
      i += o.batch;
      n += o.batch;
      now = performance.now();
    }
    perRound.push(((now - t0) * 1e6) / n);
    total += n;
  }
  const heapAfter = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 50));
  perRound.sort((x, y) => x - y);
  const gcs = gcCount - gcBefore;
  return {
    median: perRound[ROUNDS >> 1]!,
    best: perRound[0]!,
    heapPerPacket: (heapAfter - heapBefore) / total,
    gcs,
    gcsPerMillion: (gcs / total) * 1e6,
  };
}

/** Call once at the end: the steps' results stay observable, so no engine can drop the work as dead. */
export function observeSink(): void {
  if (sink === 0.5) console.log(sink);
}
