/**
 * docs/firewall.md's nftables rules, loaded as the document writes them, in
 * a testbed whose every node drops what it does not accept and whose router
 * masquerades the LAN: h1 (PAP over UDP, the complete host ruleset) and h2
 * (PAP over ICMP, an existing ruleset plus the document's additions) lease
 * blocks and reach the server from the shared address and their own ports;
 * the router's local CA answers on TCP 7033 on both sides; a LAN machine's
 * own traffic is still masqueraded. Then the router's complete ruleset is
 * replaced by an existing one plus the additions, and the same holds.
 * Control: without distnat's notrack table, the masquerade rewrites the
 * hosts' packets, which is what the table is for. The router runs on the
 * TUN path (`datapath: tun`), whose forwarding netfilter sees.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultProcessTable } from '../../scripts/lib/testbed/process-table.ts';
import {
  daemonPid,
  inBlocks,
  startUdpEcho,
  udpExchange,
  waitForLeases,
  type Leases,
  type UdpEcho,
} from '../helpers/distnat.ts';
import { describe as describeResult, waitUntil } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed, type TestbedNode } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const T = TOPOLOGY;
const ECHO_PORT = 7000;

/** The document's code blocks, by the label on their first comment line ("# router: ..."). */
function documentBlocks(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'docs/firewall.md'), 'utf8');
  const blocks = new Map<string, string>();
  for (const m of text.matchAll(/```(?:nft|sh)\n([\s\S]*?)```/g)) {
    const label = /^# ((?:router|host): .*)$/m.exec(m[1]!)?.[1];
    if (label !== undefined) blocks.set(label, m[1]!);
  }
  return blocks;
}

const DOC = documentBlocks();
function block(label: string): string {
  const b = DOC.get(label);
  if (b === undefined)
    throw new Error(`docs/firewall.md has no block "# ${label}" (has: ${[...DOC.keys()]})`);
  return b;
}

/** A gateway's ruleset before distnat: drop what is not accepted, drop invalid first, masquerade the LAN. */
const EXISTING_ROUTER = `
flush ruleset
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iif lo accept
    icmp type echo-request accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "${T.lanIf}" oifname "${T.wanIf}" accept
  }
}
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${T.wanIf}" masquerade
  }
}
`;

/** A host's ruleset before distnat. */
const EXISTING_HOST = `
flush ruleset
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iif lo accept
  }
}
`;

async function nft(node: TestbedNode, name: string, ruleset: string): Promise<void> {
  const file = join(bed().scratchDir, `${node}-${name}.nft`);
  writeFileSync(file, ruleset);
  const r = await bed().exec(node, ['nft', '-f', file]);
  expect(r.code, `nft -f ${name} in ${node}: ${describeResult(r)}`).toBe(0);
}

async function sh(node: TestbedNode, script: string): Promise<void> {
  const r = await bed().sh(node, script);
  expect(r.code, `${script.split('\n')[0]} in ${node}: ${describeResult(r)}`).toBe(0);
}

/** distnat's own router table, written where the complete ruleset's include finds it. */
function routerTableFile(): string {
  const file = join(bed().scratchDir, 'distnat.nft');
  writeFileSync(file, block('router: /etc/nftables.d/distnat.nft'));
  return file;
}

const atScratch = (text: string, file: string): string =>
  text.replaceAll('/etc/nftables.d/distnat.nft', file);

/** What the server saw of one datagram tagged `tag`. */
async function seenAtServer(echo: UdpEcho, from: TestbedNode, tag: string) {
  const r = await udpExchange(bed(), from, { dst: T.server.wan, port: ECHO_PORT, tag, flows: 2, count: 2 });
  expect(r.answered, `${from} got no answer through the firewalls`).toBeGreaterThan(0);
  const seen = echo.seen().filter((d) => d.data.startsWith(tag));
  expect(seen.length).toBeGreaterThan(0);
  return seen;
}

/** A LAN machine's own traffic (h2 from its LAN address, routed via the router): the server sees the WAN address. */
async function lanClientSeenAs(echo: UdpEcho, tag: string): Promise<string[]> {
  const py =
    'import socket,sys\n' +
    's=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],0)); s.settimeout(5)\n' +
    's.sendto(sys.argv[3].encode(),(sys.argv[2],int(sys.argv[4]))); print(s.recvfrom(100)[0].decode())\n';
  const r = await bed().exec('h2', ['python3', '-c', py, T.h2.lan, T.server.wan, tag, String(ECHO_PORT)]);
  expect(r.code, describeResult(r)).toBe(0);
  expect(r.stdout.trim()).toBe(tag);
  return echo
    .seen()
    .filter((d) => d.data === tag)
    .map((d) => d.src);
}

