/**
 * The router's eBPF fast path beside the real slow path, in a testbed of
 * this file's own: `distnat router` runs as always (TUN, raw sockets, PAP),
 * and test/netns/ebpf-agent.ts attaches router.bpf.o to lan0 and wan0 and is
 * given the same blocks the router leased. Frames are made by hand (scapy,
 * sent at layer 2 so the kernel fixes nothing) from h1, h2 and the server.
 *
 * Shown: what the fast path forwards leaves the WAN (and reaches the host)
 * byte for byte as sent but for TTL - 1 and the header checksum as the
 * kernel's forwarding writes them, and the slow path never sees it; the
 * spoof check counts exactly; unknown owners, fragments, hairpin, ICMP
 * errors, TTL 1, too big, PAP and malformed datagrams reach the slow path
 * unchanged and are counted there as they always were, each also counted
 * by the fast path by reason; ESP in UDP on a withdrawn SPI is dropped as
 * `spi-withdrawn` by the fast path itself, and nothing else on port 4500
 * is; a block taken out of the maps stops
 * forwarding with the next packet while a flood runs; a fast path whose
 * process was killed stops forwarding by itself (heartbeat).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/distnat.ts';
import { DISTNAT, ipv4HeaderSum, ipv4Of, PYTHON, readPcapng, writeScript } from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { sleep, waitUntil } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import { askAgent } from './ebpf-socket.ts';

const bed = useTestbed({ daemons: false });
const SHARED = TOPOLOGY.shared;
const SERVER = TOPOLOGY.server.wan;

const PAP_CLIENT = `
import { HostLeases } from '${ROOT}src/pap/host-leases.ts';
import { UdpPapTransport } from '${ROOT}src/pap/udp-transport.ts';
import { PapClient } from '${ROOT}src/pap/pap-client.ts';
import { SystemClock } from '${ROOT}src/util/clock.ts';
const [local] = process.argv.slice(2);
const clock = new SystemClock({ unref: true });
const transport = await UdpPapTransport.open({ address: local!, port: 0 });
const client = new PapClient({ clock, transport, leases: new HostLeases({ clock }),
  router: { address: '10.0.0.7', port: 7032 }, retransmit: { initialMs: 500, attempts: 4 } });
const ports = await client.request('port', 32);
const spis = await client.request('spi', 64);
client.stop();
await transport.close();
console.log(JSON.stringify({ port: ports.response.lowestPort, spi: spis.response.lowestSpi }));
process.exit(0);
`;

/** Prelude of every scapy program: frames go out at layer 2, exactly as built. */
const SCAPY_PRELUDE = `
import sys, time, socket
from scapy.all import *
conf.verb = 0
S, SERVER, ROUTER = '${SHARED}', '${SERVER}', '${TOPOLOGY.router.lan}'
def mac(i): return open('/sys/class/net/%s/address' % i).read().strip()
def lan(pkts):
    sendp([Ether(src=mac('lan0'), dst='02:00:0a:00:00:07')/p for p in pkts], iface='lan0')
def wan(pkts):
    sendp([Ether(src=mac('wan0'), dst='02:00:cb:00:71:01')/p for p in pkts], iface='wan0')
def tun(me, inner): return IP(src=me, dst=ROUTER)/inner
`;

interface Counters {
  [name: string]: number;
}

let router: Background;
let agent: Background;
let h1Port = 0;
let h2Port = 0;
let h1Spi = 0;

function agentSocket(): string {
  return join(bed().scratchDir, 'fast-path.sock');
}

function ask<T>(command: object): Promise<T> {
  return askAgent<T>(agentSocket(), command);
}

async function fastCounters(): Promise<Counters> {
  return (await ask<{ counters: Counters }>({ cmd: 'counters' })).counters;
}

async function slowCounters(): Promise<Counters> {
  const b = bed();
  const r = await b.exec(
    'router',
    [DISTNAT, 'status', 'router', '--json', '--run-dir', join(b.scratchDir, 'run')],
    { timeoutMs: 30_000 },
  );
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { counters: Counters }).counters;
}

