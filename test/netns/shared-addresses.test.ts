/**
 * A router with two shared addresses (sharedAddresses: [198.51.100.30,
 * 198.51.100.31], the TUN data path): h1 uses the first, h2 the second, each
 * with its own TUN address and its own port space on the router. Both
 * download through the router at once, intact; on the WAN each host's
 * packets leave with its own shared address and with the ports its agent
 * leased, unchanged; the router's status lists both addresses with the
 * leases on each.
 */
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostNode, PortBlock } from '../helpers/distnat.ts';
import { findTable, readStatus, sha256 } from '../helpers/distnat.ts';
import type { Capture } from '../helpers/capture.ts';
import type { HttpServer } from '../helpers/servers.ts';
import {
  ADDRESS_OF,
  download,
  expectOwnAddressesOnWan,
  FIRST,
  SECOND,
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

beforeAll(async () => {
  const b = bed();
  http = await b.httpServer('server', { bind: SERVER, files: { 'big.bin': BIG } });
  blocks = await startTwoAddresses(b, twoAddressTable(b, 'tun'));
  wan = await b.capture('server', TOPOLOGY.wanIf, { filter: `tcp port ${http.port}` });
}, 120_000);

describe('one router, two shared addresses: h1 on the first, h2 on the second', () => {
  it('both hosts download at once, intact, each from its own shared address and leased ports', async () => {
    const b = bed();
    const [one, two] = await Promise.all([
      download(b, 'h1', http, 'big.bin'),
      download(b, 'h2', http, 'big.bin'),
    ]);
    expect(one, "h1's download").toBe(sha256(BIG));
    expect(two, "h2's download").toBe(sha256(BIG));
    // Packets from the hosts to the server, as the server's WAN saw them: source address and port.
    await expectOwnAddressesOnWan(wan, blocks);
  });

  it("the router's status lists both addresses, and each host's leases on its own", async () => {
    const status = await readStatus(bed(), 'router');
    expect(String(status.summary['shared addresses'])).toBe(`${FIRST}, ${SECOND}`);
    const fig8 = findTable(status, 'FIG. 8');
    expect(fig8.columns).toEqual([
      'INTERNAL NETWORK ADDRESS',
      'SHARED ADDRESS',
      'LOWEST PORT',
      'NUMBER OF PORTS',
      'LEASE LEFT',
    ]);
    for (const node of ['h1', 'h2'] as const) {
      const mine = fig8.rows.filter((r) => r[0] === TOPOLOGY[node].lan);
      expect(mine.length, `${node}: rows in FIG. 8`).toBeGreaterThan(0);
      for (const r of mine) {
        expect(r[1]).toBe(ADDRESS_OF[node]);
        expect(Number(r[2])).toBeLessThan(65536);
      }
    }
  });
});
