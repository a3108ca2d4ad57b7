/**
 * A host cannot send from another host's ports: h1 builds IP-in-IP to the
 * router by hand (scapy) whose inner UDP, TCP and ICMP echo use ports and an
 * identifier from h2's leased block. None of them leaves the router's WAN,
 * and `distnat status router` counts each as `drop.spoofed-port`. A marker
 * datagram from h1's own block, sent after them, does leave: once it is on
 * the WAN the spoofed ones have been decided.
 *
 * Shown on both data paths in one testbed: first with the eBPF fast path
 * (the default; its own counters show it took all five tunnels), then with
 * the router and the agents restarted on `datapath: tun`.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, Leases } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  PYTHON,
  counter,
  metric,
  readStatus,
  readStatusCli,
  restartDaemonsOn,
  routerPortBlocks,
  scrapeMetrics,
  waitForLeases,
  writeScript,
} from '../helpers/distnat.ts';
import { waitUntil } from '../helpers/process.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();

const SPOOFER = `
import sys
from scapy.all import IP, UDP, TCP, ICMP, Raw, send, conf
conf.verb = 0
me, theirs, mine, dst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def tunnel(inner):
    return IP(src=me, dst='${TOPOLOGY.router.lan}', proto=4) / inner
inner = lambda: IP(src='${TOPOLOGY.shared}', dst=dst)
send([
    tunnel(inner() / UDP(sport=theirs, dport=7000) / Raw(b'spoofed-udp')),
    tunnel(inner() / TCP(sport=theirs + 1, dport=8080, flags='S', seq=1000)),
    tunnel(inner() / ICMP(type=8, id=theirs + 2, seq=1) / Raw(b'spoofed-icmp')),
    tunnel(IP(src='${TOPOLOGY.h2.lan}', dst=dst) / UDP(sport=mine, dport=7000) / Raw(b'not-shared-source')),
    tunnel(inner() / UDP(sport=mine, dport=7000) / Raw(b'marker')),
])
`;

describe.for(DATA_PATHS)("h1 sending from h2's ports, datapath: %s", (datapath) => {
  let leases: Leases;

  beforeAll(async () => {
    if (datapath === 'tun') await restartDaemonsOn(bed(), 'tun');
    leases = await waitForLeases(bed());
  }, 120_000);

  it('reaches nothing on the WAN and is counted as drop.spoofed-port', async () => {
    const b = bed();
    const before: DaemonStatus = await readStatus(b, 'router');
    const dataPath = String(before.summary['data path']);
    if (datapath === 'ebpf') expect(dataPath).toMatch(/^eBPF \(/);
    else expect(dataPath).toBe('TUN (datapath: tun)');
    const wan = await b.capture('server', TOPOLOGY.wanIf, { filter: `src host ${TOPOLOGY.shared}` });
    const theirs = leases.h2[0]!.first;
    const mine = leases.h1[0]!.last;
    const r = await b.exec(
      'h1',
      [
        PYTHON,
        writeScript(b, 'spoof.py', SPOOFER),
        TOPOLOGY.h1.lan,
        String(theirs),
        String(mine),
        TOPOLOGY.server.wan,
      ],
      { timeoutMs: 30_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    await wan.stop({ packets: 1, timeoutMs: 15_000 });
    const rows = await wan.fields([
      'ip.src',
      'ip.proto',
      'udp.srcport',
      'tcp.srcport',
      'icmp.ident',
      'data.data',
    ]);
    expect(rows).toEqual([
      [TOPOLOGY.shared, '17', String(mine), '', '', Buffer.from('marker').toString('hex')],
    ]);

    // The router's own account, through the command line.
    let after = before;
    await waitUntil(
      'the router to count the spoofed datagrams',
      async () => {
        after = await readStatus(b, 'router');
        return counter(after, 'drop.spoofed-port') >= counter(before, 'drop.spoofed-port') + 3;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    const cli = await readStatusCli(b, 'router');
    expect(counter(cli, 'drop.spoofed-port') - counter(before, 'drop.spoofed-port')).toBe(3);
    expect(counter(cli, 'drop.not-shared-source') - counter(before, 'drop.not-shared-source')).toBe(1);
    expect(counter(cli, 'traffic.outbound-packets') - counter(before, 'traffic.outbound-packets')).toBe(1);
    const fast = (s: DaemonStatus, name: string): number => s.counters[`fastpath.traffic.${name}`] ?? NaN;
    if (datapath === 'ebpf') {
      // The fast path took all five tunnels and forwarded the marker: the TUN path saw none of them.
      expect(fast(cli, 'lan-rx-packets') - fast(before, 'lan-rx-packets')).toBe(5);
      expect(fast(cli, 'outbound-packets') - fast(before, 'outbound-packets')).toBe(1);
    } else expect(Object.keys(cli.counters).filter((k) => k.startsWith('fastpath.'))).toEqual([]);
    const metrics = await scrapeMetrics(b, 'router');
    expect(metric(metrics, 'distnat_router_dropped_packets_total{reason="spoofed-port"}')).toBe(
      counter(cli, 'drop.spoofed-port'),
    );
    // h2's block is still h2's alone.
    const h2 = routerPortBlocks(await readStatus(b, 'router')).filter((x) => x.host === TOPOLOGY.h2.lan);
    expect(h2.map((x) => x.first)).toContain(theirs);
  });
});
