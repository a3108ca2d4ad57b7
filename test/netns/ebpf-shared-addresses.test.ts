/**
 * The router's eBPF programs with two shared addresses, frame by frame, on
 * both attach modes (tc and XDP): test/netns/ebpf-agent.ts loads router.bpf.o
 * on the router's lan0 and wan0 for 198.51.100.30 and .31 and is given the
 * same port numbers on each address, h1's on the first and h2's on the
 * second, and an SPI block of h1's. Frames are made by hand (scapy, at layer
 * 2) from the hosts and the server; no `distnat router` runs, so what the
 * programs pass on goes nowhere and only their counters tell of it.
 *
 * Shown: a host's datagram leaves the WAN from its own address and port, and
 * from the other address with the same port it is dropped as spoofed-port
 * (that port there is the other host's); a source that is no shared address
 * is dropped as not-shared-source; one shared address to the other is left
 * to the slow path as hairpin, and so is a WAN datagram with a shared
 * address as source; the same port on each address is tunnelled to its own
 * owner, and ESP to the second address finds the SPI's owner whatever the
 * address; FIG. 12 is stamped on each address's own slot.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipv4Of, PYTHON, readPcapng, writeScript } from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { sleep } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import { portSlot } from '../../src/util/block.ts';
import { askAgent } from './ebpf-socket.ts';

const bed = useTestbed({ daemons: false });
const FIRST = TOPOLOGY.shared;
const SECOND = TOPOLOGY.multiRouter.shared[1]!;
const SERVER = TOPOLOGY.server.wan;
const TUN = TOPOLOGY.tun;
/** The same ports on each address: h1's on the first, h2's on the second. */
const PORT = 20000;
const SPI = 0x40000;

const SCAPY_PRELUDE = `
from scapy.all import *
conf.verb = 0
A, B, SERVER, ROUTER = '${FIRST}', '${SECOND}', '${SERVER}', '${TOPOLOGY.router.lan}'
P = ${PORT}
def mac(i): return open('/sys/class/net/%s/address' % i).read().strip()
def lan(pkts):
    sendp([Ether(src=mac('lan0'), dst='02:00:0a:00:00:07')/p for p in pkts], iface='lan0')
def wan(pkts):
    sendp([Ether(src=mac('wan0'), dst='02:00:cb:00:71:01')/p for p in pkts], iface='wan0')
def tun(me, inner): return IP(src=me, dst=ROUTER)/inner
`;

type Counters = Record<string, number>;

function socketPath(hook: string): string {
  return join(bed().scratchDir, `fast-path-${hook}.sock`);
}

async function scapy(node: 'h1' | 'h2' | 'server', name: string, body: string): Promise<void> {
  const b = bed();
  const r = await b.exec(node, [PYTHON, writeScript(b, `${name}.py`, SCAPY_PRELUDE + body)], {
    timeoutMs: 60_000,
  });
  expect(r.code, r.stderr).toBe(0);
}

async function sh(node: 'router' | 'server' | 'lan' | 'h1' | 'h2', script: string): Promise<void> {
  const r = await bed().sh(node, script);
  expect(r.code, `${node}: ${script}: ${r.stderr}`).toBe(0);
}

