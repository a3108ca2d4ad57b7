import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Ipv4Coalescer } from '../../../src/io/coalesce.ts';
import { segmentTcp4 } from '../../../src/io/gso.ts';
import { SlotBuffer, SpanList } from '../../../src/io/slots.ts';
import { newVirtioNetHdr, readVirtioNetHdr, VirtioGso } from '../../../src/io/virtio.ts';
import {
  fold,
  internetChecksum,
  pseudoHeaderSumFromIp,
  udpWireChecksum,
  updateChecksum16,
  verifiesTo0,
} from '../../../src/wire/checksum.ts';
import { buildTcp4, buildUdp4, writeIpv4Header } from '../../../scripts/bench/io-packets.ts';

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
function coalesce(co: Ipv4Coalescer, packets: Uint8Array[]) {
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

describe.skipIf(!built)('Ipv4Coalescer', () => {
  it('merges one flow\u2019s in-order segments into a TCPV4 super-packet the kernel can take', () => {
    const payload = Uint8Array.from({ length: 14480 }, (_, i) => (i * 31) & 0xff);
    const segs = wireSegments(0, payload, 1448, 1000, true);
    expect(segs).toHaveLength(10);
    const co = new Ipv4Coalescer(64);
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
    const co = new Ipv4Coalescer(64);
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
    const co = new Ipv4Coalescer(64);
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
          const co = new Ipv4Coalescer(256);
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
    const co = new Ipv4Coalescer(2);
    expect(() => co.run(new Uint8Array(100), new Int32Array(6), 3)).toThrow(RangeError);
  });
});

/** A UDP/IPv4 datagram of flow `flow` (destination port 40000 + flow) with a full checksum. */
function datagram(
  flow: number,
  id: number,
  payload: Uint8Array,
  o: { ttl?: number; df?: boolean; noChecksum?: boolean } = {},
): Uint8Array {
  const total = 28 + payload.length;
  const b = new Uint8Array(total);
  writeIpv4Header(
    b,
    0,
    { src: '198.51.100.30', dst: '10.0.0.1', protocol: 17, id, ttl: o.ttl ?? 64, dontFragment: o.df ?? true },
    total,
  );
  const put16 = (at: number, v: number) => b.set([(v >> 8) & 0xff, v & 0xff], at);
  put16(20, 443);
  put16(22, 40000 + flow);
  put16(24, 8 + payload.length);
  b.set(payload, 28);
  if (!o.noChecksum)
    put16(26, udpWireChecksum(internetChecksum(b, 20, total, pseudoHeaderSumFromIp(b, 0, 17, total - 20))));
  return b;
}

/**
 * What the receiving kernel makes of a UDP_L4 super-packet
 * (__udp_gso_segment after inet_gso_segment): gso_size bytes of payload a
 * datagram, the last one fewer, each with the super-packet's IPv4 header
 * but its own length, checksum and an IP ID counting up from the first's,
 * and its own UDP length; the UDP checksum written out in full here so the
 * datagram can be compared byte for byte.
 */
function kernelSplit(p: Uint8Array, gsoSize: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const id0 = be16(p, 4);
  for (let at = 28, k = 0; at < p.length; at += gsoSize, k++) {
    const payload = p.subarray(at, Math.min(p.length, at + gsoSize));
    const d = new Uint8Array(28 + payload.length);
    d.set(p.subarray(0, 28));
    d.set(payload, 28);
    const put16 = (o: number, v: number) => d.set([(v >> 8) & 0xff, v & 0xff], o);
    put16(2, d.length);
    put16(4, (id0 + k) & 0xffff);
    put16(10, 0);
    put16(10, internetChecksum(d, 0, 20));
    put16(24, 8 + payload.length);
    put16(26, 0);
    put16(
      26,
      udpWireChecksum(internetChecksum(d, 20, d.length, pseudoHeaderSumFromIp(d, 0, 17, d.length - 20))),
    );
    out.push(d);
  }
  return out;
}

/** Coalesces and splits back: the datagrams as the receiving socket's kernel would have them. */
function throughTun(co: Ipv4Coalescer, packets: Uint8Array[]): Uint8Array[] {
  return coalesce(co, packets).flatMap(({ hdr, packet }) =>
    hdr.gsoType === VirtioGso.UdpL4 ? kernelSplit(packet, hdr.gsoSize) : [packet],
  );
}

const payloadOf = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe.skipIf(!built)('Ipv4Coalescer, UDP', () => {
  it('merges one flow\u2019s datagrams into a UDP_L4 super-packet that splits back into the very same datagrams', () => {
    const ds = Array.from({ length: 10 }, (_, k) => datagram(0, 0xfffa + k, payloadOf(k === 9 ? 20 : 36, k)));
    const co = new Ipv4Coalescer(64, { udp: true });
    const out = coalesce(co, ds);
    expect(out).toHaveLength(1);
    const { hdr, packet: p } = out[0]!;
    expect(hdr).toEqual({
      flags: 1,
      gsoType: VirtioGso.UdpL4,
      hdrLen: 28,
      gsoSize: 36,
      csumStart: 20,
      csumOffset: 6,
    });
    expect(p.length).toBe(28 + 9 * 36 + 20);
    expect(be16(p, 2)).toBe(p.length);
    expect(be16(p, 24)).toBe(p.length - 20);
    expect(verifiesTo0(p, 0, 20)).toBe(true);
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum over the whole UDP length.
    expect(be16(p, 26)).toBe(fold(pseudoHeaderSumFromIp(p, 0, 17, p.length - 20)));
    // The IP IDs wrap inside the super-packet, as the kernel's count does.
    expect(kernelSplit(p, hdr.gsoSize)).toEqual(ds);
    expect(co.stats()).toEqual({ segmentsIn: 10, superPackets: 1, segmentsMerged: 10, badChecksum: 0 });
  });

  it('leaves UDP alone unless asked, as for a kernel that does not take UDP_L4', () => {
    const ds = Array.from({ length: 5 }, (_, k) => datagram(0, k, payloadOf(36, k)));
    const out = coalesce(new Ipv4Coalescer(64), ds);
    expect(out.map((o) => o.hdr.gsoType)).toEqual([0, 0, 0, 0, 0]);
    expect(out.map((o) => o.packet)).toEqual(ds);
  });

  it('merges only what would come back the same: an ID gap, TTL, DF, size, fragments and checksums split or pass through', () => {
    const p36 = (k: number) => payloadOf(36, k);
    const a = [datagram(0, 1, p36(1)), datagram(0, 2, p36(2))]; // merge
    const gap = datagram(0, 4, p36(4)); // ID 3 missing: a new group
    const ttl = datagram(0, 5, p36(5), { ttl: 63 }); // a new group
    const df = datagram(0, 6, p36(6), { df: false }); // a new group
    const larger = datagram(0, 7, payloadOf(40, 7)); // larger than its group's first: a new group
    const noSum = datagram(0, 8, p36(8), { noChecksum: true }); // passes through
    const bad = datagram(0, 9, p36(9));
    bad[bad.length - 1]! ^= 0xff; // passes through, counted
    const frag = datagram(0, 10, p36(10));
    frag[6]! |= 0x20; // MF: passes through
    const input = [...a, gap, ttl, df, larger, noSum, bad, frag];
    const co = new Ipv4Coalescer(64, { udp: true });
    const out = coalesce(co, input);
    expect(out.map((o) => [o.hdr.gsoType, o.packet.length])).toEqual([
      [VirtioGso.UdpL4, 28 + 72],
      ...[gap, ttl, df, larger, noSum, bad, frag].map((d) => [0, d.length]),
    ]);
    expect(throughTun(new Ipv4Coalescer(64, { udp: true }), input)).toEqual(input);
    expect(co.stats().badChecksum).toBe(1);
  });

  it('puts at most 64 datagrams in one super-packet, and keeps TCP and UDP flows of one address pair apart', () => {
    const ds = Array.from({ length: 70 }, (_, k) => datagram(0, k, payloadOf(36, k)));
    const co = new Ipv4Coalescer(128, { udp: true });
    expect(coalesce(co, ds).map((o) => o.packet.length)).toEqual([28 + 64 * 36, 28 + 6 * 36]);
    const [t1, t2] = wireSegments(0, new Uint8Array(2000).fill(3), 1000, 1, false);
    const mixed = [t1!, ds[0]!, t2!, ds[1]!];
    const out = coalesce(co, mixed);
    expect(out.map((o) => o.hdr.gsoType)).toEqual([VirtioGso.TcpV4, VirtioGso.UdpL4]);
  });

  it('loses, adds, changes and reorders no datagram of any flow, whatever the mix (property)', () => {
    const flowArb = fc.record({
      size: fc.integer({ min: 1, max: 1400 }),
      // Each datagram: full size, or (sometimes) shorter; its ID follows the last, or (sometimes) jumps.
      shape: fc.array(fc.record({ short: fc.nat(1400), jump: fc.boolean() }), {
        minLength: 1,
        maxLength: 80,
      }),
      id: fc.integer({ min: 0, max: 0xffff }),
    });
    fc.assert(
      fc.property(
        fc.array(flowArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 320 }),
        (flows, picks) => {
          const queues = flows.map((f, i) => {
            let id = f.id;
            return f.shape.map((d, k) => {
              id = (id + (d.jump ? 2 : 1)) & 0xffff;
              const n = d.short % 5 === 0 ? Math.max(1, d.short % f.size) : f.size;
              return datagram(i, id, payloadOf(n, k + i * 101));
            });
          });
          const sent = queues.map((q) => q.slice());
          const mixed: Uint8Array[] = [];
          let pick = 0;
          while (queues.some((q) => q.length > 0)) {
            const live = queues.filter((q) => q.length > 0);
            mixed.push(live[(picks[pick++] ?? 0) % live.length]!.shift()!);
          }
          const got = flows.map(() => [] as Uint8Array[]);
          const co = new Ipv4Coalescer(256, { udp: true });
          for (let start = 0; start < mixed.length; start += 256)
            for (const d of throughTun(co, mixed.slice(start, start + 256)))
              got[be16(d, 22) - 40000]!.push(d);
          expect(got).toEqual(sent);
        },
      ),
      { seed: 0x0d9c0a1e, numRuns: 60 },
    );
  });
});
