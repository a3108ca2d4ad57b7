/**
 * One router with two shared addresses (198.51.100.30 and .31) in a
 * namespace testbed: h1 on the first, h2 on the second, each with its own
 * port space on the router. Shared by the namespace tests that run it on
 * either router data path (test/netns/shared-addresses*.test.ts).
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { defaultProcessTable } from '../../scripts/lib/testbed/process-table.ts';
import type { HostNode, PortBlock } from './distnat.ts';
import { hostPortBlocks, inBlocks, readStatus, sha256File } from './distnat.ts';
import type { Capture } from './capture.ts';
import { waitUntil } from './process.ts';
import type { HttpServer } from './servers.ts';
import type { Testbed } from './testbed.ts';
import { TOPOLOGY } from './testbed.ts';

export const SERVER = TOPOLOGY.server.wan;
export const FIRST = TOPOLOGY.shared;
export const SECOND = TOPOLOGY.multiRouter.shared[1]!;
export const ADDRESS_OF: Record<HostNode, string> = { h1: FIRST, h2: SECOND };

/**
 * The testbed's process table with the router on both addresses and h2 on
 * the second. The router forwards on `datapath`; the hosts stay on the TUN
 * path, so what is shown is the router's.
 */
export function twoAddressTable(b: Testbed, datapath: 'tun' | 'ebpf'): string {
  return defaultProcessTable(b.layout)
    .map((p) => {
      let command = p.command;
      if (p.name === 'router')
        command =
          command.replace(`--shared-address ${FIRST}`, `--shared-addresses ${FIRST},${SECOND}`) +
          ` --datapath ${datapath}`;
      if (p.name === 'h2')
        command = command.replace(`--shared-address ${FIRST}`, `--shared-address ${SECOND}`);
      if (p.name === 'h1' || p.name === 'h2') command += ' --datapath tun';
      return `${p.name} ${p.node} ${command}`;
    })
    .join('\n');
}

/**
 * Starts the daemons of `table`, then the kernel side of the second address
 * (starting them sets the namespaces up again, the first address
 * everywhere): routed into the router's TUN, routed to the router by the
 * server (the upstream), and h2's TCP/IP stack using it instead of the
 * first. Returns each host's port blocks once it holds some.
 */
export async function startTwoAddresses(b: Testbed, table: string): Promise<Record<HostNode, PortBlock[]>> {
  const tun = TOPOLOGY.tun;
  await b.reconfigure({ ...b.current, daemons: true, daemonTable: table });
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
  const blocks: Partial<Record<HostNode, PortBlock[]>> = {};
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
  return blocks as Record<HostNode, PortBlock[]>;
}

/** Downloads `file` on `node` from `http` on the server; the file's sha256, or the test fails saying where the path broke. */
export async function download(b: Testbed, node: HostNode, http: HttpServer, file: string): Promise<string> {
  const out = join(b.scratchDir, `${node}-${file}`);
  const r = await b.exec(
    node,
    ['curl', '-sS', '--max-time', '60', '-w', '%{local_port}', '-o', out, http.url(SERVER, file)],
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
  return sha256File(out);
}

/**
 * The server's WAN capture of the downloads, stopped: each host's packets
 * must leave with its own shared address and ports from its own blocks.
 * Returns the packets seen to and from each shared address.
 */
export async function expectOwnAddressesOnWan(
  wan: Capture,
  blocks: Record<HostNode, PortBlock[]>,
): Promise<{ fromHosts: Record<string, number>; toHosts: Record<string, number> }> {
  await wan.stop();
  const rows = await wan.fields(['ip.src', 'ip.dst', 'tcp.srcport'], {});
  const bySource = new Map<string, Set<number>>();
  const fromHosts: Record<string, number> = {};
  const toHosts: Record<string, number> = {};
  for (const [src, dst, port] of rows) {
    if (dst === SERVER) {
      if (!bySource.has(src!)) bySource.set(src!, new Set());
      bySource.get(src!)!.add(Number(port));
      fromHosts[src!] = (fromHosts[src!] ?? 0) + 1;
    } else if (src === SERVER) toHosts[dst!] = (toHosts[dst!] ?? 0) + 1;
  }
  expect([...bySource.keys()].sort()).toEqual([FIRST, SECOND].sort());
  for (const node of ['h1', 'h2'] as const) {
    const ports = [...bySource.get(ADDRESS_OF[node])!];
    expect(ports.length, `${node}: connections from ${ADDRESS_OF[node]}`).toBeGreaterThan(0);
    for (const p of ports)
      expect(
        inBlocks(p, blocks[node]),
        `${node}: port ${p} in its blocks ${JSON.stringify(blocks[node])}`,
      ).toBe(true);
  }
  return { fromHosts, toHosts };
}
