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
  // IPv4 only: no router solicitations from TUNs coming up, so queue counts are exact.
  inNs(NS, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1');
  inNs(NS, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1');
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

  it('writes a burst of UDP datagrams as super-packets the kernel splits back into the same datagrams, in order', async () => {
    // The kernel is the oracle: whatever the coalescer merged, the socket must
    // receive exactly the datagrams that were handed to sendBatch.
    const r = await runTs<{ uso: boolean; got: string[]; superPackets: number; writes: number }>(
      NS,
      `import { execFileSync } from 'node:child_process';
       import dgram from 'node:dgram';
       import { openTun } from '$io/tun.ts';
       import { OffloadTun } from '$io/offload-tun.ts';
       import { SlotBuffer, SpanList } from '$io/slots.ts';
       import { internetChecksum, pseudoHeaderSumFromIp, udpWireChecksum } from '$io/../wire/checksum.ts';
       const dev = openTun({ name: 'dxio2', vnetHdr: true, offload: { csum: true, tso4: true }, up: true });
       const tun = new OffloadTun(dev);
       execFileSync('ip', ['addr', 'add', '10.99.2.1/24', 'dev', 'dxio2']);
       const sock = dgram.createSocket('udp4');
       await new Promise((ok) => sock.bind(9000, '10.99.2.1', ok));
       const N = 100;
       const got = [];
       const done = new Promise((ok) => sock.on('message', (m) => { got.push(m.toString()); if (got.length === N) ok(); }));
       const src = new SlotBuffer(N, 2048, 64);
       const spans = new SpanList(N);
       for (let k = 0; k < N; k++) {
         // Equal sizes but for every 30th, so groups also end on a short datagram.
         const text = ('datagram ' + k).padEnd(k % 30 === 29 ? 12 : 36, '.');
         const total = 28 + text.length;
         const b = new Uint8Array(total);
         const v = new DataView(b.buffer);
         b[0] = 0x45; v.setUint16(2, total); v.setUint16(4, 1000 + k); v.setUint16(6, 0x4000); b[8] = 64; b[9] = 17;
         b.set([10, 99, 2, 2, 10, 99, 2, 1], 12);
         v.setUint16(10, internetChecksum(b, 0, 20));
         v.setUint16(20, 5000); v.setUint16(22, 9000); v.setUint16(24, 8 + text.length);
         b.set(Buffer.from(text), 28);
         v.setUint16(26, udpWireChecksum(internetChecksum(b, 20, total, pseudoHeaderSumFromIp(b, 0, 17, total - 20))));
         src.put(k, b);
         spans.push(src.offset(k), total);
       }
       tun.sendBatch(src.bytes, spans.pairs, spans.count);
       await Promise.race([done, new Promise((ok) => setTimeout(ok, 3000).unref())]);
       const s = tun.offloadStats();
       console.log(JSON.stringify({ uso: dev.udpSegmentation, got, superPackets: s.coalesce.superPackets, writes: s.events.writes }));
       sock.close(); tun.close();`,
    );
    expect(r.got).toEqual(
      Array.from({ length: 100 }, (_, k) => `datagram ${k}`.padEnd(k % 30 === 29 ? 12 : 36, '.')),
    );
    // Linux 6.2 and later take UDP_L4 from a TUN; before, every datagram is its own write.
    if (r.uso) {
      expect(r.superPackets).toBeGreaterThanOrEqual(4);
      expect(r.writes).toBeLessThan(10);
    } else expect(r.writes).toBe(100);
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

  it('pauses and resumes reading, reports a throwing handler as an uncaught exception, and closes idempotently', async () => {
    const r = await runTs<{
      whilePaused: number;
      afterResume: number;
      dropped: number;
      uncaught: string;
      sendAfterClose: number;
    }>(
      NS,
      `import { openRawSocket } from '$io/raw.ts';
       import { openTun } from '$io/tun.ts';
       import { execFileSync } from 'node:child_process';
       const tun = openTun({ name: 'dxio5', up: true, txQueueLen: 8 });
       execFileSync('ip', ['addr', 'add', '10.99.5.1/24', 'dev', 'dxio5']);
       const icmp = openRawSocket(1);
       const ping = new Uint8Array([0x45,0,0,28, 0,0,0x40,0, 64,1,0,0, 10,99,5,1, 10,99,5,2, 8,0,0xf7,0xff, 0,0,0,0]);
       const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
       let got = 0;
       // Count our pings only: a TUN that comes up also sends IPv6 router solicitations.
       const count = (n: number) => { for (let i = 0; i < n; i++) if (tun.slots.bytes[tun.slots.offset(i) + 9] === 1 && tun.slots.bytes[tun.slots.offset(i)] === 0x45) got++; };
       tun.onBatch(count);
       tun.onBatch(null);
       for (let i = 0; i < 20; i++) icmp.send(ping);
       await sleep(200);
       const whilePaused = got;
       tun.onBatch(count);
       await sleep(200);
       const afterResume = got;
       const dropped = tun.stats().rxDropped;
       let uncaught = 'none';
       process.once('uncaughtException', (e) => { uncaught = e.message; });
       tun.onBatch(() => { throw new Error('handler bug'); });
       icmp.send(ping);
       await sleep(200);
       tun.close();
       tun.close();
       icmp.close();
       console.log(JSON.stringify({ whilePaused, afterResume, dropped, uncaught, sendAfterClose: tun.sendBatch(ping, new Int32Array([0, 28]), 1) }));`,
    );
    expect(r.whilePaused).toBe(0);
    // The kernel held what fit in the TUN's queue (txqueuelen 8) and counted the rest.
    expect(r.afterResume).toBe(8);
    expect(r.dropped).toBe(12);
    expect(r.uncaught).toBe('handler bug');
    expect(r.sendAfterClose).toBe(0);
  });

  it('serves the queues of a multi-queue device from worker threads, and survives a worker ending mid-read', async () => {
    const r = await runTs<{ perQueue: number[]; total: number }>(
      NS,
      `import { Worker } from 'node:worker_threads';
       import { execFileSync } from 'node:child_process';
       import dgram from 'node:dgram';
       import { ROOT } from '${new URL('./io-ns.ts', import.meta.url).pathname}';
       // Plain JS in the workers (no TS loader there): the binding itself, as src/io drives it.
       const worker = () => new Worker(\`
         const { parentPort } = require('node:worker_threads');
         const n = require(\${JSON.stringify(ROOT + 'native-setup/addon/build/Release/distnat_native.node')});
         const { fd } = n.tunOpen('dxio6', 1);
         n.tunSetOffload(fd, 0);
         const bytes = new Uint8Array(64 * 2048), lengths = new Int32Array(64), counters = new Float64Array(7);
         let udp = 0;
         const p = new n.Poller(fd, 0, bytes, 2048, 64, 0, 64, lengths, counters, (c) => {
           for (let i = 0; i < c; i++) if (bytes[i * 2048 + 64 + 9] === 17) udp++;
         });
         p.start();
         parentPort.on('message', () => { p.close(); n.closeFd(fd); parentPort.postMessage(udp); });
         parentPort.postMessage('ready');\`, { eval: true });
       const ws = [worker(), worker(), worker()];
       await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
       await ws[2].terminate(); // its poller is still running: the binding must close it with the thread
       execFileSync('ip', ['link', 'set', 'dxio6', 'up']);
       execFileSync('ip', ['addr', 'add', '10.99.6.1/24', 'dev', 'dxio6']);
       const s = dgram.createSocket('udp4');
       for (let i = 0; i < 200; i++) s.send('x', 1000 + i, '10.99.6.2');
       await new Promise((r) => setTimeout(r, 500));
       const perQueue = await Promise.all(ws.slice(0, 2).map((w) => new Promise<number>((r) => { w.once('message', r); w.postMessage('stop'); })));
       s.close();
       for (const w of ws) await w.terminate();
       console.log(JSON.stringify({ perQueue, total: perQueue[0] + perQueue[1] }));`,
    );
    expect(r.total).toBe(200);
    // The kernel spreads flows over the queues by hash: both got some.
    expect(Math.min(...r.perQueue)).toBeGreaterThan(20);
  });
});
