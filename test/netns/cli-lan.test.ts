/**
 * `distnat router` and `distnat host` refusing to start, as an operator sees
 * it: missing privilege (77), a second router on the same UDP port or state
 * directory (73), a second router on another machine of the same LAN (73,
 * naming the first: the start-up probe of src/router/lan-probe.ts), a router
 * that answers nothing (69). Namespaces of this file's own (prefix dxc-): a
 * bridge with two would-be routers and a host.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execIn, run, spawnBackground, type Background } from '../helpers/process.ts';

const DISTNAT = resolve(import.meta.dirname, '../../bin/distnat');
// What nobody runs: the installed package (test/helpers/package.ts), as a
// unit would; the checkout may be unreadable to other users (/root is 0700).
const INSTALLED = inject('distnatPackage').bin;
const P = `dxc-${process.pid % 100000}`;
const NS = { lan: `${P}-lan`, r1: `${P}-r1`, r2: `${P}-r2`, h: `${P}-h` } as const;
const ADDR = { r1: '10.9.0.7', r2: '10.9.0.8', h: '10.9.0.1' } as const;
const SHARED = '198.51.100.30';
const dir = mkdtempSync(join(tmpdir(), 'distnat-cli-lan-'));

const sh = (...argv: string[]) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
};

function down(): void {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns]);
}

beforeAll(() => {
  down();
  sh('ip', 'netns', 'add', NS.lan);
  sh('ip', '-n', NS.lan, 'link', 'add', 'br0', 'type', 'bridge');
  sh('ip', '-n', NS.lan, 'link', 'set', 'br0', 'up');
  for (const node of ['r1', 'r2', 'h'] as const) {
    sh('ip', 'netns', 'add', NS[node]);
    sh('ip', '-n', NS[node], 'link', 'set', 'lo', 'up');
    sh(
      'ip',
      '-n',
      NS[node],
      'link',
      'add',
      'lan0',
      'type',
      'veth',
      'peer',
      'name',
      `p-${node}`,
      'netns',
      NS.lan,
    );
    sh('ip', '-n', NS.lan, 'link', 'set', `p-${node}`, 'master', 'br0', 'up');
    sh('ip', '-n', NS[node], 'addr', 'add', `${ADDR[node]}/24`, 'dev', 'lan0');
    sh('ip', '-n', NS[node], 'link', 'set', 'lan0', 'up');
  }
});

const started: Background[] = [];
afterAll(async () => {
  for (const b of started) await b.stop();
  down();
  rmSync(dir, { recursive: true, force: true });
});

function routerArgs(node: 'r1' | 'r2', name: string, extra: string[] = [], distnat = DISTNAT): string[] {
  return [
    distnat,
    'router',
    '--shared-address',
    SHARED,
    '--lan-address',
    ADDR[node],
    '--tun',
    'dxc0',
    '--fresh',
    '--state-dir',
    join(dir, `${name}-state`),
    '--run-dir',
    join(dir, `${name}-run`),
    ...extra,
  ];
}

const opts = { timeoutMs: 40_000 };

describe('distnat router and host refusing to start', { timeout: 90_000 }, () => {
  it('as user nobody: router and host exit 77 naming the capabilities, having created nothing', async () => {
    const nobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
    // From a directory nobody may read, as systemd starts a unit's command.
    const asNobody = { ...opts, cwd: '/' };
    const r = await execIn(NS.r1, [...nobody, ...routerArgs('r1', 'nobody', [], INSTALLED)], asNobody);
    expect(r.code).toBe(77);
    expect(r.stderr).toBe(
      'distnat: the router needs CAP_NET_ADMIN and CAP_NET_RAW: it opens the TUN device dxc0 and raw IPv4 sockets.\n' +
        'Run it as root (e.g. sudo), or grant the capabilities (setcap or systemd AmbientCapabilities).\n',
    );
    const h = await execIn(
      NS.h,
      [
        ...nobody,
        INSTALLED,
        'host',
        '--router',
        ADDR.r1,
        '--lan-address',
        ADDR.h,
        '--shared-address',
        SHARED,
      ],
      asNobody,
    );
    expect(h.code).toBe(77);
    expect(h.stderr).toMatch(
      /^distnat: the host agent needs CAP_NET_ADMIN and CAP_NET_RAW: it opens the TUN device dn0/,
    );
  });

  it('host: a router address that answers nothing gives 69 after --wait-seconds, naming it', async () => {
    const t0 = Date.now();
    const h = await execIn(
      NS.h,
      [
        DISTNAT,
        'host',
        '--router',
        '10.9.0.99',
        '--lan-address',
        ADDR.h,
        '--shared-address',
        SHARED,
        '--tun',
        'dxch0',
        '--state-dir',
        join(dir, 'h-state'),
        '--run-dir',
        join(dir, 'h-run'),
        '--wait-seconds',
        '2',
      ],
      opts,
    );
    expect(h.code, h.stderr).toBe(69);
    expect(h.stderr).toMatch(
      /\ndistnat: no lease from the router 10\.9\.0\.99 within 2 s \(PAP over UDP port 7032\): is `distnat router` running there and reachable from 10\.9\.0\.1\?\n$/,
    );
    expect(Date.now() - t0).toBeGreaterThan(2000);
  });

  it('router: the first starts; a second on the same UDP port, or the same state directory, exits 73', async () => {
    const first = spawnBackground(NS.r1, routerArgs('r1', 'one'));
    started.push(first);
    await first.waitForOutput(/router started/, { timeoutMs: 40_000 });

    const samePort = await execIn(NS.r1, routerArgs('r1', 'two'), opts);
    expect(samePort.code, samePort.stderr).toBe(73);
    expect(samePort.stderr).toMatch(
      /^distnat: UDP 10\.9\.0\.7:7032 is taken: another router \(or PAP server\) serves this LAN address\n$/,
    );

    const sameState = await execIn(
      NS.r1,
      [...routerArgs('r1', 'one').slice(0, -2), '--run-dir', join(dir, 'three-run')],
      opts,
    );
    expect(sameState.code, sameState.stderr).toBe(73);
    expect(sameState.stderr).toMatch(new RegExp(`distnat: .*${join(dir, 'one-state')}`));
  });

  it('router: a second router on another machine of the same LAN exits 73 naming the first', async () => {
    const second = await execIn(NS.r2, routerArgs('r2', 'other'), opts);
    expect(second.code, second.stderr).toBe(73);
    expect(second.stderr).toMatch(
      /^distnat: another router answers PAP on this LAN at 10\.9\.0\.7:7032 \(probe to 10\.9\.0\.255:7032\): one router per LAN; stop that one first\n$/,
    );
  });

  it('the host agent ignores the probe, and a router alone on its LAN does not take its own answer', async () => {
    // The first router is stopped: r2 now starts, though its own listener would answer a probe.
    await started.pop()!.stop();
    const second = spawnBackground(NS.r2, routerArgs('r2', 'alone'));
    started.push(second);
    await second.waitForOutput(/router started/, { timeoutMs: 40_000 });
    // A host leases from it; a third router on r1 is then refused by r2's answer, not the host's.
    const host = spawnBackground(NS.h, [
      DISTNAT,
      'host',
      '--router',
      ADDR.r2,
      '--lan-address',
      ADDR.h,
      '--shared-address',
      SHARED,
      '--tun',
      'dxch0',
      '--state-dir',
      join(dir, 'h2-state'),
      '--run-dir',
      join(dir, 'h2-run'),
    ]);
    started.push(host);
    await host.waitForOutput(/lease/i, { timeoutMs: 40_000 });
    const third = await execIn(NS.r1, routerArgs('r1', 'third'), opts);
    expect(third.code, third.stderr).toBe(73);
    expect(third.stderr).toMatch(/another router answers PAP on this LAN at 10\.9\.0\.8:7032/);
    expect(host.running()).toBe(true);
    const stat = await run(
      ['ip', 'netns', 'exec', NS.h, DISTNAT, 'status', 'host', '--json', '--run-dir', join(dir, 'h2-run')],
      opts,
    );
    expect(stat.code, stat.stderr).toBe(0);
  });
});