/** Counter differences: after - before, only those that changed. */
function delta(before: Counters, after: Counters): Counters {
  const out: Counters = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

/** Only the keys given (absent = 0). */
function pick(c: Counters, keys: readonly string[]): Counters {
  return Object.fromEntries(keys.map((k) => [k, c[k] ?? 0]));
}

async function scapy(node: 'h1' | 'h2' | 'server', body: string): Promise<void> {
  const b = bed();
  const r = await b.exec(node, [PYTHON, writeScript(b, `scapy-${node}.py`, SCAPY_PRELUDE + body)], {
    timeoutMs: 60_000,
  });
  expect(r.code, r.stderr).toBe(0);
}

function startAgent(): Background {
  const b = bed();
  const a = b.spawn(
    'router',
    [
      'node',
      '--import',
      'tsx',
      join(ROOT, 'test', 'netns', 'ebpf-agent.ts'),
      '--socket',
      agentSocket(),
      '--shared',
      SHARED,
      '--lan-address',
      TOPOLOGY.router.lan,
    ],
    { cwd: ROOT },
  );
  return a;
}

async function leaseToAgent(): Promise<void> {
  for (const [host, first] of [
    [TOPOLOGY.h1.lan, h1Port],
    [TOPOLOGY.h2.lan, h2Port],
  ] as const)
    expect(await ask({ cmd: 'add', host, kind: 'port', first, count: 32 })).toEqual({ result: 'added' });
  expect(await ask({ cmd: 'add', host: TOPOLOGY.h1.lan, kind: 'spi', first: h1Spi, count: 64 })).toEqual({
    result: 'added',
  });
}

/** Settles both sides: fast path counters stop moving (frames are in flight for microseconds only). */
async function settled(): Promise<void> {
  await sleep(300);
}

beforeAll(async () => {
  const b = bed();
  router = b.spawn('router', [
    DISTNAT,
    'router',
    '--shared-address',
    SHARED,
    '--lan-address',
    TOPOLOGY.router.lan,
    '--tun',
    TOPOLOGY.tun,
    '--state-dir',
    join(b.scratchDir, 'state'),
    '--run-dir',
    join(b.scratchDir, 'run'),
    // A new LAN: grant at once instead of holding off for hosts of an earlier life.
    '--fresh',
  ]);
  await router.waitForOutput(/router started/, { timeoutMs: 20_000 });
  // The server's own kernel stays quiet (no RST, echo reply or port unreachable for
  // what the tests send it), so every datagram for the shared address is one a test made.
  const quiet = await b.exec('server', [
    'nft',
    `add table ip quiet; add chain ip quiet out { type filter hook output priority 0; }; add rule ip quiet out ip daddr ${SHARED} drop`,
  ]);
  expect(quiet.code, quiet.stderr).toBe(0);
  agent = startAgent();
  await agent.waitForOutput(/^ready$/m, { timeoutMs: 20_000 });
  // PAP with the fast path already attached: it is not the fast path's, so it reaches the router.
  const script = writeScript(b, 'pap-client.mts', PAP_CLIENT);
  const lease = async (node: 'h1' | 'h2') => {
    const r = await b.exec(node, ['node', '--import', 'tsx', script, TOPOLOGY[node].lan], {
      cwd: ROOT,
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { port: number; spi: number };
  };
  const l1 = await lease('h1');
  const l2 = await lease('h2');
  h1Port = l1.port;
  h1Spi = l1.spi;
  h2Port = l2.port;
  await leaseToAgent();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await router?.stop();
});

/** The IPv4 datagrams of a capture, with their frames. */
function datagrams(file: string): { ip: Buffer; frame: Frame }[] {
  return readPcapng(file)
    .map((frame) => ({ frame, ip: ipv4Of(frame) }))
    .filter((x): x is { frame: Frame; ip: Buffer } => x.ip !== undefined);
}

/** The inner datagram of an IP-in-IP datagram. */
const innerOf = (ip: Buffer): Buffer => ip.subarray((ip[0]! & 15) * 4);

/** include/net/ip.h ip_decrease_ttl(), on the header checksum read big-endian. */
function kernelTtlChecksum(check: number): number {
  // The kernel adds htons(0x0100) to the checksum as stored (little-endian
  // load on x86): on the big-endian value that is + 0x0100, carry folded.
  const c = check + 0x0100;
  return (c + (c >= 0xffff ? 1 : 0)) & 0xffff;
}

/** `got` is `sent` forwarded by a router: equal but TTL - 1 and the checksum the kernel writes for it. */
function expectForwarded(sent: Buffer, got: Buffer): void {
  expect(got.length).toBe(sent.length);
  const diff: number[] = [];
  for (let i = 0; i < sent.length; i++) if (sent[i] !== got[i]) diff.push(i);
  expect(
    diff.every((i) => i === 8 || i === 10 || i === 11),
    `bytes differ at ${diff.join(',')}`,
  ).toBe(true);
  expect(got[8]).toBe(sent[8]! - 1);
  expect(got.readUInt16BE(10)).toBe(kernelTtlChecksum(sent.readUInt16BE(10)));
  expect(ipv4HeaderSum(got)).toBe(0xffff);
}

describe('the eBPF fast path beside the TUN slow path', () => {
  it('forwards from its owner, both ways, changing only TTL and checksum, without the slow path', async () => {
    const b = bed();
    const fast0 = await fastCounters();
    const slow0 = await slowCounters();
    const sent = await b.capture('h1', TOPOLOGY.lanIf, {
      filter: `ip proto 4 and src host ${TOPOLOGY.h1.lan}`,
    });
    const out = await b.capture('server', TOPOLOGY.wanIf, { filter: `host ${SHARED}` });
    await scapy(
      'h1',
      `
me = '${TOPOLOGY.h1.lan}'
lan([
  tun(me, IP(src=S, dst=SERVER, ttl=20, tos=0x28, id=7, flags='DF')/UDP(sport=${h1Port}, dport=9)/Raw(b'fast-udp')),
  tun(me, IP(src=S, dst=SERVER, ttl=64, id=8)/TCP(sport=${h1Port + 1}, dport=80, flags='S', seq=99, options=[('MSS', 1400), ('SAckOK', b'')])),
  tun(me, IP(src=S, dst=SERVER, ttl=3, id=0xffff)/ICMP(type=8, id=${h1Port + 2}, seq=1)/Raw(b'fast-ping')),
  tun(me, IP(src=S, dst=SERVER, ttl=64, id=9)/ESP(spi=0x11223344, seq=1, data=b'remote spi')),
])
`,
    );
    await scapy(
      'server',
      `
wan([
  IP(src=SERVER, dst=S, ttl=50, tos=0x10)/UDP(sport=9, dport=${h1Port})/Raw(b'back to h1'),
  IP(src=SERVER, dst=S, ttl=50, id=77)/ESP(spi=${h1Spi + 5}, seq=3, data=b'to h1 by spi'),
])
`,
    );
    const back = await b.capture('h1', TOPOLOGY.lanIf, { filter: 'ip proto 4 and src host 10.0.0.7' });
    await scapy(
      'server',
      `wan([IP(src=SERVER, dst=S, ttl=50, tos=0x10)/UDP(sport=9, dport=${h1Port})/Raw(b'back to h1, seen')])`,
    );
    // On the server's WAN: h1's four forwarded, and the server's own three.
    await out.stop({ packets: 7 });
    await sent.stop({ packets: 4 });
    await back.stop({ packets: 1 });

    const wire = datagrams(out.file);
    const fromH1 = datagrams(sent.file).map((d) => innerOf(d.ip));
    expect(fromH1).toHaveLength(4);
    for (const inner of fromH1) {
      const got = wire.find((w) => w.ip.readUInt16BE(4) === inner.readUInt16BE(4) && w.ip[9] === inner[9]);
      expect(got, `inner id ${inner.readUInt16BE(4)} on the WAN`).toBeDefined();
      expectForwarded(inner, got!.ip);
      // No Ethernet padding left behind, addressed to the server's MAC from the router's.
      expect(got!.frame.data.length).toBe(14 + inner.length);
      expect(got!.frame.data.subarray(6, 12).toString('hex')).toBe('02' + '00cb007101');
    }
    // Inbound: the server's datagram inside IP-in-IP from the router to h1.
    const serverSent = wire.find((w) => w.ip.subarray(20).toString('latin1').endsWith('seen'))!.ip;
    const tunnelled = datagrams(back.file).map((d) => d.ip);
    expect(tunnelled).toHaveLength(1);
    const outer = tunnelled[0]!;
    expect([outer[0], outer[1], outer[9], outer[8]]).toEqual([0x45, 0x10, 4, 64]);
    expect(outer.readUInt16BE(2)).toBe(20 + serverSent.length);
    expect(ipv4HeaderSum(outer)).toBe(0xffff);
    expect([outer.subarray(12, 16).join('.'), outer.subarray(16, 20).join('.')]).toEqual([
      TOPOLOGY.router.lan,
      TOPOLOGY.h1.lan,
    ]);
    expectForwarded(serverSent, innerOf(outer));

    await settled();
    const fast = delta(fast0, await fastCounters());
    expect(
      pick(fast, [
        'traffic.lan-rx-packets',
        'traffic.outbound-packets',
        'traffic.wan-rx-packets',
        'traffic.inbound-packets',
        'fastpath.pass.lan.stale',
        'fastpath.pass.wan.stale',
      ]),
    ).toEqual({
      'fastpath.pass.lan.stale': 0,
      'fastpath.pass.wan.stale': 0,
      'traffic.lan-rx-packets': 4,
      'traffic.outbound-packets': 4,
      'traffic.wan-rx-packets': 3,
      'traffic.inbound-packets': 3,
    });
    const slow = delta(slow0, await slowCounters());
    expect(
      pick(slow, ['traffic.lan-rx-packets', 'traffic.outbound-packets', 'traffic.wan-rx-packets']),
    ).toEqual({ 'traffic.lan-rx-packets': 0, 'traffic.outbound-packets': 0, 'traffic.wan-rx-packets': 0 });
    // FIG. 12 from the fast path, and the outbound SA for ICMP errors about it.
    const stamp = await ask<{ ns: number }>({ cmd: 'stamp', protocol: 17, port: h1Port });
    expect(stamp.ns).toBeGreaterThan(0);
    const sa = await ask<{ host: number }>({ cmd: 'sa', remote: SERVER, protocol: 50, spi: 0x11223344 });
    expect(sa.host).toBe(0x0a000001);
  });

  it('drops what h1 sends from h2s ports, counted exactly as spoofed-port, and nothing reaches the slow path', async () => {
    const b = bed();
    const fast0 = await fastCounters();
    const slow0 = await slowCounters();
    const out = await b.capture('server', TOPOLOGY.wanIf, { filter: `src host ${SHARED}` });
    await scapy(
      'h1',
      `
me, theirs = '${TOPOLOGY.h1.lan}', ${h2Port}
lan([
  tun(me, IP(src=S, dst=SERVER)/UDP(sport=theirs, dport=7000)/Raw(b'spoofed-udp')),
  tun(me, IP(src=S, dst=SERVER)/TCP(sport=theirs + 1, dport=8080, flags='S')),
  tun(me, IP(src=S, dst=SERVER)/ICMP(type=8, id=theirs + 2)/Raw(b'spoofed-icmp')),
  tun(me, IP(src='${TOPOLOGY.h2.lan}', dst=SERVER)/UDP(sport=${h1Port}, dport=7000)/Raw(b'not-shared')),
  tun('10.0.0.99', IP(src=S, dst=SERVER)/ESP(spi=0x55, seq=1, data=b'no lease')),
  tun(me, IP(src=S, dst=SERVER)/UDP(sport=${h1Port}, dport=7000)/Raw(b'marker')),
])
`,
    );
    await out.stop({ packets: 1 });
    const payloads = datagrams(out.file).map((d) => d.ip.subarray(28).toString('latin1'));
    expect(payloads).toEqual(['marker']);
    await settled();
    const fast = delta(fast0, await fastCounters());
    expect(
      pick(fast, [
        'drop.spoofed-port',
        'drop.not-shared-source',
        'drop.no-lease',
        'traffic.lan-rx-packets',
        'traffic.outbound-packets',
        'fastpath.pass.lan.stale',
      ]),
    ).toEqual({
      'fastpath.pass.lan.stale': 0,
      'drop.spoofed-port': 3,
      'drop.not-shared-source': 1,
      'drop.no-lease': 1,
      'traffic.lan-rx-packets': 6,
      'traffic.outbound-packets': 1,
    });
    const slow = delta(slow0, await slowCounters());
    expect(
      pick(slow, ['traffic.lan-rx-packets', ...Object.keys(slow).filter((k) => k.startsWith('drop.'))]),
    ).toEqual({
      'traffic.lan-rx-packets': 0,
    });
  });

  it('leaves to the slow path, unchanged, what it does not handle; each is counted on both sides', async () => {
    const b = bed();
    const fast0 = await fastCounters();
    const slow0 = await slowCounters();
    const h1in = await b.capture('h1', TOPOLOGY.lanIf, { filter: 'ip proto 4 and src host 10.0.0.7' });
    const h2in = await b.capture('h2', TOPOLOGY.lanIf, { filter: 'ip proto 4 and src host 10.0.0.7' });
    const srv = await b.capture('server', TOPOLOGY.wanIf, { filter: `host ${SHARED} or icmp` });
    await scapy(
      'h1',
      `
me = '${TOPOLOGY.h1.lan}'
frags = fragment(IP(src=S, dst=SERVER, id=4242, flags=0)/UDP(sport=${h1Port}, dport=9)/Raw(b'x' * 120), fragsize=64)
lan([tun(me, f) for f in frags] + [
  tun(me, IP(src=S, dst=S, ttl=10)/UDP(sport=${h1Port}, dport=${h2Port})/Raw(b'hairpin')),
  tun(me, IP(src=S, dst=SERVER, ttl=1)/UDP(sport=${h1Port}, dport=9)/Raw(b'ttl one')),
  tun(me, IP(src=S, dst=SERVER, options=[IPOption(b'\\x01\\x01\\x01\\x00')])/UDP(sport=${h1Port}, dport=9)/Raw(b'options')),
])
`,
    );
    await scapy(
      'server',
      `
q = IP(src=S, dst=SERVER)/UDP(sport=${h1Port}, dport=9)/Raw(b'quoted')
wan([
  IP(src=SERVER, dst=S)/UDP(sport=9, dport=${h1Port + 31 + 1000})/Raw(b'nobody'),
  IP(src=SERVER, dst=S)/ICMP(type=3, code=3)/raw(q)[:28],
  IP(src=SERVER, dst=S, flags='DF')/UDP(sport=9, dport=${h1Port})/Raw(b'y' * 1453),
] + fragment(IP(src=SERVER, dst=S, id=777)/UDP(sport=9, dport=${h1Port})/Raw(b'z' * 120), fragsize=64))
`,
    );
    await h1in.stop({ packets: 4, timeoutMs: 15_000 });
    await h2in.stop({ packets: 1 });
    await srv.stop({ settleMs: 800 });
    await settled();
    const fast = delta(fast0, await fastCounters());
    expect(
      pick(fast, [
        'fastpath.pass.lan.fragment',
        'fastpath.pass.lan.hairpin',
        'fastpath.pass.lan.ttl',
        'fastpath.pass.lan.options',
        'fastpath.pass.wan.no-owner',
        'fastpath.pass.wan.icmp',
        'fastpath.pass.wan.too-big',
        'fastpath.pass.wan.fragment',
        'traffic.lan-rx-packets',
        'traffic.wan-rx-packets',
      ]),
    ).toEqual({
      'fastpath.pass.lan.fragment': 2,
      'fastpath.pass.lan.hairpin': 1,
      'fastpath.pass.lan.ttl': 1,
      'fastpath.pass.lan.options': 1,
      'fastpath.pass.wan.no-owner': 1,
      'fastpath.pass.wan.icmp': 1,
      'fastpath.pass.wan.too-big': 1,
      'fastpath.pass.wan.fragment': 2,
      'traffic.lan-rx-packets': 0,
      'traffic.wan-rx-packets': 0,
    });
    const slow = delta(slow0, await slowCounters());
    // Everything h1 sent reached the slow path: 2 fragments, hairpin, TTL 1, options.
    expect(slow['traffic.lan-rx-packets']).toBe(5);
    expect(slow['traffic.hairpin-packets']).toBe(1);
    expect(slow['traffic.outbound-packets']).toBe(4);
    expect(slow['drop.no-owner']).toBe(1);
    // Tunnelled by the slow path: to h2 the hairpin, to h1 the ICMP error, two fragments and
    // the kernel's time exceeded for the TTL 1 datagram.
    const toH1 = datagrams(h1in.file).map((d) => innerOf(d.ip));
    expect(toH1.filter((ip) => ip[9] === 1 && ip[20] === 11)).toHaveLength(1);
    expect(toH1.filter((ip) => ip[9] === 1 && ip[20] === 3)).toHaveLength(1);
    expect(toH1.filter((ip) => ip.readUInt16BE(4) === 777)).toHaveLength(2);
    // The too-big datagram met the kernel's MTU check: fragmentation needed, MTU 1480.
    const icmpToServer = datagrams(srv.file).filter((d) => d.ip[9] === 1 && d.ip[20] === 3 && d.ip[21] === 4);
    expect(icmpToServer).toHaveLength(1);
    expect(icmpToServer[0]!.ip.readUInt16BE(26)).toBe(1480);
    // The fragments and the datagram with options left the WAN.
    expect(datagrams(srv.file).filter((d) => d.ip.readUInt16BE(4) === 4242)).toHaveLength(2);
  });

  it('counts every malformed datagram by reason and never drops one silently', async () => {
    const fast0 = await fastCounters();
    const slow0 = await slowCounters();
    await scapy(
      'h1',
      `
me = '${TOPOLOGY.h1.lan}'
ok = lambda: IP(src=S, dst=SERVER)/UDP(sport=${h1Port}, dport=9)/Raw(b'payload')
bad_inner = IP(src=S, dst=SERVER, chksum=0x1234)/UDP(sport=${h1Port}, dport=9)/Raw(b'bad checksum')
short = IP(src=S, dst=SERVER, proto=17)/Raw(b'\\x00\\x09\\x00')
lan([
  tun(me, bad_inner),
  tun(me, short),
  tun(me, IP(src=S, dst=SERVER, proto=47)/Raw(b'gre?')),
  IP(src=me, dst=ROUTER, proto=4, len=20 + len(raw(ok())) + 4)/Raw(raw(ok()) + b'tail'),
  tun(me, IP(src=S, dst=SERVER)/ICMP(type=42)/Raw(b'odd icmp')),
])
`,
    );
    await scapy(
      'server',
      `
wan([
  IP(src=SERVER, dst=S, chksum=0x4321)/UDP(sport=9, dport=${h1Port})/Raw(b'bad'),
  IP(src=SERVER, dst=S)/UDP(sport=9, dport=${h1Port})/Raw(b'ok'),
])
`,
    );
    await settled();
    const fast = delta(fast0, await fastCounters());
    expect(
      pick(fast, [
        'fastpath.pass.lan.malformed',
        'fastpath.pass.lan.truncated',
        'fastpath.pass.lan.protocol',
        'fastpath.pass.lan.outer-malformed',
        'fastpath.pass.lan.icmp',
        'fastpath.pass.wan.malformed',
        'traffic.wan-rx-packets',
      ]),
    ).toEqual({
      'fastpath.pass.lan.malformed': 1,
      'fastpath.pass.lan.truncated': 1,
      'fastpath.pass.lan.protocol': 1,
      'fastpath.pass.lan.outer-malformed': 1,
      'fastpath.pass.lan.icmp': 1,
      'fastpath.pass.wan.malformed': 1,
      'traffic.wan-rx-packets': 1,
    });
    const slow = delta(slow0, await slowCounters());
    // Each reached the slow path and met its own reason there; the WAN datagram with a
    // bad header checksum is the kernel's to drop, as it always was.
    expect(
      pick(slow, [
        'drop.inner-malformed',
        'drop.transport-truncated',
        'drop.unsupported-protocol',
        'drop.tunnel-malformed',
        'drop.unsupported-icmp',
        'traffic.wan-rx-packets',
      ]),
    ).toEqual({
      'drop.inner-malformed': 1,
      'drop.transport-truncated': 1,
      'drop.unsupported-protocol': 1,
      'drop.tunnel-malformed': 1,
      'drop.unsupported-icmp': 1,
      'traffic.wan-rx-packets': 0,
    });
  });

  it('drops ESP in UDP from port 4500 on a withdrawn SPI as spi-withdrawn, and passes all else on that port', async () => {
    const b = bed();
    // A withdrawn range of the fast path's own (the router's slow path knows none):
    // what is dropped is dropped by the programs.
    const W = 0x70000000;
    expect(await ask({ cmd: 'withdrawn', ranges: [{ first: W, end: W + 64 }] })).toEqual({
      result: 'synced',
    });
    const fast0 = await fastCounters();
    const slow0 = await slowCounters();
    const h1in = await b.capture('h1', TOPOLOGY.lanIf, { filter: 'ip proto 4 and src host 10.0.0.7' });
    const natt = (sport: number, dport: number, spi: number, tail: number) =>
      `IP(src=SERVER, dst=S)/UDP(sport=${sport}, dport=${dport})/Raw(struct.pack('!II', ${spi}, 1)[:${tail}] + b'p' * ${tail >= 8 ? 16 : 0})`;
    const send = (spi: number) => scapy('server', `import struct\nwan([${natt(4500, h1Port, spi, 8)}])`);
    await scapy(
      'server',
      `
import struct
wan([
  ${natt(4500, h1Port, W + 5, 8)},
  ${natt(4501, h1Port, W + 5, 8)},
  ${natt(4500, h1Port, 0, 8)},
  ${natt(4500, h1Port, W + 64, 8)},
  ${natt(4500, h1Port, W + 63, 7)},
  ${natt(4500, h1Port + 1000, W + 5, 8)},
])
`,
    );
    await h1in.stop({ packets: 4 });
    await settled();
    const fast = delta(fast0, await fastCounters());
    expect(
      pick(fast, [
        'drop.spi-withdrawn',
        'traffic.wan-rx-packets',
        'traffic.inbound-packets',
        'fastpath.pass.wan.no-owner',
      ]),
    ).toEqual({
      'drop.spi-withdrawn': 1,
      'traffic.wan-rx-packets': 5,
      'traffic.inbound-packets': 4,
      'fastpath.pass.wan.no-owner': 1,
    });
    // Only the datagram for nobody reached the slow path.
    const slow = delta(slow0, await slowCounters());
    expect(pick(slow, ['traffic.wan-rx-packets', 'drop.no-owner', 'drop.spi-withdrawn'])).toEqual({
      'traffic.wan-rx-packets': 1,
      'drop.no-owner': 1,
      'drop.spi-withdrawn': 0,
    });
    // Tunnelled to h1: another source port, the non-ESP marker, the SPI past the range, a datagram too short to hold an SPI.
    const toH1 = datagrams(h1in.file).map((d) => innerOf(d.ip));
    expect(toH1.map((ip) => [ip.readUInt16BE(20), ip.readUInt32BE(28)])).toEqual([
      [4501, W + 5],
      [4500, 0],
      [4500, W + 64],
      [4500, W + 63],
    ]);

    // Cleared (the block granted again): the same datagram is forwarded.
    expect(await ask({ cmd: 'withdrawn', ranges: [] })).toEqual({ result: 'synced' });
    const fast1 = await fastCounters();
    await send(W + 5);
    await settled();
    expect(
      pick(delta(fast1, await fastCounters()), ['drop.spi-withdrawn', 'traffic.inbound-packets']),
    ).toEqual({ 'drop.spi-withdrawn': 0, 'traffic.inbound-packets': 1 });
  });

  it('stops forwarding by itself when its process dies (heartbeat), and the slow path takes over', async () => {
    const b = bed();
    await agent.stop({ signal: 'SIGKILL' });
    // tc filters outlive the process; its config says stop 10 s after the last heartbeat.
    await sleep(10_500);
    const slow0 = await slowCounters();
    const out = await b.capture('server', TOPOLOGY.wanIf, { filter: `src host ${SHARED}` });
    await scapy(
      'h1',
      `lan([tun('${TOPOLOGY.h1.lan}', IP(src=S, dst=SERVER)/UDP(sport=${h1Port}, dport=9)/Raw(b'after the agent'))])`,
    );
    await out.stop({ packets: 1 });
    await waitUntil(
      'the slow path to forward it',
      async () => delta(slow0, await slowCounters())['traffic.outbound-packets'] === 1,
      { timeoutMs: 5000, intervalMs: 100 },
    );
    // A new agent replaces the filters and is given the leases again.
    agent = startAgent();
    await agent.waitForOutput(/^ready$/m, { timeoutMs: 20_000 });
    await leaseToAgent();
  });

  it('stops forwarding a block with the next packet once it is out of the maps, while h1 floods from it', async () => {
    const b = bed();
    const out = await b.capture('server', TOPOLOGY.wanIf, { filter: `src host ${SHARED} and udp port 5001` });
    const flood = b.spawn('h1', [
      PYTHON,
      writeScript(
        b,
        'flood.py',
        `${SCAPY_PRELUDE}
f = raw(Ether(src=mac('lan0'), dst='02:00:0a:00:00:07')/tun('${TOPOLOGY.h1.lan}', IP(src=S, dst=SERVER)/UDP(sport=${h1Port}, dport=5001)/Raw(b'flood')))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('lan0', 0))
print('flooding', flush=True)
end = time.time() + 4
while time.time() < end:
    s.send(f)
    time.sleep(0.0005)
`,
      ),
    ]);
    const start = await fastCounters();
    await flood.waitForOutput(/flooding/, { timeoutMs: 15_000 });
    await sleep(1500);
    const before = await fastCounters();
    expect(
      await ask({ cmd: 'remove', host: TOPOLOGY.h1.lan, kind: 'port', first: h1Port, count: 32 }),
    ).toEqual({
      result: 'removed',
    });
    const atRemoval = await fastCounters();
    await flood.exited;
    await settled();
    const after = await fastCounters();
    await out.stop({ settleMs: 500 });
    // It was forwarding up to the removal...
    expect(before['traffic.outbound-packets']! - start['traffic.outbound-packets']!).toBeGreaterThan(100);
    // ...and forwarded nothing after it, though the flood went on, refused as the slow path would.
    expect(after['traffic.outbound-packets']).toBe(atRemoval['traffic.outbound-packets']);
    expect(after['drop.spoofed-port']! - atRemoval['drop.spoofed-port']!).toBeGreaterThan(100);
    // What left the WAN is exactly what the fast path forwarded of the flood.
    expect(datagrams(out.file).length).toBe(
      after['traffic.outbound-packets']! - start['traffic.outbound-packets']!,
    );
    const fast0 = await fastCounters();
    // Inbound to the removed block is no longer the fast path's either.
    await scapy('server', `wan([IP(src=SERVER, dst=S)/UDP(sport=9, dport=${h1Port})/Raw(b'late')])`);
    await settled();
    expect(delta(fast0, await fastCounters())['fastpath.pass.wan.no-owner']).toBe(1);
  });
});
