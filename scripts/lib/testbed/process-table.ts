/**
 * The testbed's process table: one line per distnat process it runs,
 *
 *   <name> <node> <command and arguments...>
 *
 * the command being shell text (quotes work) that sh execs in <node>'s
 * namespace from the checkout's root. `up` starts each that does not run,
 * `down` stops them, `status` reports them. `--daemons-file FILE` replaces
 * the built-in table with FILE's lines (# comments), to try other flags or
 * builds; the benchmarks and the tests of the supervisor use that.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TOPOLOGY, type HostNode, type RouterNode } from '../topology.ts';
import { etcdEndpoints } from './etcd.ts';
import { ROOT as ROOT_DIR, type TestbedLayout } from './layout.ts';

export interface ProcessSpec {
  name: string;
  node: string;
  command: string;
}

/** An argument as one shell word. */
function word(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** The state and run directories the testbed gives a daemon: under <run>/<node>. */
function dirArgs(layout: TestbedLayout, node: string): string[] {
  return ['--state-dir', join(layout.nodeDir(node), 'state'), '--run-dir', layout.nodeDir(node)];
}

const metricsArgs = (): string[] => ['--metrics', `127.0.0.1:${TOPOLOGY.metricsPort}`];

/**
 * `distnat router ...` (less the program) as the testbed runs it, plus
 * `extra`. --fresh: every testbed's LAN is new, no host holds a lease of an
 * earlier router, so an empty state directory needs no hold-off; a restart
 * that finds the state recovers it and ignores the flag.
 */
export function routerArgs(
  layout: TestbedLayout,
  extra: readonly string[] = [],
  node: RouterNode = 'router',
): string[] {
  const t = TOPOLOGY;
  return [
    'router',
    '--shared-address',
    t.shared,
    '--lan-address',
    routerLan(node),
    '--tun',
    t.tun,
    ...dirArgs(layout, node),
    ...metricsArgs(),
    '--fresh',
    ...extra,
  ];
}

/** A router node's LAN address (router2 exists with --routers 2). */
export function routerLan(node: RouterNode): string {
  return node === 'router' ? TOPOLOGY.router.lan : TOPOLOGY.multiRouter.addresses[node]!.lan!;
}

/** With --routers 2: both routers share their leases on the testbed's etcd cluster. */
export const etcdArgs = (): string[] => ['--etcd-endpoints', etcdEndpoints().join(',')];

/** With --routers 2: a host lists both routers, starting with router, and moves when one stops answering. */
export const routersArgs = (): string[] => [
  '--routers',
  TOPOLOGY.multiRouter.routers.map(routerLan).join(','),
];

/**
 * router-setup.sh's `up` making the TUN multi-queue, as an operator makes it
 * for a router with `workers` above 1 (the queues must exist before the
 * router attaches to the device). `stateDir` keeps what the script changed.
 */
export function multiQueueSetupArgs(stateDir: string): string[] {
  const t = TOPOLOGY;
  return [
    join(ROOT_DIR, 'native-setup', 'linux', 'router-setup.sh'),
    'up',
    '--quiet',
    '--tun',
    t.tun,
    '--mtu',
    String(t.tunMtu),
    '--shared',
    t.shared,
    '--multi-queue',
    '--state-dir',
    stateDir,
  ];
}

/** `distnat host ...` (less the program) as the testbed runs it on a host, plus `extra`. */
export function hostArgs(layout: TestbedLayout, host: HostNode, extra: readonly string[] = []): string[] {
  const t = TOPOLOGY;
  return [
    'host',
    '--router',
    t.router.lan,
    '--lan-address',
    t[host].lan,
    '--shared-address',
    t.shared,
    '--tun',
    t.tun,
    ...dirArgs(layout, host),
    ...metricsArgs(),
    ...extra,
  ];
}

/** `distnat peer ...` (less the program) on the server: `keying` (--ike FILE, --mirror FILE...), the route back through the router. */
export function peerArgs(keying: readonly string[], runDir: string): string[] {
  const t = TOPOLOGY;
  return [
    'peer',
    ...keying,
    '--wan-if',
    t.wanIf,
    '--remote',
    t.shared,
    '--via',
    t.router.wan,
    '--run-dir',
    runDir,
  ];
}

/** `bin/distnat <args>` as shell text for a process table line. */
export const distnatCommand = (args: readonly string[]): string =>
  ['bin/distnat', ...args].map(word).join(' ');

/**
 * The built-in table: the router (with the local CA) and both host agents,
 * and with IKE or manual keying the server's peer. Each daemon keeps its
 * state and control socket under the testbed's run directory, so testbeds of
 * different prefixes never share either.
 */
export function defaultProcessTable(
  layout: TestbedLayout,
  { ike = false, ipsec = false, routers = 1 }: { ike?: boolean; ipsec?: boolean; routers?: number } = {},
): ProcessSpec[] {
  const t = TOPOLOGY;
  const several = routers === 2;
  const table: ProcessSpec[] = [
    {
      name: 'router',
      node: 'router',
      command: distnatCommand(
        routerArgs(layout, [
          '--ca-dir',
          layout.routerCa,
          '--crl-address',
          t.router.wan,
          ...(several ? etcdArgs() : []),
        ]),
      ),
    },
  ];
  // The second router forwards, leases and certifies with a copy of the same local CA; the CRL is one, on etcd.
  if (several)
    table.push({
      name: 'router2',
      node: 'router2',
      command: distnatCommand(
        routerArgs(
          layout,
          [
            '--ca-dir',
            layout.router2Ca,
            '--crl-address',
            TOPOLOGY.multiRouter.addresses.router2!.wan!,
            ...etcdArgs(),
          ],
          'router2',
        ),
      ),
    });
  for (const host of t.hosts)
    table.push({
      name: host,
      node: host,
      command: distnatCommand(
        hostArgs(layout, host, [
          ...(several ? routersArgs() : []),
          ...(ike ? ['--ike', layout.ikeFile(host)] : ipsec ? ['--ipsec', layout.ipsecFile(host)] : []),
        ]),
      ),
    });
  // The far end of the hosts' SAs: IKEv2 on the server's WAN address, with a certificate from the root.
  if (ike)
    table.push({
      name: 'peer',
      node: 'server',
      command: distnatCommand(peerArgs(['--ike', layout.ikeFile('server')], layout.nodeDir('server'))),
    });
  // Manual keying: the peer takes the other side of every host's file.
  else if (ipsec)
    table.push({
      name: 'peer',
      node: 'server',
      command: distnatCommand(
        peerArgs(
          t.hosts.flatMap((h) => ['--mirror', layout.ipsecFile(h)]),
          layout.nodeDir('server'),
        ),
      ),
    });
  return table;
}

/** The lines of a --daemons-file. */
export function parseProcessTable(text: string, file = 'process table'): ProcessSpec[] {
  const table: ProcessSpec[] = [];
  text.split('\n').forEach((line, i) => {
    if (/^\s*(#|$)/.test(line)) return;
    const m = /^\s*(\S+)\s+(\S+)\s+(\S.*?)\s*$/.exec(line);
    if (!m) throw new Error(`${file}:${i + 1}: not "<name> <node> <command...>": ${line}`);
    table.push({ name: m[1]!, node: m[2]!, command: m[3]! });
  });
  return table;
}

export function processTable(
  layout: TestbedLayout,
  options: { ike?: boolean; ipsec?: boolean; routers?: number; daemonsFile?: string | undefined },
): ProcessSpec[] {
  if (options.daemonsFile !== undefined)
    return parseProcessTable(readFileSync(options.daemonsFile, 'utf8'), options.daemonsFile);
  return defaultProcessTable(layout, options);
}