describe('docs/firewall.md on routers and hosts that drop everything else', { timeout: 240_000 }, () => {
  let leases: Leases;
  let echo: UdpEcho;

  beforeAll(async () => {
    const b = bed();
    const table = routerTableFile();
    await nft('router', 'complete', atScratch(block('router: a complete /etc/nftables.conf'), table));
    await nft('h1', 'complete', block('host: a complete /etc/nftables.conf'));
    await nft('h2', 'existing', EXISTING_HOST);
    await sh('h2', block('host: additions to an existing ruleset'));
    // h2's LAN address reaches the WAN through the router (not the TUN), as any LAN machine's would.
    await sh(
      'h2',
      `ip rule add from ${T.h2.lan} lookup 100; ip route replace ${T.wanNet} via ${T.router.lan} table 100`,
    );
    // The router on the TUN path: the eBPF fast path forwards before netfilter, which the rules here are about.
    const processes = defaultProcessTable(b.layout).map((p) =>
      p.name === 'h2'
        ? { ...p, command: `${p.command} --pap-transport icmp` }
        : p.name === 'router'
          ? { ...p, command: `${p.command} --datapath tun` }
          : p,
    );
    await b.reconfigure({
      daemons: true,
      daemonTable: processes.map((p) => `${p.name} ${p.node} ${p.command}`).join('\n'),
    });
    leases = await waitForLeases(b);
    echo = await startUdpEcho(b, 'server', ECHO_PORT);
  }, 240_000);

  it('both hosts lease blocks: PAP over UDP (h1) and over ICMP types 32/33 (h2) get through', () => {
    expect(leases.h1.length).toBeGreaterThan(0);
    expect(leases.h2.length).toBeGreaterThan(0);
  });

  it('the server sees both hosts at the shared address, from ports of their blocks', async () => {
    for (const host of ['h1', 'h2'] as const)
      for (const d of await seenAtServer(echo, host, `complete-${host}`)) {
        expect(d.src).toBe(T.shared);
        expect(inBlocks(d.port, leases[host]), `${host} port ${d.port}`).toBe(true);
      }
  });

  it("the local CA answers on TCP 7033: the CRL on the WAN address, the CA on the LAN's", async () => {
    const crl = await bed().exec('server', [
      'curl',
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '10',
      `http://${T.router.wan}:${T.pkiPort}/crl`,
    ]);
    expect(crl.stdout, describeResult(crl)).toBe('200');
    const ca = await bed().exec('h1', [
      'curl',
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '10',
      `http://${T.router.lan}:${T.pkiPort}/ca`,
    ]);
    expect(ca.stdout, describeResult(ca)).toBe('200');
  });

  it("a LAN machine's own traffic is still masqueraded to the router's WAN address", async () => {
    expect(await lanClientSeenAs(echo, 'lan-client-1')).toEqual([T.router.wan]);
  });

  it('beside an existing ruleset with masquerade: the additions alone are enough', async () => {
    await nft('router', 'existing', EXISTING_ROUTER);
    await sh('router', atScratch(block('router: additions to an existing ruleset'), routerTableFile()));
    // h2 leases again through the new ruleset, over ICMP.
    const old = daemonPid(bed(), 'h2');
    process.kill(old, 'SIGTERM');
    await waitUntil('the old h2 agent to exit', async () => !isAlive(old), {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    await bed().reconfigure(bed().current);
    leases = await waitForLeases(bed());
    for (const host of ['h1', 'h2'] as const)
      for (const d of await seenAtServer(echo, host, `existing-${host}`)) {
        expect(d.src).toBe(T.shared);
        expect(inBlocks(d.port, leases[host]), `${host} port ${d.port}`).toBe(true);
      }
    expect(await lanClientSeenAs(echo, 'lan-client-2')).toEqual([T.router.wan]);
  });

  it('control: without the notrack table the masquerade rewrites what the hosts send', async () => {
    await sh('router', 'nft delete table ip distnat');
    const r = await udpExchange(bed(), 'h1', {
      dst: T.server.wan,
      port: ECHO_PORT,
      tag: 'control',
      flows: 1,
      count: 1,
    });
    expect(r.sent).toBeGreaterThan(0);
    const seen = echo.seen().filter((d) => d.data.startsWith('control'));
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen.map((d) => d.src))).toEqual(new Set([T.router.wan]));
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
