import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TcpCoalescer } from '../../../src/io/coalesce.ts';
import { segmentTcp4 } from '../../../src/io/gso.ts';
import { SlotBuffer, SpanList } from '../../../src/io/slots.ts';
import { newVirtioNetHdr, readVirtioNetHdr, VirtioGso } from '../../../src/io/virtio.ts';
import { fold, pseudoHeaderSumFromIp, updateChecksum16, verifiesTo0 } from '../../../src/wire/checksum.ts';
import { buildTcp4, buildUdp4 } from '../../../scripts/bench/io-packets.ts';

const built = existsSync(
  new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
);
const be16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const be32 = (b: Uint8Array, o: number) =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const TS_OPTION = new Uint8Array([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);

/** The segments a sender's TSO would have put on the wire for one flow's super-packet. */
function wireSegments(
  flow: number,
  payload: Uint8Array,
  mss: number,
  seq: number,
  psh: boolean,
): Uint8Array[] {
  const sp = buildTcp4(
    {
      src: '198.51.100.30',
      dst: '10.0.0.1',
      srcPort: 5201,
      dstPort: 40000 + flow,
      seq,
      ack: 777,
      flags: psh ? 0x18 : 0x10,
      options: TS_OPTION,
      partialChecksum: true,
    },
    payload,
  );
  const out = new SlotBuffer(1024, 2048, 64);
  const n = segmentTcp4(sp, 0, sp.length, mss, out, 0) as number;
  return Array.from({ length: n }, (_, i) => out.packet(i).slice());
}

/** Runs the coalescer over packets laid out in slots, returns the output packets with their headers. */
function coalesce(co: TcpCoalescer, packets: Uint8Array[]) {
  const src = new SlotBuffer(Math.max(1, packets.length), 2048, 64);
  const spans = new SpanList(Math.max(1, packets.length));
  packets.forEach((p, i) => {
    src.put(i, p);
    spans.push(src.offset(i), p.length);
  });
  const n = co.run(src.bytes, spans.pairs, spans.count);
  const out = [];
  for (let i = 0; i < n; i++) {
    const off = co.pairs[2 * i]!;
    const len = co.pairs[2 * i + 1]!;
    out.push({
      hdr: readVirtioNetHdr(co.out.bytes, off - 10, newVirtioNetHdr()),
      packet: co.out.bytes.slice(off, off + len),
    });
  }
  return out;
}

describe.skipIf(!built)('TcpCoalescer', () => {
  it('merges one flow\u2019s in-order segments into a TCPV4 super-packet the kernel can take', () => {
    const payload = Uint8Array.from({ length: 14480 }, (_, i) => (i * 31) & 0xff);
    const segs = wireSegments(0, payload, 1448, 1000, true);
    expect(segs).toHaveLength(10);
    const co = new TcpCoalescer(64);
    const out = coalesce(co, segs);
    expect(out).toHaveLength(1);
    const { hdr, packet: p } = out[0]!;
    expect(hdr).toEqual({
      flags: 1,
      gsoType: VirtioGso.TcpV4,
      hdrLen: 52,
      gsoSize: 1448,
      csumStart: 20,
      csumOffset: 16,
    });
    expect(be16(p, 2)).toBe(p.length);
    expect(p.length).toBe(52 + payload.length);
    expect(verifiesTo0(p, 0, 20)).toBe(true);
    expect(be32(p, 24)).toBe(1000);
    expect(p[33]).toBe(0x18); // PSH of the last segment
    expect(p.subarray(40, 52)).toEqual(TS_OPTION);
    expect(p.subarray(52)).toEqual(payload);
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
    expect(be16(p, 36)).toBe(fold(pseudoHeaderSumFromIp(p, 0, 6, p.length - 20)));
    expect(co.stats()).toEqual({ segmentsIn: 10, superPackets: 1, segmentsMerged: 10, badChecksum: 0 });
  });

  it('passes through what must not be merged, in order, with zero headers', () => {
    const [s1, s2, s3] = wireSegments(0, new Uint8Array(3000).fill(1), 1000, 1, false);
    const udp = buildUdp4('198.51.100.30', '10.0.0.1', 53, 40000, 100);
    const fin = buildTcp4(
      {
        src: '198.51.100.30',
        dst: '10.0.0.1',
        srcPort: 5201,
        dstPort: 40000,
        seq: 3001,
        ack: 777,
        flags: 0x11,
        options: TS_OPTION,
      },
      new Uint8Array(0),
    );
    const bad = s3!.slice();
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    const co = new TcpCoalescer(64);
    const out = coalesce(co, [s1!, s2!, udp, bad, fin]);
    // s1+s2 merge; the UDP packet does not touch the TCP group; the corrupt s3 passes through
    // alone (and closes the group); the FIN follows as is.
    expect(out.map((o) => [o.hdr.gsoType, o.packet.length])).toEqual([
      [VirtioGso.TcpV4, 52 + 2000],
      [0, udp.length],
      [0, bad.length],
      [0, fin.length],
    ]);
    expect(out[1]!.packet).toEqual(udp);
    expect(out[2]!.packet).toEqual(bad);
    expect(out.slice(1).every((o) => o.hdr.flags === 0)).toBe(true);
    expect(co.stats().badChecksum).toBe(1);
  });

  it('splits at gaps, retransmissions and header changes', () => {
    const segs = wireSegments(0, new Uint8Array(5000).fill(2), 1000, 1, false); // 5 segments
    const co = new TcpCoalescer(64);
    // 0+1 merge; 3 leaves a gap, so it starts a group of its own; 2 arrives late and closes
    // that group; 4 does not continue 2. Nothing is merged across the hole.
    const out = coalesce(co, [segs[0]!, segs[1]!, segs[3]!, segs[2]!, segs[4]!]);
    expect(out.map((o) => be32(o.packet, 24))).toEqual([1, 3001, 2001, 4001]);
    expect(out.map((o) => o.packet.length - 52)).toEqual([2000, 1000, 1000, 1000]);
    // A window update (same flow, contiguous) also starts a new super-packet.
    const moved = segs[2]!.slice();
    const window = be16(moved, 34);
    const sum = updateChecksum16(be16(moved, 36), window, window - 1);
    moved.set([(window - 1) >> 8, (window - 1) & 0xff, sum >> 8, sum & 0xff], 34);
    const out2 = coalesce(co, [segs[0]!, segs[1]!, moved, segs[3]!]);
    // segs[3] still has the old window, so it does not join `moved` either.
    expect(out2.map((o) => be32(o.packet, 24))).toEqual([1, 2001, 3001]);
    expect(co.stats().badChecksum).toBe(0);
  });

  it('loses, adds and reorders no byte of any flow, whatever the mix (property)', () => {
    const flowArb = fc.record({
      payload: fc.uint8Array({ minLength: 1, maxLength: 12_000 }),
      mss: fc.integer({ min: 200, max: 1448 }),
      seq: fc.integer({ min: 0, max: 0xffffffff }),
      psh: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(flowArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        (flows, picks) => {
          const queues = flows.map((f, i) => wireSegments(i, f.payload, f.mss, f.seq, f.psh));
          // Interleave the flows in an arbitrary order that keeps each flow's own order.
          const mixed: Uint8Array[] = [];
          let pick = 0;
          while (queues.some((q) => q.length > 0)) {
            const live = queues.filter((q) => q.length > 0);
            const q = live[(picks[pick++] ?? 0) % live.length]!;
            mixed.push(q.shift()!);
          }
          const streams = flows.map(() => [] as number[]);
          const co = new TcpCoalescer(256);
          for (let start = 0; start < mixed.length; start += 256) {
            for (const { hdr, packet } of coalesce(co, mixed.slice(start, start + 256))) {
              const flow = be16(packet, 22) - 40000;
              let pieces: Uint8Array[] = [packet];
              if (hdr.gsoType === VirtioGso.TcpV4) {
                const seg = new SlotBuffer(128, 2048, 64);
                const n = segmentTcp4(packet, 0, packet.length, hdr.gsoSize, seg, 0) as number;
                pieces = Array.from({ length: n }, (_, i) => seg.packet(i));
              }
              for (const p of pieces) {
                expect(verifiesTo0(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, 6, p.length - 20))).toBe(
                  true,
                );
                const s = streams[flow]!;
                // In order: each piece starts where the flow's stream ends.
                expect(be32(p, 24)).toBe((flows[flow]!.seq + s.length) >>> 0);
                for (const b of p.subarray(52)) s.push(b);
              }
            }
          }
          flows.forEach((f, i) => expect(Uint8Array.from(streams[i]!)).toEqual(f.payload));
        },
      ),
      { seed: 0xc0a1e5ce, numRuns: 60 },
    );
  });

  it('refuses output slots too small for a super-packet', () => {
    const co = new TcpCoalescer(2);
    expect(() => co.run(new Uint8Array(100), new Int32Array(6), 3)).toThrow(RangeError);
  });
});
