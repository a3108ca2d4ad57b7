/**
 * `scripts/testbed demo` after `up` and the picture: what works so far, one
 * line per check. The LAN and WAN by ping; then, with the testbed's
 * distnat processes, both hosts at once reaching the server with unmodified
 * programs (ping, curl) through the one shared address, the server seeing
 * only that address; with IKE, the hosts' child SAs with the server. Ends
 * with the router's tables (and the SAs) as `distnat status` prints them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execIn, run } from '../../../test/helpers/process.ts';
import { startHttpServer } from '../../../test/helpers/servers.ts';
import { TOPOLOGY, type HostNode } from '../topology.ts';
import { DISTNAT, ROOT, type TestbedLayout } from './layout.ts';
import { ping } from './ping.ts';
import type { ProcessSpec } from './process-table.ts';
import { readStatus, waitForChildSas, waitForwarding } from './status.ts';

const ok = (what: string, detail: string): void => console.log(`  ok    ${what.padEnd(30)} ${detail}`);
const fail = (what: string, detail: string): void => console.log(`  FAIL  ${what.padEnd(30)} ${detail}`);

/** One readable line; true if anything answered. */
async function pingCheck(
  layout: TestbedLayout,
  what: string,
  node: string,
  address: string,
): Promise<boolean> {
  const r = await ping(layout.ns(node), address).catch(() => undefined);
  if (r !== undefined && r.received > 0) {
    ok(what, `ping ${address.padEnd(15)} ${r.received}/${r.sent} replies, ${r.avgMs?.toFixed(3)} ms average`);
    return true;
  }
  fail(what, `ping ${address.padEnd(15)} no reply`);
  return false;
}

/** Lines of `distnat status <role>` from each line starting with one of `titles` to the next empty line, indented. */
async function statusSections(
  args: readonly string[],
  titles: readonly string[],
  indent: string,
): Promise<string> {
  const r = await run([DISTNAT, 'status', ...args], { cwd: ROOT, timeoutMs: 30_000 });
  const out: string[] = [];
  let inside = false;
  for (const line of r.stdout.split('\n')) {
    if (!inside && titles.some((t) => line.startsWith(t))) inside = true;
    if (inside) out.push(indent + line);
    if (inside && line === '') inside = false;
  }
  return out.join('\n').replace(/\s+$/, '') + '\n';
}

const sha16 = (data: Buffer): string => createHash('sha256').update(data).digest('hex').slice(0, 16);

