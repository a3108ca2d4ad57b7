/**
 * Hairpin: one host reaching another through the shared address, the
 * router's part byte by byte. The sender is built by hand (scapy on h2:
 * IP-in-IP to the router, inner 198.51.100.30:<h2's leased port> ->
 * 198.51.100.30:<h1's leased port>), so that the test sees exactly what
 * enters and leaves the router; the receiver is an unmodified socket program
 * on h1 whose port the agent leased when it first talked to the server.
 * Unmodified programs on both ends (the agents' policy routing, docs/host.md
 * "Hairpin") are test/netns/hairpin-programs.test.ts.
 *
 * The router turns the datagram around itself (docs/router.md, "TTL, and
 * the hairpin"): TTL down by one, checksum patched, tunnelled to h1. h1's
 * agent translates the destination back to the program's local port and
 * writes it into its TUN device; h1's kernel should then deliver it.
 *
 * Shown on both data paths in one testbed: first the default, where the
 * router's eBPF program sees the tunnel and leaves the hairpin to the TUN
 * path (its `fastpath.pass.lan.hairpin`), then with the router and the
 * agents restarted on `datapath: tun`, where no fast-path counter exists.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Background } from '../helpers/process.ts';
import type { DaemonStatus, Leases, UdpEcho } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  PYTHON,
  addr,
  counter,
  fastPathCounters,
  ipv4HeaderSum,
  ipv4Of,
  readPcapng,
  readStatus,
  restartDaemonsOn,
  startUdpEcho,
  translationRows,
  waitForLeases,
  writeScript,
} from '../helpers/distnat.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import type { Capture } from '../helpers/capture.ts';

const bed = useTestbed();
const SHARED = TOPOLOGY.shared;

/** h1's program: talks to the server once (so its port is mapped), then waits for anyone's datagram. */
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 0))
s.settimeout(2)
for attempt in range(10):
    s.sendto(sys.argv[4].encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        s.recvfrom(2048)
        break
    except socket.timeout:
        pass
print(json.dumps({'local': s.getsockname()[1]}), flush=True)
s.settimeout(float(sys.argv[3]))
try:
    while True:
        data, src = s.recvfrom(2048)
        if data == b'hairpin':
            print(json.dumps({'got': data.decode(), 'from': list(src)}), flush=True)
            break
except socket.timeout:
    print(json.dumps({'timeout': True}), flush=True)
`;

const SENDER = `
import sys
from scapy.all import IP, UDP, Raw, send, conf
conf.verb = 0
sport, dport = int(sys.argv[1]), int(sys.argv[2])
send(IP(src='${TOPOLOGY.h2.lan}', dst='${TOPOLOGY.router.lan}', proto=4)
     / IP(src='${SHARED}', dst='${SHARED}', ttl=10) / UDP(sport=sport, dport=dport) / Raw(b'hairpin'))
`;

/** Sum of in_martian_src over CPUs (/proc/net/stat/rt_cache) in the node's namespace. */
async function martianSources(node: 'h1'): Promise<number> {
  const r = await bed().exec(node, ['cat', '/proc/net/stat/rt_cache']);
  const [head, ...rows] = r.stdout.trim().split('\n');
  const col = head!.trim().split(/\s+/).indexOf('in_martian_src');
  return rows.reduce((sum, row) => sum + Number.parseInt(row.trim().split(/\s+/)[col]!, 16), 0);
}

let echo: UdpEcho;

beforeAll(async () => {
  echo = await startUdpEcho(bed(), 'server', 7000);
});

describe.for(DATA_PATHS)('hairpin: h2 to h1 through 198.51.100.30, datapath: %s', (datapath) => {
  let leases: Leases;
  const setup = `h1-hairpin-setup-${datapath}`;
  let receiver: Background;
  let localPort = 0;
  let h1Port = 0;
  let h2Port = 0;
  let before: DaemonStatus;
  let lan: Capture;
  let tun: Capture;
  let martiansBefore = 0;

  beforeAll(async () => {
    if (datapath === 'tun') await restartDaemonsOn(bed(), 'tun');
    leases = await waitForLeases(bed());
  }, 120_000);

  it('the router turns the datagram around to the owner of the destination port, TTL 10 -> 9', async () => {
    const b = bed();
    receiver = b.spawn('h1', [
      PYTHON,
      writeScript(b, 'receiver.py', RECEIVER),
      TOPOLOGY.server.wan,
      '7000',
      '10',
      setup,
    ]);
    localPort = JSON.parse((await receiver.waitForOutput(/^\{"local".*$/m, { timeoutMs: 30_000 }))[0]).local;
    h1Port = echo.seen().find((d) => d.data === setup)!.port;
    const row = translationRows(await readStatus(b, 'h1')).find(
      (r) => r.protocol === 17 && r.local === localPort,
    );
    expect(row?.leased).toBe(h1Port);
    h2Port = leases.h2[0]!.last;

    before = await readStatus(b, 'router');
    martiansBefore = await martianSources('h1');
    [lan, tun] = await Promise.all([
      b.capture('router', TOPOLOGY.lanIf, { filter: 'ip proto 4' }),
      b.capture('h1', TOPOLOGY.tun, { filter: 'udp' }),
    ]);
    const r = await b.exec(
      'h2',
      [PYTHON, writeScript(b, 'hairpin.py', SENDER), String(h2Port), String(h1Port)],
      {
        timeoutMs: 30_000,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    await Promise.all([lan.stop({ packets: 2 }), tun.stop({ packets: 1 })]);

    const after = await readStatus(b, 'router');
    expect(counter(after, 'traffic.hairpin-packets') - counter(before, 'traffic.hairpin-packets')).toBe(1);
    if (datapath === 'ebpf')
      // The program saw the tunnel and left the hairpin to the TUN path.
      expect(counter(after, 'fastpath.pass.lan.hairpin') - counter(before, 'fastpath.pass.lan.hairpin')).toBe(
        1,
      );
    else expect(fastPathCounters(after)).toEqual({});
    const tunnels = readPcapng(lan.file)
      .map(ipv4Of)
      .filter((ip): ip is Buffer => ip !== undefined)
      .map((outer) => ({
        src: addr(outer, 12),
        dst: addr(outer, 16),
        inner: outer.subarray((outer[0]! & 15) * 4),
      }));
    const fromH2 = tunnels.find((t) => t.src === TOPOLOGY.h2.lan);
    const toH1 = tunnels.find((t) => t.src === TOPOLOGY.router.lan && t.dst === TOPOLOGY.h1.lan);
    expect(fromH2, 'h2 -> router tunnel').toBeDefined();
    expect(toH1, 'router -> h1 tunnel').toBeDefined();
    expect(fromH2!.inner[8]).toBe(10);
    expect(toH1!.inner[8]).toBe(9);
    expect(ipv4HeaderSum(toH1!.inner)).toBe(0xffff);
    const strip = (ip: Buffer): string =>
      Buffer.concat([ip.subarray(0, 8), ip.subarray(9, 10), ip.subarray(12)]).toString('hex');
    expect(strip(toH1!.inner)).toBe(strip(fromH2!.inner));
  });

  it("h1's agent writes it into its TUN device, addressed to the program's local port", async () => {
    const rows = await tun.fields(
      ['ip.src', 'ip.dst', 'ip.ttl', 'udp.srcport', 'udp.dstport', 'udp.checksum.status'],
      {
        prefs: { 'udp.check_checksum': 'TRUE' },
      },
    );
    expect(rows).toEqual([[SHARED, SHARED, '9', String(h2Port), String(localPort), '1']]);
  });

  it("h1's program receives it", async () => {
    const outcome = await receiver.waitForOutput(/^\{"(got|timeout)".*$/m, { timeoutMs: 25_000 });
    const martians = (await martianSources('h1')) - martiansBefore;
    const h1 = await readStatus(bed(), 'h1');
    expect(
      JSON.parse(outcome[0]),
      `the datagram was written into h1's ${TOPOLOGY.tun} (io.tun.txPackets ${counter(h1, 'io.tun.txPackets')}), ` +
        `but h1's kernel counted ${martians} new martian source(s) (in_martian_src in /proc/net/stat/rt_cache): ` +
        `its source ${SHARED} is a local address of h1 and net.ipv4.conf.${TOPOLOGY.tun}.accept_local is ` +
        `${(await bed().exec('h1', ['sysctl', '-n', `net.ipv4.conf.${TOPOLOGY.tun}.accept_local`])).stdout.trim()}`,
    ).toEqual({ got: 'hairpin', from: [SHARED, h2Port] });
  });
});
