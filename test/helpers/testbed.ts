/**
 * The namespace testbed (scripts/testbed) for vitest. Each test file gets a
 * testbed of its own under a unique prefix, so tests never touch a
 * developer's running `dn-` testbed nor each other, and the testbed is torn
 * down after the file: by afterAll normally, by an exit/signal hook when the
 * run is cut short, and by the next run's sweep when even that was missed.
 *
 *   const bed = useTestbed();
 *   it('h1 reaches the router', async () => {
 *     expect((await bed().ping('h1', TOPOLOGY.router.lan)).received).toBeGreaterThan(0);
 *   });
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { NODES, TOPOLOGY, type MultiRouterNode, type TestbedNode } from '../../scripts/lib/topology.ts';
import { ROOT, TESTBED_SCRIPT, TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { ping, type PingResult } from '../../scripts/lib/testbed/ping.ts';
import { startCapture } from './capture.ts';
import type { Capture, CaptureOptions } from './capture.ts';
import { describe as describeResult, execIn, onExitCleanup, run, spawnBackground } from './process.ts';
import type { Background, ExecOptions, ExecResult, SpawnOptions } from './process.ts';
import { startHttpServer, startIperf3Server } from './servers.ts';
import type { HttpServer, HttpServerOptions, Iperf3Server, Iperf3ServerOptions } from './servers.ts';

// The topology (native-setup/topology.env) and the testbed's paths, for the tests.
export { NODES, ROOT, TESTBED_SCRIPT, TOPOLOGY };
export type { MultiRouterNode, PingResult, TestbedNode };

export interface TestbedOptions {
  /** Namespace prefix; default a fresh uniquePrefix(). */
  prefix?: string;
  /** Start the testbed's distnat processes (default true). */
  daemons?: boolean;
  /** A file replacing the testbed's process table (scripts/testbed --daemons-file). */
  daemonsFile?: string;
  /** Lines of a process table ("<name> <node> <command...>") replacing the built-in one; written to a file. */
  daemonTable?: string;
  /** Transmit checksum offload on the veths (default false). */
  offload?: boolean;
  /** 2: the layout of scripts/testbed --routers 2 (router2, the etcd cluster, BGP); default 1. */
  routers?: 1 | 2;
}

// Test and benchmark prefixes carry the owning process's pid, so a later run
// can tell a leftover (owner dead) from a testbed that is in use.
const OWNED_PREFIX = /^(?:dt(\d+)x[0-9a-z]+|bn(\d+))-$/;

/** A prefix no other process uses: dt<pid>x<random>-. */
export function uniquePrefix(): string {
  return `dt${process.pid}x${Math.floor(Math.random() * 36 ** 4)
    .toString(36)
    .padStart(4, '0')}-`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the testbeds of test and benchmark processes that no longer exist. */
export async function sweepStaleTestbeds(): Promise<string[]> {
  const list = await run(['ip', 'netns', 'list']);
  const prefixes = new Set<string>();
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    for (const node of NODES) {
      if (!name.endsWith(node)) continue;
      const prefix = name.slice(0, -node.length);
      const m = OWNED_PREFIX.exec(prefix);
      const owner = Number(m?.[1] ?? m?.[2]);
      if (m && owner !== process.pid && !alive(owner)) prefixes.add(prefix);
    }
  }
  for (const prefix of prefixes)
    await run([TESTBED_SCRIPT, '--prefix', prefix, '-q', 'down'], { timeoutMs: 60_000 });
  return [...prefixes];
}

export class Testbed {
  /** Where the testbed keeps pid files, logs, daemon state and certificates. */
  readonly layout: TestbedLayout;
  private readonly background = new Set<Background>();
  private readonly captures = new Set<Capture>();
  private readonly scratch: string;
  private unregisterExit: () => void;
  private isDown = false;

  private constructor(
    readonly prefix: string,
    private options: TestbedOptions,
  ) {
    this.layout = new TestbedLayout(prefix);
    this.scratch = mkdtempSync(join(tmpdir(), `distnat-${prefix}`));
    this.unregisterExit = onExitCleanup(() => this.downSync());
  }

  /** Brings a testbed up (sweeping stale test testbeds first); tears it down again if that fails. */
  static async up(options: TestbedOptions = {}): Promise<Testbed> {
    if (process.getuid?.() !== 0) throw new Error('the namespace testbed needs root');
    await sweepStaleTestbeds();
    const bed = new Testbed(options.prefix ?? uniquePrefix(), options);
    try {
      await bed.reconfigure(options);
    } catch (e) {
      await bed.down();
      throw e;
    }
    return bed;
  }

  /**
   * A testbed that is not up yet, under a prefix of the caller's:
   * reconfigure() brings it up, and the exit hook takes it down whatever
   * happens (the benchmarks, which bring theirs up more than once).
   */
  static prepare(prefix: string): Testbed {
    return new Testbed(prefix, {});
  }

