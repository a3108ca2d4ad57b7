/**
 * BGP in the multi-router testbed (scripts/testbed --routers 2): BIRD in
 * each router announces the shared address while that router's TUN has
 * carrier (a `distnat router` holds it), BIRD in the server, which plays the
 * upstream, installs one route with a next hop per announcing router (ECMP).
 * This file fills in the templates of native-setup/bird/ per node, gives the
 * supervisor BIRD's process lines and reads the sessions back through birdc.
 * docs/testbed.md, "Several routers: BGP to the server", says why.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../test/helpers/process.ts';
import { TOPOLOGY, type RouterNode } from '../topology.ts';
import { ROOT, type TestbedLayout } from './layout.ts';
import type { ProcessSpec } from './process-table.ts';
import type { Note } from './supervisor.ts';

const TEMPLATES = join(ROOT, 'native-setup', 'bird');

/**
 * The shared addresses the routers announce: those `distnat router` serves
 * (router-setup.sh routes only these into the TUN). The second shared
 * address of the topology joins when the router serves it: announcing an
 * address no router routes would draw traffic into a black hole.
 */
export const ANNOUNCED: readonly string[] = [TOPOLOGY.shared];

/** The nodes that run BIRD: both routers and the server. */
export const BIRD_NODES: readonly string[] = [...TOPOLOGY.multiRouter.routers, 'server'];

/** A template with every @NAME@ replaced; throws on a name it was not given (a template and code that disagree). */
export function fillTemplate(text: string, values: Readonly<Record<string, string>>, file: string): string {
  return text.replace(/@([A-Z_]+)@/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`${file}: no value for @${name}@`);
    return v;
  });
}

function wanOf(node: string): string {
  const a = TOPOLOGY.multiRouter.addresses[node]?.wan;
  if (a === undefined) throw new Error(`the topology has no WAN address for ${node}`);
  return a;
}

/** BIRD's configuration for one router. */
export function routerBirdConfig(router: RouterNode, announced: readonly string[] = ANNOUNCED): string {
  const m = TOPOLOGY.multiRouter;
  const file = join(TEMPLATES, 'router.conf.in');
  return fillTemplate(
    readFileSync(file, 'utf8'),
    {
      ROUTER_ID: wanOf(router),
      LOCAL: wanOf(router),
      LOCAL_AS: String(m.routersAs),
      NEIGHBOR: TOPOLOGY.server.wan,
      NEIGHBOR_AS: String(m.upstreamAs),
      TUN: TOPOLOGY.tun,
      ROUTES: announced.map((a) => `  route ${a}/32 via "${TOPOLOGY.tun}";`).join('\n'),
    },
    file,
  );
}

/** The name of the server's session with a router ("router" alone is a word of BIRD's language). */
export const bgpPeerName = (router: string): string => `peer_${router}`;

/** BIRD's configuration for the server, with a session per router. */
export function upstreamBirdConfig(): string {
  const m = TOPOLOGY.multiRouter;
  const file = join(TEMPLATES, 'upstream.conf.in');
  return fillTemplate(
    readFileSync(file, 'utf8'),
    {
      ROUTER_ID: TOPOLOGY.server.wan,
      LOCAL: TOPOLOGY.server.wan,
      LOCAL_AS: String(m.upstreamAs),
      PEERS: m.routers
        .map(
          (r) =>
            `protocol bgp ${bgpPeerName(r)} from routers {\n  neighbor ${wanOf(r)} as ${m.routersAs};\n}`,
        )
        .join('\n\n'),
    },
    file,
  );
}

/** Writes every node's configuration (again at each up: BIRD reads it when it starts). */
export function writeBirdConfigs(layout: TestbedLayout, note: Note): void {
  for (const node of BIRD_NODES) {
    mkdirSync(layout.birdDir(node), { recursive: true });
    const text = node === 'server' ? upstreamBirdConfig() : routerBirdConfig(node as RouterNode);
    writeFileSync(layout.birdConfig(node), text);
  }
  note(`wrote BIRD's configurations in ${layout.birdDir('<node>')}`);
}

/** The supervisor's lines: BIRD in the foreground (-f), logging to the testbed's log. */
export function birdProcesses(layout: TestbedLayout): ProcessSpec[] {
  return BIRD_NODES.map((node) => ({
    name: `bird-${node}`,
    node,
    command: `bird -f -c ${layout.birdConfig(node)} -s ${layout.birdSocket(node)}`,
  }));
}

export interface BgpSession {
  /** The node whose BIRD has the session. */
  node: string;
  /** The protocol's name: `upstream` in a router, bgpPeerName(router) in the server. */
  name: string;
  /** BIRD's protocol state (up, start) and its BGP state (Established, Active, Connect...). */
  state: string;
  info: string;
}

/** The BGP sessions of one node's BIRD, as `birdc show protocols` lists them. */
export async function bgpSessions(layout: TestbedLayout, node: string): Promise<BgpSession[]> {
  const r = await run(['birdc', '-s', layout.birdSocket(node), 'show', 'protocols'], { timeoutMs: 5000 });
  if (r.code !== 0) throw new Error(`birdc on ${layout.ns(node)}: ${(r.stdout + r.stderr).trim()}`);
  const sessions: BgpSession[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s+BGP\s+\S+\s+(\S+)\s+\S+\s*(.*)$/.exec(line);
    if (m) sessions.push({ node, name: m[1]!, state: m[2]!, info: m[3]!.trim() });
  }
  return sessions;
}

/** One line per session that is not Established, or BIRD that does not answer. */
export async function bgpProblems(layout: TestbedLayout): Promise<string[]> {
  const problems: string[] = [];
  for (const node of BIRD_NODES) {
    let sessions: BgpSession[];
    try {
      sessions = await bgpSessions(layout, node);
    } catch (e) {
      problems.push((e as Error).message);
      continue;
    }
    const want = node === 'server' ? TOPOLOGY.multiRouter.routers.length : 1;
    if (sessions.length !== want)
      problems.push(`${layout.ns(node)}: BIRD has ${sessions.length} BGP session(s), not ${want}`);
    for (const s of sessions)
      if (!s.info.startsWith('Established'))
        problems.push(`${layout.ns(node)}: BGP session ${s.name} is ${s.state} ${s.info}`.trimEnd());
  }
  return problems;
}

/** The "BGP:" lines of `scripts/testbed status`. */
export async function describeBgp(layout: TestbedLayout): Promise<string[]> {
  const lines = ['BGP (BIRD):'];
  for (const node of BIRD_NODES) {
    try {
      for (const s of await bgpSessions(layout, node))
        lines.push(`  ${layout.ns(node).padEnd(16)} ${s.name.padEnd(13)} ${s.state.padEnd(6)} ${s.info}`);
    } catch {
      lines.push(`  ${layout.ns(node).padEnd(16)} BIRD does not answer on ${layout.birdSocket(node)}`);
    }
  }
  return lines;
}
