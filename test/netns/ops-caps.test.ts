/**
 * The privileges the systemd units give the daemons (native-setup/systemd/:
 * an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW as ambient
 * capabilities, no new privileges) are enough for every kernel operation the
 * router and host perform, and each of the two is needed. The set-up scripts
 * run first as root, as the units' ExecStartPre does; then a probe runs as
 * user nobody under setpriv with each set of capabilities.
 *
 * /dev/net/tun is 0600 in this container but 0666 on Debian (udev), where the
 * units run: the probe gets a private 0666 node for the same device, bound
 * over /dev/net/tun in a mount namespace of its own.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceSet, ROOT, sh } from './io-ns.ts';

const ROUTER_NS = 'dxo-caps-r';
const HOST_NS = 'dxo-caps-h';
const NOBODY = 65534;

const nss = new NamespaceSet();
const dir = mkdtempSync(join(tmpdir(), 'distnat-caps-'));
const tunNode = join(dir, 'tun');

beforeAll(() => {
  sh('mknod', '-m', '0666', tunNode, 'c', '10', '200');
  for (const [ns, script] of [
    [ROUTER_NS, 'router-setup.sh'],
    [HOST_NS, 'host-setup.sh'],
  ] as const) {
    nss.add(ns);
    // The LAN interface the scripts and raw sockets bind to (veth: this kernel has no dummy).
    sh('ip', '-n', ns, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0p');
    sh('ip', '-n', ns, 'link', 'set', 'lan0', 'up');
    const extra = script === 'host-setup.sh' ? ['--lan-if', 'lan0'] : [];
    sh(
      'ip',
      'netns',
      'exec',
      ns,
      join(ROOT, 'native-setup', 'linux', script),
      'up',
      '--quiet',
      ...extra,
      '--state-dir',
      join(dir, ns),
    );
  }
});
afterAll(() => {
  nss.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

interface Probe {
  uid: number;
  tunAttach: string;
  tunUp: string;
  rawIpip: string;
  rawIcmp: string;
  rawSender: string;
  rawRcvbuf: string;
  portRange: string;
}

/** Runs the probe in `ns` as nobody with exactly `caps` (e.g. ['net_admin']), no new privileges. */
function probe(ns: string, caps: string[]): Probe {
  const set = ['-all', ...caps.map((c) => `+${c}`)].join(',');
  const capArgs = caps.length
    ? [`--inh-caps=${set}`, `--ambient-caps=${set}`, `--bounding-set=${set}`]
    : ['--inh-caps=-all', '--bounding-set=-all'];
  const setpriv = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--no-new-privs'];
  const node = [
    process.execPath,
    '--import',
    'tsx',
    join(ROOT, 'test/netns/ops-caps-probe.ts'),
    'dn0',
    'lan0',
  ];
  const inner = [...setpriv, ...capArgs, '--', ...node].map((a) => `'${a}'`).join(' ');
  const out = execFileSync(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      'sh',
      '-c',
      `mount --bind '${tunNode}' /dev/net/tun && exec ${inner}`,
    ],
    { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return JSON.parse(out.trim().split('\n').pop()!) as Probe;
}

describe.each([
  ['router', ROUTER_NS],
  ['host', HOST_NS],
])('the %s unit privileges', (_role, ns) => {
  it('CAP_NET_ADMIN + CAP_NET_RAW as an unprivileged user: every operation works', () => {
    const p = probe(ns, ['net_admin', 'net_raw']);
    expect(p.uid).toBe(NOBODY);
    expect(p).toMatchObject({
      tunAttach: 'ok',
      tunUp: 'ok',
      rawIpip: 'ok',
      rawIcmp: 'ok',
      rawSender: 'ok',
      portRange: 'ok',
    });
    // SO_RCVBUFFORCE got the 4 MiB asked for (the kernel reports twice that).
    expect(Number(p.rawRcvbuf)).toBeGreaterThanOrEqual(8 * 1024 * 1024);
  });

  it('without capabilities: no raw socket, no link change, no /proc/sys write', () => {
    expect(probe(ns, [])).toMatchObject({
      tunUp: 'EPERM',
      rawIpip: 'EPERM',
      rawIcmp: 'EPERM',
      rawSender: 'EPERM',
      portRange: 'EACCES',
    });
  });

  it('CAP_NET_RAW alone: raw sockets, but the TUN cannot be set up nor the port range written', () => {
    expect(probe(ns, ['net_raw'])).toMatchObject({
      tunUp: 'EPERM',
      rawIpip: 'ok',
      rawSender: 'ok',
      portRange: 'EACCES',
    });
  });

  it('CAP_NET_ADMIN alone: links and /proc/sys/net, but no raw socket', () => {
    expect(probe(ns, ['net_admin'])).toMatchObject({
      tunUp: 'ok',
      rawIpip: 'EPERM',
      rawSender: 'EPERM',
      portRange: 'ok',
    });
  });
});
