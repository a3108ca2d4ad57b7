/**
 * test/netns/shared-addresses.test.ts on the router's eBPF data path: one
 * router with sharedAddresses [198.51.100.30, 198.51.100.31] and `datapath:
 * ebpf`, h1 on the first address, h2 on the second. The fast path attaches
 * (rather than falling back to the TUN path), both hosts download at once,
 * intact, each leaving the WAN with its own address and leased ports, and
 * the fast path forwarded the downloads itself: its counters carry most of
 * the packets, and each host's pings, from its own address, in both
 * directions.
 */
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, HostNode, PortBlock } from '../helpers/distnat.ts';
import { dataPathOf, fastPathForwarded, readStatus, sha256 } from '../helpers/distnat.ts';
import type { Capture } from '../helpers/capture.ts';
import type { HttpServer } from '../helpers/servers.ts';
import {
  download,
  expectOwnAddressesOnWan,
  SERVER,
  startTwoAddresses,
  twoAddressTable,
} from '../helpers/shared-addresses.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const BIG = randomBytes(2 * 1024 * 1024);

let http: HttpServer;
let wan: Capture;
let blocks: Record<HostNode, PortBlock[]>;

const counter = (s: DaemonStatus, name: string): number => Number(s.counters[name] ?? 0);

beforeAll(async () => {
  const b = bed();
  http = await b.httpServer('server', { bind: SERVER, files: { 'big.bin': BIG } });
  blocks = await startTwoAddresses(b, twoAddressTable(b, 'ebpf'));
  wan = await b.capture('server', TOPOLOGY.wanIf, { filter: `tcp port ${http.port}` });
}, 120_000);

describe('one router on the eBPF data path, two shared addresses: h1 on the first, h2 on the second', () => {
  it('attaches the fast path for both addresses', async () => {
    const status = await readStatus(bed(), 'router');
    expect(dataPathOf(status)).toMatch(/^eBPF \(/);
    expect(counter(status, 'fastpath.active')).toBe(1);
  });

  it('both hosts download at once, intact, from their own addresses and ports, through the fast path', async () => {
    const b = bed();
    const before = await readStatus(b, 'router');
    const [one, two] = await Promise.all([
      download(b, 'h1', http, 'big.bin'),
      download(b, 'h2', http, 'big.bin'),
    ]);
    expect(one, "h1's download").toBe(sha256(BIG));
    expect(two, "h2's download").toBe(sha256(BIG));
    const after = await readStatus(b, 'router');
    const { fromHosts, toHosts } = await expectOwnAddressesOnWan(wan, blocks);
    const seen = Object.values(fromHosts).concat(Object.values(toHosts));
    const wire = seen.reduce((a, n) => a + n, 0);
    const forwarded = fastPathForwarded(before, after);
    // More than all of one address's packets: the fast path carried both
    // addresses' flows, not one address's with the other left to the TUN path.
    const oneAddress = Math.max(
      ...[TOPOLOGY.shared, TOPOLOGY.multiRouter.shared[1]!].map(
        (a) => (fromHosts[a] ?? 0) + (toHosts[a] ?? 0),
      ),
    );
    console.log(
      `fast path forwarded ${forwarded} packets; the WAN saw ${wire} (${JSON.stringify({ fromHosts, toHosts })})`,
    );
    expect(forwarded, `fast path forwarded ${forwarded} of ${wire} packets on the WAN`).toBeGreaterThan(
      oneAddress,
    );
    // And nearly all of them: the TUN path is left the odd packet at most (it took none here, 3056 of 3056).
    expect(forwarded, 'share of the WAN packets the fast path forwarded').toBeGreaterThanOrEqual(0.9 * wire);
    for (const drop of ['drop.not-shared-source', 'drop.spoofed-port', 'drop.no-lease'])
      expect(counter(after, drop) - counter(before, drop), drop).toBe(0);
  });

  it.each(['h1', 'h2'] as const)(
    "%s's pings, alone, go out and come back through the fast path",
    async (node) => {
      const b = bed();
      const before = await readStatus(b, 'router');
      const r = await b.ping(node, SERVER, { count: 5 });
      expect(r.received, `${node} pinging ${SERVER}`).toBe(5);
      const after = await readStatus(b, 'router');
      const delta = (name: string) => counter(after, name) - counter(before, name);
      expect(
        delta('fastpath.traffic.outbound-packets'),
        'echo requests out by the fast path',
      ).toBeGreaterThanOrEqual(5);
      expect(
        delta('fastpath.traffic.inbound-packets'),
        'echo replies in by the fast path',
      ).toBeGreaterThanOrEqual(5);
    },
  );
});
