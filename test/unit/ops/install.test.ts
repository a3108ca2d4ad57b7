/**
 * native-setup/install.sh below a scratch root (--root: files only, no
 * packages, user or systemctl): what it puts where, the addresses it fills
 * into the configuration, that a second run keeps what an administrator
 * changed, and which files the package (npm pack) holds.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../../src/config/load.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';

const CHECKOUT = resolve(import.meta.dirname, '../../..');
const INSTALL = join(CHECKOUT, 'native-setup/install.sh');
const dir = mkdtempSync(join(tmpdir(), 'distnat-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The package from the checkout as it is (dist/ as built), once: npm pack without scripts. */
let packed: string | undefined;
function pack(): string {
  if (packed !== undefined) return packed;
  const r = spawnSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], {
    cwd: CHECKOUT,
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  packed = join(dir, r.stdout.trim().split('\n').pop()!);
  return packed;
}

let roots = 0;
function install(args: string[], root = join(dir, `root${roots++}`)) {
  const r = spawnSync(INSTALL, [...args, '--root', root], { encoding: 'utf8' });
  return { root, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function envFile(path: string): Record<string, string> {
  const entries = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
  return Object.fromEntries(entries) as Record<string, string>;
}

describe('native-setup/install.sh --root', () => {
  it('installs a host: command link, unit, configuration with its addresses; no package without --package', () => {
    const r = install([
      'host',
      '--lan-address',
      TOPOLOGY.h2.lan,
      '--lan-if',
      'eth2',
      '--shared',
      '192.0.2.30',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // --root installs files only: building a package (npm ci, npm pack) is for a real install.
    expect(existsSync(join(r.root, 'opt/distnat'))).toBe(false);

    const wrapper = join(r.root, 'usr/local/bin/distnat');
    expect(lstatSync(wrapper).isSymbolicLink()).toBe(true);
    expect(readlinkSync(wrapper)).toBe('/opt/distnat/bin/distnat');

    expect(readFileSync(join(r.root, 'etc/systemd/system/distnat-host.service'), 'utf8')).toBe(
      readFileSync(join(CHECKOUT, 'native-setup/systemd/distnat-host.service'), 'utf8'),
    );
    const yaml = parseYaml(readFileSync(join(r.root, 'etc/distnat/host.yaml'), 'utf8')) as unknown;
    expect(yaml).toEqual({
      router: TOPOLOGY.router.lan,
      lanAddress: TOPOLOGY.h2.lan,
      sharedAddress: '192.0.2.30',
    });
    expect(() => validateConfig(HostConfigSchema, yaml, 'host.yaml')).not.toThrow();
    expect(envFile(join(r.root, 'etc/distnat/host.env'))).toEqual({
      DN_LAN_IF: 'eth2',
      DN_TUN: TOPOLOGY.tun,
      DN_MTU: String(TOPOLOGY.tunMtu),
      DN_SHARED_ADDR: '192.0.2.30',
      DN_STATE_DIR: '/run/distnat-setup',
    });
  });

  it('installs a router at the topology’s addresses by default, and a server with its gateway', () => {
    const router = install(['router']);
    expect(router.status, router.stderr).toBe(0);
    const yaml = parseYaml(readFileSync(join(router.root, 'etc/distnat/router.yaml'), 'utf8')) as unknown;
    expect(validateConfig(RouterConfigSchema, yaml, 'router.yaml')).toMatchObject({
      lanAddress: TOPOLOGY.router.lan,
      sharedAddress: TOPOLOGY.shared,
    });
    expect(existsSync(join(router.root, 'etc/systemd/system/distnat-router.service'))).toBe(true);
    // A new router grants at its first start (the 'fresh' file); one with lease state keeps holding off.
    const state = join(router.root, 'var/lib/distnat/router');
    expect(existsSync(join(state, 'fresh'))).toBe(true);
    rmSync(join(state, 'fresh'));
    writeFileSync(join(state, 'leases.journal'), '');
    expect(install(['router'], router.root).status).toBe(0);
    expect(existsSync(join(state, 'fresh'))).toBe(false);

    const server = install(['server']);
    expect(server.status, server.stderr).toBe(0);
    expect(envFile(join(server.root, 'etc/distnat/server.env'))).toEqual({
      DN_SHARED_ADDR: TOPOLOGY.shared,
      DN_GATEWAY: TOPOLOGY.router.wan,
    });
    const elsewhere = install(['server', '--gateway', '192.0.2.1']);
    expect(envFile(join(elsewhere.root, 'etc/distnat/server.env'))['DN_GATEWAY']).toBe('192.0.2.1');
    expect(existsSync(join(server.root, 'etc/distnat/server.yaml'))).toBe(false);
  });

  it('keeps an edited configuration on a second run, replaces it with --force-config', () => {
    const first = install(['router']);
    const yamlPath = join(first.root, 'etc/distnat/router.yaml');
    writeFileSync(yamlPath, readFileSync(yamlPath, 'utf8').replace('# logLevel: info', 'logLevel: debug'));
    const again = install(['router', '--lan-address', '10.0.0.8'], first.root);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/kept .*router\.yaml/);
    expect(readFileSync(yamlPath, 'utf8')).toContain('logLevel: debug');
    expect(readFileSync(yamlPath, 'utf8')).toContain(`lanAddress: ${TOPOLOGY.router.lan}`);
    const forced = install(['router', '--lan-address', '10.0.0.8', '--force-config'], first.root);
    expect(forced.status, forced.stderr).toBe(0);
    expect(readFileSync(yamlPath, 'utf8')).not.toContain('logLevel: debug');
    expect(readFileSync(yamlPath, 'utf8')).toContain('lanAddress: 10.0.0.8');
  });

  it('with --package: the package as npm pack made it, what runs and nothing of the checkout beside', () => {
    const r = install(['router', '--package', pack()]);
    expect(r.status, r.stderr).toBe(0);
    const opt = join(r.root, 'opt/distnat');
    for (const shipped of [
      'bin/distnat',
      'dist/main.js',
      'native-setup/linux/router-setup.sh',
      'native-setup/install-package.sh',
      'native-setup/addon/binding.gyp',
      'native-setup/systemd/distnat-router.service',
      'package.json',
      'LICENSE',
    ])
      expect(existsSync(join(opt, shipped)), shipped).toBe(true);
    for (const left of ['src', 'test', 'scripts', 'node_modules', 'native-setup/addon/build', '.git'])
      expect(existsSync(join(opt, left)), left).toBe(false);
    // The man page and completions, linked where man, bash and zsh look for local software.
    for (const [link, to] of [
      ['usr/local/share/man/man1/distnat.1', 'man/man1/distnat.1'],
      ['usr/local/share/bash-completion/completions/distnat', 'bash-completion/completions/distnat'],
      ['usr/local/share/zsh/site-functions/_distnat', 'zsh/vendor-completions/_distnat'],
    ]) {
      expect(readlinkSync(join(r.root, link!)), link).toBe(`/opt/distnat/dist/share/${to}`);
      expect(existsSync(join(opt, 'dist/share', to!)), to).toBe(true);
    }
  });

  it('installs a peer with its WAN interface and gateway, the keying left to the administrator', () => {
    const r = install(['peer', '--wan-if', 'eth2', '--gateway', '192.0.2.1']);
    expect(r.status, r.stderr).toBe(0);
    expect(envFile(join(r.root, 'etc/distnat/peer.env'))).toEqual({
      DN_PEER_KEYING: '',
      DN_WAN_IF: 'eth2',
      DN_SHARED_ADDR: TOPOLOGY.shared,
      DN_GATEWAY: '192.0.2.1',
      DN_PEER_OPTIONS: '',
    });
    expect(existsSync(join(r.root, 'etc/systemd/system/distnat-peer.service'))).toBe(true);
  });

  it('refuses what it cannot do right, naming the problem', () => {
    const cases: [string[], RegExp][] = [
      [[], /name a role/],
      [['gateway'], /unknown argument 'gateway'/],
      [['host'], /a host needs --lan-address/],
      [['host', '--lan-address', '10.0.0.300'], /--lan-address: not an IPv4 address/],
      [['router', '--shared', 'x'], /--shared: not an IPv4 address/],
      [['host', '--lan-address', '10.0.0.1', '--lan-if', 'a/b'], /--lan-if: bad interface name/],
      [['router', 'host'], /more than one role/],
      [['router', '--package', join(dir, 'none.tgz')], /--package: no such file/],
      [['peer', '--wan-if', 'a b'], /--wan-if: bad interface name/],
    ];
    for (const [args, message] of cases) {
      const r = install(args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('explains itself with --help', () => {
    const r = spawnSync(INSTALL, ['--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: native-setup\/install.sh router\|host\|peer\|server/);
  });
});
