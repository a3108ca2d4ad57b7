/**
 * Distributed NAT end to end, with unmodified programs: the testbed's own
 * `distnat router` and two `distnat host` agents, both hosts using
 * 198.51.100.30 at the same time. curl, ping, a UDP socket program and
 * iperf3 run on h1 and h2 concurrently against servers in the server
 * namespace; the servers must see the shared address, from ports inside the
 * block the sending host leased. The router's Prometheus counters move while
 * the traffic runs, and its eBPF fast path (the default data path) is what
 * carried it. Then the same with the router and the agents restarted on
 * `datapath: tun` in the same namespaces: the TUN path carries everything
 * and no fast-path counter exists.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostNode, Leases, Metrics, UdpEcho } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  HOSTS,
  counter,
  dataPathOf,
  fastPathCounters,
  inBlocks,
  mbitPerS,
  metric,
  readStatus,
  restartDaemonsOn,
  scrapeMetrics,
  sha256,
  sha256File,
  startUdpEcho,
  translationRows,
  udpExchange,
  waitForLeases,
} from '../helpers/distnat.ts';
import { waitUntil } from '../helpers/process.ts';
import type { HttpServer, Iperf3Server } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const BIG = randomBytes(4 * 1024 * 1024);
const IPERF_PORT: Record<HostNode, number> = { h1: 5201, h2: 5202 };

interface IperfResult {
  end: { sum_sent: { bits_per_second: number; bytes: number }; sum_received: { bits_per_second: number } };
  start: { connected: { local_port: number; remote_host: string }[] };
  server_output_text?: string;
  error?: string;
}

let http: HttpServer;
let echo: UdpEcho;
const iperf: Partial<Record<HostNode, Iperf3Server>> = {};

beforeAll(async () => {
  const b = bed();
  [http, echo, iperf.h1, iperf.h2] = await Promise.all([
    b.httpServer('server', { bind: SERVER, files: { 'big.bin': BIG } }),
    startUdpEcho(b, 'server', 7000),
    b.iperf3Server('server', { port: IPERF_PORT.h1 }),
    b.iperf3Server('server', { port: IPERF_PORT.h2 }),
  ]);
});

describe.for(DATA_PATHS)(
  'two hosts share 198.51.100.30, unmodified programs, at the same time, datapath: %s',
  (datapath) => {
    let leases: Leases;
    /** Where the HTTP server's log of this data path's requests begins. */
    let httpLogFrom = 0;

    beforeAll(async () => {
      if (datapath === 'tun') await restartDaemonsOn(bed(), 'tun');
      leases = await waitForLeases(bed());
      httpLogFrom = http.stderr().length;
    }, 120_000);

    it('leases each host its own block, and the router lists exactly those', () => {
      expect(leases.h1.length).toBeGreaterThan(0);
      expect(leases.h2.length).toBeGreaterThan(0);
      for (const a of leases.h1)
        for (const b of leases.h2) expect(a.last < b.first || b.last < a.first).toBe(true);
      expect(leases.router.map((r) => r.host).sort()).toEqual([TOPOLOGY.h1.lan, TOPOLOGY.h2.lan]);
    });

    it('curl downloads 4 MB on h1 and h2 at once, intact; the server sees 198.51.100.30', async () => {
      const b = bed();
      const fetch = async (node: HostNode) => {
        const file = join(b.scratchDir, `${node}-big.bin`);
        const r = await b.exec(
          node,
          ['curl', '-sS', '--max-time', '60', '-w', '%{local_port}', '-o', file, http.url(SERVER, 'big.bin')],
          { timeoutMs: 70_000 },
        );
        expect(r.code, `curl on ${node}: ${r.stderr}`).toBe(0);
        return { localPort: Number(r.stdout.trim()), sha: await sha256File(file) };
      };
      const [f1, f2] = await Promise.all([fetch('h1'), fetch('h2')]);
      expect(f1.sha).toBe(sha256(BIG));
      expect(f2.sha).toBe(sha256(BIG));

      // python's http.server logs the client address of every request.
      const clients = [
        ...http
          .stderr()
          .slice(httpLogFrom)
          .matchAll(/^(\S+) - - .*"GET \/big\.bin HTTP\/1\.1" 200/gm),
      ].map((m) => m[1]);
      expect(clients).toEqual([SHARED, SHARED]);

      // Each host's curl connection went out through its FIG. 11 table onto a leased port.
      for (const [node, f] of [
        ['h1', f1],
        ['h2', f2],
      ] as const) {
        const row = translationRows(await readStatus(b, node)).find(
          (r) => r.protocol === 6 && r.local === f.localPort,
        );
        expect(row, `${node}: FIG. 11 row for curl's local port ${f.localPort}`).toBeDefined();
        expect(inBlocks(row!.leased, leases[node])).toBe(true);
      }
    });

    it('ping from h1 and h2 at once: every echo answered', async () => {
      const b = bed();
      const [p1, p2] = await Promise.all(HOSTS.map((n) => b.ping(n, SERVER, { count: 5, waitS: 2 })));
      expect(p1!.received, p1!.output).toBe(5);
      expect(p2!.received, p2!.output).toBe(5);
      // The echo identifiers went out translated into each host's block.
      for (const node of HOSTS) {
        const icmp = translationRows(await readStatus(b, node)).filter((r) => r.protocol === 1);
        expect(icmp.length, `${node}: an ICMP row in FIG. 11`).toBeGreaterThan(0);
        for (const r of icmp) expect(inBlocks(r.leased, leases[node])).toBe(true);
      }
    });

    it("UDP request/response from both hosts: the server sees 198.51.100.30 from ports in the sender's block", async () => {
      const b = bed();
      const results = await Promise.all(
        HOSTS.map((n) =>
          udpExchange(b, n, { dst: SERVER, port: echo.port, tag: `${n}-${datapath}`, flows: 4, count: 3 }),
        ),
      );
      for (const r of results) expect(r.answered).toBe(12);
      const seen = echo.seen();
      for (const node of HOSTS) {
        const mine = seen.filter((d) => d.data.startsWith(`${node}-${datapath} `));
        expect(mine.length).toBeGreaterThanOrEqual(12);
        for (const d of mine) {
          expect(d.src).toBe(SHARED);
          expect(inBlocks(d.port, leases[node]), `${node} datagram from port ${d.port}`).toBe(true);
        }
        // Four sockets, four leased ports (endpoint-independent mapping: one per socket).
        expect(new Set(mine.map((d) => d.port)).size).toBe(4);
      }
    });

    it('iperf3 TCP for 3 s from both hosts at once completes; the router counts the traffic while it runs', async () => {
      const b = bed();
      const before: Metrics = await scrapeMetrics(b, 'router');
      const statusBefore = await readStatus(b, 'router');
      const runs = HOSTS.map((node) =>
        b.exec(
          node,
          ['iperf3', '-c', SERVER, '-p', String(IPERF_PORT[node]), '-t', '3', '-J', '--get-server-output'],
          { timeoutMs: 60_000 },
        ),
      );
      // Scrape during the transfer: the packet counters move before iperf3 ends.
      let during: Metrics = before;
      const key = 'distnat_router_packets_total{direction="outbound"}';
      await waitUntil(
        'router packet counters to move during iperf3',
        async () => {
          during = await scrapeMetrics(b, 'router');
          return metric(during, key) > metric(before, key) + 100;
        },
        { timeoutMs: 20_000, intervalMs: 300 },
      );
      const done = await Promise.all(runs);
      const after = await scrapeMetrics(b, 'router');
      const statusAfter = await readStatus(b, 'router');

      for (const [i, node] of HOSTS.entries()) {
        const r = done[i]!;
        expect(r.code, `iperf3 on ${node}: ${r.stdout.slice(0, 2000)} ${r.stderr}`).toBe(0);
        const j = JSON.parse(r.stdout) as IperfResult;
        expect(j.error).toBeUndefined();
        expect(j.end.sum_sent.bytes).toBeGreaterThan(0);
        console.log(
          `iperf3 TCP ${node} -> server, 3 s, both hosts at once: sent ${mbitPerS(j.end.sum_sent.bits_per_second)}, received ${mbitPerS(j.end.sum_received.bits_per_second)}`,
        );
        // The server's own view: the shared address, from leased ports (control and data connections).
        const text = j.server_output_text ?? '';
        const peers = [...text.matchAll(/connected to (\S+) port (\d+)/g)].map(
          (m) => [m[1], Number(m[2])] as const,
        );
        expect(peers.length, text).toBeGreaterThan(0);
        for (const [address, port] of peers) {
          expect(address).toBe(SHARED);
          expect(inBlocks(port, leases[node]), `${node} iperf3 data connection from port ${port}`).toBe(true);
        }
        expect(text).toMatch(
          new RegExp(`Accepted connection from ${SHARED.replace(/\./g, '\\.')}, port (\\d+)`),
        );
        const control = Number(/Accepted connection from \S+, port (\d+)/.exec(text)![1]);
        expect(inBlocks(control, leases[node])).toBe(true);
      }

      for (const direction of ['lan_in', 'outbound', 'wan_in', 'inbound']) {
        const k = `distnat_router_packets_total{direction="${direction}"}`;
        expect(metric(during, k), k).toBeGreaterThan(metric(before, k));
        expect(metric(after, k), k).toBeGreaterThanOrEqual(metric(during, k));
        const bytes = `distnat_router_bytes_total{direction="${direction}"}`;
        expect(metric(after, bytes), bytes).toBeGreaterThan(metric(before, bytes));
      }
      const tunTx = 'distnat_router_io_packets_total{device="tun",direction="tx"}';
      if (datapath === 'ebpf') {
        // The eBPF fast path carried the transfer both ways, not the TUN path beside it.
        expect(dataPathOf(statusAfter)).toMatch(/^eBPF \(/);
        for (const name of ['outbound-packets', 'inbound-packets']) {
          const k = `fastpath.traffic.${name}`;
          expect(counter(statusAfter, k) - counter(statusBefore, k), k).toBeGreaterThan(1000);
        }
        const fastOut =
          counter(statusAfter, 'fastpath.traffic.outbound-packets') -
          counter(statusBefore, 'fastpath.traffic.outbound-packets');
        expect(metric(after, tunTx) - metric(before, tunTx), tunTx).toBeLessThan(fastOut / 10);
      } else {
        // The TUN path alone: the transfer left through the TUN device (in super-packets, fewer than
        // the datagrams), and no fast path exists.
        expect(dataPathOf(statusAfter)).toBe('TUN (datapath: tun)');
        expect(fastPathCounters(statusAfter)).toEqual({});
        expect(metric(after, tunTx) - metric(before, tunTx), tunTx).toBeGreaterThan(1000);
        const agent = await readStatus(b, 'h1');
        expect(dataPathOf(agent)).toBe('TUN (datapath: tun)');
        expect(fastPathCounters(agent)).toEqual({});
      }
      // Every datagram was someone's: nothing dropped as spoofed or ownerless.
      expect(metric(after, 'distnat_router_dropped_packets_total{reason="spoofed-port"}')).toBe(0);
      expect(metric(after, 'distnat_router_dropped_packets_total{reason="no-owner"}')).toBe(0);
      expect(metric(after, 'distnat_router_hosts')).toBe(2);
      expect(metric(after, 'distnat_router_flows')).toBeGreaterThan(0);

      // The agents count too.
      const h1 = await scrapeMetrics(b, 'h1');
      expect(metric(h1, 'distnat_host_packets_total{event="outbound"}')).toBeGreaterThan(1000);
    });
  },
);
