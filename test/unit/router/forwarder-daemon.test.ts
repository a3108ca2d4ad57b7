/**
 * The router daemon over in-memory devices, with PAP on loopback UDP and its
 * state in a temporary directory: leases drive forwarding, status and
 * metrics show it, a restart (clean or after a crash) keeps leases and epoch,
 * and a second router on the same state or address is refused.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { afterEach, describe, expect, it } from 'vitest';
import { UserError } from '../../../src/util/exit-codes.ts';
import { RouterConfigSchema, type RouterConfig } from '../../../src/config/router-config.ts';
import { controlRequest } from '../../../src/control/client.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { UdpPapTransport } from '../../../src/pap/udp-transport.ts';
import { startRouter, type RouterHandle } from '../../../src/router/daemon/start.ts';
import type { Logger } from '../../../src/util/log.ts';
import { PAP_MESSAGE_LENGTH, emitPap, parsePap, type PapMessage } from '../../../src/wire/pap.ts';
import { SERVER, SHARED, a, tunnel, udp } from './forwarder-packets.ts';

const HOST = a('127.0.0.1');
const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dxr-daemon-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function capturedLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const log = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { log, lines };
}

interface Bed {
  router: RouterHandle;
  tun: MemoryDevice;
  lanRx: MemoryDevice;
  lanTx: MemoryDevice;
  scheduler: MemoryScheduler;
  config: RouterConfig;
  lines: Record<string, unknown>[];
}

async function start(stateDir = tempDir(), extra: Partial<RouterConfig> = {}): Promise<Bed> {
  const scheduler = new MemoryScheduler();
  const tun = new MemoryDevice({ name: 'tun', record: true, scheduler });
  const lanRx = new MemoryDevice({ name: 'lan-rx', scheduler });
  const lanTx = new MemoryDevice({ name: 'lan-tx', record: true, scheduler });
  const config = RouterConfigSchema.parse({
    sharedAddress: '198.51.100.30',
    lanAddress: '127.0.0.1',
    stateDir,
    runDir: tempDir(),
    pap: { icmp: false },
    ...extra,
  });
  const { log, lines } = capturedLogger();
  const router = await startRouter(config, log, {
    devices: { tun, lanRx, lanTx },
    papUdpPort: 0,
    fresh: true,
  });
  cleanup.push(() => router.stop());
  return { router, tun, lanRx, lanTx, scheduler, config, lines };
}

async function exchange(bed: Bed, msg: PapMessage): Promise<PapMessage> {
  const t = await UdpPapTransport.open({ address: '127.0.0.1', port: 0 });
  try {
    const out = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap(msg, out);
    const answer = new Promise<Uint8Array>((resolve) => t.onMessage((b) => resolve(b)));
    t.send(out, bed.router.papAddress);
    const parsed = parsePap(await answer);
    if (!parsed.ok) throw new Error(parsed.reason);
    return parsed.value;
  } finally {
    await t.close();
  }
}

const ext = { status: 0, transactionId: 1, epoch: 0, leaseTime: 0 };

async function leasePorts(bed: Bed, txid = 1): Promise<{ lowest: number; count: number; epoch: number }> {
  const r = await exchange(bed, {
    kind: 'port-request',
    highPorts: false,
    portsRequested: 16,
    ...ext,
    transactionId: txid,
  });
  if (r.kind !== 'port-response' || !r.success) throw new Error(`no lease: ${JSON.stringify(r)}`);
  return { lowest: r.lowestPort, count: r.portCount, epoch: r.epoch };
}

describe('startRouter', () => {
  it('forwards for the ports a host leased over PAP, and drops spoofed ones', async () => {
    const bed = await start();
    const lease = await leasePorts(bed);
    expect(lease.count).toBe(16);
    expect(bed.lines.some((l) => l.message === 'lease granted' && l.host === '127.0.0.1')).toBe(true);
    const out = udp(SHARED, lease.lowest, SERVER, 53);
    bed.lanRx.inject(tunnel(HOST, out, HOST));
    bed.lanRx.inject(tunnel(HOST, udp(SHARED, lease.lowest + 16, SERVER, 53), HOST));
    bed.tun.inject(udp(SERVER, 53, SHARED, lease.lowest + 3));
    await bed.scheduler.idle();
    expect(bed.tun.sent.map((p) => Buffer.from(p).toString('hex'))).toEqual([
      Buffer.from(out).toString('hex'),
    ]);
    expect(bed.lanTx.sent).toHaveLength(1);
    expect([...bed.lanTx.sent[0]!.subarray(16, 20)]).toEqual([127, 0, 0, 1]);
    const s = bed.router.status();
    expect(s.counters['drop.spoofed-port']).toBe(1);
    expect(s.counters['traffic.outbound-packets']).toBe(1);
    expect(s.counters['pap.answered.port-request']).toBe(1);
    const fig8 = s.tables.find((t) => t.title.startsWith('FIG. 8'))!;
    expect(fig8.rows).toEqual([['127.0.0.1', lease.lowest, 16, '300s']]);
    const fig12 = s.tables.find((t) => t.title.startsWith('FIG. 12'))!;
    expect(fig12.rows.map((r) => r[0])).toContain(lease.lowest);
  });

  it('answers `distnat status` on its control socket', async () => {
    const bed = await start();
    await leasePorts(bed);
    const reply = await controlRequest(bed.router.controlSocket, { command: 'status' });
    expect(reply.ok).toBe(true);
    if (!reply.ok) return;
    const s = reply.status as ReturnType<RouterHandle['status']>;
    expect(s.role).toBe('router');
    expect(s.counters['leases.port_leases']).toBe(1);
    expect(Object.keys(s.counters).filter((k) => k.startsWith('drop.')).length).toBeGreaterThan(15);
  });

  it('keeps leases and epoch across a clean restart, and removes socket and lock at stop', async () => {
    const stateDir = tempDir();
    const first = await start(stateDir);
    const lease = await leasePorts(first);
    await first.router.stop();
    expect(existsSync(first.router.controlSocket)).toBe(false);
    expect(existsSync(join(stateDir, 'router.lock'))).toBe(false);
    const second = await start(stateDir);
    expect(second.router.leases.epoch).toBe(lease.epoch);
    expect(second.router.forwarder.tables.ownership.portOwner(lease.lowest)).toBe(HOST);
    expect(second.lines.some((l) => l.message === 'leases recovered' && l.leases === 1)).toBe(true);
  });

  it('has every answered lease on disk before the answer leaves (a crash keeps it)', async () => {
    const stateDir = tempDir();
    const bed = await start(stateDir);
    const lease = await leasePorts(bed);
    // The files as a SIGKILL would leave them: no stop, no final snapshot.
    const crashed = tempDir();
    for (const f of ['leases.snapshot', 'leases.journal']) copyFileSync(join(stateDir, f), join(crashed, f));
    const after = await start(crashed);
    expect(after.router.leases.epoch).toBe(lease.epoch);
    expect(after.router.leases.leases().map((l) => [l.host, l.lowest, l.count])).toEqual([
      ['127.0.0.1', lease.lowest, lease.count],
    ]);
  });

  it('refuses a second router on the same state directory or the same LAN address', async () => {
    const stateDir = tempDir();
    const bed = await start(stateDir);
    await expect(start(stateDir)).rejects.toMatchObject({ exitCode: 73, message: /state directory/ });
    const scheduler = new MemoryScheduler();
    const devices = {
      tun: new MemoryDevice({ scheduler }),
      lanRx: new MemoryDevice({ scheduler }),
      lanTx: new MemoryDevice({ scheduler }),
    };
    const config = { ...bed.config, stateDir: tempDir(), runDir: tempDir() };
    const err = await startRouter(config, capturedLogger().log, {
      devices,
      papUdpPort: bed.router.papAddress.port!,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err).toMatchObject({ exitCode: 73, message: /127\.0\.0\.1:\d+ is taken/ });
    // The refused router left nothing behind: its lock is gone.
    expect(existsSync(join(config.stateDir, 'router.lock'))).toBe(false);
  });

  it('serves Prometheus metrics when asked', async () => {
    const bed = await start(tempDir(), { metrics: '127.0.0.1:0' });
    const lease = await leasePorts(bed);
    bed.lanRx.inject(tunnel(HOST, udp(SHARED, lease.lowest + 100, SERVER, 53), HOST));
    await bed.scheduler.idle();
    const text = await (await fetch(`http://${bed.router.metricsAddress}/metrics`)).text();
    expect(text).toMatch(/^distnat_router_dropped_packets_total\{reason="spoofed-port"\} 1$/m);
    expect(text).toMatch(/^distnat_router_leased_blocks\{kind="port"\} 1$/m);
    expect(text).toMatch(/^distnat_router_packets_total\{direction="lan_in"\} 1$/m);
    expect(text).toMatch(/^distnat_router_withdrawn_ike_drain_packets_total 0$/m);
    expect(text).toMatch(/^distnat_router_pap_messages_total\{kind="port-request"\} 1$/m);
    expect(text).toMatch(/^distnat_router_free_values\{kind="port"\} \d+$/m);
  });
});
