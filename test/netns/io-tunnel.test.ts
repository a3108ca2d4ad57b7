/**
 * A userspace IP-in-IP tunnel built only from src/io (scripts/bench/io-tunnel.ts)
 * between two namespaces of this file's own (dxio-u-*): ping and a TCP
 * transfer whose bytes are checked end to end, with plain TUNs, with TSO
 * super-packets segmented in userspace, and with receive coalescing on and
 * off; and a pcap of the tunnel that tshark decodes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceSet, NsProgram, sh, startTs } from './io-ns.ts';

const nss = new NamespaceSet();
const A = 'dxio-u-a';
const B = 'dxio-u-b';
const dir = mkdtempSync(join(tmpdir(), 'distnat-io-tunnel-'));

beforeAll(() => {
  nss.add(A);
  nss.add(B);
  nss.link(A, 'dxio-ua', '10.97.0.1/24', B, 'dxio-ub', '10.97.0.2/24');
});
afterAll(() => {
  nss.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

interface EndpointStats {
  tun: { rxPackets: number; rxBytes: number; txErrors: number };
  tx: { txPackets: number; txErrors: number; txDropped: number };
  drops: { gso: number; wrongPeer: number };
  coalesce?: { superPackets: number; segmentsMerged: number; badChecksum: number };
}

async function withTunnel<T>(
  extra: string[],
  body: () => Promise<T>,
): Promise<[T, EndpointStats, EndpointStats]> {
  const a = new NsProgram(A, 'scripts/bench/io-tunnel.ts', [
    '--tun',
    'dxio-t',
    '--local',
    '10.97.0.1',
    '--remote',
    '10.97.0.2',
    ...extra,
  ]);
  const b = new NsProgram(B, 'scripts/bench/io-tunnel.ts', [
    '--tun',
    'dxio-t',
    '--local',
    '10.97.0.2',
    '--remote',
    '10.97.0.1',
    ...extra.filter((x) => !x.startsWith('--pcap') && !x.endsWith('.pcap')),
  ]);
  try {
    await a.ready();
    await b.ready();
    sh('ip', '-n', A, 'addr', 'add', '172.16.0.1/32', 'peer', '172.16.0.2', 'dev', 'dxio-t');
    sh('ip', '-n', B, 'addr', 'add', '172.16.0.2/32', 'peer', '172.16.0.1', 'dev', 'dxio-t');
    const r = await body();
    return [r, await a.result<EndpointStats>(true), await b.result<EndpointStats>(true)];
  } finally {
    a.kill();
    b.kill();
  }
}

const MB = 24;

/** Sends MB megabytes of seeded pseudo-random bytes A -> B over TCP; both sides hash what they saw. */
async function transfer(): Promise<{ sent: string; received: string; bytes: number }> {
  const server = startTs(
    B,
    `import net from 'node:net'; import { createHash } from 'node:crypto';
     const h = createHash('sha256'); let bytes = 0;
     const srv = net.createServer((c) => { c.on('data', (d) => { h.update(d); bytes += d.length; });
       c.on('end', () => { console.log(JSON.stringify({ received: h.digest('hex'), bytes })); srv.close(); }); });
     srv.listen(5001, '172.16.0.2', () => console.log('ready'));`,
  );
  await server.ready();
  const client = await startTs(
    A,
    `import net from 'node:net'; import { createHash } from 'node:crypto';
     const h = createHash('sha256'); let x = 12345;
     const c = net.connect(5001, '172.16.0.2', async () => {
       for (let i = 0; i < ${MB * 16}; i++) {
         const chunk = Buffer.alloc(65536);
         for (let j = 0; j < chunk.length; j += 4) { x = (x * 1103515245 + 12345) >>> 0; chunk.writeUInt32LE(x, j); }
         h.update(chunk);
         if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
       }
       c.end(() => console.log(JSON.stringify({ sent: h.digest('hex') })));
     });`,
  ).result<{ sent: string }>();
  const got = await server.result<{ received: string; bytes: number }>();
  return { sent: client.sent, ...got };
}

async function ping(): Promise<number> {
  const r = await new NsProgram(A, 'scripts/bench/io-raw.ts', [
    'ping',
    '--dst',
    '172.16.0.2',
    '--count',
    '3',
  ]).result<{ received: number }>();
  return r.received;
}

describe('userspace IP-in-IP tunnel from src/io', () => {
  it('carries ping and TCP intact over plain TUNs', async () => {
    const [[pings, t], a, b] = await withTunnel([], async () => [await ping(), await transfer()] as const);
    expect(pings).toBe(3);
    expect(t.bytes).toBe(MB * 1024 * 1024);
    expect(t.received).toBe(t.sent);
    expect(a.tx.txErrors + b.tx.txErrors + a.drops.wrongPeer + b.drops.wrongPeer).toBe(0);
  });

  it('carries TCP intact with TSO super-packets segmented in userspace and coalesced on receipt', async () => {
    const [t, a, b] = await withTunnel(['--tso'], transfer);
    expect(t.bytes).toBe(MB * 1024 * 1024);
    expect(t.received).toBe(t.sent);
    // A read super-packets (far above the 1480 MTU on average) and cut them ...
    expect(a.tun.rxBytes / a.tun.rxPackets).toBeGreaterThan(4000);
    expect(a.tx.txPackets).toBeGreaterThan(a.tun.rxPackets);
    expect(a.drops.gso).toBe(0);
    // ... and B merged the segments again before its TUN.
    expect(b.coalesce!.superPackets).toBeGreaterThan(0);
    expect(b.coalesce!.segmentsMerged / b.coalesce!.superPackets).toBeGreaterThan(2);
    expect(b.coalesce!.badChecksum).toBe(0);
  });

  it('carries TCP intact with TSO but without receive coalescing', async () => {
    const [t, , b] = await withTunnel(['--tso', '--no-coalesce'], transfer);
    expect(t.received).toBe(t.sent);
    expect(b.coalesce).toBeUndefined();
  });

  it('captures the tunnel in a pcap that tshark decodes as IP-in-IP', async () => {
    const file = join(dir, 'tunnel.pcap');
    const [pings] = await withTunnel(['--pcap', file], ping);
    expect(pings).toBe(3);
    const out = execFileSync(
      'tshark',
      [
        '-r',
        file,
        '-Y',
        'ip.proto == 4 && icmp',
        '-T',
        'fields',
        '-e',
        'ip.src',
        '-e',
        'ip.dst',
        '-e',
        'icmp.type',
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, HOME: dir },
      },
    );
    const rows = out.trim().split('\n');
    expect(rows).toContain('10.97.0.1,172.16.0.1\t10.97.0.2,172.16.0.2\t8');
    expect(rows).toContain('10.97.0.2,172.16.0.2\t10.97.0.1,172.16.0.1\t0');
  });
});
