/**
 * The systemd units of native-setup/systemd/: `systemd-analyze verify` on
 * them as installed (install.sh --root, paths moved into the scratch root),
 * and their agreement with what they start: the set-up scripts and their
 * variables, the command line, the configuration defaults for the state and
 * run directories, the capabilities the daemons need (ops-caps.test.ts shows
 * why these two).
 */
import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';

const CHECKOUT = resolve(import.meta.dirname, '../../..');
const UNIT_DIR = join(CHECKOUT, 'native-setup/systemd');
const UNITS = readdirSync(UNIT_DIR).filter((f) => f.endsWith('.service'));

const hasAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
const SKIP = 'systemd-analyze is not installed (Debian package systemd): the units are not verified';
if (!hasAnalyze) console.warn(`units.test.ts: ${SKIP}`);

/** key -> every value, in order, of the [Service] (or other) section lines. */
function directives(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv) continue;
    m.set(kv[1]!, [...(m.get(kv[1]!) ?? []), kv[2]!]);
  }
  return m;
}

function unit(name: string): Map<string, string[]> {
  return directives(readFileSync(join(UNIT_DIR, name), 'utf8'));
}

const one = (d: Map<string, string[]>, key: string): string => {
  const v = d.get(key);
  expect(v, key).toHaveLength(1);
  return v![0]!;
};

