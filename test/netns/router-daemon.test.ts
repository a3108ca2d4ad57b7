/**
 * `distnat router` for real, in a testbed of this file's own (no host
 * agents), on each data path in turn: PAP answers over UDP and ICMP seen on
 * the wire, tunnels made by hand with scapy forwarded both ways and a
 * spoofed port dropped, a SIGKILL survived with leases and epoch, a SIGTERM
 * that cleans up. With `datapath: ebpf` the fast path's own counters show
 * that it, not the TUN path, carried the datagrams; with `datapath: tun`
 * there is no fast path at all.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Background } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SCAPY = '/usr/bin/python3';
const DISTNAT = join(ROOT, 'bin', 'distnat');

const papClient = `
import { HostLeases } from '${ROOT}src/pap/host-leases.ts';
import { IcmpPapTransport } from '${ROOT}src/pap/icmp-transport.ts';
import { UdpPapTransport } from '${ROOT}src/pap/udp-transport.ts';
import { PapClient } from '${ROOT}src/pap/pap-client.ts';
import { SystemClock } from '${ROOT}src/util/clock.ts';
const [via, local] = process.argv.slice(2);
const clock = new SystemClock({ unref: true });
const transport = via === 'icmp'
  ? IcmpPapTransport.open({ address: local!, device: '${TOPOLOGY.lanIf}' })
  : await UdpPapTransport.open({ address: local!, port: 0 });
const router = via === 'icmp' ? { address: '${TOPOLOGY.router.lan}' } : { address: '${TOPOLOGY.router.lan}', port: ${TOPOLOGY.papPort} };
const client = new PapClient({ clock, transport, leases: new HostLeases({ clock }), router,
  retransmit: { initialMs: 500, attempts: 4 } });
const ports = await client.request('port', 32);
client.stop();
await transport.close();
console.log(JSON.stringify(ports));
process.exit(0);
`;

/** Sends one datagram through a hand-made tunnel to the router: argv host-address kind. */
const tunnelSender = `
import sys
from scapy.all import IP, UDP, Raw, send, conf
conf.verb = 0
me, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
inner = IP(src='${TOPOLOGY.shared}', dst=dst, ttl=20)/UDP(sport=sport, dport=dport)/Raw(b'distnat-' + sys.argv[2].encode())
send(IP(src=me, dst='${TOPOLOGY.router.lan}', proto=4)/inner)
`;

interface PortOutcome {
  status: string;
  response: { lowestPort: number; portCount: number; epoch: number };
}

type DataPath = 'ebpf' | 'tun';

/** Each data path's router keeps its own state and control socket. */
const dirOf = (datapath: DataPath, kind: 'state' | 'run'): string => join(bed().scratchDir, datapath, kind);

function startRouter(datapath: DataPath): Background {
  const b = bed();
  return b.spawn('router', [
    DISTNAT,
    'router',
    '--shared-address',
    TOPOLOGY.shared,
    '--lan-address',
    TOPOLOGY.router.lan,
    '--tun',
    TOPOLOGY.tun,
    '--datapath',
    datapath,
    '--state-dir',
    dirOf(datapath, 'state'),
    '--run-dir',
    dirOf(datapath, 'run'),
    '--fresh',
  ]);
}

async function status(datapath: DataPath): Promise<{
  summary: Record<string, string | number>;
  counters: Record<string, number>;
}> {
  const b = bed();
  const r = await b.exec('router', [
    DISTNAT,
    'status',
    'router',
    '--json',
    '--run-dir',
    dirOf(datapath, 'run'),
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    summary: Record<string, string | number>;
    counters: Record<string, number>;
  };
}

/** The fast path's counters (its own share of the traffic among them); none on the TUN path alone. */
function fastCounters(counters: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counters).filter(([k]) => k.startsWith('fastpath.')));
}

async function lease(node: 'h1' | 'h2', via: 'udp' | 'icmp'): Promise<PortOutcome> {
  const b = bed();
  const r = await b.exec(
    node,
    ['node', '--import', 'tsx', join(b.scratchDir, 'pap-client.mts'), via, TOPOLOGY[node].lan],
    {
      cwd: ROOT,
      timeoutMs: 30_000,
    },
  );
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as PortOutcome;
}

beforeAll(() => {
  const b = bed();
  writeFileSync(join(b.scratchDir, 'pap-client.mts'), papClient);
  writeFileSync(join(b.scratchDir, 'tunnel.py'), tunnelSender);
});

