/**
 * The etcd cluster of the multi-router testbed (scripts/testbed --routers 2):
 * three members, each in its own namespace on the LAN, run by the
 * supervisor like the daemons, with their data under the testbed's run
 * directory; healthy when `etcdctl endpoint health` says so of each.
 * Debian's etcd-server and etcd-client (scripts/setup installs them).
 */
import { run } from '../../../test/helpers/process.ts';
import { TOPOLOGY, type EtcdMember } from '../topology.ts';
import type { TestbedLayout } from './layout.ts';
import type { ProcessSpec } from './process-table.ts';

function lanOf(member: string): string {
  const a = TOPOLOGY.multiRouter.addresses[member]?.lan;
  if (a === undefined) throw new Error(`the topology has no LAN address for ${member}`);
  return a;
}

const peerUrl = (m: string): string => `http://${lanOf(m)}:${TOPOLOGY.multiRouter.etcdPeerPort}`;
const clientUrl = (m: string): string => `http://${lanOf(m)}:${TOPOLOGY.multiRouter.etcdClientPort}`;

/** The client URLs of the members (all by default): what a router's etcd client is given. */
export function etcdEndpoints(members: readonly string[] = TOPOLOGY.multiRouter.etcdMembers): string[] {
  return members.map(clientUrl);
}

/**
 * One member's command. The --initial-* flags matter only to a member
 * with an empty data directory; one that restarts on its data rejoins with
 * what it recorded. The cluster token is the prefix, so that two testbeds'
 * members can never take each other for their own. No TLS, no
 * authentication: the LAN is the testbed's own (docs/testbed.md).
 */
export function etcdCommand(layout: TestbedLayout, member: EtcdMember): string {
  const m = TOPOLOGY.multiRouter;
  return [
    'etcd',
    `--name=${member}`,
    `--data-dir=${layout.etcdData(member)}`,
    '--logger=zap',
    '--log-outputs=stderr',
    `--listen-peer-urls=${peerUrl(member)}`,
    `--initial-advertise-peer-urls=${peerUrl(member)}`,
    `--listen-client-urls=${clientUrl(member)},http://127.0.0.1:${m.etcdClientPort}`,
    `--advertise-client-urls=${clientUrl(member)}`,
    `--initial-cluster=${m.etcdMembers.map((e) => `${e}=${peerUrl(e)}`).join(',')}`,
    `--initial-cluster-token=distnat-${layout.prefix}`,
    '--initial-cluster-state=new',
  ].join(' ');
}

export function etcdProcesses(layout: TestbedLayout): ProcessSpec[] {
  return TOPOLOGY.multiRouter.etcdMembers.map((member) => ({
    name: member,
    node: member,
    command: etcdCommand(layout, member),
  }));
}

export interface EndpointHealth {
  endpoint: string;
  healthy: boolean;
  /** etcdctl's words: the time the proposal took, or the error. */
  detail: string;
}

/**
 * `etcdctl endpoint health` of the members, from the router's namespace
 * (where the routers' clients are): a member is healthy when it commits a
 * proposal, which needs a quorum of the cluster.
 */
export async function etcdHealth(
  layout: TestbedLayout,
  members: readonly string[] = TOPOLOGY.multiRouter.etcdMembers,
): Promise<EndpointHealth[]> {
  const r = await run(
    [
      'ip',
      'netns',
      'exec',
      layout.ns('router'),
      'etcdctl',
      `--endpoints=${etcdEndpoints(members).join(',')}`,
      '--dial-timeout=1s',
      '--command-timeout=3s',
      'endpoint',
      'health',
    ],
    { timeoutMs: 10_000 },
  );
  const text = r.stdout + r.stderr;
  return etcdEndpoints(members).map((endpoint) => {
    const line = text.split('\n').find((l) => l.startsWith(`${endpoint} is `));
    if (line === undefined) return { endpoint, healthy: false, detail: text.trim() || 'no answer' };
    const m = /^\S+ is (healthy|unhealthy): (.*)$/.exec(line);
    return { endpoint, healthy: m?.[1] === 'healthy', detail: m?.[2] ?? line };
  });
}

/** One line per member that is not healthy. */
export async function etcdProblems(layout: TestbedLayout): Promise<string[]> {
  return (await etcdHealth(layout))
    .filter((h) => !h.healthy)
    .map((h) => `etcd member ${h.endpoint} is not healthy: ${h.detail}`);
}

/** The "etcd:" lines of `scripts/testbed status`. */
export async function describeEtcd(layout: TestbedLayout): Promise<string[]> {
  return [
    'etcd (endpoint health, from the router):',
    ...(await etcdHealth(layout)).map(
      (h) => `  ${h.endpoint.padEnd(24)} ${h.healthy ? 'healthy' : 'unhealthy'}: ${h.detail}`,
    ),
  ];
}
