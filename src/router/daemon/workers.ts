/**
 * The router's TUN path on several cores (`workers: N`, docs/router.md
 * "Workers"): N worker threads (worker-main.ts), each forwarding one queue
 * of the multi-queue TUN and its share of the LAN's IP-in-IP, while the main
 * thread keeps everything else (PAP, the lease table, the control socket,
 * status, metrics, the eBPF maps).
 *
 *   main thread: lease events --> RouterTables --> LeaseOwnership (shared memory, the one writer)
 *                                   |                  ^ read, no lock, by every worker
 *                                   +--> message --> each worker's IAPTT, fragments, withdrawn ports/SPIs
 *   worker i:    TUN queue i + raw socket (share i) --> RouterForwarder --> counters, IAPTT (shared memory)
 *
 * The main thread reads the workers' counters and IAPTT rows from shared
 * memory, so status and metrics never wait for a worker. A worker that
 * fails is fatal: `failed` settles, and the router stops and exits with an
 * error, for its service manager to start it again (restarting one worker in
 * place would hide a fault that will come back).
 */
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CounterSum } from '../../metrics/counters.ts';
import type { Logger } from '../../util/log.ts';
import type { DropReason, TrafficCounter } from '../data-path/counters.ts';
import { DROP_REASONS, TRAFFIC_COUNTERS } from '../data-path/counters.ts';
import type { RouterForwarding } from '../data-path/forwarder.ts';
import { Iaptt } from '../data-path/tables/iaptt.ts';
import type { LeasedBlock, OwnershipChange } from '../data-path/tables/lease-ownership.ts';
import type { RouterTables, TablesFollower } from '../data-path/tables/router-tables.ts';
import type { WorkerCommon, WorkerMessage, WorkerReport, WorkerSetup } from './worker-protocol.ts';
import { WORKER_DEVICES, WORKER_GAUGES } from './worker-protocol.ts';
import { emptyStats, type IoStats } from '../../io/types.ts';

export interface ForwardingWorkersOptions extends WorkerCommon {
  /** The main thread's tables; their ownership must be LeaseOwnership.shared(). */
  readonly tables: RouterTables;
  readonly log: Logger;
  /** How long a worker may take to open its devices. Default 10 s. */
  readonly startTimeoutMs?: number;
}

interface Running {
  readonly worker: Worker;
  readonly drops: Float64Array;
  readonly traffic: Float64Array;
  readonly gauges: Float64Array;
  readonly iaptt: Iaptt;
  readonly exited: Promise<void>;
  stopped: boolean;
}

/**
 * The worker's code: dist/router-worker.js once built; under tsx and vitest
 * (sources) a bootstrap that registers tsx's loader in the new thread first,
 * since loader flags given to the process do not reach worker threads.
 */
function workerScript(): { source: URL | string; eval: boolean } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const tsx = import.meta.resolve('tsx/esm/api');
    const main = new URL('./worker-main.ts', here).href;
    return {
      source: `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(main)}); });`,
      eval: true,
    };
  }
  for (const rel of ['./router-worker.js', '../router-worker.js']) {
    const url = new URL(rel, here);
    if (existsSync(fileURLToPath(url))) return { source: url, eval: false };
  }
  throw new Error(`router-worker.js is not beside ${fileURLToPath(here)}: rebuild distnat (npm run build)`);
}

export class ForwardingWorkers implements RouterForwarding, TablesFollower {
  readonly drops: CounterSum<DropReason>;
  readonly traffic: CounterSum<TrafficCounter>;
  readonly tables: RouterTables;
  /** Settles when a worker fails or exits unasked: the router must stop. */
  readonly failed: Promise<Error>;
  readonly #running: Running[];
  readonly #log: Logger;
  #fail: (e: Error) => void = () => {};
  #stopping = false;

