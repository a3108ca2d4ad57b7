/**
 * The reader side of shared-index.test.ts, in a worker thread: looks up the
 * shared ownership index as fast as it can while the main thread changes it,
 * and counts what it must never see (module doc of the test).
 */
import { parentPort } from 'node:worker_threads';
import {
  LeaseOwnership,
  type OwnershipMemory,
} from '../../../src/router/data-path/tables/lease-ownership.ts';

export interface ReaderRun {
  readonly memory: OwnershipMemory;
  /** [0] last removed round (-1 none), [1] stop, [2] missed, [3] stale, [4] passes, [5] started */
  readonly control: SharedArrayBuffer;
  readonly stable: { host: number; ports: [number, number]; spis: [number, number] };
  /** Round r's block: ports portBase + r*64 .., SPIs spiBase + r*64 .., host hostBase + r. */
  readonly churn: { portBase: number; spiBase: number; hostBase: number; counts: number[] };
}

/** One lookup, announced first: for the test of a reader caught inside a delete. */
export interface OneLookup {
  readonly one: true;
  readonly memory: OwnershipMemory;
  readonly spi: number;
}

const port = parentPort!;
port.on('message', (run: ReaderRun | OneLookup) => {
  if ('one' in run) {
    const own = LeaseOwnership.reader(run.memory);
    port.postMessage({ probing: true });
    port.postMessage({ owner: own.spiOwner(run.spi) });
    return;
  }
  const own = LeaseOwnership.reader(run.memory);
  const ctl = new Int32Array(run.control);
  const { stable, churn } = run;
  let missed = 0;
  let stale = 0;
  let passes = 0;
  let seed = 12345;
  const random = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  Atomics.store(ctl, 5, 1);
  while (Atomics.load(ctl, 1) === 0) {
    // A value that stays present is never missed, whatever moves around it.
    for (let s = stable.spis[0]; s < stable.spis[1]; s++) if (own.spiOwner(s) !== stable.host) missed++;
    for (let p = stable.ports[0]; p < stable.ports[1]; p += 7) if (own.portOwner(p) !== stable.host) missed++;
    if (!own.holds(stable.host)) missed++;
    // A block whose removal returned is gone: read the round first, then look.
    const removed = Atomics.load(ctl, 0);
    if (removed >= 0) {
      for (let k = 0; k < 4; k++) {
        const r = random(removed + 1);
        const n = churn.counts[r]!;
        for (let i = 0; i < n; i++) {
          if (own.spiOwner(churn.spiBase + r * 64 + i) !== 0) stale++;
          if (own.portOwner(churn.portBase + r * 64 + i) !== 0) stale++;
        }
        if (own.holds(churn.hostBase + r)) stale++;
      }
    }
    passes++;
  }
  port.postMessage({ missed, stale, passes });
});
