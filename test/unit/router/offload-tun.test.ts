import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SlotBuffer } from '../../../src/io/slots.ts';
import { OffloadTun, offloadByDefault } from '../../../src/io/offload-tun.ts';
import { pseudoHeaderSumFromIp, verifiesTo0 } from '../../../src/wire/checksum.ts';
import { buildUdp4 } from '../../../scripts/bench/io-packets.ts';
import { be16, be32, gsoHdr, pattern, segment, superPacket, VnetTunDouble } from './offload-double.ts';

const built = existsSync(
  new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
);
const FLOW = { src: '203.0.113.3', dst: '198.51.100.30', srcPort: 5201, dstPort: 1030 };
const SEQ = 0xfffff000; // wraps inside the super-packet

const tcpVerifies = (p: Uint8Array): boolean =>
  verifiesTo0(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, 6, p.length - 20));

/** Collects every batch the handler sees, as copies. */
function reader(tun: OffloadTun): Uint8Array[][] {
  const batches: Uint8Array[][] = [];
  tun.onBatch((count) => {
    const b: Uint8Array[] = [];
    for (let i = 0; i < count; i++) b.push(tun.slots.packet(i).slice());
    batches.push(b);
  });
  return batches;
}

describe('offloadByDefault', () => {
  it('is on unless DISTNAT_TUN_OFFLOAD turns it off', () => {
    expect(offloadByDefault({})).toBe(true);
    expect(offloadByDefault({ DISTNAT_TUN_OFFLOAD: 'on' })).toBe(true);
    for (const v of ['off', 'OFF', '0', 'false', 'no'])
      expect(offloadByDefault({ DISTNAT_TUN_OFFLOAD: v })).toBe(false);
  });
});

describe.skipIf(!built)('OffloadTun, reading', () => {
  it('cuts a super-packet into MSS segments with complete checksums, in order, the payload intact', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev);
    const batches = reader(tun);
    const payload = pattern(60_000);
    dev.read({ packet: superPacket(FLOW, SEQ, payload), hdr: gsoHdr(1440) });
    expect(batches).toHaveLength(1);
    const segs = batches[0]!;
    expect(segs).toHaveLength(Math.ceil(60_000 / 1440));
    const joined: number[] = [];
    segs.forEach((s, k) => {
      expect(s.length).toBeLessThanOrEqual(1480);
      expect(be16(s, 2)).toBe(s.length);
      expect(verifiesTo0(s, 0, 20)).toBe(true);
      expect(tcpVerifies(s)).toBe(true);
      expect(be32(s, 24)).toBe((SEQ + k * 1440) >>> 0);
      expect(be16(s, 4)).toBe(0x100 + k);
      expect(s[33]! & 0x08).toBe(k === segs.length - 1 ? 0x08 : 0); // PSH on the last only
      joined.push(...s.subarray(40));
    });
    expect(Uint8Array.from(joined)).toEqual(payload);
    expect(tun.offloadStats().events).toMatchObject({ 'super-packets': 1, segments: segs.length });
  });

  it('hands the segments over in several batches when the slots fill, none lost or reordered', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev, { slotCount: 16 });
    const batches = reader(tun);
    const ack = segment({ ...FLOW }, 5, new Uint8Array(0));
    dev.read(
      { packet: superPacket(FLOW, 0, pattern(14_400)), hdr: gsoHdr(1440) }, // 10
      { packet: ack }, // 1
      { packet: superPacket(FLOW, 14_400, pattern(12_000, 14_400)), hdr: gsoHdr(1000) }, // 12
      { packet: superPacket(FLOW, 99_999, pattern(17_000)), hdr: gsoHdr(1000) }, // 17: never fits
    );
    expect(batches.map((b) => b.length)).toEqual([11, 12]);
    expect(tun.offloadStats().drops['gso-no-room']).toBe(1);
    const all = batches.flat();
    expect(all[10]).toEqual(ack);
    const data = all.filter((p) => p !== all[10]);
    const joined = data.flatMap((s) => [...s.subarray(40)]);
    expect(Uint8Array.from(joined)).toEqual(pattern(26_400));
    expect(data.map((s) => be32(s, 24))).toEqual([
      ...Array.from({ length: 10 }, (_, k) => k * 1440),
      ...Array.from({ length: 12 }, (_, k) => 14_400 + k * 1000),
    ]);
  });

  it('completes a partial checksum, passes a plain packet as it is, drops what it cannot make sendable', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev);
    const batches = reader(tun);
    const full = segment(FLOW, 77, pattern(300));
    const partial = superPacket(FLOW, 77, pattern(300), 0x10);
    const udp = buildUdp4(FLOW.src, FLOW.dst, 53, 1030, 64);
    dev.read(
      { packet: partial, hdr: { flags: 1, csumStart: 20, csumOffset: 16 } },
      { packet: udp },
      { packet: udp, hdr: { gsoType: 3, gsoSize: 1000 } }, // UDP GSO: never offered, never sent
      { packet: udp, hdr: gsoHdr(1440) }, // TCPV4 over UDP
      { packet: partial, hdr: { flags: 1, csumStart: 20, csumOffset: 400 } }, // outside the packet
    );
    expect(batches).toHaveLength(1);
    const completed = partial.slice();
    completed.set(full.subarray(36, 38), 36); // the TCP checksum, as a full computation gives it
    expect(batches[0]![0]).toEqual(completed);
    expect(tcpVerifies(batches[0]![0]!)).toBe(true);
    expect(batches[0]![1]).toEqual(udp);
    expect(batches[0]).toHaveLength(2);
    const s = tun.offloadStats();
    expect(s.events['checksums-completed']).toBe(1);
    expect(s.drops).toMatchObject({ 'gso-unsupported': 1, 'gso-not-tcp': 1, 'csum-bad-offset': 1 });
  });

  it('stops and resumes reading with the device', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev);
    const batches = reader(tun);
    tun.onBatch(null);
    dev.read({ packet: segment(FLOW, 1, pattern(10)) });
    expect(batches).toHaveLength(0);
    tun.close();
    expect(dev.closed).toBe(true);
  });
});