  private constructor(o: ForwardingWorkersOptions, running: Running[]) {
    this.tables = o.tables;
    this.#running = running;
    this.#log = o.log;
    this.drops = new CounterSum(
      DROP_REASONS,
      running.map((r) => r.drops),
    );
    this.traffic = new CounterSum(
      TRAFFIC_COUNTERS,
      running.map((r) => r.traffic),
    );
    this.failed = new Promise((resolve) => (this.#fail = resolve));
  }

  /** Starts the workers and waits until each has its devices open; a failure stops them all and throws. */
  static async start(o: ForwardingWorkersOptions): Promise<ForwardingWorkers> {
    const memory = o.tables.ownership.memory;
    if (memory === undefined) throw new Error('the workers need a shared ownership index');
    const script = workerScript();
    const running: Running[] = [];
    const ready: Promise<void>[] = [];
    for (let index = 0; index < o.count; index++) {
      const drops = new SharedArrayBuffer(DROP_REASONS.length * 8);
      const traffic = new SharedArrayBuffer(TRAFFIC_COUNTERS.length * 8);
      const gauges = new SharedArrayBuffer(WORKER_GAUGES.length * 8);
      const iaptt = Iaptt.shared(o.idle, o.sharedAddresses?.length ?? 1);
      const setup: WorkerSetup = {
        index,
        count: o.count,
        tun: o.tun,
        offload: o.offload,
        lanInterface: o.lanInterface,
        sharedAddress: o.sharedAddress,
        ...(o.sharedAddresses === undefined ? {} : { sharedAddresses: o.sharedAddresses }),
        lanAddress: o.lanAddress,
        lanMtu: o.lanMtu,
        ownership: memory,
        iaptt: iaptt.memory!,
        idle: o.idle,
        drops,
        traffic,
        gauges,
        tickMs: o.tickMs,
      };
      const worker = new Worker(script.source, {
        workerData: setup,
        eval: script.eval,
        name: `distnat-router-${index}`,
      });
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      running.push({
        worker,
        exited,
        drops: new Float64Array(drops),
        traffic: new Float64Array(traffic),
        gauges: new Float64Array(gauges),
        iaptt,
        stopped: false,
      });
      ready.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`worker ${index} did not open its devices in time`)),
            o.startTimeoutMs ?? 10_000,
          );
          const settle = (e?: Error) => {
            clearTimeout(timer);
            worker.off('message', onMessage);
            worker.off('error', onError);
            worker.off('exit', onExit);
            if (e === undefined) resolve();
            else reject(e);
          };
          const onMessage = (m: WorkerReport) => {
            if (m.type === 'ready') settle();
            else if (m.type === 'failed') settle(new Error(m.error));
          };
          const onError = (e: Error) => settle(e);
          const onExit = (code: number) =>
            settle(new Error(`worker ${index} exited (${code}) while starting`));
          worker.on('message', onMessage);
          worker.on('error', onError);
          worker.on('exit', onExit);
        }),
      );
    }
    const pool = new ForwardingWorkers(o, running);
    const results = await Promise.allSettled(ready);
    const failure = results.find((r) => r.status === 'rejected');
    if (failure !== undefined) {
      await pool.stop();
      throw (failure as PromiseRejectedResult).reason as Error;
    }
    running.forEach((r, i) => pool.#watch(r, i));
    o.tables.setFollower(pool);
    return pool;
  }

  get count(): number {
    return this.#running.length;
  }

  /** The outbound SA tables are the workers' own; their sizes are among the gauges. */
  get outboundSas(): { readonly size: number; expire(now: number): void } {
    const size = this.gauge('tables.outbound_sas');
    return { size, expire: () => {} };
  }

  #watch(r: Running, index: number): void {
    const die = (why: string) => {
      if (this.#stopping || r.stopped) return;
      r.stopped = true;
      const e = new Error(`forwarding worker ${index} ${why}`);
      this.#log.error(e.message);
      this.#fail(e);
    };
    r.worker.on('message', (m: WorkerReport) => {
      if (m.type === 'failed') die(`failed: ${m.error}`);
    });
    r.worker.on('error', (e: Error) => die(`failed: ${e.message}`));
    r.worker.on('exit', (code: number) => die(`exited (code ${code})`));
  }

  #post(m: WorkerMessage): void {
    for (const r of this.#running) if (!r.stopped) r.worker.postMessage(m);
  }

  onAdded(lease: LeasedBlock, change: OwnershipChange): void {
    if (change === 'added') this.#post({ type: 'added', lease: plain(lease), change });
  }

  onRemoved(lease: LeasedBlock, withdrawn: boolean, change: OwnershipChange, at: number): void {
    if (change === 'removed') this.#post({ type: 'removed', lease: plain(lease), withdrawn, change, at });
  }

  /** A status counter name of WORKER_GAUGES summed over the workers (as of their last tick). */
  gauge(name: string): number {
    const i = WORKER_GAUGES.indexOf(name);
    let sum = 0;
    for (const r of this.#running) sum += r.gauges[i] ?? 0;
    return sum;
  }

  /** All gauges, summed, by status name. */
  gauges(): Record<string, number> {
    const out: Record<string, number> = {};
    WORKER_GAUGES.forEach((name, i) => {
      let sum = 0;
      for (const r of this.#running) sum += r.gauges[i]!;
      out[name] = sum;
    });
    return out;
  }

  /** The workers' devices of one role, their stats summed, as a device of the main thread would show them. */
  devices(): Record<(typeof WORKER_DEVICES)[number], { stats(): IoStats }> {
    const of = (role: string) => ({
      stats: () => {
        const s = emptyStats();
        for (const k of Object.keys(s) as (keyof IoStats)[]) s[k] = this.gauge(`io.${role}.${k}`);
        return s;
      },
    });
    return { tun: of('tun'), 'lan-rx': of('lan-rx'), 'lan-tx': of('lan-tx') };
  }

  /** Each worker's own traffic, for per-worker detail. */
  perWorker(): Record<TrafficCounter, number>[] {
    return this.#running.map((_, i) => {
      const out = {} as Record<TrafficCounter, number>;
      for (const n of TRAFFIC_COUNTERS) out[n] = this.traffic.partOf(i, n);
      return out;
    });
  }

  /** Carries the workers' FIG. 12 rows into the main thread's IAPTT (only rows whose port the host still holds). */
  mergeIaptt(): void {
    const own = this.tables.ownership;
    const owns = (port: number, host: number) => own.portOwner(port) === host;
    for (const r of this.#running) this.tables.iaptt.mergeFrom(r.iaptt, owns);
  }

  /** Asks each worker to write its gauges now and waits for them (tests, and before a final status). */
  async refreshGauges(): Promise<void> {
    await Promise.all(
      this.#running
        .filter((r) => !r.stopped)
        .map(
          (r) =>
            new Promise<void>((resolve) => {
              const on = (m: WorkerReport) => {
                if (m.type !== 'gauges') return;
                r.worker.off('message', on);
                resolve();
              };
              r.worker.on('message', on);
              r.worker.postMessage({ type: 'gauges' } satisfies WorkerMessage);
            }),
        ),
    );
  }

  /** Stops every worker: each detaches, closes its queue and sockets and ends; one that does not in 5 s is terminated. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.tables.setFollower(undefined);
    await Promise.all(
      this.#running.map(async (r) => {
        if (!r.stopped) r.worker.postMessage({ type: 'stop' } satisfies WorkerMessage);
        r.stopped = true;
        const timer = setTimeout(() => void r.worker.terminate(), 5000);
        await r.exited;
        clearTimeout(timer);
      }),
    );
  }
}

/** A lease as plain data (structured clone copies own fields only; this keeps just what the tables read). */
function plain(lease: LeasedBlock): LeasedBlock {
  return { kind: lease.kind, host: lease.host, lowest: lease.lowest, count: lease.count };
}
