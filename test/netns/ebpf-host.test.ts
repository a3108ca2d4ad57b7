/**
 * The host's eBPF fast path (prototype) against the real router, in a
 * testbed of this file's own: `distnat router` leases a port block to h1
 * (PAP), and test/netns/ebpf-host-agent.ts attaches host.bpf.o to h1's dn0
 * (egress) and lan0 (ingress); no host agent runs, so only what the fast
 * path carries gets anywhere. An unmodified UDP socket in h1 bound to the
 * shared address talks to an echo server.
 *
 * Native mode: a datagram from a leased port goes out in IP-in-IP from h1's
 * LAN address, inner datagram as the stack wrote it, and the echo comes back
 * to the socket; from a port outside the lease it is left to the agent.
 * Translate mode: with a translation handed over, the server sees the leased
 * port and the reply reaches the socket on its own port; once withdrawn, the
 * next datagram goes to the agent.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UdpEcho } from '../helpers/distnat.ts';
import { DISTNAT, ipv4Of, PYTHON, readPcapng, startUdpEcho, writeScript } from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import { askAgent } from './ebpf-socket.ts';

const bed = useTestbed({ daemons: false });
const ECHO_PORT = 7007;

const PAP_CLIENT = `
import { HostLeases } from '${ROOT}src/pap/host-leases.ts';
import { UdpPapTransport } from '${ROOT}src/pap/udp-transport.ts';
import { PapClient } from '${ROOT}src/pap/pap-client.ts';
import { SystemClock } from '${ROOT}src/util/clock.ts';
const clock = new SystemClock({ unref: true });
const transport = await UdpPapTransport.open({ address: '${TOPOLOGY.h1.lan}', port: 0 });
const client = new PapClient({ clock, transport, leases: new HostLeases({ clock }),
  router: { address: '${TOPOLOGY.router.lan}', port: 7032 }, retransmit: { initialMs: 500, attempts: 4 } });
const ports = await client.request('port', 32);
client.stop();
await transport.close();
console.log(JSON.stringify({ port: ports.response.lowestPort }));
process.exit(0);
`;

/** One datagram from (shared, port) to the echo server; prints whether the echo came back. */
const CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('${TOPOLOGY.shared}', int(sys.argv[1])))
s.settimeout(2.0)
s.sendto(sys.argv[2].encode(), ('${TOPOLOGY.server.wan}', ${ECHO_PORT}))
try:
    data, src = s.recvfrom(2048)
    print('echo', data.decode())
except socket.timeout:
    print('no echo')
`;

let router: Background;
let agent: Background | undefined;
let echo: UdpEcho;
let block = 0;

const socketPath = (): string => join(bed().scratchDir, 'host-fast-path.sock');
const ask = <T>(command: object): Promise<T> => askAgent<T>(socketPath(), command);
const counters = async (): Promise<Record<string, number>> =>
  (await ask<{ counters: Record<string, number> }>({ cmd: 'counters' })).counters;

async function startAgent(mode: 'native' | 'translate'): Promise<void> {
  await agent?.stop();
  const b = bed();
  agent = b.spawn(
    'h1',
    [
      'node',
      '--import',
      'tsx',
      join(ROOT, 'test', 'netns', 'ebpf-host-agent.ts'),
      '--socket',
      socketPath(),
      '--mode',
      mode,
      '--shared',
      TOPOLOGY.shared,
      '--lan-address',
      TOPOLOGY.h1.lan,
      '--router',
      TOPOLOGY.router.lan,
    ],
    { cwd: ROOT },
  );
  await agent.waitForOutput(/^ready$/m, { timeoutMs: 20_000 });
}

async function exchange(port: number, text: string): Promise<string> {
  const b = bed();
  const r = await b.exec('h1', [PYTHON, writeScript(b, 'client.py', CLIENT), String(port), text], {
    timeoutMs: 20_000,
  });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

beforeAll(async () => {
  const b = bed();
  router = b.spawn('router', [
    DISTNAT,
    'router',
    '--shared-address',
    TOPOLOGY.shared,
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
  const r = await b.exec('h1', ['node', '--import', 'tsx', writeScript(b, 'pap.mts', PAP_CLIENT)], {
    cwd: ROOT,
    timeoutMs: 30_000,
  });
  expect(r.code, r.stderr).toBe(0);
  block = (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { port: number }).port;
  echo = await startUdpEcho(b, 'server', ECHO_PORT);
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await router?.stop();
});

describe("the host's eBPF fast path", () => {
  it("native mode: tunnels the stack's datagram from a leased port, delivers the echo, leaves other ports to the agent", async () => {
    const b = bed();
    await startAgent('native');
    expect(await ask({ cmd: 'lease', first: block, count: 32 })).toEqual({ ok: true });
    const cap = await b.capture('h1', TOPOLOGY.lanIf, { filter: 'ip proto 4' });
    const before = await counters();
    expect(await exchange(block + 3, 'native hello')).toBe('echo native hello');
    expect(await exchange(60999, 'not leased')).toBe('no echo');
    await cap.stop({ packets: 2 });
    const after = await counters();
    expect(after['packets.outbound']! - before['packets.outbound']!).toBe(1);
    expect(after['packets.inbound']! - before['packets.inbound']!).toBe(1);
    expect(after['fastpath.pass.out.unleased']! - before['fastpath.pass.out.unleased']!).toBe(1);
    expect(echo.seen().at(-1)).toMatchObject({ src: TOPOLOGY.shared, port: block + 3, data: 'native hello' });
    // On the LAN: h1 -> router with the stack's datagram inside, and the echo router -> h1.
    const ips = readPcapng(cap.file)
      .map(ipv4Of)
      .filter((x): x is Buffer => x !== undefined);
    const out = ips.find((ip) => ip.subarray(12, 16).join('.') === TOPOLOGY.h1.lan)!;
    expect([out.subarray(16, 20).join('.'), out[9], out[8]]).toEqual([TOPOLOGY.router.lan, 4, 64]);
    const inner = out.subarray(20);
    expect([inner.subarray(12, 16).join('.'), inner.readUInt16BE(20)]).toEqual([TOPOLOGY.shared, block + 3]);
    expect(ips.some((ip) => ip.subarray(12, 16).join('.') === TOPOLOGY.router.lan)).toBe(true);
  });

  it('translate mode: the server sees the leased port, the socket its own; a withdrawn translation goes to the agent', async () => {
    await startAgent('translate');
    const local = 33333;
    const leased = block + 7;
    expect(await ask({ cmd: 'translate', protocol: 17, local, leased })).toEqual({ ok: true });
    const before = await counters();
    expect(await exchange(local, 'translated hello')).toBe('echo translated hello');
    expect(echo.seen().at(-1)).toMatchObject({
      src: TOPOLOGY.shared,
      port: leased,
      data: 'translated hello',
    });
    const mid = await counters();
    expect(mid['packets.outbound']! - before['packets.outbound']!).toBe(1);
    expect(mid['packets.inbound']! - before['packets.inbound']!).toBe(1);
    expect((await ask<{ ns: number }>({ cmd: 'last-use', protocol: 17, leased })).ns).toBeGreaterThan(0);
    expect(await ask({ cmd: 'untranslate', protocol: 17, local, leased })).toEqual({ ok: true });
    expect(await exchange(local, 'after')).toBe('no echo');
    const after = await counters();
    expect(after['fastpath.pass.out.no-mapping']! - mid['fastpath.pass.out.no-mapping']!).toBe(1);
    expect(after['packets.outbound']).toBe(mid['packets.outbound']);
  });
});