describe.skipIf(!built)('OffloadTun, writing', () => {
  /** Lays packets out in slots as a forwarder would have them and sends them through `tun`. */
  function send(tun: OffloadTun, packets: Uint8Array[]): number {
    const slots = new SlotBuffer(Math.max(1, packets.length));
    const pairs = new Int32Array(2 * packets.length);
    packets.forEach((p, i) => {
      slots.put(i, p);
      pairs[2 * i] = slots.offset(i);
      pairs[2 * i + 1] = p.length;
    });
    return tun.sendBatch(slots.bytes, pairs, packets.length);
  }

  it('writes a flow of segments as one super-packet with a TCPV4 header, other packets with a zero one', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev);
    const to = { src: '10.0.0.1', dst: '203.0.113.3', srcPort: 1030, dstPort: 5201 };
    const segs = Array.from({ length: 20 }, (_, k) => segment(to, 1000 + k * 1440, pattern(1440, k * 1440)));
    const udp = buildUdp4(to.src, to.dst, 1031, 53, 40);
    expect(send(tun, [...segs, udp])).toBe(21);
    expect(dev.written).toHaveLength(2);
    const [sp, plain] = dev.written;
    expect(sp!.hdr).toMatchObject({ gsoType: 1, gsoSize: 1440, flags: 1, csumStart: 20, csumOffset: 16 });
    expect(be16(sp!.packet, 2)).toBe(40 + 20 * 1440);
    expect(be32(sp!.packet, 24)).toBe(1000);
    expect(sp!.packet.subarray(40)).toEqual(pattern(20 * 1440));
    expect(plain!.hdr).toEqual({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
    expect(plain!.packet).toEqual(udp);
    expect(tun.offloadStats().events).toMatchObject({ writes: 2, 'writes-saved': 19 });
  });

  it('takes batches larger than the coalescer in chunks, and counts refused writes', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev, { coalesceBatch: 8 });
    const to = { src: '10.0.0.1', dst: '203.0.113.3', srcPort: 1030, dstPort: 5201 };
    // Distinct flows never merge: 20 packets, 20 writes, in chunks of 8.
    const pkts = Array.from({ length: 20 }, (_, k) => segment({ ...to, srcPort: 2000 + k }, 1, pattern(100)));
    expect(send(tun, pkts)).toBe(20);
    expect(dev.written.map((w) => w.packet)).toEqual(pkts);
    dev.acceptLimit = dev.written.length + 3;
    expect(send(tun, pkts)).toBe(3);
  });

  it('without coalescing writes every packet as it is', () => {
    const dev = new VnetTunDouble();
    const tun = new OffloadTun(dev, { coalesce: false });
    const to = { src: '10.0.0.1', dst: '203.0.113.3', srcPort: 1030, dstPort: 5201 };
    const segs = Array.from({ length: 4 }, (_, k) => segment(to, k * 100, pattern(100)));
    expect(send(tun, segs)).toBe(4);
    expect(dev.written.map((w) => w.packet)).toEqual(segs);
    expect(dev.written.every((w) => w.hdr.gsoType === 0)).toBe(true);
  });
});
