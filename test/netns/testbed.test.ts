/**
 * scripts/testbed and native-setup/: the reference topology (docs/design.md) is built,
 * reachable where it should be, configured as docs/testbed.md says, survives
 * repeated and interrupted runs, and goes away completely.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describe as describeResult, run, spawnBackground, waitUntil } from '../helpers/process.ts';
import { NODES, TESTBED_SCRIPT, TOPOLOGY, Testbed, uniquePrefix, useTestbed } from '../helpers/testbed.ts';
import type { TestbedNode } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });

interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  flags: string[];
  linkinfo?: { info_kind?: string };
}
interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst?: string;
  dev?: string;
  gateway?: string;
  prefsrc?: string;
}

async function ipJson<T>(node: TestbedNode, args: string[]): Promise<T> {
  const r = await bed().exec(node, ['ip', '-j', ...args]);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} in ${node}: ${describeResult(r)}`);
  return JSON.parse(r.stdout) as T;
}

async function sysctl(node: TestbedNode, key: string): Promise<string> {
  const r = await bed().exec(node, ['cat', `/proc/sys/${key.replaceAll('.', '/')}`]);
  return r.stdout.trim();
}

async function linkIndexes(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const node of NODES) {
    for (const l of await ipJson<IpLink[]>(node, ['link', 'show'])) out[`${node}/${l.ifname}`] = l.ifindex;
  }
  return out;
}

/** Alive and not a zombie (this machine's init can be slow to reap). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function status(args: string[] = []): Promise<{ code: number | null; text: string }> {
  const r = await bed().script([...args, 'status']);
  return { code: r.code, text: r.stdout + r.stderr };
}

/** Sends one UDP datagram from `node`'s kernel stack. */
function sendUdp(node: TestbedNode, to: string, port: number) {
  const py = `import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'checksum probe', ('${to}', ${port}))`;
  return bed().exec(node, ['/usr/bin/python3', '-c', py]);
}

