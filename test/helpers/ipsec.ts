/**
 * IPsec through distnat on the namespace testbed: the router, host agents
 * with manual keying files (test/netns/ipsec-keys.ts) and `distnat peer` on
 * the server, started in the order the keying files assume (router, h1, h2,
 * peer): a fresh router grants SPIs 256-319 to the first host asking and
 * 320-383 to the second, and manual keying fixes the SPIs in advance.
 *
 * The testbed must be up with `daemons: false`; the processes are the
 * testbed's background processes, stopped by its down().
 *
 *   const bed = useTestbed({ daemons: false });
 *   const ipsec = await startIpsecDaemons(bed(), { ipsec: ['h1', 'h2'] });
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { hostArgs, peerArgs, routerArgs } from '../../scripts/lib/testbed/process-table.ts';
import { readStatus as readDaemonStatus } from '../../scripts/lib/testbed/status.ts';
import { H1_KEYS, H2_KEYS, tsharkEspOptions, writeKeying } from '../netns/ipsec-keys.ts';
import type { EspKey, HostKeys } from '../netns/ipsec-keys.ts';
import { DISTNAT, daemonLogs, readStatus } from './distnat.ts';
import type { DataPath } from './distnat.ts';
import type { DaemonStatus, HostNode } from './distnat.ts';
import { describe as describeResult, run, waitUntil } from './process.ts';
import type { Background } from './process.ts';
import type { Testbed } from './testbed.ts';

export const KEYS: Record<HostNode, HostKeys> = { h1: H1_KEYS, h2: H2_KEYS };

export interface IpsecDaemonsOptions {
  /** Hosts to start (in this order), default h1 then h2. */
  hosts?: readonly HostNode[];
  /** Hosts given `--ipsec` with their keying file; default all started. */
  ipsec?: readonly HostNode[];
  /** Start `distnat peer` on the server mirroring the IPsec hosts' files (default when any host has --ipsec). */
  peer?: boolean;
  /** `--datapath` of the router and the hosts (default: theirs, ebpf). */
  datapath?: DataPath;
}

export interface IpsecDaemons {
  router: Background;
  hosts: Partial<Record<HostNode, Background>>;
  peer: Background | undefined;
  /** Keying file of each IPsec host. */
  files: Partial<Record<HostNode, string>>;
  /** The ESP SAs of each IPsec host as tshark needs them. */
  esp: Partial<Record<HostNode, EspKey[]>>;
  /** The peer's run directory (control socket). */
  peerRunDir: string;
}

/** The router and hosts exactly as the testbed's built-in process table runs them (plus `extra`). */
export function routerArgv(bed: Testbed, extra: readonly string[] = []): string[] {
  return [DISTNAT, ...routerArgs(bed.layout, extra)];
}

export function hostArgv(bed: Testbed, node: HostNode, extra: readonly string[] = []): string[] {
  return [DISTNAT, ...hostArgs(bed.layout, node, extra)];
}

async function statusOr(bed: Testbed, node: 'router' | HostNode): Promise<DaemonStatus | string> {
  try {
    return await readStatus(bed, node);
  } catch (e) {
    return (e as Error).message;
  }
}

