/**
 * The router and host units' commands, run as the units run them but without
 * systemd (this container has none as PID 1): the configuration and
 * environment files install.sh writes; ExecStartPre as root; ExecStart as an
 * unprivileged user holding exactly the unit's AmbientCapabilities, with no
 * new privileges; SIGTERM (KillSignal) ending both within TimeoutStopSec;
 * ExecStopPost undoing the set-up. Two namespaces of this file's own (dxo-u-)
 * joined by a veth stand for the LAN.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Background } from '../helpers/process.ts';
import { spawnBackground, waitUntil } from '../helpers/process.ts';
import { TOPOLOGY } from '../../scripts/lib/topology.ts';
import { NamespaceSet, ROOT, sh } from './io-ns.ts';

const NS = { router: 'dxo-u-r', host: 'dxo-u-h' } as const;
type Role = keyof typeof NS;
const NOBODY = 65534;
const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

const nss = new NamespaceSet();
const dir = mkdtempSync(join(tmpdir(), 'distnat-units-'));
const root = join(dir, 'root');
const tunNode = join(dir, 'tun');
const daemons: Partial<Record<Role, Background>> = {};

/** The unit's directives (one value each). */
function unit(role: Role): Record<string, string> {
  const text = readFileSync(join(ROOT, `native-setup/systemd/distnat-${role}.service`), 'utf8');
  return Object.fromEntries([...text.matchAll(/^([A-Za-z]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** An installed path, moved to where the test has it: the checkout or the scratch root. */
function localPath(word: string): string {
  return word
    .replace(/^\+/, '')
    .replace(/^\/usr\/local\/bin\/distnat$/, join(ROOT, 'bin/distnat'))
    .replace(/^\/opt\/distnat\//, ROOT)
    .replace(/^\/etc\/distnat\//, join(root, 'etc/distnat/'));
}

function envFile(path: string): Record<string, string> {
  const lines = readFileSync(path, 'utf8').split('\n');
  return Object.fromEntries(
    lines
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** Runs an ExecStartPre/ExecStopPost ("+": as root) in the role's namespace with the unit's environment. */
function runAsRoot(role: Role, command: string): void {
  const u = unit(role);
  const env = {
    ...process.env,
    ...envFile(localPath(u.EnvironmentFile!)),
    DN_STATE_DIR: join(dir, `setup-${role}`),
  };
  expect(command.startsWith('+'), `${command} runs as root`).toBe(true);
  execFileSync('ip', ['netns', 'exec', NS[role], ...command.split(' ').map(localPath)], {
    env,
    stdio: 'pipe',
  });
}

function capSet(ambient: string): string {
  return ['-all', ...ambient.split(' ').map((c) => '+' + c.replace(/^CAP_/, '').toLowerCase())].join(',');
}

/** Starts ExecStart as `nobody` with the unit's capabilities and nothing else. */
function startDaemon(role: Role): Background {
  const u = unit(role);
  const state = join(dir, `state-${role}`);
  const run = join(dir, `run-${role}`);
  for (const d of [state, run]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, NOBODY, NOBODY);
  }
  expect(u.NoNewPrivileges).toBe('yes');
  const caps = capSet(u.AmbientCapabilities!);
  const argv = [
    'setpriv',
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    '--no-new-privs',
    `--inh-caps=${caps}`,
    `--ambient-caps=${caps}`,
    `--bounding-set=${caps}`,
    '--',
    ...u.ExecStart!.split(' ').map(localPath),
    '--state-dir',
    state,
    '--run-dir',
    run,
  ];
  const inner = argv.map((a) => `'${a}'`).join(' ');
  // /dev/net/tun is 0600 in this container, 0666 on Debian: a private 0666 node stands in.
  return spawnBackground(
    NS[role],
    ['unshare', '--mount', 'sh', '-c', `mount --bind '${tunNode}' /dev/net/tun && exec ${inner}`],
    {
      cwd: ROOT,
    },
  );
}

function status(role: Role): { summary: Record<string, unknown> } | undefined {
  try {
    const out = execFileSync(
      join(ROOT, 'bin/distnat'),
      ['status', role, '--json', '--run-dir', join(dir, `run-${role}`)],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    return JSON.parse(out) as { summary: Record<string, unknown> };
  } catch {
    return undefined;
  }
}

beforeAll(() => {
  chmodSync(dir, 0o755);
  sh('mknod', '-m', '0666', tunNode, 'c', '10', '200');
  nss.add(NS.router);
  nss.add(NS.host);
  const { lanIf, lanPrefixLen: len, router, h1 } = TOPOLOGY;
  nss.link(NS.router, lanIf, `${router.lan}/${len}`, NS.host, lanIf, `${h1.lan}/${len}`);
  const install = join(ROOT, 'native-setup/install.sh');
  sh(install, 'router', '--root', root);
  sh(install, 'host', '--root', root, '--lan-address', h1.lan, '--lan-if', lanIf);
});

afterAll(async () => {
  for (const d of Object.values(daemons)) await d?.stop({ signal: 'SIGKILL' });
  nss.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('the units, run by hand as systemd would', () => {
  it('ExecStartPre sets each node up as root', () => {
    for (const role of ['router', 'host'] as const) runAsRoot(role, unit(role).ExecStartPre!);
    const { shared, tun } = TOPOLOGY;
    expect(sh('ip', '-n', NS.router, 'route', 'show', `${shared}/32`)).toContain(`dev ${tun}`);
    expect(sh('ip', '-n', NS.host, 'route', 'show', 'default')).toMatch(
      new RegExp(`dev ${tun} .*src ${shared.replaceAll('.', '\\.')}`),
    );
  });

  it('ExecStart: the router and the host run unprivileged and the host leases ports', async () => {
    daemons.router = startDaemon('router');
    await waitUntil('the router control socket', () => status('router') !== undefined, { timeoutMs: 30_000 });
    daemons.host = startDaemon('host');
    await waitUntil(
      'a port block on the host',
      () => Number(status('host')?.summary['ports held'] ?? 0) > 0,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    for (const d of Object.values(daemons)) {
      const procStatus = readFileSync(`/proc/${d.pid}/status`, 'utf8');
      const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(procStatus)?.[1] ?? '';
      expect(field('Uid').split(/\s+/)).toEqual(Array<string>(4).fill(String(NOBODY)));
      const want = ((1n << BigInt(CAP_NET_ADMIN)) | (1n << BigInt(CAP_NET_RAW)))
        .toString(16)
        .padStart(16, '0');
      expect(field('CapEff')).toBe(want);
      expect(field('CapBnd')).toBe(want);
      expect(field('NoNewPrivs')).toBe('1');
    }
  });

  it('KillSignal (SIGTERM) ends both cleanly within TimeoutStopSec, the host giving its block back', async () => {
    const host = daemons.host!;
    const router = daemons.router!;
    const limitMs = Number(unit('host').TimeoutStopSec) * 1000;
    expect(unit('host').KillSignal).toBe('SIGTERM');
    const t0 = Date.now();
    expect(await host.stop({ signal: 'SIGTERM', timeoutMs: limitMs })).toEqual({ code: 0, signal: null });
    expect(await router.stop({ signal: 'SIGTERM', timeoutMs: limitMs })).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(limitMs);
    expect(host.stdout() + host.stderr()).toMatch(/released ports/);
  });

  it('ExecStopPost takes the set-up down again', () => {
    for (const role of ['router', 'host'] as const) runAsRoot(role, unit(role).ExecStopPost!);
    for (const ns of Object.values(NS))
      expect(sh('ip', '-n', ns, 'link', 'show')).not.toContain(` ${TOPOLOGY.tun}:`);
    expect(sh('ip', '-n', NS.host, 'route', 'show', 'default')).toBe('');
  });
});