describe('the systemd units', () => {
  it('are the router, host, peer and server units', () => {
    expect(UNITS.sort()).toEqual([
      'distnat-host.service',
      'distnat-peer.service',
      'distnat-router.service',
      'distnat-server.service',
    ]);
  });

  describe.each([
    ['router', RouterConfigSchema, { sharedAddress: TOPOLOGY.shared, lanAddress: TOPOLOGY.router.lan }],
    [
      'host',
      HostConfigSchema,
      { router: TOPOLOGY.router.lan, lanAddress: TOPOLOGY.h1.lan, sharedAddress: TOPOLOGY.shared },
    ],
  ] as const)('distnat-%s.service', (role, schema, minimal) => {
    const d = unit(`distnat-${role}.service`);
    const defaults = validateConfig(schema, minimal, role);

    it('starts the daemon with its configuration, after the set-up script, as root only for that', () => {
      expect(one(d, 'ExecStart')).toBe(`/usr/local/bin/distnat ${role} --config /etc/distnat/${role}.yaml`);
      // The configuration is checked, as the daemon's user, before the set-up changes anything.
      expect(d.get('ExecStartPre')).toEqual([
        `/usr/local/bin/distnat check --${role} /etc/distnat/${role}.yaml`,
        `+/opt/distnat/native-setup/linux/${role}-setup.sh up`,
      ]);
      expect(one(d, 'ExecStopPost')).toBe(`+/opt/distnat/native-setup/linux/${role}-setup.sh down`);
      expect(one(d, 'EnvironmentFile')).toBe(`/etc/distnat/${role}.env`);
      expect(one(d, 'Restart')).toBe('on-failure');
      expect(one(d, 'KillSignal')).toBe('SIGTERM');
      // SIGTERM to the daemon alone: systemd would also kill the ip(8) it runs while putting things back.
      expect(one(d, 'KillMode')).toBe('mixed');
      expect(one(d, 'RestartPreventExitStatus')).toBe('64 78'); // sysexits: usage, config (src/cli/exit-codes.ts)
    });

    it('is ready when the daemon says so, reloads with SIGHUP, and has a watchdog', () => {
      expect(one(d, 'Type')).toBe('notify');
      expect(d.has('NotifyAccess')).toBe(false); // the default, main: only the daemon itself
      expect(one(d, 'ExecReload')).toBe('/bin/kill -HUP $MAINPID');
      expect(Number(one(d, 'WatchdogSec'))).toBeGreaterThanOrEqual(10);
    });

    it('sets only variables the set-up script reads', () => {
      const script = readFileSync(join(CHECKOUT, `native-setup/linux/${role}-setup.sh`), 'utf8');
      const env = readFileSync(join(CHECKOUT, `native-setup/config/${role}.env`), 'utf8');
      const names = [...env.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]!);
      expect(names.length).toBeGreaterThan(2);
      for (const n of names)
        expect(script, `${role}-setup.sh reads ${n}`).toMatch(new RegExp(`\\$\\{${n}:-`));
    });

    it("gives the daemon its configuration's state and run directories, writable under ProtectSystem=strict", () => {
      expect(one(d, 'ProtectSystem')).toBe('strict');
      expect(`/var/lib/${one(d, 'StateDirectory')}`).toBe(defaults.stateDir);
      expect(`/run/${one(d, 'RuntimeDirectory')}`).toBe(defaults.runDir);
    });

    it('runs as the distnat user with CAP_NET_ADMIN and CAP_NET_RAW only, and the TUN device', () => {
      expect(one(d, 'User')).toBe('distnat');
      expect(one(d, 'AmbientCapabilities')).toBe('CAP_NET_ADMIN CAP_NET_RAW');
      expect(one(d, 'CapabilityBoundingSet')).toBe('CAP_NET_ADMIN CAP_NET_RAW');
      expect(one(d, 'NoNewPrivileges')).toBe('yes');
      expect(one(d, 'DeviceAllow')).toBe('/dev/net/tun rw');
      expect(d.has('PrivateDevices')).toBe(false);
      expect(d.has('MemoryDenyWriteExecute')).toBe(false);
      for (const family of ['AF_INET', 'AF_UNIX', 'AF_NETLINK', 'AF_PACKET'])
        expect(one(d, 'RestrictAddressFamilies').split(' ')).toContain(family);
      // Native mode writes net.ipv4.ip_local_port_range: the host must not protect /proc/sys.
      expect(d.get('ProtectKernelTunables')).toEqual(role === 'host' ? undefined : ['yes']);
    });
  });

  describe('distnat-peer.service', () => {
    const d = unit('distnat-peer.service');

    it('runs `distnat peer` with the flags of peer.env, every variable defined there', () => {
      const start = one(d, 'ExecStart');
      expect(start).toMatch(/^\/usr\/local\/bin\/distnat peer /);
      expect(one(d, 'EnvironmentFile')).toBe('/etc/distnat/peer.env');
      const env = readFileSync(join(CHECKOUT, 'native-setup/config/peer.env'), 'utf8');
      const defined = new Set([...env.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]!));
      const used = [...start.matchAll(/\$\{?([A-Z_]+)\}?/g)].map((m) => m[1]!);
      expect(used).toEqual([
        'DN_PEER_KEYING',
        'DN_WAN_IF',
        'DN_SHARED_ADDR',
        'DN_GATEWAY',
        'DN_PEER_OPTIONS',
      ]);
      for (const v of used) expect(defined, v).toContain(v);
    });

    it('is a notify unit run as root with three capabilities, without a reload', () => {
      expect(one(d, 'Type')).toBe('notify');
      expect(d.has('User')).toBe(false);
      expect(one(d, 'CapabilityBoundingSet')).toBe('CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE');
      expect(one(d, 'NoNewPrivileges')).toBe('yes');
      // Nothing to re-read: its flags and keying files are read at start.
      expect(d.has('ExecReload')).toBe(false);
    });

    it('stops by SIGTERM to the daemon alone, which puts its routes back with ip(8)', () => {
      expect(one(d, 'KillSignal')).toBe('SIGTERM');
      expect(one(d, 'KillMode')).toBe('mixed');
    });
  });

  describe.skipIf(!hasAnalyze)(`systemd-analyze verify${hasAnalyze ? '' : ` (skipped: ${SKIP})`}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'distnat-units-'));
    const root = join(dir, 'root');
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    beforeAll(() => {
      for (const role of ['router', 'host', 'peer', 'server']) {
        const args = [role, '--root', root, ...(role === 'host' ? ['--lan-address', TOPOLOGY.h1.lan] : [])];
        const r = spawnSync(join(CHECKOUT, 'native-setup/install.sh'), args, { encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
      }
      // verify checks that the programs exist: the package's paths point into
      // the checkout (--root installs no package), the others into the scratch root.
      mkdirSync(join(dir, 'units'));
      rmSync(join(root, 'usr/local/bin/distnat'));
      symlinkSync(join(CHECKOUT, 'bin/distnat'), join(root, 'usr/local/bin/distnat'));
      for (const u of UNITS) {
        const text = readFileSync(join(root, 'etc/systemd/system', u), 'utf8')
          .replaceAll('/opt/distnat/', CHECKOUT + '/')
          .replaceAll('/usr/local/bin/distnat', join(root, 'usr/local/bin/distnat'))
          .replaceAll('/etc/distnat', join(root, 'etc/distnat'));
        writeFileSync(join(dir, 'units', u), text);
      }
    });

    it.each(UNITS)('%s verifies without a word', (u) => {
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'units', u)], { encoding: 'utf8' });
      // verify exits 0 on unknown keys and bad values, which it only prints.
      expect(r.stderr.trim()).toBe('');
      expect(r.status).toBe(0);
    });

    it('notices a misspelt key (so that the check above can fail)', () => {
      const bad = join(dir, 'units', 'distnat-bad.service');
      writeFileSync(
        bad,
        readFileSync(join(dir, 'units', 'distnat-router.service'), 'utf8').replace(
          'ProtectHome',
          'ProtectHom',
        ),
      );
      const r = spawnSync('systemd-analyze', ['verify', bad], { encoding: 'utf8' });
      expect(r.stderr).toMatch(/Unknown key 'ProtectHom'/);
    });

    // The peer too, though it runs as root (it makes its TUN device and routes with ip(8)):
    // three capabilities and the same sandbox.
    it.each(['distnat-router.service', 'distnat-host.service', 'distnat-peer.service'])(
      '%s rates below 3 in systemd-analyze security',
      (u) => {
        const r = spawnSync('systemd-analyze', ['security', '--offline=yes', join(dir, 'units', u)], {
          encoding: 'utf8',
        });
        const score = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
        expect(score, r.stdout + r.stderr).not.toBeNull();
        expect(Number(score![1])).toBeLessThan(3);
      },
    );
  });
});