/** Counter differences: after - before, only those that changed. */
function delta(before: Counters, after: Counters): Counters {
  const out: Counters = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

/** UDP payloads of the IPv4 datagrams in a capture, with the addresses and ports they carry (inner ones for IP-in-IP). */
function udpSeen(
  file: string,
): { outer?: string; src: string; dst: string; sport: number; dport: number; text: string }[] {
  const dotted = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.');
  const out: { outer?: string; src: string; dst: string; sport: number; dport: number; text: string }[] = [];
  for (const frame of readPcapng(file)) {
    let ip = ipv4Of(frame);
    if (ip === undefined) continue;
    let outer: string | undefined;
    if (ip[9] === 4) {
      outer = dotted(ip, 16);
      ip = ip.subarray((ip[0]! & 15) * 4);
    }
    const t = (ip[0]! & 15) * 4;
    if (ip[9] === 17)
      out.push({
        outer,
        src: dotted(ip, 12),
        dst: dotted(ip, 16),
        sport: ip.readUInt16BE(t),
        dport: ip.readUInt16BE(t + 2),
        text: ip.subarray(t + 8).toString('latin1'),
      });
    else if (ip[9] === 50)
      out.push({
        outer,
        src: dotted(ip, 12),
        dst: dotted(ip, 16),
        sport: 0,
        dport: 0,
        text: `esp:${ip.readUInt32BE(t)}`,
      });
  }
  return out;
}

/** The veths on the far side of an XDP redirect take XDP frames only with NAPI, which GRO turns on. */
async function vethNapi(on: boolean): Promise<void> {
  const v = on ? 'on' : 'off';
  await sh('server', `ethtool -K wan0 gro ${v}`);
  await sh(
    'lan',
    `for i in $(ls /sys/class/net); do [ "$i" = lo ] || ethtool -K "$i" gro ${v} >/dev/null 2>&1 || true; done`,
  );
}

beforeAll(async () => {
  // The slow path's TUN (the testbed's persistent one) is only named by the
  // programs' route lookups (its ifindex for policy routing and the
  // forwarding setting): an idle one will do.
  await sh(
    'router',
    `{ ip link show ${TUN} >/dev/null 2>&1 || ip tuntap add ${TUN} mode tun; } && ip link set ${TUN} up && ` +
      `ip route replace ${FIRST}/32 dev ${TUN} && ip route replace ${SECOND}/32 dev ${TUN}`,
  );
  await sh('server', `ip route replace ${SECOND}/32 via ${TOPOLOGY.router.wan}`);
  // The server's own kernel stays quiet about what the tests send it.
  await sh(
    'server',
    `nft 'add table ip quiet; add chain ip quiet out { type filter hook output priority 0; }; ` +
      `add rule ip quiet out ip daddr { ${FIRST}, ${SECOND} } drop'`,
  );
  // XDP has no neighbour resolution of its own: the router knows every next hop first.
  await sh(
    'router',
    `ping -c1 -W2 ${SERVER} >/dev/null; ping -c1 -W2 ${TOPOLOGY.h1.lan} >/dev/null; ping -c1 -W2 ${TOPOLOGY.h2.lan} >/dev/null`,
  );
}, 60_000);

describe.each(['tc', 'xdp'] as const)('the router programs on %s with two shared addresses', (hook) => {
  let agent: Background;
  const ask = <T>(command: object): Promise<T> => askAgent<T>(socketPath(hook), command);
  const counters = async (): Promise<Counters> =>
    (await ask<{ counters: Counters }>({ cmd: 'counters' })).counters;

  beforeAll(async () => {
    if (hook === 'xdp') await vethNapi(true);
    agent = bed().spawn(
      'router',
      [
        'node',
        '--import',
        'tsx',
        join(ROOT, 'test', 'netns', 'ebpf-agent.ts'),
        '--socket',
        socketPath(hook),
        '--shared',
        `${FIRST},${SECOND}`,
        '--lan-address',
        TOPOLOGY.router.lan,
        '--hook',
        hook,
      ],
      { cwd: ROOT },
    );
    await agent.waitForOutput(/^ready$/m, { timeoutMs: 20_000 });
    for (const [host, index] of [
      [TOPOLOGY.h1.lan, 0],
      [TOPOLOGY.h2.lan, 1],
    ] as const)
      expect(await ask({ cmd: 'add', host, kind: 'port', first: portSlot(index, PORT), count: 32 })).toEqual({
        result: 'added',
      });
    expect(await ask({ cmd: 'add', host: TOPOLOGY.h1.lan, kind: 'spi', first: SPI, count: 64 })).toEqual({
      result: 'added',
    });
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    if (hook === 'xdp') await vethNapi(false);
  });

  it("forwards each host's datagrams from its own address and port only, and leaves hairpin to the slow path", async () => {
    const b = bed();
    const wan = await b.capture('server', 'wan0', { filter: 'udp port 9' });
    const before = await counters();
    await scapy(
      'h1',
      `h1-out-${hook}`,
      `me = '${TOPOLOGY.h1.lan}'
lan([tun(me, IP(src=A, dst=SERVER)/UDP(sport=P, dport=9)/Raw(b'h1-first')),
     tun(me, IP(src=B, dst=SERVER)/UDP(sport=P, dport=9)/Raw(b'h1-second-spoofed')),
     tun(me, IP(src='198.51.100.99', dst=SERVER)/UDP(sport=P, dport=9)/Raw(b'h1-not-shared')),
     tun(me, IP(src=A, dst=B)/UDP(sport=P, dport=P)/Raw(b'h1-hairpin'))])
`,
    );
    await scapy(
      'h2',
      `h2-out-${hook}`,
      `me = '${TOPOLOGY.h2.lan}'
lan([tun(me, IP(src=B, dst=SERVER)/UDP(sport=P + 1, dport=9)/Raw(b'h2-second')),
     tun(me, IP(src=A, dst=SERVER)/UDP(sport=P + 1, dport=9)/Raw(b'h2-first-spoofed'))])
`,
    );
    await sleep(300);
    const d = delta(before, await counters());
    await wan.stop({ packets: 2 });
    const seen = udpSeen(wan.file).map((u) => `${u.src}:${u.sport} ${u.text}`);
    expect(seen.sort()).toEqual([`${FIRST}:${PORT} h1-first`, `${SECOND}:${PORT + 1} h2-second`].sort());
    expect(d['traffic.outbound-packets']).toBe(2);
    expect(d['drop.spoofed-port']).toBe(2);
    expect(d['drop.not-shared-source']).toBe(1);
    expect(d['fastpath.pass.lan.hairpin']).toBe(1);
    // FIG. 12 on each address's own slot; the same port on the other address untouched.
    const stamp = async (slot: number) =>
      (await ask<{ ns: number }>({ cmd: 'stamp', protocol: 17, port: slot })).ns;
    expect(await stamp(portSlot(0, PORT))).toBeGreaterThan(0);
    expect(await stamp(portSlot(1, PORT + 1))).toBeGreaterThan(0);
    expect(await stamp(portSlot(1, PORT))).toBe(0);
    expect(await stamp(portSlot(0, PORT + 1))).toBe(0);
  });

  it('tunnels the same port on each address to its own owner, ESP by its SPI alone, and leaves a shared source to the slow path', async () => {
    const b = bed();
    const h1 = await b.capture('h1', 'lan0', { filter: 'ip proto 4' });
    const h2 = await b.capture('h2', 'lan0', { filter: 'ip proto 4' });
    const before = await counters();
    await scapy(
      'server',
      `server-in-${hook}`,
      `wan([IP(src=SERVER, dst=A)/UDP(sport=9, dport=P)/Raw(b'to-first'),
     IP(src=SERVER, dst=B)/UDP(sport=9, dport=P)/Raw(b'to-second'),
     IP(src=SERVER, dst=B)/ESP(spi=${SPI + 5}, seq=1)/Raw(b'x' * 16),
     IP(src=A, dst=B)/UDP(sport=9, dport=P)/Raw(b'from-shared')])
`,
    );
    await sleep(300);
    const d = delta(before, await counters());
    await h1.stop({ packets: 2 });
    await h2.stop({ packets: 1 });
    const show = (file: string) => udpSeen(file).map((u) => `${u.outer} ${u.dst}:${u.dport} ${u.text}`);
    expect(show(h1.file).sort()).toEqual(
      [
        `${TOPOLOGY.h1.lan} ${FIRST}:${PORT} to-first`,
        `${TOPOLOGY.h1.lan} ${SECOND}:0 esp:${SPI + 5}`,
      ].sort(),
    );
    expect(show(h2.file)).toEqual([`${TOPOLOGY.h2.lan} ${SECOND}:${PORT} to-second`]);
    expect(d['traffic.inbound-packets']).toBe(3);
    expect(d['fastpath.pass.wan.shared-source']).toBe(1);
  });
});