/** Starts a host agent and waits until it forwards (and, with a keying file, has installed its SAs). */
export async function startHostAgent(
  bed: Testbed,
  node: HostNode,
  ipsecFile?: string,
  extra: readonly string[] = [],
): Promise<Background> {
  const proc = bed.spawn(
    node,
    hostArgv(bed, node, [...(ipsecFile !== undefined ? ['--ipsec', ipsecFile] : []), ...extra]),
  );
  let last = '';
  await waitUntil(
    `${node} forwarding${ipsecFile !== undefined ? ' with its IPsec SAs installed' : ''}`,
    async () => {
      if (!proc.running()) throw new Error(`${node} agent exited: ${proc.stdout()}\n${proc.stderr()}`);
      const s = await statusOr(bed, node);
      if (typeof s === 'string') {
        last = s;
        return false;
      }
      last = JSON.stringify(s.summary);
      return (
        s.summary['forwarding'] === 'yes' &&
        (ipsecFile === undefined || String(s.summary['ipsec']).includes('SAs installed'))
      );
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  ).catch((e: Error) => {
    throw new Error(`${e.message}; last seen: ${last}\n${proc.stdout()}\n${proc.stderr()}`);
  });
  return proc;
}

export async function startRouter(bed: Testbed, extra: readonly string[] = []): Promise<Background> {
  const proc = bed.spawn('router', routerArgv(bed, extra));
  await waitUntil(
    'the router answering on its control socket',
    async () => {
      if (!proc.running()) throw new Error(`router exited: ${proc.stdout()}\n${proc.stderr()}`);
      return typeof (await statusOr(bed, 'router')) !== 'string';
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  return proc;
}

/** `distnat peer` on the server with the given keying flags (--mirror F..., or --ike F). */
export function peerArgv(keying: readonly string[], runDir: string): string[] {
  return [DISTNAT, ...peerArgs(keying, runDir)];
}

export async function startPeer(bed: Testbed, files: readonly string[], runDir: string): Promise<Background> {
  const proc = bed.spawn(
    'server',
    peerArgv(
      files.flatMap((f) => ['--mirror', f]),
      runDir,
    ),
  );
  await proc.waitForOutput(/peer running/, { timeoutMs: 30_000 });
  return proc;
}

/** The peer's status from its control socket. */
export function readPeerStatus(runDir: string): Promise<DaemonStatus> {
  return readDaemonStatus(runDir, 'peer');
}

/** Router, hosts (in order, each ready before the next asks for SPIs), then the peer. */
export async function startIpsecDaemons(bed: Testbed, o: IpsecDaemonsOptions = {}): Promise<IpsecDaemons> {
  const hosts = o.hosts ?? ['h1', 'h2'];
  const ipsec = o.ipsec ?? hosts;
  const files: Partial<Record<HostNode, string>> = {};
  const esp: Partial<Record<HostNode, EspKey[]>> = {};
  for (const node of ipsec) {
    const file = join(bed.scratchDir, `${node}-ipsec.yaml`);
    esp[node] = writeKeying(file, KEYS[node]);
    files[node] = file;
  }
  const peerRunDir = join(bed.scratchDir, 'peer');
  const datapath = o.datapath !== undefined ? ['--datapath', o.datapath] : [];
  try {
    const router = await startRouter(bed, datapath);
    const procs: Partial<Record<HostNode, Background>> = {};
    for (const node of hosts) procs[node] = await startHostAgent(bed, node, files[node], datapath);
    const mirrored = ipsec.map((n) => files[n]!);
    const peer = (o.peer ?? mirrored.length > 0) ? await startPeer(bed, mirrored, peerRunDir) : undefined;
    return { router, hosts: procs, peer, files, esp, peerRunDir };
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${daemonLogs(bed)}`);
  }
}

/**
 * Stops what startIpsecDaemons started and removes the router's and the
 * hosts' state, so that the next start is a fresh router granting the SPIs
 * the keying files assume again (the same testbed on another data path).
 */
export async function stopIpsecDaemons(bed: Testbed, daemons: IpsecDaemons): Promise<void> {
  await Promise.all([...Object.values(daemons.hosts), daemons.peer].map((p) => p?.stop()));
  await daemons.router.stop();
  for (const node of ['router', ...Object.keys(daemons.hosts)])
    rmSync(join(bed.layout.nodeDir(node), 'state'), { recursive: true, force: true });
}

/** A host's `ipsec.*` counters (0 for those not present yet). */
export function ipsecCounter(status: DaemonStatus, name: string): number {
  return status.counters[name] ?? 0;
}

/**
 * tshark fields of a capture, with the ESP SAs' keys (esp_sa UAT rows, which
 * repeat one preference name, hence not through readFields' record).
 */
export async function decodeEsp(
  file: string,
  esp: readonly EspKey[],
  fields: readonly string[],
  filter = 'esp',
): Promise<string[][]> {
  const argv = ['tshark', '-r', file, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a'];
  argv.push('-E', 'aggregator=,', ...tsharkEspOptions(esp), '-Y', filter);
  for (const f of fields) argv.push('-e', f);
  const r = await run(argv, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`tshark -r ${file}: ${describeResult(r)}`);
  return r.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}