async function throughDistnat(layout: TestbedLayout, ike: boolean, ipsec: boolean): Promise<number> {
  const t = TOPOLOGY;
  let fails = 0;
  for (const host of t.hosts) {
    try {
      await waitForwarding(layout.nodeDir(host));
    } catch {
      fail(`${host} forwarding`, `${host} holds no lease; see ${layout.logFile(host)}`);
      return 1;
    }
  }
  if (ike) {
    for (const host of t.hosts) {
      try {
        await waitForChildSas(`${host}'s child SA`, () => readStatus(layout.nodeDir(host), 'host'), 1);
        ok(`${host} IKE SA with the server`, 'child SA up');
      } catch {
        fail(
          `${host} IKE SA with the server`,
          `no child SA; see ${layout.logFile(host)} and ${layout.logFile('peer')}`,
        );
        fails++;
        break;
      }
    }
  }
  if (ipsec) {
    for (const host of t.hosts) {
      const s = await readStatus(layout.nodeDir(host), 'host').catch(() => undefined);
      const state = String(s?.summary['ipsec'] ?? 'no status');
      if (state.includes('SAs installed')) ok(`${host} manual keying`, state);
      else {
        fail(`${host} manual keying`, `${state}; see ${layout.logFile(host)}`);
        fails++;
      }
    }
  }
  for (const host of t.hosts)
    if (!(await pingCheck(layout, `${host} -> server via ${t.shared}`, host, t.server.wan))) fails++;

  // Both downloads at once: two hosts, one address, no rewriting.
  const blob = randomBytes(3_000_000);
  const want = sha16(blob);
  const http = await startHttpServer(layout.ns('server'), { bind: t.server.wan, files: { blob } });
  try {
    const got = await Promise.all(
      t.hosts.map(async (host: HostNode) => {
        const out = join(http.root, `${host}.out`);
        await execIn(
          layout.ns(host),
          ['curl', '-sS', '--max-time', '20', '-o', out, http.url(t.server.wan, 'blob')],
          {
            timeoutMs: 30_000,
          },
        );
        try {
          return sha16(readFileSync(out));
        } catch {
          return 'none';
        }
      }),
    );
    t.hosts.forEach((host, i) => {
      if (got[i] === want) ok(`${host} curl 3 MB from server`, `sha256 ${got[i]}... matches`);
      else {
        fail(`${host} curl 3 MB from server`, `sha256 ${got[i]}... != ${want}...`);
        fails++;
      }
    });
  } finally {
    await http.stop();
  }
  console.log("  requests in the server's log, by client address (one address for both hosts):");
  const clients = new Map<string, number>();
  for (const m of http.stderr().matchAll(/^([0-9.]+) - /gm))
    clients.set(m[1]!, (clients.get(m[1]!) ?? 0) + 1);
  for (const [address, n] of [...clients].sort())
    console.log(`        ${String(n).padStart(7)} ${address} - `);
  console.log();

  const routerDir = layout.nodeDir('router');
  console.log(`The router's tables (bin/distnat status router --run-dir ${routerDir}):`);
  process.stdout.write(await statusSections(['router', '--run-dir', routerDir], ['FIG. 8', 'FIG. 12'], '  '));
  if (ike) {
    console.log("IKE (--ike): each host's certificate is from the router's local CA, its SA with the server");
    console.log('carries the downloads above as ESP, demultiplexed by SPI at the router (FIG. 21):');
    for (const host of t.hosts) {
      const dir = layout.nodeDir(host);
      console.log(`  ${host} (bin/distnat status host --run-dir ${dir}):`);
      process.stdout.write(
        await statusSections(['host', '--run-dir', dir], ['IKE SAs', 'Child SAs'], '    '),
      );
    }
    process.stdout.write(await statusSections(['router', '--run-dir', routerDir], ['FIG. 21'], '  '));
  }
  if (ipsec) {
    console.log(
      'Manual keying (--ipsec): the downloads above travelled as ESP (TCP to port 8443 would be AH;',
    );
    console.log(
      `ICMP stays clear), keyed by ${layout.ipsecFile('h1')} and its twin for h2, demultiplexed by SPI (FIG. 21):`,
    );
    process.stdout.write(await statusSections(['router', '--run-dir', routerDir], ['FIG. 21'], '  '));
    for (const host of t.hosts) {
      const s = await readStatus(layout.nodeDir(host), 'host').catch(() => undefined);
      const n = (name: string): number => s?.counters[name] ?? 0;
      console.log(
        `  ${host}: ${n('ipsec.outbound.protected')} datagrams protected, ${n('ipsec.inbound.accepted')} accepted`,
      );
    }
    console.log();
  }
  return fails;
}

/** Prints the demo's checks; returns how many failed. */
export async function demo(
  layout: TestbedLayout,
  table: readonly ProcessSpec[],
  ike: boolean,
  ipsec = false,
): Promise<number> {
  const t = TOPOLOGY;
  let fails = 0;
  console.log('What works so far:');
  const pings: [string, string, string][] = [
    ['router -> server (WAN)', 'router', t.server.wan],
    ...t.hosts.map((h): [string, string, string] => [`${h} -> router (LAN)`, h, t.router.lan]),
    ['h1 -> h2 (LAN)', 'h1', t.h2.lan],
  ];
  for (const [what, node, address] of pings) if (!(await pingCheck(layout, what, node, address))) fails++;
  const route = await execIn(layout.ns('server'), ['ip', 'route', 'show', `${t.shared}/32`]);
  ok("server's route to the shared address", route.stdout.trim());
  const internet = await execIn(layout.ns('h1'), ['ip', 'route', 'get', t.server.wan]);
  ok("h1's route to the internet", (internet.stdout.split('\n')[0] ?? '').replace(/ uid \d+/, '').trim());
  console.log();
  console.log(`Through the shared address ${t.shared}:`);
  if (table.length > 0) fails += await throughDistnat(layout, ike, ipsec);
  else console.log('  not yet: this testbed runs no distnat process (--no-daemons).');
  console.log();
  console.log(
    `Explore: scripts/testbed${layout.prefixFlag} status | exec h1 ip route | ping h2 ${t.router.lan} | down`,
  );
  return fails;
}
