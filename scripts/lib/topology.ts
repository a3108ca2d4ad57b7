/**
 * The reference topology of native-setup/topology.env, for the TypeScript
 * side: the testbed's command (scripts/testbed's TypeScript half), the test
 * helpers and the benchmarks all read it from here. The node names are also
 * spelled below as a type, because code addresses nodes by name; loading
 * fails when the file's list differs from it.
 */
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { fileURLToPath } from 'node:url';

export const TOPOLOGY_FILE = fileURLToPath(new URL('../../native-setup/topology.env', import.meta.url));

export type TestbedNode = 'lan' | 'router' | 'h1' | 'h2' | 'server';
export type HostNode = 'h1' | 'h2';
const TESTBED_NODES: readonly TestbedNode[] = ['lan', 'router', 'h1', 'h2', 'server'];
const HOST_NODES: readonly HostNode[] = ['h1', 'h2'];
/** The nodes `scripts/testbed --routers 2` adds: a second router and the etcd cluster. */
export type MultiRouterNode = TestbedNode | 'router2' | EtcdMember;
export type RouterNode = 'router' | 'router2';
export type EtcdMember = 'etcd1' | 'etcd2' | 'etcd3';
const MULTI_NODES: readonly MultiRouterNode[] = [
  'lan',
  'router',
  'router2',
  'h1',
  'h2',
  'server',
  'etcd1',
  'etcd2',
  'etcd3',
];
const ROUTER_NODES: readonly RouterNode[] = ['router', 'router2'];
const ETCD_MEMBERS: readonly EtcdMember[] = ['etcd1', 'etcd2', 'etcd3'];

/** A node's addresses: on the LAN, on the WAN, or both. */
export interface NodeAddresses {
  lan?: string;
  wan?: string;
}

export interface Topology {
  /** The shared public address. */
  shared: string;
  /** 10.0.0.0/24 and its prefix length. */
  lanNet: string;
  lanPrefixLen: number;
  wanNet: string;
  wanPrefixLen: number;
  router: { lan: string; wan: string };
  h1: { lan: string };
  h2: { lan: string };
  server: { wan: string };
  lanIf: string;
  wanIf: string;
  bridge: string;
  tun: string;
  tunMtu: number;
  papPort: number;
  pkiPort: number;
  metricsPort: number;
  /** The testbed's namespaces (less the prefix), in the order they are made. */
  nodes: readonly TestbedNode[];
  hosts: readonly HostNode[];
  /** The multi-router testbed (scripts/testbed --routers 2). */
  multiRouter: {
    nodes: readonly MultiRouterNode[];
    routers: readonly RouterNode[];
    etcdMembers: readonly EtcdMember[];
    shared: readonly string[];
    etcdClientPort: number;
    etcdPeerPort: number;
    /** The server's AS (it plays the routers' upstream) and the one the routers share. */
    upstreamAs: number;
    routersAs: number;
    /** Every node's addresses, by name. */
    addresses: Readonly<Record<string, NodeAddresses>>;
  };
}

// The subset of KEY=VALUE that bash, TypeScript, Python and Ruby read alike:
// a value that needs no quoting and expands to nothing but itself.
const ASSIGNMENT = /^([A-Z][A-Z0-9_]*)=([^\s'"`$\\;&|<>()#*?[\]{}~]*)$/;

/** The file's KEY=VALUE pairs; throws, naming the line, on anything outside the format. */
export function parseTopology(text: string, file = TOPOLOGY_FILE): Map<string, string> {
  const values = new Map<string, string>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = ASSIGNMENT.exec(line);
    if (!m) throw new Error(`${file}:${i + 1}: not a KEY=VALUE line of plain words: ${line}`);
    if (values.has(m[1]!)) throw new Error(`${file}:${i + 1}: ${m[1]} is set twice`);
    values.set(m[1]!, m[2]!);
  });
  return values;
}

/** The MAC address the testbed gives an interface: 02:00 and the four bytes of its IPv4 address. */
export function macOf(address: string): string {
  return ['02', '00', ...address.split('.').map((b) => Number(b).toString(16).padStart(2, '0'))].join(':');
}

/** The key of a node's address: ROUTER_LAN, H1_LAN, SERVER_WAN. */
export function addressKey(node: string, network: 'lan' | 'wan'): string {
  return `${node.toUpperCase()}_${network.toUpperCase()}`;
}

function inNet(address: string, net: string): boolean {
  const [base, len] = net.split('/');
  const n = (a: string) => a.split('.').reduce((acc, b) => acc * 256 + Number(b), 0);
  const size = 2 ** (32 - Number(len));
  return Math.floor(n(address) / size) === Math.floor(n(base!) / size);
}

