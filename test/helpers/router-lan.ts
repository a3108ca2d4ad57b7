/**
 * Routers on a LAN of their own, without the testbed: a `lan` namespace
 * holding a bridge and the addresses of whatever the test puts there (etcd,
 * PAP clients), and one namespace per router with a veth on the bridge. For
 * tests of the routers' shared state (etcd, the CA), which need no hosts'
 * tunnels and no WAN. The names carry the test's tag and process id.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { DISTNAT } from '../../scripts/lib/testbed/layout.ts';
import type { Background } from './process.ts';
import { describe as describeResult, execIn, run, spawnBackground } from './process.ts';

export interface LanRouter {
  ns: string;
  lan: string;
}

export class RouterLan {
  readonly lan: string;
  readonly routers: readonly LanRouter[];

  /** tag: two letters naming the test file in its namespaces (`<tag><pid>x<random>-lan`, `-r1`, ...). */
  constructor(tag: string, routerAddresses: readonly string[] = ['10.0.0.7', '10.0.0.8']) {
    const prefix = `${tag}${process.pid}x${Math.floor(Math.random() * 36 ** 3).toString(36)}-`;
    this.lan = `${prefix}lan`;
    this.routers = routerAddresses.map((lan, i) => ({ ns: `${prefix}r${i + 1}`, lan }));
  }

  /** Runs argv in a namespace (or the root one), failing with its output; its stdout. */
  async sh(ns: string | undefined, argv: readonly string[]): Promise<string> {
    const r = ns === undefined ? await run([...argv], { timeoutMs: 60_000 }) : await execIn(ns, [...argv]);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${describeResult(r)}`);
    return r.stdout;
  }

  /** The bridge with lanAddresses on it, and each router's namespace on the bridge. */
  async setUp(lanAddresses: readonly string[]): Promise<void> {
    const { lan } = this;
    await this.sh(undefined, ['ip', 'netns', 'add', lan]);
    await this.sh(lan, ['ip', 'link', 'set', 'lo', 'up']);
    await this.sh(lan, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    await this.sh(lan, ['ip', 'link', 'set', 'br0', 'up']);
    for (const a of lanAddresses) await this.sh(lan, ['ip', 'addr', 'add', `${a}/24`, 'dev', 'br0']);
    for (const [i, r] of this.routers.entries()) {
      await this.sh(undefined, ['ip', 'netns', 'add', r.ns]);
      await this.sh(r.ns, ['ip', 'link', 'set', 'lo', 'up']);
      await this.sh(lan, [
        'ip',
        'link',
        'add',
        `v${i}`,
        'type',
        'veth',
        'peer',
        'name',
        'lan',
        'netns',
        r.ns,
      ]);
      await this.sh(lan, ['ip', 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
      await this.sh(r.ns, ['ip', 'addr', 'add', `${r.lan}/24`, 'dev', 'lan']);
      await this.sh(r.ns, ['ip', 'link', 'set', 'lan', 'up']);
    }
  }

  /** Deletes the namespaces (their veths go with them); safe to call when they are not there. */
  teardown(): void {
    for (const ns of [this.lan, ...this.routers.map((r) => r.ns)]) {
      try {
        execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      } catch {
        // not there
      }
    }
  }

  /**
   * `distnat router` i on the TUN path for sharedAddress, its state and run directories under
   * dir/r<i>, started fresh (no hold-off: nothing was leased before), with the test's own flags.
   */
  startRouter(i: number, sharedAddress: string, dir: string, extra: readonly string[]): Background {
    const r = this.routers[i]!;
    return spawnBackground(r.ns, [
      DISTNAT,
      'router',
      '--shared-address',
      sharedAddress,
      '--lan-address',
      r.lan,
      '--datapath',
      'tun',
      '--state-dir',
      join(dir, `r${i}`, 'state'),
      '--run-dir',
      join(dir, `r${i}`, 'run'),
      ...extra,
      '--fresh',
    ]);
  }
}
