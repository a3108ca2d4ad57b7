import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  completeChecksum,
  completeChecksumNative,
  segmentTcp4,
  segmentTcp4Native,
  vnetAction,
} from '../../../src/io/gso.ts';
import { SlotBuffer } from '../../../src/io/slots.ts';
import { newVirtioNetHdr, readVirtioNetHdr, VirtioGso, writeVirtioNetHdr } from '../../../src/io/virtio.ts';
import { pseudoHeaderSumFromIp, verifiesTo0 } from '../../../src/wire/checksum.ts';
import { buildTcp4, buildUdp4 } from '../../../scripts/bench/io-packets.ts';

const built = existsSync(
  new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
);
const be16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const be32 = (b: Uint8Array, o: number) =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

type Segmenter = typeof segmentTcp4;
const implementations: [string, Segmenter][] = [['js', segmentTcp4]];
if (built) implementations.push(['native', segmentTcp4Native]);

interface Case {
  payload: Uint8Array;
  mss: number;
  flags: number;
  seq: number;
  id: number;
  options: Uint8Array;
  partial: boolean;
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  payload: fc.uint8Array({ minLength: 0, maxLength: 20_000 }),
  mss: fc.integer({ min: 1, max: 1460 }),
  flags: fc.integer({ min: 0, max: 255 }).map((f) => (f | 0x10) & ~0x06), // ACK set, no SYN/RST
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  id: fc.integer({ min: 0, max: 0xffff }),
  options: fc.constantFrom(new Uint8Array(0), new Uint8Array([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])),
  partial: fc.boolean(),
});

function superPacket(c: Case): Uint8Array {
  return buildTcp4(
    {
      src: '198.51.100.30',
      dst: '203.0.113.3',
      srcPort: 40000,
      dstPort: 5201,
      seq: c.seq,
      ack: 12345,
      flags: c.flags,
      options: c.options,
      id: c.id,
      partialChecksum: c.partial,
    },
    c.payload,
  );
}

/** Checks the segments against the rules, independently of how they were made. */
function checkSegments(c: Case, out: SlotBuffer, first: number, n: number): void {
  const thl = 20 + c.options.length;
  const expected = c.payload.length === 0 ? 1 : Math.ceil(c.payload.length / c.mss);
  expect(n).toBe(expected);
  const joined: number[] = [];
  for (let k = 0; k < n; k++) {
    const p = out.packet(first + k);
    const segLen = p.length - 20 - thl;
    expect(segLen).toBe(k < n - 1 ? c.mss : c.payload.length - k * c.mss);
    expect(be16(p, 2)).toBe(p.length);
    expect(be16(p, 4)).toBe((c.id + k) & 0xffff);
    expect(verifiesTo0(p, 0, 20)).toBe(true);
    expect(be32(p, 24)).toBe((c.seq + k * c.mss) >>> 0);
    expect(be32(p, 28)).toBe(12345);
    const f = p[33]!;
    const last = k === n - 1;
    expect(f & 0x01).toBe(last ? c.flags & 0x01 : 0);
    expect(f & 0x08).toBe(last ? c.flags & 0x08 : 0);
    expect(f & 0x80).toBe(k === 0 ? c.flags & 0x80 : 0);
    expect(f & 0x76).toBe(c.flags & 0x76); // the others unchanged
    expect(p.subarray(40, 20 + thl)).toEqual(c.options);
    expect(verifiesTo0(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, 6, p.length - 20))).toBe(true);
    for (const byte of p.subarray(20 + thl)) joined.push(byte);
  }
  expect(Uint8Array.from(joined)).toEqual(c.payload);
}

