/**
 * The namespace testbed (scripts/testbed) for the topology benchmarks: a
 * prefix of its own (`bn<pid>-`, so a developer's `dn-` testbed and the
 * tests' `dt...-` ones are never touched), and teardown that happens however
 * the benchmark ends: `down()` normally, a synchronous `scripts/testbed down`
 * on exit, SIGINT, SIGTERM or SIGHUP, and for a benchmark killed outright the
 * next benchmark's sweep of `bn<pid>-` testbeds whose pid is gone.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, execIn, onExitCleanup, run, spawnBackground } from '../../../test/helpers/process.ts';
import type { Background, ExecOptions, ExecResult } from '../../../test/helpers/process.ts';
import { loadNative } from '../../../src/io/native.ts';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const TESTBED_SCRIPT = join(ROOT, 'scripts', 'testbed');

export type Node = 'lan' | 'router' | 'h1' | 'h2' | 'server';
const NODES: readonly Node[] = ['lan', 'router', 'h1', 'h2', 'server'];

/** DESIGN.md's addresses. */
export const ADDR = {
  shared: '198.51.100.30',
  routerLan: '10.0.0.7',
  routerWan: '203.0.113.1',
  h1: '10.0.0.1',
  h2: '10.0.0.3',
  server: '203.0.113.3',
  lanNet: '10.0.0.0/24',
  wanNet: '203.0.113.0/24',
} as const;

export interface BenchTestbedOptions {
  /** Start the testbed's distnat processes (default false: the benchmark decides). */
  daemons?: boolean;
  /** Lines of a process table ("<name> <node> <command...>") replacing the built-in one. */
  daemonTable?: string;
  /** Transmit checksum offload on the veths (scripts/testbed --offload). */
  offload?: boolean;
  /**
   * Leave bridged IPv4 passing through netfilter in the LAN namespace (the
   * kernel's default when br_netfilter is loaded, as on this machine).
   * Default false: the benchmarks turn it off, see bridgeNetfilter().
   */
  bridgeNetfilter?: boolean;
}

const PREFIX = /^bn(\d+)-$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Gives processes another nice value (the thread that is the pid: for Node,
 * the event loop that does the forwarding), and their scheduler autogroup
 * too: with autogroups (Debian's default) the CPU is first shared between
 * sessions, and every background process here has a session of its own, so
 * a nice value alone changes nothing between them.
 */
export async function renice(nice: number, pids: readonly number[]): Promise<void> {
  const r = await run(['renice', '-n', String(nice), '-p', ...pids.map(String)]);
  if (r.code !== 0) throw new Error(`renice ${nice} ${pids.join(' ')}: ${describe(r)}`);
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    } catch {
      // no autogroups in this kernel: the nice value is all there is
    }
  }
}

/** Removes the testbeds of benchmarks that were killed before they could clean up. */
export async function sweepStale(): Promise<string[]> {
  const list = await run(['ip', 'netns', 'list']);
  const stale = new Set<string>();
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    for (const node of NODES) {
      if (!name.endsWith(node)) continue;
      const prefix = name.slice(0, -node.length);
      const m = PREFIX.exec(prefix);
      if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) stale.add(prefix);
    }
  }
  for (const prefix of stale)
    await run([TESTBED_SCRIPT, '--prefix', prefix, '-q', 'down'], { timeoutMs: 60_000 });
  return [...stale];
}

export class BenchTestbed {
  readonly prefix = `bn${process.pid}-`;
  private readonly scratch = mkdtempSync(join(tmpdir(), 'distnat-bench-'));
  private readonly unregister: () => void;
  private readonly background = new Set<Background>();
  private options: BenchTestbedOptions = {};
  private isDown = false;

  constructor() {
    this.unregister = onExitCleanup(() => this.downSync());
  }

  /** Where scripts/testbed keeps this testbed's pid files, logs and daemon state. */
  get runDir(): string {
    return join(resolve(process.env['DN_RUN_DIR'] ?? join(ROOT, 'run')), this.prefix);
  }

  /** A directory for this run's files, removed by down(). */
  get scratchDir(): string {
    return this.scratch;
  }

  ns(node: Node): string {
    return this.prefix + node;
  }