/** Builds the typed topology from the file's values, checking what the readers rely on. */
export function topologyFrom(values: ReadonlyMap<string, string>, file = TOPOLOGY_FILE): Topology {
  const get = (key: string): string => {
    const v = values.get(key);
    if (v === undefined || v === '') throw new Error(`${file}: no ${key}`);
    return v;
  };
  const list = (key: string): string[] => get(key).split(',');
  const port = (key: string): number => {
    const v = Number(get(key));
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`${file}: ${key} is not a port`);
    return v;
  };
  const net = (key: string): [string, number] => {
    const [base, len] = get(key).split('/');
    if (!isIPv4(base ?? '') || !/^\d+$/.test(len ?? '') || Number(len) > 32)
      throw new Error(`${file}: ${key} is not an IPv4 network a.b.c.d/len`);
    return [get(key), Number(len)];
  };
  const ipv4 = (key: string): string => {
    if (!isIPv4(get(key))) throw new Error(`${file}: ${key} is not an IPv4 address`);
    return get(key);
  };
  const [lanNet, lanPrefixLen] = net('LAN_NET');
  const [wanNet, wanPrefixLen] = net('WAN_NET');
  const nets = { lan: lanNet, wan: wanNet };
  const addressesOf = (node: string): NodeAddresses => {
    const out: NodeAddresses = {};
    for (const network of ['lan', 'wan'] as const) {
      const key = addressKey(node, network);
      if (!values.has(key)) continue;
      const a = ipv4(key);
      if (!inNet(a, nets[network])) throw new Error(`${file}: ${key} ${a} is not in ${nets[network]}`);
      out[network] = a;
    }
    return out;
  };
  const same = (key: string, expected: readonly string[]): void => {
    if (list(key).join(',') !== expected.join(','))
      throw new Error(`${file}: ${key} is ${get(key)}, the code knows ${expected.join(',')}`);
  };
  same('NODES', TESTBED_NODES);
  same('HOSTS', HOST_NODES);
  same('MULTI_NODES', MULTI_NODES);
  same('MULTI_ROUTERS', ROUTER_NODES);
  same('ETCD_MEMBERS', ETCD_MEMBERS);
  const asn = (key: string): number => {
    const v = Number(get(key));
    if (!Number.isInteger(v) || v < 1 || v > 4294967295)
      throw new Error(`${file}: ${key} is not an AS number`);
    return v;
  };
  const at = (node: string, network: 'lan' | 'wan'): string => {
    const a = addressesOf(node)[network];
    if (a === undefined) throw new Error(`${file}: no ${addressKey(node, network)}`);
    return a;
  };
  return {
    shared: ipv4('SHARED_ADDR'),
    lanNet,
    lanPrefixLen,
    wanNet,
    wanPrefixLen,
    router: { lan: at('router', 'lan'), wan: at('router', 'wan') },
    h1: { lan: at('h1', 'lan') },
    h2: { lan: at('h2', 'lan') },
    server: { wan: at('server', 'wan') },
    lanIf: get('LAN_IF'),
    wanIf: get('WAN_IF'),
    bridge: get('LAN_BRIDGE'),
    tun: get('TUN_NAME'),
    tunMtu: Number(get('TUN_MTU')),
    papPort: port('PAP_PORT'),
    pkiPort: port('PKI_PORT'),
    metricsPort: port('METRICS_PORT'),
    nodes: TESTBED_NODES,
    hosts: HOST_NODES,
    multiRouter: {
      nodes: MULTI_NODES,
      routers: ROUTER_NODES,
      etcdMembers: ETCD_MEMBERS,
      shared: [ipv4('SHARED_ADDR'), ipv4('SHARED_ADDR2')],
      etcdClientPort: port('ETCD_CLIENT_PORT'),
      etcdPeerPort: port('ETCD_PEER_PORT'),
      upstreamAs: asn('UPSTREAM_AS'),
      routersAs: asn('ROUTERS_AS'),
      addresses: Object.fromEntries(MULTI_NODES.map((n) => [n, addressesOf(n)])),
    },
  };
}

export function loadTopology(file = TOPOLOGY_FILE): Topology {
  return topologyFrom(parseTopology(readFileSync(file, 'utf8'), file), file);
}

export const TOPOLOGY: Topology = loadTopology();
export const NODES = TOPOLOGY.nodes;
export const HOSTS = TOPOLOGY.hosts;