describe.each(implementations)('segmentTcp4 (%s)', (_name, segment) => {
  it('cuts any super-packet into MSS segments with right lengths, ids, seqs, flags and checksums', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const src = superPacket(c);
        const out = new SlotBuffer(1024, 1600, 64);
        const n = segment(src, 0, src.length, c.mss, out, 3);
        expect(typeof n).toBe('number');
        checkSegments(c, out, 3, n as number);
      }),
      { seed: 0x0d157a7, numRuns: 150 },
    );
  });

  it('takes the packet from any offset in a larger buffer and leaves the slot headroom alone', () => {
    const c: Case = {
      payload: new Uint8Array(3000).fill(7),
      mss: 1448,
      flags: 0x19,
      seq: 1,
      id: 9,
      options: new Uint8Array(0),
      partial: true,
    };
    const p = superPacket(c);
    const big = new Uint8Array(p.length + 100);
    big.set(p, 37);
    const out = new SlotBuffer(8, 2048, 64);
    out.bytes.fill(0xee);
    expect(segment(big, 37, p.length, 1448, out, 0)).toBe(3);
    checkSegments(c, out, 0, 3);
    expect(out.bytes.subarray(0, 64).every((b) => b === 0xee)).toBe(true);
  });

  it('returns reasons, never throws, for what it cannot segment', () => {
    const tcp = superPacket({
      payload: new Uint8Array(5000),
      mss: 1000,
      flags: 0x10,
      seq: 0,
      id: 0,
      options: new Uint8Array(0),
      partial: false,
    });
    const out = new SlotBuffer(4, 2048, 64);
    expect(segment(tcp, 0, tcp.length, 1000, out, 0)).toBe('gso-no-room'); // 5 segments, 4 slots
    expect(segment(tcp, 0, tcp.length, 0, out, 0)).toBe('gso-bad-size');
    expect(segment(tcp, 0, 100, 1000, out, 0)).toBe('gso-bad-length');
    expect(segment(tcp, 0, 10, 1000, out, 0)).toBe('gso-not-ipv4');
    const udp = buildUdp4('10.0.0.1', '10.0.0.2', 1, 2, 100);
    expect(segment(udp, 0, udp.length, 1000, out, 0)).toBe('gso-not-tcp');
    const v6 = tcp.slice();
    v6[0] = 0x60;
    expect(segment(v6, 0, v6.length, 1000, out, 0)).toBe('gso-not-ipv4');
    const small = new SlotBuffer(8, 600, 64);
    expect(segment(tcp, 0, tcp.length, 1000, small, 0)).toBe('gso-no-room'); // a segment larger than a slot
  });
});

describe.skipIf(!built)('native and JS segmentation agree', () => {
  it('byte for byte', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const src = superPacket(c);
        const a = new SlotBuffer(1024, 1600, 64);
        const b = new SlotBuffer(1024, 1600, 64);
        const na = segmentTcp4(src, 0, src.length, c.mss, a, 0);
        const nb = segmentTcp4Native(src, 0, src.length, c.mss, b, 0);
        expect(nb).toBe(na);
        // Buffer.equals: toEqual over megabytes is far too slow for a property.
        expect(Buffer.from(b.bytes.buffer).equals(Buffer.from(a.bytes.buffer))).toBe(true);
      }),
      { seed: 0x5e9, numRuns: 60 },
    );
  });
});

const completers: [string, typeof completeChecksum][] = [['js', completeChecksum]];
if (built) completers.push(['native', completeChecksumNative]);

describe.each(completers)('completeChecksum (%s)', (_name, complete) => {
  it('turns a CHECKSUM_PARTIAL TCP packet of any length into one whose checksum verifies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 0, max: 50 }), (payload, at) => {
        const p = buildTcp4(
          {
            src: '10.0.0.1',
            dst: '10.0.0.2',
            srcPort: 1,
            dstPort: 2,
            seq: 5,
            flags: 0x18,
            partialChecksum: true,
          },
          payload,
        );
        const full = buildTcp4(
          { src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2, seq: 5, flags: 0x18 },
          payload,
        );
        const buf = new Uint8Array(p.length + at);
        buf.set(p, at);
        expect(complete(buf, at, p.length, 20, 16)).toBe(true);
        expect(buf.subarray(at)).toEqual(full);
      }),
      { seed: 42, numRuns: 200 },
    );
  });

  it('refuses offsets outside the packet', () => {
    const p = new Uint8Array(60);
    expect(complete(p, 0, 60, 50, 16)).toBe('csum-bad-offset');
    expect(complete(p, 0, 60, -1, 16)).toBe('csum-bad-offset');
  });
});

describe('virtio_net_hdr', () => {
  it('round-trips little-endian fields and says what a packet needs', () => {
    const h = {
      flags: 1,
      gsoType: VirtioGso.TcpV4 | VirtioGso.Ecn,
      hdrLen: 66,
      gsoSize: 1448,
      csumStart: 20,
      csumOffset: 16,
    };
    const b = new Uint8Array(12);
    writeVirtioNetHdr(b, 2, h);
    expect([...b.subarray(2, 12)]).toEqual([1, 0x81, 66, 0, 0xa8, 0x05, 20, 0, 16, 0]);
    const r = readVirtioNetHdr(b, 2, newVirtioNetHdr());
    expect(r).toEqual(h);
    expect(vnetAction(r)).toBe('segment');
    expect(vnetAction({ ...r, gsoType: 0 })).toBe('checksum');
    expect(vnetAction({ ...r, gsoType: 0, flags: 0 })).toBe('plain');
    expect(vnetAction({ ...r, gsoType: VirtioGso.TcpV6 })).toBe('gso-unsupported');
  });
});