  /** `scripts/testbed up` (again: it repairs, and applies a changed offload mode or process table). */
  async up(options: BenchTestbedOptions = {}): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('the benchmarks need root (network namespaces)');
    // The generators and forwarders need the addon: say so before building anything.
    loadNative();
    this.options = options;
    const flags = ['--prefix', this.prefix, '--offload', options.offload === true ? 'on' : 'off'];
    if (options.daemons !== true) flags.push('--no-daemons');
    else flags.push('--daemons');
    if (options.daemonTable !== undefined) {
      const file = join(this.scratch, 'daemons');
      writeFileSync(file, options.daemonTable);
      flags.push('--daemons-file', file);
    }
    const r = await run([TESTBED_SCRIPT, ...flags, '-q', 'up'], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`scripts/testbed up (${this.prefix}): ${describe(r)}`);
    await this.bridgeNetfilter(options.bridgeNetfilter === true);
  }

  /**
   * With br_netfilter loaded (as on this machine), every frame the LAN
   * bridge forwards runs the IPv4 netfilter hooks of the bridge's namespace,
   * although it has no rules; that work is done in the system call of
   * whoever sent the frame (the host agent's sendmmsg, a generator's send).
   * A switch does nothing of the kind, so the benchmarks turn it off (a
   * per-namespace sysctl); kernel and distnat paths cross the bridge alike.
   * Measured at 100k pps: the host's forwarder 5.57 -> 5.42 us per packet,
   * the kernel NAT generators 7.0 -> 5.8 us. Returns the setting now, or
   * undefined without br_netfilter.
   */
  async bridgeNetfilter(on: boolean): Promise<boolean | undefined> {
    const key = 'net.bridge.bridge-nf-call-iptables';
    const probe = await execIn(this.ns('lan'), ['sysctl', '-n', key]);
    if (probe.code !== 0) return undefined;
    await this.exec('lan', ['sysctl', '-qw', `${key}=${on ? 1 : 0}`]);
    return on;
  }

  /** Runs argv in the node's namespace; throws with the output unless it exits 0. */
  async exec(node: Node, argv: readonly string[], options?: ExecOptions): Promise<string> {
    const r = await execIn(this.ns(node), argv, options);
    if (r.code !== 0) throw new Error(`${this.ns(node)}: ${argv.join(' ')}: ${describe(r)}`);
    return r.stdout;
  }

  /** Like exec, but returns the result whatever the exit status. */
  try(node: Node, argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return execIn(this.ns(node), argv, options);
  }

  /** A background process in the node's namespace, stopped by down() at the latest. */
  spawn(node: Node, argv: readonly string[]): Background {
    return this.track(spawnBackground(this.ns(node), argv, { cwd: ROOT }));
  }

  /** Makes down() stop a background process started elsewhere. */
  track<T extends Background>(bg: T): T {
    this.background.add(bg);
    void bg.exited.then(() => this.background.delete(bg));
    return bg;
  }

  /** The pid of a process of the process table (scripts/testbed's `<name>.pid`: "pid start-time"). */
  daemonPid(name: string): number {
    const text = readFileSync(join(this.runDir, `${name}.pid`), 'utf8');
    const pid = Number(text.trim().split(/\s+/)[0]);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pid file for ${name}: ${text}`);
    return pid;
  }

  /** Stops what this object started, then `scripts/testbed down`. Safe to call twice. */
  async down(): Promise<void> {
    if (this.isDown) return;
    this.isDown = true;
    await Promise.all([...this.background].map((bg) => bg.stop()));
    const r = await run([TESTBED_SCRIPT, '--prefix', this.prefix, '-q', 'down'], { timeoutMs: 60_000 });
    this.unregister();
    rmSync(this.scratch, { recursive: true, force: true });
    if (r.code !== 0) throw new Error(`scripts/testbed down (${this.prefix}): ${describe(r)}`);
  }

  private downSync(): void {
    if (this.isDown) return;
    this.isDown = true;
    try {
      execFileSync(TESTBED_SCRIPT, ['--prefix', this.prefix, '-q', 'down'], {
        stdio: 'ignore',
        timeout: 30_000,
      });
    } catch {
      // the next benchmark's sweep removes what is left
    }
    rmSync(this.scratch, { recursive: true, force: true });
  }

  /** The options of the last up(). */
  get current(): BenchTestbedOptions {
    return this.options;
  }
}
