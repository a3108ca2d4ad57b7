/**
 * IPsec end to end through the distributed NAT: h1 and h2 share
 * 198.51.100.30 and each protects its traffic to the server with its own
 * SAs (ESP transport AES-GCM-128, ESP tunnel AES-CBC-128 + HMAC-SHA-256-128,
 * AH transport HMAC-SHA-256-128; test/netns/ipsec-keys.ts); `distnat peer`
 * on the server is the other end of all of them at once. The router
 * forwards ESP and AH outbound unchanged and demultiplexes them inbound by
 * the SPI block each host leased (FIG. 21).
 *
 * Shown: curl through every kind from both hosts (sha256 checked), a short
 * iperf3 through ESP, captures on the router's LAN and WAN in which every
 * ESP/AH datagram of the WAN is the inner datagram of an IP-in-IP packet on
 * the LAN, equal but for TTL and header checksum, going to or from the host
 * that owns the SPI; and tshark, given the keys, decrypting the WAN's ESP
 * into the expected inner TCP with every ICV good.
 *
 * On both data paths in the same namespaces, router and agents on the same
 * one: the default, where the router's eBPF programs carry the ESP and AH
 * (the agents' leave every IPsec packet to the agent), then with all of
 * them started again on `datapath: tun`, where no fast-path counter exists.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Capture } from '../helpers/capture.ts';
import type { DaemonStatus, HostNode, PortBlock } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  HOSTS,
  LAN_OF,
  addr,
  dataPathOf,
  fastPathCounters,
  fastPathForwarded,
  hostPortBlocks,
  inBlocks,
  ipv4HeaderSum,
  ipv4Of,
  mbitPerS,
  metric,
  pseudoRandomBytes,
  readPcapng,
  readStatus,
  scrapeMetrics,
  sha256,
  sha256File,
} from '../helpers/distnat.ts';
import {
  KEYS,
  decodeEsp,
  ipsecCounter,
  readPeerStatus,
  startIpsecDaemons,
  stopIpsecDaemons,
} from '../helpers/ipsec.ts';
import type { IpsecDaemons } from '../helpers/ipsec.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const FILE = pseudoRandomBytes(512 * 1024, 0x5eed1e5c);

/** The three kinds each host's keying file has, by server port offset (ipsec-keys.ts). */
const KINDS = [
  { name: 'ESP transport AES-GCM', offset: 1, index: 0, protocol: 50 },
  { name: 'ESP tunnel AES-CBC + HMAC-SHA-256', offset: 2, index: 1, protocol: 50 },
  { name: 'AH transport HMAC-SHA-256', offset: 3, index: 2, protocol: 51 },
] as const;

/** Whose SPI this is and which way it goes (ipsec-keys.ts: inbound SPIs from the leased block). */
function spiOwner(spi: number): { node: HostNode; outbound: boolean; index: number } | undefined {
  for (const node of HOSTS) {
    const k = KEYS[node];
    if (spi >= k.outSpi && spi < k.outSpi + 4) return { node, outbound: true, index: spi - k.outSpi };
    if (spi >= k.inSpi && spi < k.inSpi + 4) return { node, outbound: false, index: spi - k.inSpi };
  }
  return undefined;
}

const spiOf = (ip: Buffer): number => {
  const ihl = (ip[0]! & 15) * 4;
  return ip[9] === 50 ? ip.readUInt32BE(ihl) : ip.readUInt32BE(ihl + 4);
};

/** The datagram with TTL and header checksum zeroed: what must be equal on both sides. */
const normalised = (ip: Buffer): string => {
  const c = Buffer.from(ip);
  c[8] = 0;
  c.writeUInt16BE(0, 10);
  return c.toString('hex');
};

const http = new Map<number, HttpServer>();
let daemons: IpsecDaemons | undefined;

