/**
 * The router forwards without rewriting: captures on its LAN (lan0) and WAN
 * (wan0) during UDP, TCP and ICMP traffic of both hosts, then every datagram
 * seen on the WAN is found on the LAN inside IP-in-IP, byte for byte equal
 * but for the TTL (decremented by the router's kernel when it forwards
 * between the TUN device and the WAN) and the IPv4 header checksum that
 * covers it. Outbound, the outer source is the host that owns the source
 * port; inbound, the outer destination is the host that owns the
 * destination port. The pcapng files are read here, not through a
 * dissector, so the bytes compared are the bytes captured.
 *
 * Shown on both data paths in one testbed: first the default, where the
 * eBPF programs of the router and the agents carry the traffic (their
 * counters say so), then with all three restarted on `datapath: tun`, where
 * no fast-path counter exists.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, Leases, PortBlock, UdpEcho } from '../helpers/distnat.ts';
import {
  addr,
  DATA_PATHS,
  counter,
  dataPathOf,
  fastPathCounters,
  fastPathForwarded,
  inBlocks,
  ipv4HeaderSum,
  ipv4Of,
  pseudoRandomBytes,
  readPcapng,
  readStatus,
  restartDaemonsOn,
  sha256,
  sha256File,
  startUdpEcho,
  udpExchange,
  waitForLeases,
} from '../helpers/distnat.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const FILE = pseudoRandomBytes(256 * 1024, 0x5eed0002);

interface Tunnelled {
  outerSrc: string;
  outerDst: string;
  outer: Buffer;
  inner: Buffer;
  used: boolean;
}

/** The datagram with TTL and header checksum zeroed: what must be equal on both sides. */
const normalised = (ip: Buffer): string => {
  const c = Buffer.from(ip);
  c[8] = 0;
  c.writeUInt16BE(0, 10);
  return c.toString('hex');
};

/** The port (TCP/UDP) or ICMP query id a datagram is demultiplexed by: source outbound, destination inbound. */
function demuxKey(ip: Buffer, outbound: boolean): number | undefined {
  const ihl = (ip[0]! & 15) * 4;
  const proto = ip[9];
  if (proto === 6 || proto === 17) return ip.readUInt16BE(ihl + (outbound ? 0 : 2));
  if (proto === 1 && [0, 8, 13, 14].includes(ip[ihl]!)) return ip.readUInt16BE(ihl + 4);
  return undefined;
}

