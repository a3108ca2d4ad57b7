/**
 * The Vagrantfile: `vagrant validate` accepts it, and the VMs it describes
 * are the namespace testbed's nodes with the topology's addresses
 * (native-setup/topology.env), each provisioned by install.sh with its role
 * and checked by its own native-setup script.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';

const CHECKOUT = resolve(import.meta.dirname, '../../..');
const VAGRANTFILE = join(CHECKOUT, 'Vagrantfile');

const has = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const hasVagrant = has('vagrant');
const hasRuby = has('ruby');
const NO_VAGRANT =
  'vagrant is not installed: add the Debian package "vagrant" to DEBIAN_PACKAGES in scripts/setup';
const NO_RUBY = 'ruby is not installed (it comes with the Debian package "vagrant")';
if (!hasVagrant) console.warn(`vagrant.test.ts: ${NO_VAGRANT}`);

const dir = mkdtempSync(join(tmpdir(), 'distnat-vagrant-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The topology's addresses. */
function testbedAddresses(): Record<string, string> {
  return {
    routerLan: TOPOLOGY.router.lan,
    h1: TOPOLOGY.h1.lan,
    h2: TOPOLOGY.h2.lan,
    routerWan: TOPOLOGY.router.wan,
    server: TOPOLOGY.server.wan,
    shared: TOPOLOGY.shared,
  };
}

/** The dotted netmask of a prefix length. */
const netmask = (len: number) =>
  [24, 16, 8, 0].map((shift) => ((0xffffffff << (32 - len)) >>> shift) & 0xff).join('.');

interface Call {
  path: string[];
  args: unknown[];
  kw: Record<string, unknown>;
}

describe('Vagrantfile', () => {
  it.skipIf(!hasVagrant)(`passes vagrant validate${hasVagrant ? '' : ` (skipped: ${NO_VAGRANT})`}`, () => {
    // No provider (VirtualBox, libvirt) is installed here: --ignore-provider
    // checks everything else. Vagrant's own state goes to a scratch folder.
    const r = spawnSync('vagrant', ['validate', '--ignore-provider', '--no-tty'], {
      cwd: CHECKOUT,
      encoding: 'utf8',
      env: { ...process.env, VAGRANT_HOME: join(dir, 'home'), VAGRANT_DOTFILE_PATH: join(dir, 'dot') },
      timeout: 60_000,
    });
    expect(r.stdout + r.stderr).toMatch(/Vagrantfile validated successfully/);
    expect(r.status).toBe(0);
    expect(existsSync(join(CHECKOUT, '.vagrant'))).toBe(false);
  });

  describe.skipIf(!hasRuby)(`machines${hasRuby ? '' : ` (skipped: ${NO_RUBY})`}`, () => {
    const calls = (): Call[] => {
      const r = spawnSync('ruby', [join(CHECKOUT, 'test/unit/ops/vagrantfile-calls.rb'), VAGRANTFILE], {
        encoding: 'utf8',
        env: { ...process.env, DISTNAT_START: '1' },
      });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout) as Call[];
    };
    let all: Call[] = [];
    beforeAll(() => {
      all = calls();
    });
    const of = (machine: string, method: string) =>
      all.filter((c) => c.path[2] === machine && c.path.at(-1) === method);

    it('defines router, h1, h2 and server on Debian 12', () => {
      const defined = all.filter((c) => c.path.join('.') === 'vm.define').map((c) => c.args[0]);
      expect(defined).toEqual(['router', 'h1', 'h2', 'server']);
      expect(all.find((c) => c.path.join('.') === 'vm.box=')?.args).toEqual(['debian/bookworm64']);
    });

    it("puts each machine on the testbed's networks with the testbed's addresses", () => {
      const a = testbedAddresses();
      const nets = (m: string) =>
        of(m, 'network').map((c) => [c.kw.virtualbox__intnet, c.kw.ip, c.kw.netmask]);
      const lan = netmask(TOPOLOGY.lanPrefixLen);
      const wan = netmask(TOPOLOGY.wanPrefixLen);
      expect([netmask(24), netmask(20)]).toEqual(['255.255.255.0', '255.255.240.0']);
      expect(nets('router')).toEqual([
        ['distnat-lan', a.routerLan, lan],
        ['distnat-wan', a.routerWan, wan],
      ]);
      expect(nets('h1')).toEqual([['distnat-lan', a.h1, lan]]);
      expect(nets('h2')).toEqual([['distnat-lan', a.h2, lan]]);
      expect(nets('server')).toEqual([['distnat-wan', a.server, wan]]);
      // Isolated on libvirt too: no DHCP, no forwarding to the outside.
      for (const c of all.filter((x) => x.path.at(-1) === 'network'))
        expect(c.kw).toMatchObject({ libvirt__dhcp_enabled: false, libvirt__forward_mode: 'none' });
    });

    it('provisions each with install.sh and its role, then the role’s set-up check', () => {
      const a = testbedAddresses();
      const install = (m: string) => of(m, 'provision').find((c) => c.args[0] === 'install')?.kw;
      expect(install('router')?.args).toEqual([
        'router',
        '--lan-address',
        a.routerLan,
        '--shared',
        a.shared,
        '--start',
      ]);
      for (const h of ['h1', 'h2'] as const)
        expect(install(h)?.args).toEqual([
          'host',
          '--lan-address',
          a[h],
          '--router',
          a.routerLan,
          '--shared',
          a.shared,
          '--start',
        ]);
      expect(install('server')?.args).toEqual([
        'server',
        '--gateway',
        a.routerWan,
        '--shared',
        a.shared,
        '--start',
      ]);
      for (const m of ['router', 'h1', 'h2', 'server']) {
        expect(install(m)?.inline).toContain('/vagrant/native-setup/install.sh');
        const role = m.startsWith('h') ? 'host' : m;
        const check = of(m, 'provision').find((c) => c.args[0] === 'check')?.kw.inline as string;
        expect(check).toContain(`/opt/distnat/native-setup/linux/${role}-setup.sh check`);
        expect(existsSync(join(CHECKOUT, `native-setup/linux/${role}-setup.sh`))).toBe(true);
      }
    });
  });
});