beforeAll(async () => {
  const ports = HOSTS.flatMap((n) => KINDS.map((k) => KEYS[n].base + k.offset));
  const servers = await Promise.all(
    ports.map((port) => bed().httpServer('server', { port, bind: SERVER, files: { 'file.bin': FILE } })),
  );
  ports.forEach((p, i) => http.set(p, servers[i]!));
});

describe.for(DATA_PATHS)(
  'IPsec through distnat: ESP and AH of two hosts through the one shared address, datapath: %s',
  (datapath) => {
    let lan: Capture;
    let wan: Capture;
    const blocks: Partial<Record<HostNode, PortBlock[]>> = {};
    const before: Partial<Record<HostNode, DaemonStatus>> = {};
    let routerBefore: DaemonStatus;
    /** Where each server's log of this data path's requests begins. */
    const logFrom = new Map<number, number>();

    beforeAll(async () => {
      const b = bed();
      if (daemons !== undefined) await stopIpsecDaemons(b, daemons);
      daemons = await startIpsecDaemons(b, { datapath });
      for (const [port, server] of http) logFrom.set(port, server.stderr().length);
      routerBefore = await readStatus(b, 'router');
      for (const node of HOSTS) {
        before[node] = await readStatus(b, node);
        blocks[node] = hostPortBlocks(before[node]);
      }
      [lan, wan] = await Promise.all([
        b.capture('router', TOPOLOGY.lanIf, { filter: 'ip proto 4' }),
        b.capture('router', TOPOLOGY.wanIf, { filter: 'ip proto 50 or ip proto 51' }),
      ]);
    }, 90_000);

    it('leased h1 SPIs 256-319 and h2 320-383, as the keying files assume', async () => {
      const router = await readStatus(bed(), 'router');
      const fig21 = router.tables.find((t) => t.title.startsWith('FIG. 21'))!;
      expect(fig21.rows.map((r) => [r[0], Number(r[1]), Number(r[2])])).toEqual([
        [TOPOLOGY.h1.lan, 256, 64],
        [TOPOLOGY.h2.lan, 320, 64],
      ]);
      for (const node of HOSTS) expect(String(before[node]!.summary['ipsec'])).toContain('SAs installed');
    });

    it('curl through each kind from both hosts at once: intact, and the server sees 198.51.100.30', async () => {
      // The captures end here even when a check fails, so the tests that read
      // them judge complete files.
      try {
        const b = bed();
        const fetches = HOSTS.flatMap((node) =>
          KINDS.map(async (kind) => {
            const port = KEYS[node].base + kind.offset;
            const file = join(b.scratchDir, `${node}-${port}.bin`);
            const r = await b.exec(
              node,
              ['curl', '-sS', '--max-time', '30', '-o', file, http.get(port)!.url(SERVER, 'file.bin')],
              { timeoutMs: 40_000 },
            );
            expect(r.code, `curl on ${node} through ${kind.name}: ${r.stderr}`).toBe(0);
            expect(await sha256File(file), `${node} ${kind.name}`).toBe(sha256(FILE));
          }),
        );
        await Promise.all(fetches);
        for (const [port, server] of http) {
          const clients = [
            ...server
              .stderr()
              .slice(logFrom.get(port))
              .matchAll(/^(\S+) - - .*"GET \/file\.bin HTTP\/1\.1" 200/gm),
          ];
          expect(
            clients.map((m) => m[1]),
            `server port ${port}`,
          ).toEqual([SHARED]);
        }
        // Which path carried it: the router's programs forwarded the ESP and AH, or no fast path exists.
        const router = await readStatus(b, 'router');
        if (datapath === 'ebpf') {
          expect(dataPathOf(router)).toMatch(/^eBPF \(/);
          expect(fastPathForwarded(routerBefore, router)).toBeGreaterThan(6 * 300);
        } else {
          expect(dataPathOf(router)).toBe('TUN (datapath: tun)');
          expect(fastPathCounters(router)).toEqual({});
        }
        for (const node of HOSTS) {
          const s = await readStatus(b, node);
          if (datapath === 'ebpf') {
            expect(dataPathOf(s), node).toMatch(/^eBPF \(.*IPsec in the agent\)/);
            expect(fastPathForwarded(before[node]!, s), node).toBe(0);
          } else {
            expect(dataPathOf(s), node).toBe('TUN (datapath: tun)');
            expect(fastPathCounters(s), node).toEqual({});
          }
          const grew = (name: string): number => ipsecCounter(s, name) - ipsecCounter(before[node]!, name);
          // Outbound is mostly ACKs, whose number depends on receive coalescing
          // (one per super-packet with offloads): at least the handshakes,
          // requests and FINs of the three downloads. Inbound counts every segment.
          expect(grew('ipsec.outbound.protected'), node).toBeGreaterThan(3 * 5);
          expect(grew('ipsec.inbound.accepted'), node).toBeGreaterThan(3 * 300);
          for (const bad of ['no-sa', 'replay', 'auth-failed', 'policy-mismatch', 'malformed'])
            expect(grew(`ipsec.inbound.${bad}`), `${node} ipsec.inbound.${bad}`).toBe(0);
        }
      } finally {
        await Promise.all([lan.stop(), wan.stop()]);
      }
    }, 60_000);

    it("every ESP/AH datagram on the WAN is on the LAN inside IP-in-IP to or from the SPI's host, equal but for TTL and checksum", () => {
      const lanInner = new Map<string, { outer: Buffer; inner: Buffer }[]>();
      for (const frame of readPcapng(lan.file)) {
        const outer = ipv4Of(frame);
        if (outer === undefined || outer[9] !== 4) continue;
        const inner = outer.subarray((outer[0]! & 15) * 4);
        if (inner[9] !== 50 && inner[9] !== 51) continue;
        const key = normalised(inner);
        const list = lanInner.get(key) ?? [];
        list.push({ outer, inner });
        lanInner.set(key, list);
      }
      const seen = new Map<string, number>();
      let matched = 0;
      for (const frame of readPcapng(wan.file)) {
        const ip = ipv4Of(frame);
        if (ip === undefined) continue;
        const spi = spiOf(ip);
        const owner = spiOwner(spi);
        expect(owner, `SPI 0x${spi.toString(16)} on the WAN`).toBeDefined();
        const { node, outbound, index } = owner!;
        expect(ip[9], `SPI 0x${spi.toString(16)}: protocol`).toBe(KINDS[index]!.protocol);
        expect(addr(ip, outbound ? 12 : 16)).toBe(SHARED);
        expect(addr(ip, outbound ? 16 : 12)).toBe(SERVER);
        const twin = lanInner.get(normalised(ip))?.shift();
        expect(
          twin,
          `WAN datagram SPI 0x${spi.toString(16)} seq ${ip.readUInt32BE(24)} not on the LAN`,
        ).toBeDefined();
        const { outer, inner } = twin!;
        // Outbound the host's datagram leaves one hop later; inbound the WAN's reaches the LAN one hop later.
        expect(inner[8]! - ip[8]!).toBe(outbound ? 1 : -1);
        expect(ipv4HeaderSum(inner)).toBe(0xffff);
        expect(ipv4HeaderSum(ip)).toBe(0xffff);
        expect(addr(outer, outbound ? 12 : 16), `outer ${outbound ? 'source' : 'destination'}`).toBe(
          LAN_OF[node],
        );
        expect(addr(outer, outbound ? 16 : 12)).toBe(TOPOLOGY.router.lan);
        const k = `${node} ${outbound ? 'out' : 'in'} ${KINDS[index]!.name}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
        matched++;
      }
      // Every kind in both directions for both hosts, with the file's worth of
      // packets inbound; outbound is ACKs, fewer with receive coalescing.
      expect([...seen.keys()].sort()).toHaveLength(12);
      for (const [k, n] of seen) expect(n, k).toBeGreaterThan(k.includes(' in ') ? 300 : 5);
      expect(matched).toBeGreaterThan(6 * 300);
    });

    it("tshark with the configured keys decrypts the WAN's ESP to the expected TCP, every ICV good", async () => {
      const rows = await decodeEsp(
        wan.file,
        [...daemons!.esp.h1!, ...daemons!.esp.h2!],
        ['esp.spi', 'esp.icv_good', 'esp.icv_bad', 'ip.src', 'ip.dst', 'tcp.srcport', 'tcp.dstport'],
      );
      expect(rows.length).toBeGreaterThan(6 * 200);
      const good = (v: string | undefined): boolean => v === '1' || v === 'True';
      for (const [spiText, icvGood, icvBad, ipSrc, ipDst, sport, dport] of rows) {
        const spi = Number(spiText);
        const owner = spiOwner(spi)!;
        const what = `SPI 0x${spi.toString(16)}`;
        expect(good(icvGood), `${what}: ICV good (${icvGood}/${icvBad})`).toBe(true);
        expect(good(icvBad), what).toBe(false);
        // Inner addresses (the last of the list in tunnel mode) are the shared address and the server.
        const src = ipSrc!.split(',').at(-1);
        const dst = ipDst!.split(',').at(-1);
        const [local, remote] = owner.outbound
          ? [Number(sport), Number(dport)]
          : [Number(dport), Number(sport)];
        expect(owner.outbound ? [src, dst] : [dst, src], what).toEqual([SHARED, SERVER]);
        expect(remote, what).toBe(KEYS[owner.node].base + KINDS[owner.index]!.offset);
        // The leased port, never the local stack's: protection comes after translation.
        expect(inBlocks(local, blocks[owner.node]!), `${what}: port ${local} in ${owner.node}'s block`).toBe(
          true,
        );
      }
    });

    it('iperf3 TCP for 2 s through ESP AES-GCM from both hosts at once', async () => {
      const b = bed();
      const servers = await Promise.all(HOSTS.map((n) => b.iperf3Server('server', { port: KEYS[n].iperf })));
      const at = await Promise.all(HOSTS.map((n) => readStatus(b, n)));
      const runs = await Promise.all(
        HOSTS.map((n) =>
          b.exec(n, ['iperf3', '-c', SERVER, '-p', String(KEYS[n].iperf), '-t', '2', '-J'], {
            timeoutMs: 30_000,
          }),
        ),
      );
      for (const [i, node] of HOSTS.entries()) {
        const r = runs[i]!;
        expect(r.code, `iperf3 on ${node}: ${r.stdout.slice(-1000)} ${r.stderr}`).toBe(0);
        const j = JSON.parse(r.stdout) as {
          end: { sum_received: { bits_per_second: number; bytes: number } };
        };
        expect(j.end.sum_received.bytes).toBeGreaterThan(1_000_000);
        console.log(
          `iperf3 ${node} -> server through ESP AES-GCM-128, 2 s, both hosts at once: ${mbitPerS(j.end.sum_received.bits_per_second)}`,
        );
        const s = await readStatus(b, node);
        expect(
          ipsecCounter(s, 'ipsec.outbound.protected') - ipsecCounter(at[i]!, 'ipsec.outbound.protected'),
        ).toBeGreaterThan(j.end.sum_received.bytes / 1500);
        // The same verdicts on the Prometheus endpoint, and the SAs installed.
        const m = await scrapeMetrics(b, node);
        expect(
          metric(m, 'distnat_host_ipsec_packets_total{direction="outbound",verdict="protected"}'),
        ).toBeGreaterThan(j.end.sum_received.bytes / 1500);
        expect(metric(m, 'distnat_host_ipsec_sas')).toBeGreaterThan(0);
      }
      const peer = await readPeerStatus(daemons!.peerRunDir);
      expect(peer.counters['ipsec.inbound.accepted'] ?? 0).toBeGreaterThan(1000);
      await Promise.all(servers.map((s) => s.stop()));
    }, 60_000);
  },
);