function differingOffsets(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

const PROTO: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

let http: HttpServer;
let echo: UdpEcho;

beforeAll(async () => {
  const b = bed();
  [http, echo] = await Promise.all([
    b.httpServer('server', { bind: SERVER, files: { 'file.bin': FILE } }),
    startUdpEcho(b, 'server', 7000),
  ]);
});

describe.for(DATA_PATHS)(
  "the router's LAN and WAN captures: the inner datagram unchanged but for TTL and checksum, datapath: %s",
  (datapath) => {
    let leases: Leases;

    beforeAll(async () => {
      if (datapath === 'tun') await restartDaemonsOn(bed(), 'tun');
      leases = await waitForLeases(bed());
    }, 120_000);

    it('every WAN datagram to or from 198.51.100.30 is a LAN IP-in-IP inner datagram, both ways', async () => {
      const b = bed();
      const [before, h1Before, h2Before] = await Promise.all([
        readStatus(b, 'router'),
        readStatus(b, 'h1'),
        readStatus(b, 'h2'),
      ]);
      const [lan, wan] = await Promise.all([
        b.capture('router', TOPOLOGY.lanIf, { filter: 'ip proto 4' }),
        b.capture('router', TOPOLOGY.wanIf, { filter: `host ${SHARED}` }),
      ]);

      // UDP exchanges from both hosts, a TCP transfer each, and ICMP echo.
      const fetch = async (node: 'h1' | 'h2'): Promise<string> => {
        const file = join(b.scratchDir, `${node}-file.bin`);
        const r = await b.exec(
          node,
          ['curl', '-sS', '--max-time', '30', '-o', file, http.url(SERVER, 'file.bin')],
          {
            timeoutMs: 40_000,
          },
        );
        expect(r.code, r.stderr).toBe(0);
        return sha256File(file);
      };
      const [u1, u2, s1, s2, p1] = await Promise.all([
        udpExchange(b, 'h1', { dst: SERVER, port: echo.port, tag: 'h1', flows: 2, count: 3 }),
        udpExchange(b, 'h2', { dst: SERVER, port: echo.port, tag: 'h2', flows: 2, count: 3 }),
        fetch('h1'),
        fetch('h2'),
        b.ping('h1', SERVER, { count: 2, waitS: 2 }),
      ]);
      expect([u1.answered, u2.answered, p1.received]).toEqual([6, 6, 2]);
      expect([s1, s2]).toEqual([sha256(FILE), sha256(FILE)]);

      // What the router saw in the meantime is on the wire at least once: wait for the captures to hold it.
      const [after, h1After, h2After] = await Promise.all([
        readStatus(b, 'router'),
        readStatus(b, 'h1'),
        readStatus(b, 'h2'),
      ]);
      // Which path carried it: the programs of all three forwarded some of it, or none of them exists.
      const pairs = { router: [before, after], h1: [h1Before, h1After], h2: [h2Before, h2After] } as const;
      for (const [node, [s0, s1]] of Object.entries(pairs)) {
        if (datapath === 'ebpf') {
          expect(dataPathOf(s1), node).toMatch(/^eBPF \(/);
          expect(fastPathForwarded(s0, s1), `${node}: packets its eBPF programs forwarded`).toBeGreaterThan(
            0,
          );
        } else {
          expect(dataPathOf(s1), node).toMatch(/^TUN \(datapath: tun\)/);
          expect(fastPathCounters(s1), node).toEqual({});
        }
      }
      const delta = (s: DaemonStatus, name: string): number => counter(s, name) - counter(before, name);
      const onLan = delta(after, 'traffic.lan-rx-packets') + delta(after, 'traffic.inbound-packets');
      const onWan = delta(after, 'traffic.outbound-packets') + delta(after, 'traffic.wan-rx-packets');
      await Promise.all([
        lan.stop({ packets: onLan, timeoutMs: 20_000 }),
        wan.stop({ packets: onWan, timeoutMs: 20_000 }),
      ]);

      const tunnelled: Tunnelled[] = [];
      const byInner = new Map<string, Tunnelled[]>();
      for (const frame of readPcapng(lan.file)) {
        const outer = ipv4Of(frame);
        if (outer === undefined || outer[9] !== 4) continue;
        const ohl = (outer[0]! & 15) * 4;
        const t: Tunnelled = {
          outerSrc: addr(outer, 12),
          outerDst: addr(outer, 16),
          outer,
          inner: outer.subarray(ohl),
          used: false,
        };
        tunnelled.push(t);
        const key = normalised(t.inner);
        byInner.set(key, [...(byInner.get(key) ?? []), t]);
      }
      const wanDatagrams = readPcapng(wan.file)
        .map(ipv4Of)
        .filter((ip): ip is Buffer => ip !== undefined);
      expect(wanDatagrams.length).toBeGreaterThanOrEqual(onWan);

      const owner = (host: string): PortBlock[] =>
        host === TOPOLOGY.h1.lan ? leases.h1 : host === TOPOLOGY.h2.lan ? leases.h2 : [];
      const seen = new Set<string>();
      const unmatched: string[] = [];
      for (const ip of wanDatagrams) {
        const src = addr(ip, 12);
        const dst = addr(ip, 16);
        const outbound = src === SHARED;
        expect(outbound || dst === SHARED, `${src} -> ${dst} on the WAN`).toBe(true);
        const candidates = (byInner.get(normalised(ip)) ?? []).filter(
          (t) =>
            !t.used && (outbound ? t.outerDst === TOPOLOGY.router.lan : t.outerSrc === TOPOLOGY.router.lan),
        );
        const t = candidates[0];
        if (t === undefined) {
          unmatched.push(
            `${outbound ? 'out' : 'in'} ${PROTO[ip[9]!] ?? ip[9]} ${src} -> ${dst} len ${ip.length}`,
          );
          continue;
        }
        t.used = true;
        seen.add(`${outbound ? 'out' : 'in'}-${PROTO[ip[9]!] ?? ip[9]}`);
        // Only TTL and the header checksum differ, and both checksums verify.
        expect(t.inner.length).toBe(ip.length);
        expect(differingOffsets(t.inner, ip).filter((i) => i !== 8 && i !== 10 && i !== 11)).toEqual([]);
        expect(t.inner[8]).toBe(outbound ? ip[8]! + 1 : ip[8]! - 1);
        expect(ipv4HeaderSum(ip)).toBe(0xffff);
        expect(ipv4HeaderSum(t.inner)).toBe(0xffff);
        // The outer header: IP-in-IP between the router and the host owning the port (RFC 2003: TOS and DF copied).
        const host = outbound ? t.outerSrc : t.outerDst;
        const port = demuxKey(ip, outbound);
        expect(port, `a port or query id in ${PROTO[ip[9]!]}`).toBeDefined();
        expect(
          inBlocks(port!, owner(host)),
          `${outbound ? 'source' : 'destination'} ${port} held by ${host}`,
        ).toBe(true);
        expect(t.outer[1]).toBe(ip[1]);
        expect(t.outer[6]! & 0x40).toBe(ip[6]! & 0x40);
        expect(t.outer.readUInt16BE(6) & 0x3fff, 'outer header not fragmented').toBe(0);
        expect(ipv4HeaderSum(t.outer)).toBe(0xffff);
      }
      expect(unmatched, `WAN datagrams with no LAN tunnel counterpart`).toEqual([]);
      // Nothing was tunnelled that did not also cross the WAN.
      const lanOnly = tunnelled.filter((t) => !t.used);
      expect(
        lanOnly.map((t) => `${t.outerSrc} -> ${t.outerDst} ${PROTO[t.inner[9]!]} len ${t.inner.length}`),
      ).toEqual([]);
      expect([...seen].sort()).toEqual(['in-icmp', 'in-tcp', 'in-udp', 'out-icmp', 'out-tcp', 'out-udp']);
      // And both hosts' traffic was in it.
      expect(
        new Set(tunnelled.map((t) => (t.outerSrc === TOPOLOGY.router.lan ? t.outerDst : t.outerSrc))),
      ).toEqual(new Set([TOPOLOGY.h1.lan, TOPOLOGY.h2.lan]));
      console.log(
        `${datapath}: compared ${wanDatagrams.length} WAN datagrams with ${tunnelled.length} LAN tunnel datagrams byte for byte`,
      );
    });
  },
);
