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
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultProcessTable } from '../../scripts/lib/testbed/process-table.ts';
import type { HostNode, PortBlock } from '../helpers/distnat.ts';
import { findTable, hostPortBlocks, inBlocks, readStatus, sha256, sha256File } from '../helpers/distnat.ts';
import type { Capture } from '../helpers/capture.ts';
import { waitUntil } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const FIRST = TOPOLOGY.shared;
const SECOND = TOPOLOGY.multiRouter.shared[1]!;
const ADDRESS_OF: Record<HostNode, string> = { h1: FIRST, h2: SECOND };
const BIG = randomBytes(2 * 1024 * 1024);

let http: HttpServer;
let wan: Capture;
const blocks: Partial<Record<HostNode, PortBlock[]>> = {};

/** The testbed's process table with the router on both addresses, h2 on the second, all on the TUN path. */
function daemonTable(): string {
  return defaultProcessTable(bed().layout)
    .map((p) => {
      let command = p.command;
      if (p.name === 'router')
        command = command.replace(`--shared-address ${FIRST}`, `--shared-addresses ${FIRST},${SECOND}`);
      if (p.name === 'h2')
        command = command.replace(`--shared-address ${FIRST}`, `--shared-address ${SECOND}`);
      if (p.name === 'router' || p.name === 'h1' || p.name === 'h2') command += ' --datapath tun';
      return `${p.name} ${p.node} ${command}`;
    })
    .join('\n');
}

beforeAll(async () => {
  const b = bed();
  const tun = TOPOLOGY.tun;
  http = await b.httpServer('server', { bind: SERVER, files: { 'big.bin': BIG } });
  // Starting the daemons sets the namespaces up again (the first address everywhere), so after it:
  await b.reconfigure({ ...b.current, daemons: true, daemonTable: daemonTable() });
  // the kernel side of a second shared address: routed into the router's TUN, routed to the router
  // by the server (the upstream), and the TCP/IP stack of h2 using it instead of the first.
  for (const [node, script] of [
    ['router', `ip route replace ${SECOND}/32 dev ${tun}`],
    ['server', `ip route replace ${SECOND}/32 via ${TOPOLOGY.router.wan}`],
    [
      'h2',
      `ip addr del ${FIRST}/32 dev ${tun} && ip addr replace ${SECOND}/32 dev ${tun} && ` +
        `ip route replace default dev ${tun} src ${SECOND}`,
    ],
  ] as const) {
    const r = await b.sh(node, script);
    expect(r.code, `${node}: ${script}: ${r.stderr}`).toBe(0);
  }
  for (const node of ['h1', 'h2'] as const) {
    await waitUntil(
      `${node} to hold ports`,
      async () => {
        try {
          const held = hostPortBlocks(await readStatus(b, node));
          if (held.length === 0) return false;
          blocks[node] = held;
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 40_000, intervalMs: 250 },
    );
  }
  wan = await b.capture('server', TOPOLOGY.wanIf, { filter: `tcp port ${http.port}` });
}, 120_000);

describe('one router, two shared addresses: h1 on the first, h2 on the second', () => {
  it('both hosts download at once, intact, each from its own shared address and leased ports', async () => {
    const b = bed();
    const fetch = async (node: HostNode) => {
      const file = join(b.scratchDir, `${node}-big.bin`);
      const r = await b.exec(
        node,
        ['curl', '-sS', '--max-time', '60', '-w', '%{local_port}', '-o', file, http.url(SERVER, 'big.bin')],
        { timeoutMs: 70_000 },
      );
      if (r.code !== 0) {
        // What each daemon dropped says where the path broke.
        const drops = async (n: 'router' | HostNode) =>
          Object.entries((await readStatus(b, n)).counters ?? {})
            .filter(([k, v]) => /drop|refused|not-|spoof|no-/.test(k) && Number(v) > 0)
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(' ');
        const routes = await b.sh(node, `ip -4 -o addr; ip route; ip rule; ip route get ${SERVER}`);
        expect.fail(
          `curl on ${node}: ${r.stderr}; router: ${await drops('router')}; ${node}: ${await drops(node)}; ${routes.stdout}`,
        );
      }
      return { node, sha: await sha256File(file) };
    };
    const results = await Promise.all([fetch('h1'), fetch('h2')]);
    for (const r of results) expect(r.sha, `${r.node}'s download`).toBe(sha256(BIG));
    await wan.stop();

    // Packets from the hosts to the server, as the server's WAN saw them: source address and port.
    const rows = await wan.fields(['ip.src', 'tcp.srcport'], { filter: `ip.dst == ${SERVER}` });
    const bySource = new Map<string, Set<number>>();
    for (const [src, port] of rows) {
      if (!bySource.has(src!)) bySource.set(src!, new Set());
      bySource.get(src!)!.add(Number(port));
    }
    expect([...bySource.keys()].sort()).toEqual([FIRST, SECOND].sort());
    for (const node of ['h1', 'h2'] as const) {
      const ports = [...bySource.get(ADDRESS_OF[node])!];
      expect(ports.length, `${node}: connections from ${ADDRESS_OF[node]}`).toBeGreaterThan(0);
      for (const p of ports)
        expect(
          inBlocks(p, blocks[node]!),
          `${node}: port ${p} in its blocks ${JSON.stringify(blocks[node])}`,
        ).toBe(true);
    }
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
