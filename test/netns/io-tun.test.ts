/**
 * TUN devices through the native addon, in namespaces of this file's own
 * (dxio-t-*): a JS reflector answers ping and UDP across a TUN, offloads are
 * set explicitly on every attach, and set-up failures carry their errno.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inNs, NamespaceSet, NsProgram, runTs, sh } from './io-ns.ts';

const nss = new NamespaceSet();
const NS = 'dxio-t-a';

beforeAll(() => {
  nss.add(NS);
});
afterAll(() => nss.cleanup());

describe('TUN through the addon', () => {
  it('answers ping and UDP across the TUN with a batched JS reflector', async () => {
    const reflector = new NsProgram(NS, 'scripts/bench/io-reflect.ts', ['--name', 'dxio0', '--mtu', '1480']);
    try {
      await reflector.ready();
      sh('ip', '-n', NS, 'addr', 'add', '10.99.0.1/24', 'dev', 'dxio0');
      expect(inNs(NS, 'ip', '-o', 'link', 'show', 'dxio0')).toMatch(/mtu 1480.*state UNKNOWN|mtu 1480/);

      const ping = await new NsProgram(NS, 'scripts/bench/io-raw.ts', [
        'ping',
        '--dst',
        '10.99.0.2',
        '--count',
        '3',
      ]).result<{
        received: number;
      }>();
      expect(ping.received).toBe(3);

      const udp = await runTs<{ reply: string; from: string }>(
        NS,
        `import dgram from 'node:dgram';
         const s = dgram.createSocket('udp4');
         s.bind(0, '10.99.0.1', () => s.send(Buffer.from('distnat'), 7, '10.99.0.2'));
         s.on('message', (m, r) => { console.log(JSON.stringify({ reply: m.toString(), from: r.address + ':' + r.port })); s.close(); });
         setTimeout(() => process.exit(3), 3000).unref();`,
      );
      expect(udp).toEqual({ reply: 'distnat', from: '10.99.0.2:7' });
      const stats = await reflector.result<{ reflected: number; txErrors: number; rxTruncated: number }>(
        true,
      );
      expect(stats.reflected).toBeGreaterThanOrEqual(4);
      expect(stats.txErrors).toBe(0);
      expect(stats.rxTruncated).toBe(0);
    } finally {
      reflector.kill();
    }
  });

  it('sets offloads explicitly on every attach, so a persistent device does not keep the last owner\u2019s', async () => {
    sh('ip', '-n', NS, 'tuntap', 'add', 'dxio1', 'mode', 'tun');
    const features = () => inNs(NS, 'ethtool', '-k', 'dxio1');
    expect(features()).toMatch(/tcp-segmentation-offload: off/);
    const opened = await runTs<{ vnet: boolean; offload: number; tso: string }>(
      NS,
      `import { execFileSync } from 'node:child_process';
       import { openTun } from '$io/tun.ts';
       const t = openTun({ name: 'dxio1', mustExist: true, vnetHdr: true, offload: { csum: true, tso4: true, tso6: true } });
       const tso = execFileSync('ethtool', ['-k', 'dxio1'], { encoding: 'utf8' }).match(/tcp-segmentation-offload: (\\w+)/)[1];
       console.log(JSON.stringify({ vnet: t.vnetHdr, offload: t.offload, tso }));
       t.close();`,
    );
    expect(opened).toEqual({ vnet: true, offload: 0x07, tso: 'on' });
    // The device outlives the process, and so do its offloads ...
    expect(features()).toMatch(/tcp-segmentation-offload: on/);
    // ... until the next owner says otherwise; a plain open sets them to 0.
    await runTs(
      NS,
      `import { openTun } from '$io/tun.ts'; openTun({ name: 'dxio1' }).close(); console.log('{}');`,
    );
    expect(features()).toMatch(/tcp-segmentation-offload: off/);
    expect(features()).toMatch(/tx-checksumming: off/);
    sh('ip', '-n', NS, 'tuntap', 'del', 'dxio1', 'mode', 'tun');
  });

  it('attaches several queues of a multi-queue device and refuses a mismatched attach with its errno', async () => {
    const r = await runTs<{
      queues: number;
      names: string[];
      mismatch: string;
      missing: string;
      badOffload: string;
    }>(
      NS,
      `import { openTun } from '$io/tun.ts';
       const err = (f: () => unknown) => { try { f(); return 'none'; } catch (e) { return (e as NodeJS.ErrnoException).code ?? (e as Error).message; } };
       const q = [openTun({ name: 'dxio2', multiQueue: true }), openTun({ name: 'dxio2', multiQueue: true })];
       const mismatch = err(() => openTun({ name: 'dxio2' }));
       const missing = err(() => openTun({ name: 'dxio-none', mustExist: true }));
       const badOffload = err(() => openTun({ name: 'dxio3', offload: { csum: true } }));
       console.log(JSON.stringify({ queues: q.length, names: q.map((t) => t.name), mismatch, missing, badOffload }));
       for (const t of q) t.close();`,
    );
    expect(r.queues).toBe(2);
    expect(r.names).toEqual(['dxio2', 'dxio2']);
    expect(r.mismatch).toBe('EINVAL');
    expect(r.missing).toMatch(/does not exist/);
    expect(r.badOffload).toMatch(/need vnetHdr/);
    // Not persistent: gone with its queues.
    expect(() => inNs(NS, 'ip', 'link', 'show', 'dxio2')).toThrow();
  });

  it('stops a reader whose device is removed and reports the errno once, instead of spinning', async () => {
    const r = await runTs<{ error: string; code: string; rxErrors: number; wakeups: number }>(
      NS,
      `import { execFileSync } from 'node:child_process';
       import { openTun } from '$io/tun.ts';
       const t = openTun({ name: 'dxio4', up: true, onError: (e) => {
         const s = t.stats();
         console.log(JSON.stringify({ error: e.message, code: (e as NodeJS.ErrnoException).code, rxErrors: s.rxErrors, wakeups: s.rxWakeups }));
         t.close();
         process.exit(0);
       } });
       t.onBatch(() => {});
       setTimeout(() => execFileSync('ip', ['link', 'del', 'dxio4']), 100);
       setTimeout(() => { console.log(JSON.stringify({ error: 'none', code: '', rxErrors: t.stats().rxErrors, wakeups: t.stats().rxWakeups })); process.exit(0); }, 3000);`,
    );
    expect(r.code).toMatch(/^EBADF/);
    expect(r.error).toMatch(/dxio4: reading stopped/);
    expect(r.wakeups).toBeLessThan(100);
  });
});