describe.for(['ebpf', 'tun'] as const)(
  'distnat router in the namespace testbed, datapath: %s',
  (datapath) => {
    let router: Background;
    let h1Port = 0;
    let epoch = 0;

    it('answers PAP over UDP and over ICMP types 32/33', async () => {
      const b = bed();
      router = startRouter(datapath);
      await router.waitForOutput(/router started/, { timeoutMs: 20_000 });
      const s = await status(datapath);
      if (datapath === 'ebpf') {
        expect(s.summary['data path']).toBe(
          `eBPF (tc on ${TOPOLOGY.lanIf} and ${TOPOLOGY.wanIf} ingress) + TUN`,
        );
        expect(s.counters['fastpath.active']).toBe(1);
      } else {
        expect(s.summary['data path']).toBe('TUN (datapath: tun)');
        expect(fastCounters(s.counters)).toEqual({});
      }
      const cap = await b.capture('router', TOPOLOGY.lanIf, {
        filter: `udp port ${TOPOLOGY.papPort} or icmp`,
      });
      const udp = await lease('h1', 'udp');
      const icmp = await lease('h2', 'icmp');
      await cap.stop({ packets: 4 });
      expect(udp.status).toBe('ok');
      expect(icmp.status).toBe('ok');
      expect(udp.response.portCount).toBe(32);
      expect(icmp.response.epoch).toBe(udp.response.epoch);
      h1Port = udp.response.lowestPort;
      epoch = udp.response.epoch;
      const rows = await cap.fields(['ip.src', 'ip.dst', 'ip.proto', 'data.len']);
      const { router: r, h1, h2 } = TOPOLOGY;
      expect(rows).toContainEqual([h1.lan, r.lan, '17', '28']);
      expect(rows).toContainEqual([r.lan, h1.lan, '17', '28']);
      expect(rows.filter((row) => row[0] === r.lan && row[1] === h2.lan && row[2] === '1')).toHaveLength(1);
    });

    it('forwards a tunnelled datagram unchanged from its owner and drops a spoofed source port', async () => {
      const b = bed();
      const cap = await b.capture('server', TOPOLOGY.wanIf, { filter: 'udp port 9' });
      const py = join(b.scratchDir, 'tunnel.py');
      expect(
        (await b.exec('h1', [SCAPY, py, TOPOLOGY.h1.lan, String(h1Port), TOPOLOGY.server.wan, '9'])).code,
      ).toBe(0);
      expect(
        (await b.exec('h2', [SCAPY, py, TOPOLOGY.h2.lan, String(h1Port + 1), TOPOLOGY.server.wan, '9'])).code,
      ).toBe(0);
      await cap.stop({ settleMs: 500 });
      const rows = await cap.fields(['ip.src', 'udp.srcport', 'ip.ttl']);
      // TTL 20 leaves the router as 19: the kernel forwarded it.
      expect(rows).toEqual([[TOPOLOGY.shared, String(h1Port), '19']]);
      const s = await status(datapath);
      expect(s.counters['drop.spoofed-port']).toBe(1);
      expect(s.counters['traffic.outbound-packets']).toBe(1);
      if (datapath === 'ebpf')
        // The fast path took both tunnels, forwarded one and dropped the other: the TUN path saw neither.
        expect(fastCounters(s.counters)).toMatchObject({
          'fastpath.traffic.lan-rx-packets': 2,
          'fastpath.traffic.outbound-packets': 1,
        });
      else expect(fastCounters(s.counters)).toEqual({});
    });

    it("tunnels the server's datagram for a leased port to its owner", async () => {
      const b = bed();
      // The server's port unreachable for the datagram above came back the same way: count from here.
      const before = await status(datapath);
      const cap = await b.capture('h1', TOPOLOGY.lanIf, { filter: 'ip proto 4' });
      const send = `from scapy.all import *; conf.verb=0; send(IP(dst='${TOPOLOGY.shared}')/UDP(sport=9, dport=${h1Port})/Raw(b'back'))`;
      expect((await b.exec('server', [SCAPY, '-c', send])).code).toBe(0);
      await cap.stop({ packets: 1 });
      const rows = await cap.fields(['ip.src', 'ip.dst', 'udp.dstport']);
      expect(rows[0]).toEqual([
        `${TOPOLOGY.router.lan},${TOPOLOGY.server.wan}`,
        `${TOPOLOGY.h1.lan},${TOPOLOGY.shared}`,
        String(h1Port),
      ]);
      const s = await status(datapath);
      const delta = (k: string): number => (s.counters[k] ?? NaN) - (before.counters[k] ?? NaN);
      expect(delta('traffic.inbound-packets')).toBe(1);
      if (datapath === 'ebpf') {
        expect(delta('fastpath.traffic.wan-rx-packets')).toBe(1);
        expect(delta('fastpath.traffic.inbound-packets')).toBe(1);
      }
    });

    it('comes back from SIGKILL with its leases and epoch', async () => {
      await router.stop({ signal: 'SIGKILL' });
      router = startRouter(datapath);
      await router.waitForOutput(/router started/, { timeoutMs: 20_000 });
      expect(router.stderr()).toMatch(/took over the lock/);
      const s = await status(datapath);
      expect(s.summary.epoch).toBe(epoch);
      expect(s.summary.recovered).toBe('yes');
      expect(s.counters['leases.port_leases']).toBe(2);
    });

    it('stops cleanly on SIGTERM: exit 0, control socket and lock removed, no BPF program left attached', async () => {
      const b = bed();
      const exit = await router.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
      expect(exit.code).toBe(0);
      expect(existsSync(join(dirOf(datapath, 'run'), 'router.sock'))).toBe(false);
      expect(existsSync(join(dirOf(datapath, 'state'), 'router.lock'))).toBe(false);
      for (const dev of [TOPOLOGY.lanIf, TOPOLOGY.wanIf]) {
        const r = await b.exec('router', ['tc', 'filter', 'show', 'dev', dev, 'ingress']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.trim(), dev).toBe('');
      }
    });
  },
);