  /**
   * `scripts/testbed up` with these options from now on: it repairs what is
   * wrong, applies a changed offload mode and starts what the (new) process
   * table lists that does not run.
   */
  async reconfigure(options: TestbedOptions, execOptions: ExecOptions = {}): Promise<void> {
    this.options = options;
    const result = await this.script(['up'], { timeoutMs: 120_000, ...execOptions });
    if (result.code !== 0) throw new Error(`scripts/testbed up (${this.prefix}): ${describeResult(result)}`);
  }

  /** The options of the last up. */
  get current(): TestbedOptions {
    return this.options;
  }

  /** Where the testbed keeps pid files and logs. */
  get runDir(): string {
    return this.layout.runDir;
  }

  /** A directory for this testbed's temporary files, removed by down(). */
  get scratchDir(): string {
    return this.scratch;
  }

  ns(node: MultiRouterNode): string {
    return this.layout.ns(node);
  }

  /** Runs scripts/testbed with this testbed's prefix and options, e.g. script(['status']). */
  script(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const flags = ['--prefix', this.prefix, '--offload', this.options.offload === true ? 'on' : 'off'];
    if (this.options.daemons === false) flags.push('--no-daemons');
    else flags.push('--daemons');
    let daemonsFile = this.options.daemonsFile;
    if (this.options.daemonTable !== undefined) {
      daemonsFile = join(this.scratch, 'daemons');
      writeFileSync(daemonsFile, this.options.daemonTable);
    }
    if (daemonsFile !== undefined) flags.push('--daemons-file', daemonsFile);
    if (this.options.routers !== undefined) flags.push('--routers', String(this.options.routers));
    return run([TESTBED_SCRIPT, ...flags, ...args], { timeoutMs: 60_000, ...options });
  }

  exec(node: MultiRouterNode, argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return execIn(this.ns(node), argv, options);
  }

  /** Runs a shell script in the node's namespace. */
  sh(node: MultiRouterNode, script: string, options?: ExecOptions): Promise<ExecResult> {
    return execIn(this.ns(node), ['sh', '-c', script], options);
  }

  /** ICMP echo from a node, with the testbed's own client (as scripts/testbed ping and the demo). */
  ping(node: MultiRouterNode, address: string, { count = 3, waitS = 1 } = {}): Promise<PingResult> {
    return ping(this.ns(node), address, { count, waitS, intervalS: 0.1 });
  }

  /** A background process in the node's namespace, stopped by down() at the latest. */
  spawn(node: MultiRouterNode, argv: readonly string[], options?: SpawnOptions): Background {
    return this.track(spawnBackground(this.ns(node), argv, options));
  }

  /** A capture on `iface` of `node`, already active; stopped by down() at the latest. */
  async capture(node: MultiRouterNode, iface: string, options: CaptureOptions = {}): Promise<Capture> {
    const capture = await startCapture(this.ns(node), iface, {
      file: join(this.scratch, `${node}-${iface}-${Date.now()}.pcapng`),
      ...options,
    });
    this.captures.add(capture);
    return capture;
  }

  async httpServer(node: TestbedNode, options?: HttpServerOptions): Promise<HttpServer> {
    return this.track(await startHttpServer(this.ns(node), options));
  }

  async iperf3Server(node: TestbedNode, options?: Iperf3ServerOptions): Promise<Iperf3Server> {
    return this.track(await startIperf3Server(this.ns(node), options));
  }

  /** Stops what this object started, then `scripts/testbed down`. Safe to call twice. */
  async down(): Promise<void> {
    if (this.isDown) return;
    this.isDown = true;
    for (const capture of this.captures) await capture.stop({ settleMs: 0 }).catch(() => undefined);
    await Promise.all([...this.background].map((bg) => bg.stop()));
    const result = await this.script(['-q', 'down']);
    this.unregisterExit();
    if (process.env['DN_KEEP_CAPTURES'] !== '1') rmSync(this.scratch, { recursive: true, force: true });
    if (result.code !== 0)
      throw new Error(`scripts/testbed down (${this.prefix}): ${describeResult(result)}`);
  }

  /** Makes down() stop a background process started elsewhere. */
  track<T extends Background>(bg: T): T {
    this.background.add(bg);
    void bg.exited.then(() => this.background.delete(bg));
    return bg;
  }

  /** For the exit hook: synchronous, best effort. */
  private downSync(): void {
    if (this.isDown) return;
    this.isDown = true;
    try {
      execFileSync(TESTBED_SCRIPT, ['--prefix', this.prefix, '-q', 'down'], {
        stdio: 'ignore',
        timeout: 30_000,
      });
    } catch {
      // the next run's sweep removes what is left
    }
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/**
 * Registers beforeAll/afterAll for the calling test file and returns an
 * accessor for its testbed. Teardown runs even when tests fail.
 */
export function useTestbed(options: TestbedOptions = {}): () => Testbed {
  let bed: Testbed | undefined;
  beforeAll(async () => {
    bed = await Testbed.up(options);
  }, 120_000);
  afterAll(async () => {
    await bed?.down();
  }, 120_000);
  return () => {
    if (bed === undefined) throw new Error('the testbed is not up (did beforeAll fail?)');
    return bed;
  };
}