describe('scripts/testbed', () => {
  it('comes up healthy, and a second up creates nothing and keeps every link', async () => {
    const first = await status();
    expect(first.code, first.text).toBe(0);
    expect(first.text).toMatch(/state: up and healthy/);
    const before = await linkIndexes();
    const again = await bed().script(['up']);
    expect(again.code, describeResult(again)).toBe(0);
    expect(again.stdout).not.toMatch(/created|removed/);
    expect(await linkIndexes()).toEqual(before);
  });

  it('lets both hosts reach the router over the LAN, and nothing answers for an unused LAN address', async () => {
    for (const host of ['h1', 'h2'] as const) {
      const ping = await bed().ping(host, TOPOLOGY.router.lan);
      expect(ping.received, ping.output).toBe(3);
    }
    expect((await bed().ping('h1', TOPOLOGY.h2.lan, { count: 1 })).received).toBe(1);
    const unused = TOPOLOGY.lanNet.replace(/\.\d+\/\d+$/, '.99');
    expect((await bed().ping('h1', unused, { count: 1, waitS: 0.3 })).received).toBe(0);
    // The command line's ping is the same client: exit 0 when answered, 1 when not.
    const cli = await bed().script(['ping', 'h2', TOPOLOGY.router.lan, '-c', '2', '-i', '0.1']);
    expect(cli.code, describeResult(cli)).toBe(0);
    expect(cli.stdout).toMatch(/^2 sent, 2 received, rtt min\/avg\/max /m);
    const silent = await bed().script(['ping', 'h2', unused, '-c1', '-W0.3']);
    expect(silent.code).toBe(1);
    expect(silent.stdout).toMatch(/^seq=1: no reply within 0.3 s\n1 sent, 0 received\n$/);
  });

  it('lets the router reach the server over the WAN', async () => {
    const ping = await bed().ping('router', TOPOLOGY.server.wan);
    expect(ping.received, ping.output).toBe(3);
  });

  it("routes the shared address from the server to the router's WAN address", async () => {
    const [route] = await ipJson<IpRoute[]>('server', ['route', 'get', TOPOLOGY.shared]);
    expect(route).toMatchObject({ gateway: TOPOLOGY.router.wan, dev: TOPOLOGY.wanIf });
  });

  it('gives the router forwarding, no reverse-path filter and dn0 (MTU 1480) carrying the shared address', async () => {
    expect(await sysctl('router', 'net.ipv4.ip_forward')).toBe('1');
    for (const conf of ['all', 'default', TOPOLOGY.lanIf, TOPOLOGY.wanIf, TOPOLOGY.tun]) {
      expect(await sysctl('router', `net.ipv4.conf.${conf}.rp_filter`), conf).toBe('0');
    }
    const [tun] = await ipJson<IpLink[]>('router', ['-d', 'link', 'show', 'dev', TOPOLOGY.tun]);
    expect(tun?.linkinfo?.info_kind).toBe('tun');
    expect(tun?.mtu).toBe(TOPOLOGY.tunMtu);
    expect(tun?.flags).toContain('UP');
    const [route] = await ipJson<IpRoute[]>('router', ['route', 'get', TOPOLOGY.shared]);
    expect(route?.dev).toBe(TOPOLOGY.tun);
    const [lan] = await ipJson<IpRoute[]>('router', ['route', 'get', TOPOLOGY.h1.lan]);
    expect(lan?.dev).toBe(TOPOLOGY.lanIf);
  });

  it('makes the router answer DF packets too big for dn0 with "fragmentation needed", MTU 1480', async () => {
    // A 1500-byte DF datagram from the server to the shared address: the
    // router cannot forward it into dn0, says so, and the server's kernel
    // caches the path MTU; the next send of that size fails locally.
    const py = [
      'import socket, time',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      's.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO',
      `s.sendto(bytes(1472), ('${TOPOLOGY.shared}', 9))`,
      'time.sleep(0.3)',
      'try:',
      `    s.sendto(bytes(1472), ('${TOPOLOGY.shared}', 9)); print('sent')`,
      'except OSError as e:',
      '    print(e.strerror)',
    ].join('\n');
    const r = await bed().exec('server', ['/usr/bin/python3', '-c', py]);
    expect(r.stdout.trim(), describeResult(r)).toBe('Message too long');
    const route = await bed().exec('server', ['ip', 'route', 'get', TOPOLOGY.shared]);
    expect(route.stdout).toMatch(/ mtu 1480\b/);
  });

  it('gives each host dn0 (MTU 1480) with the shared address, the default route into it from that address, and keeps the LAN on lan0', async () => {
    for (const host of ['h1', 'h2'] as const) {
      const [tun] = await ipJson<IpLink[]>(host, ['-d', 'link', 'show', 'dev', TOPOLOGY.tun]);
      expect(tun?.linkinfo?.info_kind).toBe('tun');
      expect(tun?.mtu).toBe(TOPOLOGY.tunMtu);
      const [addr] = await ipJson<IpAddr[]>(host, ['-4', 'addr', 'show', 'dev', TOPOLOGY.tun]);
      expect(addr?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([`${TOPOLOGY.shared}/32`]);
      const [internet] = await ipJson<IpRoute[]>(host, ['route', 'get', TOPOLOGY.server.wan]);
      expect(internet).toMatchObject({ dev: TOPOLOGY.tun, prefsrc: TOPOLOGY.shared });
      const [router] = await ipJson<IpRoute[]>(host, ['route', 'get', TOPOLOGY.router.lan]);
      expect(router).toMatchObject({ dev: TOPOLOGY.lanIf, prefsrc: TOPOLOGY[host].lan });
      for (const dev of [TOPOLOGY.lanIf, TOPOLOGY.tun]) {
        expect(await sysctl(host, `net.ipv4.conf.${dev}.rp_filter`), dev).toBe('2');
      }
      expect(await sysctl(host, `net.ipv4.conf.${TOPOLOGY.lanIf}.arp_ignore`)).toBe('1');
      expect(await sysctl(host, `net.ipv4.conf.${TOPOLOGY.lanIf}.arp_announce`)).toBe('2');
    }
  });

  it('sends complete UDP checksums over the veths; with offload on they arrive partial (why off is the default)', async () => {
    // One capture across both modes: ethtool changes the veths in place.
    const capture = await bed().capture('router', TOPOLOGY.lanIf, { filter: 'udp port 9999' });
    const probe = async (): Promise<void> => {
      const sent = await sendUdp('h1', TOPOLOGY.router.lan, 9999);
      expect(sent.code, describeResult(sent)).toBe(0);
    };
    try {
      await probe();
      await capture.waitForPackets(1);
      expect((await bed().script(['--offload', 'on', 'up'])).code).toBe(0);
      await probe();
      await capture.stop({ packets: 2 });
    } finally {
      expect((await bed().script(['up'])).code).toBe(0);
    }
    // udp.checksum.status: 1 = good, 0 = bad.
    const verdicts = await capture.fields(['ip.src', 'udp.checksum.status'], {
      prefs: { 'udp.check_checksum': 'TRUE' },
    });
    expect(verdicts).toEqual([
      [TOPOLOGY.h1.lan, '1'],
      [TOPOLOGY.h1.lan, '0'],
    ]);
  });

  it('serves HTTP and iperf3 from a namespace (test helpers)', async () => {
    const http = await bed().httpServer('server', { files: { 'probe.txt': 'shared address next\n' } });
    const got = await bed().exec('router', [
      'curl',
      '-sS',
      '--max-time',
      '5',
      http.url(TOPOLOGY.server.wan, 'probe.txt'),
    ]);
    expect(got.stdout, describeResult(got)).toBe('shared address next\n');
    await http.stop();
    expect(http.running()).toBe(false);

    const iperf = await bed().iperf3Server('server', { oneOff: true });
    const client = await bed().exec('router', ['iperf3', '-c', TOPOLOGY.server.wan, '-n', '20M', '-J'], {
      timeoutMs: 15_000,
    });
    expect(client.code, describeResult(client)).toBe(0);
    const report = JSON.parse(client.stdout) as { end: { sum_received: { bytes: number } } };
    expect(report.end.sum_received.bytes).toBeGreaterThan(0);
    expect((await iperf.exited).code).toBe(0);
  });

  it('starts the processes of its table with pid files and logs, restarts a dead one on up', async () => {
    const table = join(bed().scratchDir, 'daemons');
    writeFileSync(
      table,
      `# name node command\nsleeper router sleep 300\nagent h1 sh -c 'echo agent in; exec sleep 300'\n`,
    );
    const withTable = ['--daemons', '--daemons-file', table];
    const up = await bed().script([...withTable, 'up']);
    expect(up.code, describeResult(up)).toBe(0);
    const pidOf = (name: string): number =>
      Number(readFileSync(join(bed().runDir, `${name}.pid`), 'utf8').split(' ')[0]);
    const agent = pidOf('agent');
    // The agent really runs inside h1's namespace.
    const inH1 = await run(['ip', 'netns', 'pids', bed().ns('h1')]);
    expect(inH1.stdout.split('\n')).toContain(String(agent));
    expect(readFileSync(join(bed().runDir, 'agent.log'), 'utf8')).toMatch(/agent in/);
    expect((await status(withTable)).text).toMatch(/agent\s+running\s+pid/);

    process.kill(agent, 'SIGKILL');
    await waitUntil('the agent to die', () => !isRunning(agent));
    const broken = await status(withTable);
    expect(broken.code).toBe(1);
    expect(broken.text).toMatch(/process agent .* is not running/);
    expect((await bed().script([...withTable, 'up'])).code).toBe(0);
    expect(pidOf('agent')).not.toBe(agent);
    expect((await status(withTable)).code).toBe(0);
  });

  it('repairs a crashed half-up: missing namespace, links, TUN, routes, settings and a stale pid file', async () => {
    const ns = (node: TestbedNode) => bed().ns(node);
    for (const damage of [
      ['ip', 'netns', 'del', ns('h2')],
      ['ip', '-n', ns('router'), 'link', 'del', TOPOLOGY.tun],
      ['ip', '-n', ns('lan'), 'link', 'set', 'h1', 'nomaster'],
      ['ip', '-n', ns('server'), 'route', 'del', `${TOPOLOGY.shared}/32`],
      ['ip', '-n', ns('router'), 'addr', 'flush', 'dev', TOPOLOGY.wanIf],
      ['ip', '-n', ns('h1'), 'route', 'del', 'default'],
      ['ip', 'netns', 'exec', ns('router'), 'sysctl', '-qw', 'net.ipv4.ip_forward=0'],
    ]) {
      const r = await run(damage);
      expect(r.code, `${damage.join(' ')}: ${describeResult(r)}`).toBe(0);
    }
    writeFileSync(join(bed().runDir, 'router.pid'), '999999 1\n');

    const broken = await status();
    expect(broken.code).toBe(1);
    expect(broken.text).toMatch(/no namespace/);
    expect(broken.text).toMatch(/no device dn0/);

    const repair = await bed().script(['up']);
    expect(repair.code, describeResult(repair)).toBe(0);
    expect(repair.stdout).toMatch(/created namespace \S+h2/);
    expect(repair.stdout).toMatch(/removed stale pid file/);
    expect((await bed().ping('h2', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
    expect((await bed().ping('h1', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
    expect((await bed().ping('router', TOPOLOGY.server.wan, { count: 1 })).received).toBe(1);
  });

  it('finishes, on the next up, an up that was killed halfway', async () => {
    expect((await bed().script(['down'])).code).toBe(0);
    const up = spawnBackground(undefined, [TESTBED_SCRIPT, '--prefix', bed().prefix, '--no-daemons', 'up']);
    await up.waitForOutput(/created namespace \S+h1/, { stream: 'stdout' });
    await up.stop({ signal: 'SIGKILL' });
    expect((await status()).code).toBe(1);

    // up exits non-zero unless the result passes every check of `status`.
    const again = await bed().script(['up']);
    expect(again.code, describeResult(again)).toBe(0);
    expect((await bed().ping('h2', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
  });

  it('runs beside a second testbed of another prefix, with nothing in the root namespace', async () => {
    const rootLinks = (await run(['ip', '-o', 'link', 'show'])).stdout.split('\n').length;
    const other = await Testbed.up({ prefix: uniquePrefix(), daemons: false });
    try {
      expect((await run(['ip', '-o', 'link', 'show'])).stdout.split('\n').length).toBe(rootLinks);
      expect((await other.ping('h1', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
      expect((await bed().ping('h1', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
      // Same addresses, separate worlds: the other testbed's LAN traffic never
      // shows on this one's LAN (and this capture does see this LAN's ping).
      const capture = await bed().capture('router', TOPOLOGY.lanIf, { filter: 'icmp' });
      expect((await bed().ping('h2', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
      await capture.waitForPackets(2);
      expect((await other.ping('h2', TOPOLOGY.router.lan, { count: 2 })).received).toBe(2);
      await capture.stop();
      expect(await capture.fields(['ip.src', 'icmp.type'])).toEqual([
        [TOPOLOGY.h2.lan, '8'],
        [TOPOLOGY.router.lan, '0'],
      ]);
    } finally {
      await other.down();
    }
    expect((await bed().ping('h1', TOPOLOGY.router.lan, { count: 1 })).received).toBe(1);
  });

  it('goes down completely, and a second down is fine', async () => {
    const table = join(bed().scratchDir, 'daemons');
    expect((await bed().script(['--daemons', '--daemons-file', table, 'up'])).code).toBe(0);
    const pid = Number(readFileSync(join(bed().runDir, 'sleeper.pid'), 'utf8').split(' ')[0]);

    const down = await bed().script(['down']);
    expect(down.code, describeResult(down)).toBe(0);
    expect(down.stdout).toMatch(/stopped sleeper/);
    const left = (await run(['ip', 'netns', 'list'])).stdout
      .split('\n')
      .filter((l) => l.startsWith(bed().prefix));
    expect(left).toEqual([]);
    expect(isRunning(pid)).toBe(false);
    expect(existsSync(bed().runDir)).toBe(false);

    const again = await bed().script(['down']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing to remove/);
    expect((await status()).code).toBe(3);
  });
});
