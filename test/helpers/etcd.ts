/**
 * A real etcd (Debian's etcd-server) for tests: one member, or a cluster of
 * members, on 127.0.0.1 with ports the kernel hands out and a temporary
 * data directory per member. stop() kills every member and removes the
 * directories; the process helper's exit hook kills them even when a test
 * run is interrupted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { expect } from 'vitest';
import type { Background } from './process.ts';
import { execIn, onExitCleanup, spawnBackground, waitUntil } from './process.ts';

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  process: Background | undefined;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Client URLs of every member. */
  readonly endpoints: string[];
  /** A client on every member, closed by stop(). */
  client(): Etcd3;
  /** SIGKILLs one member (it stays dead). */
  kill(index: number): Promise<void>;
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface EtcdOptions {
  /** Run the members in this network namespace (then `address` is one of its addresses). */
  readonly ns?: string;
  /** Where the members listen; default 127.0.0.1 with ports the kernel hands out. */
  readonly address?: string;
}

export async function startEtcd(size = 1, o: EtcdOptions = {}): Promise<EtcdCluster> {
  const members: EtcdMember[] = [];
  const address = o.address ?? '127.0.0.1';
  for (let i = 0; i < size; i++) {
    // Inside a namespace of the test's own nothing else listens: etcd's own ports.
    const [client, peer] =
      o.ns === undefined ? [await freePort(), await freePort()] : [2379 + 2 * i, 2380 + 2 * i];
    members.push({
      name: `m${i + 1}`,
      clientUrl: `http://${address}:${client}`,
      peerUrl: `http://${address}:${peer}`,
      dataDir: mkdtempSync(join(tmpdir(), 'distnat-etcd-')),
      process: undefined,
    });
  }
  const dirs = members.map((m) => m.dataDir);
  const unregister = onExitCleanup(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const clients: Etcd3[] = [];
  const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const token = `distnat-test-${process.pid}-${Date.now()}`;
  const stop = async () => {
    for (const c of clients.splice(0)) c.close();
    for (const m of members) {
      await m.process?.stop({ signal: 'SIGKILL' });
      m.process = undefined;
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    unregister();
  };
  try {
    for (const m of members) {
      m.process = spawnBackground(o.ns, [
        'etcd',
        '--name',
        m.name,
        '--data-dir',
        m.dataDir,
        '--listen-client-urls',
        m.clientUrl,
        '--advertise-client-urls',
        m.clientUrl,
        '--listen-peer-urls',
        m.peerUrl,
        '--initial-advertise-peer-urls',
        m.peerUrl,
        '--initial-cluster',
        initial,
        '--initial-cluster-token',
        token,
        '--initial-cluster-state',
        'new',
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ]);
    }
    for (const m of members) {
      await waitUntil(
        `etcd member ${m.name} healthy on ${m.clientUrl}`,
        async () => {
          if (!m.process?.running())
            throw new Error(`etcd ${m.name} exited: ${m.process?.stderr().slice(-2000)}`);
          if (o.ns !== undefined)
            return (
              (await execIn(o.ns, ['etcdctl', '--endpoints', m.clientUrl, 'endpoint', 'health'])).code === 0
            );
          try {
            const res = await fetch(`${m.clientUrl}/health`);
            return res.ok && ((await res.json()) as { health?: string }).health === 'true';
          } catch {
            return false;
          }
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    client: () => {
      const c = new Etcd3({ hosts: members.map((m) => m.clientUrl) });
      clients.push(c);
      return c;
    },
    kill: async (i) => {
      await members[i]!.process?.stop({ signal: 'SIGKILL' });
    },
    stop,
  };
}

/** A port or SPI block as a router keeps it in etcd: its key, the lowest value from the key, and its JSON value. */
export interface EtcdBlock {
  key: string;
  kind: string;
  lowest: number;
  count: number;
  host: string;
  state: string;
  by?: string;
  grantedAt?: number;
}

/** The blocks in what `etcdctl get --prefix ... -w json` printed; other keys (the epoch, the CRL's) are left out. */
export function parseEtcdBlocks(etcdctlJson: string): EtcdBlock[] {
  const kvs = (JSON.parse(etcdctlJson) as { kvs?: { key: string; value: string }[] }).kvs ?? [];
  const out: EtcdBlock[] = [];
  for (const kv of kvs) {
    const key = Buffer.from(kv.key, 'base64').toString();
    const m = /\/(port|spi)\/([0-9a-f]{8})$/.exec(key);
    if (m === null) continue;
    const v = JSON.parse(Buffer.from(kv.value, 'base64').toString()) as Omit<
      EtcdBlock,
      'key' | 'kind' | 'lowest'
    >;
    out.push({ ...v, key, kind: m[1]!, lowest: parseInt(m[2]!, 16) });
  }
  return out;
}

/**
 * No two of the blocks overlap, and every grant a client was told is among them, leased to it as told:
 * what several routers sharing etcd must never break. The blocks, lowest first. Blocks of
 * different kinds, or under different shared addresses' prefixes, are different spaces (the same
 * port on two addresses is two leases); pass the grants of one address with its blocks.
 */
export function expectConsistentLeases(
  blocks: readonly EtcdBlock[],
  granted: readonly { host: string; answer: { lowest: number; count: number } }[],
): EtcdBlock[] {
  const stored = [...blocks].sort((a, b) => a.lowest - b.lowest);
  const spaceOf = (b: EtcdBlock): string => b.key.slice(0, b.key.lastIndexOf('/'));
  const last = new Map<string, EtcdBlock>();
  for (const b of stored) {
    const before = last.get(spaceOf(b));
    if (before !== undefined)
      expect(before.lowest + before.count, `${before.key} and ${b.key}`).toBeLessThanOrEqual(b.lowest);
    last.set(spaceOf(b), b);
  }
  for (const g of granted)
    expect(stored).toContainEqual(
      expect.objectContaining({
        lowest: g.answer.lowest,
        count: g.answer.count,
        host: g.host,
        state: 'leased',
      }),
    );
  return stored;
}
