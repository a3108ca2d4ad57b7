/**
 * scripts/testbed --routers 2: the second router and the etcd cluster are
 * built, etcd is healthy and keeps its quorum with a member stopped, BGP
 * runs between both routers and the server, and the server's route to the
 * shared address follows which routers hold their TUN: a SIGKILLed
 * `distnat router` takes its next hop away with no help from the BGP
 * timers, and a restarted one brings it back. `down` leaves nothing.
 *
 * dn-router2 runs the TUN holder test/helpers/hold-tun.py, not a second
 * `distnat router`: without leases shared on etcd a second router on the
 * LAN refuses to start (docs/router.md, "One router per LAN"). For BIRD
 * both are the same: a process that holds the router's persistent TUN.
 */
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { etcdEndpoints, etcdHealth } from '../../scripts/lib/testbed/etcd.ts';
import { distnatCommand, routerArgs } from '../../scripts/lib/testbed/process-table.ts';
import { bgpPeerName, bgpSessions } from '../../scripts/lib/testbed/routing.ts';
import { isRunning, runningPid } from '../../scripts/lib/testbed/supervisor.ts';
import { TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { describe as describeResult, run, sleep } from '../helpers/process.ts';
import { TOPOLOGY, uniquePrefix, useTestbed } from '../helpers/testbed.ts';
import type { MultiRouterNode } from '../helpers/testbed.ts';

const m = TOPOLOGY.multiRouter;
const prefix = uniquePrefix();
const layout = new TestbedLayout(prefix);
const router2Wan = m.addresses['router2']!.wan!;

/**
 * How long the server may keep a next hop after the router's process died
 * or before it returns once the router holds its TUN again (docs/testbed.md,
 * "Several routers: BGP to the server"): the carrier change reaches BIRD
 * through netlink at once and the update leaves at once, so this is far
 * above what it takes; it is below the 3 s hold time, so that a withdrawal
 * the timers made instead would fail.
 */
const ROUTE_CHANGE_BOUND_MS = 2500;

const bed = useTestbed({
  prefix,
  routers: 2,
  // No hosts: only the routers' TUNs matter to BGP.
  daemonTable: [
    `router router ${distnatCommand(routerArgs(layout))}`,
    `router2 router2 /usr/bin/python3 test/helpers/hold-tun.py ${TOPOLOGY.tun}`,
    '',
  ].join('\n'),
});

interface IpRoute {
  gateway?: string;
  nexthops?: { gateway?: string }[];
}

/** The next hops of the server's route to the shared address, sorted ([] without a route). */
async function nextHops(): Promise<string[]> {
  const r = await bed().exec('server', ['ip', '-j', 'route', 'show', `${TOPOLOGY.shared}/32`]);
  if (r.code !== 0) throw new Error(`ip route in the server: ${describeResult(r)}`);
  const routes = JSON.parse(r.stdout) as IpRoute[];
  return routes
    .flatMap((route) => (route.nexthops ?? [route]).map((h) => h.gateway))
    .filter((g): g is string => g !== undefined)
    .sort();
}

/** Whether a process holds the router's TUN (the kernel's carrier flag). */
async function carrier(node: MultiRouterNode): Promise<boolean> {
  const r = await bed().exec(node, ['ip', '-j', 'link', 'show', 'dev', TOPOLOGY.tun]);
  const [link] = JSON.parse(r.stdout) as { flags: string[] }[];
  return !link!.flags.includes('NO-CARRIER');
}

/**
 * Polls the server's next hops until `done` holds, for at most
 * ROUTE_CHANGE_BOUND_MS after `since`; returns the time it took (to the
 * resolution of one poll, some 10-30 ms here).
 */
async function timeUntil(done: (hops: string[]) => boolean, since: number): Promise<number> {
  let hops: string[] = [];
  for (;;) {
    hops = await nextHops();
    const now = performance.now();
    if (done(hops)) return now - since;
    if (now - since > ROUTE_CHANGE_BOUND_MS * 4)
      throw new Error(`the server's next hops stayed ${hops.join(', ') || 'none'}`);
    await sleep(5);
  }
}

async function waitCarrier(node: MultiRouterNode, want: boolean): Promise<number> {
  for (;;) {
    if ((await carrier(node)) === want) return performance.now();
    await sleep(5);
  }
}

async function etcdctl(args: string[], members: readonly string[] = m.etcdMembers) {
  return bed().exec('router', ['etcdctl', `--endpoints=${etcdEndpoints(members).join(',')}`, ...args]);
}

const bothHops = [TOPOLOGY.router.wan, router2Wan].sort();

describe('scripts/testbed --routers 2', () => {
  it('builds router2 and the etcd members on the LAN, router2 on the WAN, and says so in status', async () => {
    for (const node of m.nodes) expect(existsSync(`/run/netns/${prefix}${node}`), node).toBe(true);
    for (const node of ['router2', ...m.etcdMembers] as const) {
      const r = await bed().exec(node, ['ip', '-j', '-4', 'addr', 'show', 'dev', TOPOLOGY.lanIf]);
      const [a] = JSON.parse(r.stdout) as { addr_info: { local: string }[] }[];
      expect(a!.addr_info[0]!.local, node).toBe(m.addresses[node]!.lan);
    }
    const r = await bed().exec('router2', ['ip', '-j', '-4', 'addr', 'show', 'dev', TOPOLOGY.wanIf]);
    expect((JSON.parse(r.stdout) as { addr_info: { local: string }[] }[])[0]!.addr_info[0]!.local).toBe(
      router2Wan,
    );
    // router2 reaches the server over the WAN bridge, and etcd1 router2 over the LAN.
    expect((await bed().ping('router2', TOPOLOGY.server.wan)).received).toBeGreaterThan(0);
    const status = await bed().script(['status']);
    expect(status.code, describeResult(status)).toBe(0);
    for (const word of [`${prefix}router2`, `${prefix}etcd3`, 'bird-router2', 'etcd2', 'Established'])
      expect(status.stdout).toContain(word);
    expect(status.stdout).toContain('state: up and healthy');
  });

  it('stays two routers until down: an up with one is refused and changes nothing', async () => {
    const r = await bed().script(['--routers', '1', 'up']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`testbed ${prefix} runs 2 router(s), not 1: take it down first`);
    expect(existsSync(`/run/netns/${prefix}router2`)).toBe(true);
    expect((await bgpSessions(layout, 'server')).length).toBe(2);
  });

  it('runs a healthy etcd cluster of three members', async () => {
    const health = await etcdHealth(layout);
    expect(health.map((h) => [h.endpoint, h.healthy])).toEqual(etcdEndpoints().map((e) => [e, true]));
    const members = await etcdctl(['member', 'list']);
    expect(members.code, describeResult(members)).toBe(0);
    expect(members.stdout.trim().split('\n')).toHaveLength(3);
    for (const e of m.etcdMembers) expect(members.stdout).toContain(`${e}, `);
  });

  it('has BGP Established between each router and the server', async () => {
    for (const router of m.routers)
      expect(await bgpSessions(layout, router)).toEqual([
        expect.objectContaining({ name: 'upstream', info: expect.stringMatching(/^Established/) }),
      ]);
    const server = await bgpSessions(layout, 'server');
    expect(server.map((s) => [s.name, s.info.split(' ')[0]])).toEqual(
      m.routers.map((r) => [bgpPeerName(r), 'Established']),
    );
  });

  it('gives the server one route to the shared address with a next hop per router (ECMP)', async () => {
    await timeUntil((hops) => hops.length === 2, performance.now());
    expect(await nextHops()).toEqual(bothHops);
  });

  it('takes a SIGKILLed router out of the route at once, and back when it runs again', async () => {
    const pid = runningPid(layout, 'router');
    expect(pid).toBeDefined();
    expect(await nextHops()).toEqual(bothHops);
    const killed = performance.now();
    process.kill(pid!, 'SIGKILL');
    const withdrawn = await timeUntil((hops) => hops.join() === router2Wan, killed);
    // The BGP session stayed up: what went is the route, not the peer.
    expect((await bgpSessions(layout, 'router'))[0]!.info).toMatch(/^Established/);
    expect(await carrier('router')).toBe(false);

    const up = bed().script(['up'], { timeoutMs: 120_000 });
    const carrierBack = await waitCarrier('router', true);
    const returned = await timeUntil((hops) => hops.length === 2, carrierBack);
    const result = await up;
    expect(result.code, describeResult(result)).toBe(0);
    expect(await nextHops()).toEqual(bothHops);
    console.log(
      `router (distnat router, SIGKILL): next hop ${TOPOLOGY.router.wan} withdrawn ${withdrawn.toFixed(0)} ms ` +
        `after the kill, back ${returned.toFixed(0)} ms after the restarted router took its TUN`,
    );
    expect(withdrawn).toBeLessThan(ROUTE_CHANGE_BOUND_MS);
    expect(returned).toBeLessThan(ROUTE_CHANGE_BOUND_MS);
  });

  it('does the same for router2', async () => {
    const pid = runningPid(layout, 'router2');
    expect(pid).toBeDefined();
    const killed = performance.now();
    process.kill(pid!, 'SIGKILL');
    const withdrawn = await timeUntil((hops) => hops.join() === TOPOLOGY.router.wan, killed);
    const up = bed().script(['up'], { timeoutMs: 120_000 });
    const carrierBack = await waitCarrier('router2', true);
    const returned = await timeUntil((hops) => hops.length === 2, carrierBack);
    expect((await up).code).toBe(0);
    console.log(
      `router2 (TUN holder, SIGKILL): next hop ${router2Wan} withdrawn ${withdrawn.toFixed(0)} ms after the ` +
        `kill, back ${returned.toFixed(0)} ms after the TUN was held again`,
    );
    expect(withdrawn).toBeLessThan(ROUTE_CHANGE_BOUND_MS);
    expect(returned).toBeLessThan(ROUTE_CHANGE_BOUND_MS);
  });

  it('keeps etcd healthy with one member stopped, and up brings the member back', async () => {
    const pid = runningPid(layout, 'etcd2');
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    const rest = m.etcdMembers.filter((e) => e !== 'etcd2');
    // Healthy means a proposal committed: the two left are a quorum.
    const health = await etcdHealth(layout, rest);
    expect(health.map((h) => h.healthy)).toEqual([true, true]);
    const put = await etcdctl(['put', '/testbed/check', 'two of three'], rest);
    expect(put.code, describeResult(put)).toBe(0);
    const status = await bed().script(['status']);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/etcd member http:\/\/10\.0\.0\.22:2379 is not healthy/);

    const up = await bed().script(['up'], { timeoutMs: 120_000 });
    expect(up.code, describeResult(up)).toBe(0);
    expect((await etcdHealth(layout)).every((h) => h.healthy)).toBe(true);
    // The member caught up on what was written while it was away.
    const get = await etcdctl(['get', '--print-value-only', '/testbed/check'], ['etcd2']);
    expect(get.stdout.trim()).toBe('two of three');
  });

  it('down removes every namespace, process and file it made', async () => {
    const names = [
      'router',
      'router2',
      ...m.etcdMembers,
      ...m.routers.map((r) => `bird-${r}`),
      'bird-server',
    ];
    const pids = names.map((n) => runningPid(layout, n));
    expect(pids.every((p) => p !== undefined)).toBe(true);
    await bed().down();
    const left = (await run(['ip', 'netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(prefix));
    expect(left).toEqual([]);
    for (const pid of pids) expect(isRunning(pid!), `pid ${pid}`).toBe(false);
    expect(existsSync(layout.runDir) ? readdirSync(layout.runDir) : []).toEqual([]);
  });
});
