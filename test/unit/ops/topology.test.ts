/**
 * native-setup/topology.env is the one place the reference topology is
 * written. Every reader sees the same values in it (bash, TypeScript,
 * Python, Ruby), and what cannot read it (documentation, example
 * configurations) or reads it through a default (the set-up scripts, the
 * testbed's help) says the same as the file.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TOPOLOGY,
  TOPOLOGY_FILE,
  addressKey,
  loadTopology,
  macOf,
  parseTopology,
  topologyFrom,
} from '../../../scripts/lib/topology.ts';

const CHECKOUT = resolve(import.meta.dirname, '../../..');
const TEXT = readFileSync(TOPOLOGY_FILE, 'utf8');
const VALUES = parseTopology(TEXT);
const has = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

function sh(argv: string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd: CHECKOUT, encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Every file below `dir` (relative to the checkout) whose name passes `keep`, skipping build output. */
function filesBelow(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (['node_modules', 'build', '.git'].includes(name)) continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (keep(name)) out.push(path);
    }
  };
  walk(join(CHECKOUT, dir));
  return out;
}

/** The values of KEY=VALUE lines of an environment file. */
function envFile(path: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('native-setup/topology.env', () => {
  it('reads the same in bash, TypeScript, Python and the Vagrantfile (Ruby)', () => {
    const keys = [...VALUES.keys()];
    const bash = sh([
      'bash',
      '-c',
      'set -eu; . "$0"; for k; do printf "%s=%s\\n" "$k" "${!k}"; done',
      TOPOLOGY_FILE,
      ...keys,
    ]);
    expect(bash).toBe(keys.map((k) => `${k}=${VALUES.get(k)}\n`).join(''));

    const python = sh([
      '/usr/bin/python3',
      '-c',
      'import json, sys; sys.path.insert(0, "scripts/fixtures"); from topology import TOPOLOGY; print(json.dumps(TOPOLOGY))',
    ]);
    expect(JSON.parse(python)).toEqual(Object.fromEntries(VALUES));
  });

  it.skipIf(!has('ruby'))('is what the Vagrantfile reads (skipped without ruby)', () => {
    const ruby = sh([
      'ruby',
      '-rjson',
      '-e',
      'module Vagrant; def self.require_version(*); end; def self.configure(_); end; end; load ARGV[0]; puts JSON.generate(TOPOLOGY)',
      join(CHECKOUT, 'Vagrantfile'),
    ]);
    expect(JSON.parse(ruby)).toEqual(Object.fromEntries(VALUES));
  });

  it('refuses lines that some reader would read differently', () => {
    for (const line of [
      'SHARED_ADDR="198.51.100.30"',
      'NODES=lan router',
      'SHARED_ADDR=$OTHER',
      'export SHARED_ADDR=198.51.100.30',
      'SHARED_ADDR = 198.51.100.30',
      'shared_addr=198.51.100.30',
      '  SHARED_ADDR=198.51.100.30',
      'TUN_NAME=dn0 # comment',
    ])
      expect(() => parseTopology(`${line}\n`, 'x'), line).toThrow(/x:1: not a KEY=VALUE line/);
    expect(() => parseTopology('A=1\nA=2\n', 'x')).toThrow(/x:2: A is set twice/);
  });

  it('holds what the code relies on: its node names, addresses inside their networks', () => {
    expect(loadTopology()).toEqual(TOPOLOGY);
    const broken = (key: string, value: string) => {
      const v = new Map(VALUES);
      v.set(key, value);
      return () => topologyFrom(v, 'x');
    };
    expect(broken('NODES', 'lan,router,h1,server')).toThrow(/NODES is lan,router,h1,server, the code knows/);
    expect(broken('H1_LAN', '10.0.1.1')).toThrow(/H1_LAN 10.0.1.1 is not in 10.0.0.0\/24/);
    expect(broken('SERVER_WAN', '203.0.113')).toThrow(/SERVER_WAN is not an IPv4 address/);
    expect(broken('PKI_PORT', '70330')).toThrow(/PKI_PORT is not a port/);
    expect(macOf('203.0.113.1')).toBe('02:00:cb:00:71:01');
    expect(addressKey('router2', 'wan')).toBe('ROUTER2_WAN');
  });

  it('has the multi-router testbed: router2, three etcd members, a second shared address, BGP AS numbers', () => {
    const m = TOPOLOGY.multiRouter;
    expect(m.routers).toEqual(['router', 'router2']);
    expect(m.etcdMembers).toEqual(['etcd1', 'etcd2', 'etcd3']);
    expect(m.shared).toEqual([TOPOLOGY.shared, '198.51.100.31']);
    expect(m.addresses['router2']).toEqual({ lan: '10.0.0.8', wan: '203.0.113.2' });
    expect(m.etcdMembers.map((e) => m.addresses[e]?.lan)).toEqual(['10.0.0.21', '10.0.0.22', '10.0.0.23']);
    // BGP: documentation AS numbers (RFC 5398), the routers' one apart from the upstream's.
    for (const asn of [m.upstreamAs, m.routersAs])
      expect(asn >= 64496 && asn <= 64511, String(asn)).toBe(true);
    expect(m.routersAs).not.toBe(m.upstreamAs);
    // Every node of it has an address, and no two nodes share one.
    const all = m.nodes.filter((n) => n !== 'lan').flatMap((n) => Object.values(m.addresses[n] ?? {}));
    expect(all.length).toBeGreaterThanOrEqual(m.nodes.length - 1);
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('what cannot read the file agrees with it', () => {
  const t = TOPOLOGY;
  /** The topology's addresses and networks: the only ones the files below may name in its ranges. */
  const known = new Set([
    ...[...VALUES.values()].flatMap((v) => v.split(',')).map((v) => v.split('/')[0]!),
    t.shared.replace(/\.\d+$/, '.0'),
  ]);
  const ranges = [t.lanNet, t.wanNet, `${t.shared.replace(/\.\d+$/, '.0')}/24`].map((n) =>
    n.split('/')[0]!.split('.').slice(0, 3).join('.'),
  );
  const inRanges = new RegExp(
    `\\b(?:${ranges.map((r) => r.replaceAll('.', '\\.')).join('|')})\\.\\d+\\b`,
    'g',
  );

  it.each([
    'README.md',
    'docs/testbed.md',
    'docs/deploy.md',
    'Vagrantfile',
    'scripts/testbed',
    ...filesBelow('native-setup', (n) => /\.(env|ya?ml|sh|service)$/.test(n)).map((f) =>
      relative(CHECKOUT, f),
    ),
  ])('%s names no address of the topology’s ranges that the topology lacks', (file) => {
    const text = readFileSync(join(CHECKOUT, file), 'utf8');
    const strangers = [...new Set(text.match(inRanges) ?? [])].filter((a) => !known.has(a));
    expect(strangers).toEqual([]);
  });

  it("docs/testbed.md: the picture is scripts/testbed's, the table has every interface with its address and MAC", () => {
    const doc = readFileSync(join(CHECKOUT, 'docs/testbed.md'), 'utf8');
    const help = sh([join(CHECKOUT, 'scripts/testbed'), '--help']);
    const picture = (text: string) => /^ {5}dn-h1 .*?\n '-+'\n/ms.exec(text)?.[0];
    expect(picture(help)).toBeDefined();
    expect(picture(doc)).toBe(picture(help));

    const rows: string[][] = [];
    let ns = '';
    for (const line of doc.split('\n')) {
      const cells = /^\|(.*)\|$/
        .exec(line)?.[1]
        ?.split('|')
        .map((c) => c.trim().replaceAll('`', ''));
      if (cells?.length !== 4 || /^-+$/.test(cells[0]!) || cells[0] === 'namespace') continue;
      ns = cells[0] || ns;
      rows.push([ns, ...cells.slice(1)]);
    }
    const row = (n: string, dev: string) => rows.find((r) => r[0] === `dn-${n}` && r[1] === dev);
    const lan = (a: string) => `${a}/${t.lanPrefixLen}`;
    const wan = (a: string) => `${a}/${t.wanPrefixLen}`;
    expect(row('router', t.lanIf)?.slice(2)).toEqual([lan(t.router.lan), `MAC ${macOf(t.router.lan)}`]);
    expect(row('router', t.wanIf)?.[2]).toBe(wan(t.router.wan));
    expect(row('router', t.wanIf)?.[3]).toContain(`MAC ${macOf(t.router.wan)}`);
    expect(row('router', t.tun)?.[3]).toContain(`MTU ${t.tunMtu}; route ${t.shared}/32 dev ${t.tun}`);
    for (const h of t.hosts) {
      expect(row(h, t.lanIf)?.slice(2)).toEqual([lan(t[h].lan), `MAC ${macOf(t[h].lan)}`]);
      expect(row(h, t.tun)?.[2]).toBe(`${t.shared}/32`);
    }
    expect(row('server', t.wanIf)?.slice(2)).toEqual([
      wan(t.server.wan),
      `route ${t.shared}/32 via ${t.router.wan}`,
    ]);
    expect(row('lan', t.bridge)).toBeDefined();
  });

  it('the example configurations hold the topology’s values', () => {
    const config = (name: string) => {
      const [file] = filesBelow('native-setup', (n) => n === name);
      if (file === undefined) throw new Error(`no ${name} below native-setup/`);
      return file;
    };
    for (const role of ['router', 'host']) {
      expect(envFile(config(`${role}.env`))).toMatchObject({
        DN_TUN: t.tun,
        DN_MTU: String(t.tunMtu),
        DN_SHARED_ADDR: t.shared,
      });
    }
    expect(envFile(config('server.env'))).toEqual({ DN_SHARED_ADDR: t.shared, DN_GATEWAY: t.router.wan });
  });

  it('the set-up scripts default to the topology’s names and addresses', () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DN_')));
    const help = (name: string) => {
      const [script] = filesBelow('native-setup', (n) => n === name);
      return sh([script!, '--help'], env);
    };
    for (const script of ['router-setup.sh', 'host-setup.sh'])
      for (const flag of [`DN_TUN=${t.tun}`, `DN_MTU=${t.tunMtu}`, `DN_SHARED_ADDR=${t.shared}`])
        expect(help(script)).toContain(`[${flag}]`);
    expect(help('host-setup.sh')).toContain(`[DN_LAN_IF=${t.lanIf}]`);
    expect(help('server-setup.sh')).toContain(`[DN_GATEWAY=${t.router.wan}]`);
  });
});
