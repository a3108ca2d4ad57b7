import { describe, expect, it } from 'vitest';
import { createDevicePair, MemoryDevice, MemoryRawNetwork, MemoryScheduler } from '../../../src/io/memory.ts';
import { SpanList } from '../../../src/io/slots.ts';
import { verifiesTo0 } from '../../../src/wire/checksum.ts';
import { buildIpip, buildUdp4 } from '../../../scripts/bench/io-packets.ts';

const packet = (n: number, len = 40): Uint8Array => new Uint8Array(len).fill(n & 0xff);

describe('MemoryDevice pair', () => {
  it('delivers what one side sends to the other, in batches no larger than the slots', () => {
    const [a, b] = createDevicePair({ slotCount: 4, scheduler: new MemoryScheduler(false) });
    const batches: number[][] = [];
    b.onBatch((n) => {
      const firsts: number[] = [];
      for (let i = 0; i < n; i++) firsts.push(b.slots.packet(i)[0]!);
      batches.push(firsts);
    });
    const buf = new Uint8Array(10 * 100);
    const spans = new SpanList(10);
    for (let i = 0; i < 10; i++) {
      buf.fill(i, i * 100, i * 100 + 40);
      spans.push(i * 100, 40);
    }
    expect(a.sendBatch(buf, spans.pairs, spans.count)).toBe(10);
    expect(a.scheduler.runUntilIdle()).toBe(10);
    expect(batches).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    expect(a.stats()).toMatchObject({ txPackets: 10, txBytes: 400, txBatches: 1 });
    expect(b.stats()).toMatchObject({ rxPackets: 10, rxBatches: 3, rxBytes: 400 });
  });

  it('copies on send: changing the sender buffer afterwards does not change what arrives', () => {
    const [a, b] = createDevicePair({ scheduler: new MemoryScheduler(false) });
    let seen = -1;
    b.onBatch(() => (seen = b.slots.packet(0)[0]!));
    const p = packet(7);
    a.send(p);
    p.fill(99);
    a.scheduler.runUntilIdle();
    expect(seen).toBe(7);
  });

  it('counts invalid spans and a full receive queue instead of throwing', () => {
    const [a, b] = createDevicePair({ queueLimit: 2, scheduler: new MemoryScheduler(false) });
    b.onBatch(() => {});
    const buf = new Uint8Array(100);
    const pairs = new Int32Array([0, 10, 95, 10, -1, 5, 10, 0, 20, 10, 30, 10, 40, 10]);
    expect(a.sendBatch(buf, pairs, 7)).toBe(2);
    expect(a.stats()).toMatchObject({ txInvalid: 3, txDropped: 2, txPackets: 2 });
    expect(b.stats().rxDropped).toBe(2);
  });

  it('delivers automatically on the event loop unless told not to', async () => {
    const [a, b] = createDevicePair();
    const got: number[] = [];
    b.onBatch((n) => {
      for (let i = 0; i < n; i++) got.push(b.slots.packet(i)[0]!);
      // A reply from inside a handler must not re-enter a's handler synchronously.
      b.send(packet(100 + n));
    });
    let replies = 0;
    let inside = false;
    a.onBatch((n) => {
      expect(inside).toBe(false);
      replies += n;
    });
    inside = true;
    a.send(packet(1));
    a.send(packet(2));
    inside = false;
    expect(got).toEqual([]);
    await a.scheduler.idle();
    expect(got).toEqual([1, 2]);
    expect(replies).toBe(1);
  });

  it('does not read while paused and holds the packets for later', () => {
    const d = new MemoryDevice({ scheduler: new MemoryScheduler(false) });
    expect(d.inject(packet(1))).toBe(true);
    expect(d.scheduler.runUntilIdle()).toBe(0);
    let n = 0;
    d.onBatch((c) => (n += c));
    d.scheduler.runUntilIdle();
    expect(n).toBe(1);
  });

  it('stops a loop that never settles', () => {
    const [a, b] = createDevicePair({ scheduler: new MemoryScheduler(false) });
    a.onBatch((n) => a.sendBatch(a.slots.bytes, new Int32Array([a.slots.offset(0), a.slots.lengths[0]!]), n));
    b.onBatch((n) => b.sendBatch(b.slots.bytes, new Int32Array([b.slots.offset(0), b.slots.lengths[0]!]), n));
    a.send(packet(1));
    expect(() => a.scheduler.runUntilIdle(50)).toThrow(/still busy/);
  });

  it('records sent packets when asked and refuses packets larger than a slot', () => {
    const d = new MemoryDevice({ record: true, slotSize: 256 });
    d.send(packet(5, 20));
    expect(d.sent.map((p) => p.length)).toEqual([20]);
    expect(d.inject(new Uint8Array(300))).toBe(false);
    expect(d.stats()).toMatchObject({ rxDropped: 1, rxTruncated: 1 });
  });
});

describe('MemoryRawNetwork', () => {
  it('gives every socket bound to the destination and protocol its own copy, fixing the header like the kernel', () => {
    const net = new MemoryRawNetwork({ autoDeliver: false });
    const router = net.socket('10.0.0.7', 4);
    const host = net.socket('10.0.0.1', 4);
    const hostIcmp = net.socket('10.0.0.1', 1);
    const sender = net.socket('10.0.0.1', 255);
    const got: Uint8Array[] = [];
    router.onBatch((n) => {
      for (let i = 0; i < n; i++) got.push(router.slots.packet(i).slice());
    });
    let hostGot = 0;
    host.onBatch((n) => (hostGot += n));
    hostIcmp.onBatch((n) => (hostGot += n));
    const inner = buildUdp4('198.51.100.30', '203.0.113.3', 1024, 53, 10);
    const p = buildIpip('0.0.0.0', '10.0.0.7', inner);
    p[2] = 0; // a sender may leave total length and checksum to the kernel
    p[3] = 0;
    p[10] = 0;
    p[11] = 0;
    expect(sender.send(p)).toBe(true);
    net.runUntilIdle();
    expect(hostGot).toBe(0);
    expect(got).toHaveLength(1);
    const r = got[0]!;
    expect([...r.subarray(12, 16)]).toEqual([10, 0, 0, 1]); // source filled from the socket
    expect((r[2]! << 8) | r[3]!).toBe(p.length);
    expect(verifiesTo0(r, 0, 20)).toBe(true);
    expect(r.subarray(20)).toEqual(inner);
  });

  it('counts packets nobody claims, shows all to the tap, refuses non-IPv4', () => {
    const net = new MemoryRawNetwork({ autoDeliver: false });
    const s = net.socket('10.0.0.1', 4);
    const tapped: number[] = [];
    net.tap = (p) => tapped.push(p.length);
    expect(s.send(buildIpip('10.0.0.1', '10.0.0.9', new Uint8Array(8)))).toBe(true);
    expect(net.unclaimed).toBe(1);
    expect(tapped).toEqual([28]);
    expect(s.send(new Uint8Array(30).fill(0x60))).toBe(false);
    expect(s.send(new Uint8Array(10).fill(0x45))).toBe(false);
    expect(s.stats().txInvalid).toBe(2);
  });
});
