/**
 * The namespace testbed for the topology benchmarks: the tests' Testbed
 * (test/helpers/testbed.ts) under a prefix of its own (`bn<pid>-`, so a
 * developer's `dn-` testbed and the tests' `dt...-` ones are never touched),
 * brought up again whenever a benchmark changes its options. Teardown
 * happens however the benchmark ends: `down()` normally, the testbed's exit
 * hook on exit, SIGINT, SIGTERM or SIGHUP, and for a benchmark killed
 * outright the next run's sweep of testbeds whose owner's pid is gone.
 */
import { writeFileSync } from 'node:fs';
import { loadNative } from '../../../src/io/native.ts';
import { describe, execIn, run } from '../../../test/helpers/process.ts';
import type { Background, ExecOptions, ExecResult } from '../../../test/helpers/process.ts';
import { ROOT, sweepStaleTestbeds, Testbed } from '../../../test/helpers/testbed.ts';
import type { MultiRouterNode, TestbedNode } from '../../../test/helpers/testbed.ts';
import { runningPid } from '../../lib/testbed/supervisor.ts';

export { ROOT };
export type Node = TestbedNode;
/** A node of either layout: with `routers: 2`, also router2 and the etcd members. */
export type AnyNode = MultiRouterNode;

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
  /** 2: scripts/testbed --routers 2 (router2, the etcd cluster, BGP to the server). */
  routers?: 1 | 2;
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

/** Removes the testbeds of benchmarks (and tests) that were killed before they could clean up. */
export function sweepStale(): Promise<string[]> {
  return sweepStaleTestbeds();
}

export class BenchTestbed {
  readonly prefix = `bn${process.pid}-`;
  private readonly bed = Testbed.prepare(this.prefix);
  private options: BenchTestbedOptions = {};

  /** Where scripts/testbed keeps this testbed's pid files, logs and daemon state. */
  get runDir(): string {
    return this.bed.runDir;
  }

  get layout(): Testbed['layout'] {
    return this.bed.layout;
  }

  /** The tests' testbed underneath, for the test helpers that take one (test/helpers/ike.ts, pap.ts). */
  get testbed(): Testbed {
    return this.bed;
  }

  /** A directory for this run's files, removed by down(). */
  get scratchDir(): string {
    return this.bed.scratchDir;
  }

  ns(node: AnyNode): string {
    return this.bed.ns(node);
  }

  /** `scripts/testbed up` (again: it repairs, and applies a changed offload mode or process table). */
  async up(options: BenchTestbedOptions = {}): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('the benchmarks need root (network namespaces)');
    // The generators and forwarders need the addon: say so before building anything.
    loadNative();
    this.options = options;
    const { bridgeNetfilter: _, daemons, ...rest } = options;
    await this.bed.reconfigure({ ...rest, daemons: daemons === true });
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
  async exec(node: AnyNode, argv: readonly string[], options?: ExecOptions): Promise<string> {
    const r = await this.bed.exec(node, argv, options);
    if (r.code !== 0) throw new Error(`${this.ns(node)}: ${argv.join(' ')}: ${describe(r)}`);
    return r.stdout;
  }

  /** Like exec, but returns the result whatever the exit status. */
  try(node: AnyNode, argv: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    return this.bed.exec(node, argv, options);
  }

  /** A background process in the node's namespace, stopped by down() at the latest. */
  spawn(node: AnyNode, argv: readonly string[]): Background {
    return this.bed.spawn(node, argv, { cwd: ROOT });
  }

  /** Makes down() stop a background process started elsewhere. */
  track<T extends Background>(bg: T): T {
    return this.bed.track(bg);
  }

  /** The pid of a running process of the process table. */
  daemonPid(name: string): number {
    const pid = runningPid(this.bed.layout, name);
    if (pid === undefined) throw new Error(`${name} of the process table does not run (see ${this.runDir})`);
    return pid;
  }

  /** Stops what this object started, then `scripts/testbed down`. Safe to call twice. */
  down(): Promise<void> {
    return this.bed.down();
  }

  /** The options of the last up(). */
  get current(): BenchTestbedOptions {
    return this.options;
  }
}
