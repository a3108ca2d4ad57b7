/**
 * Malformed input, seeded: truncations, length fields that lie, random
 * bytes over valid packets, nonsense spans. The engine must answer every
 * one with a verdict from its list, never throw, and never write outside
 * the span's room.
 */
import { describe, expect, it } from 'vitest';
import { INBOUND_VERDICTS, OUTBOUND_VERDICTS } from '../../../src/ipsec/engine.ts';
import { PacketSpan } from '../../../src/ipsec/types.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import { enginePair, lcg, place, taken, udpPacket, type PairOptions } from './helpers.ts';

const CONFIGS: PairOptions[] = [
  { suite: 'gcm128' },
  { suite: 'cbc128', mode: 'tunnel' },
  { suite: 'null', encap: true },
  { suite: 'gcm256', encap: true, mode: 'tunnel' },
  { suite: 'cbc256', esn: true },
  { protocol: 'ah' },
  { protocol: 'ah', mode: 'tunnel' },
];

function fixChecksum(b: Uint8Array, hl: number): void {
  if (b.length < 20 || hl > b.length) return;
  b[10] = 0;
  b[11] = 0;
  const c = internetChecksum(b, 0, hl);
  b[10] = c >>> 8;
  b[11] = c & 0xff;
}

/** One mutation of a valid protected packet, chosen by `r`. */
function mutate(w: Uint8Array, r: () => number): Uint8Array {
  const kind = r() % 7;
  let b = w.slice();
  switch (kind) {
    case 0: // truncated anywhere
      b = b.slice(0, r() % (b.length + 1));
      break;
    case 1: // total length lies, checksum fixed so it is believed
      if (b.length >= 20) {
        const len = r() % 0x10000;
        b[2] = len >>> 8;
        b[3] = len & 0xff;
        fixChecksum(b, 20);
      }
      break;
    case 2: // IHL lies
      if (b.length >= 20) {
        b[0] = 0x40 | (r() % 16);
        fixChecksum(b, Math.min(b.length, (b[0]! & 0x0f) * 4));
      }
      break;
    case 3: // random bytes past the IP header (ESP/AH/UDP fields, pad length, ...)
      for (let i = 0, n = 1 + (r() % 6); i < n && b.length > 20; i++)
        b[20 + (r() % (b.length - 20))] = r() & 0xff;
      break;
    case 4: // the protocol changes under the same bytes
      if (b.length >= 20) {
        b[9] = [50, 51, 17, 4, 6, 1, r() & 0xff][r() % 7]!;
        fixChecksum(b, 20);
      }
      break;
    case 5: // UDP length field (ESP-in-UDP) lies
      if (b.length >= 28) {
        const len = r() % 0x10000;
        b[24] = len >>> 8;
        b[25] = len & 0xff;
      }
      break;
    default: // garbage of any length
      b = new Uint8Array(r() % 200).map(() => r() & 0xff);
      if (b.length >= 20 && r() % 2 === 0) {
        b[0] = 0x45;
        b[2] = b.length >>> 8;
        b[3] = b.length & 0xff;
        fixChecksum(b, 20);
      }
  }
  return b;
}

describe('malformed input never throws', () => {
  for (const o of CONFIGS) {
    const name = `${o.protocol ?? 'esp'} ${o.suite ?? ''} ${o.mode ?? 'transport'}${o.encap ? ' udp' : ''}${o.esn ? ' esn' : ''}`;
    it(`inbound, ${name}: 1000 mutated packets`, () => {
      const r = lcg(0x4303 + name.length);
      const pair = enginePair(o);
      const wires: Uint8Array[] = [];
      for (let i = 0; i < 20; i++) {
        const p = place(udpPacket(1024 + i, 53, new Uint8Array(r() % 120).fill(i)));
        expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
        wires.push(taken(p));
      }
      const seen = new Set<string>();
      for (let i = 0; i < 1000; i++) {
        const bad = mutate(wires[i % wires.length]!, r);
        const headroom = 32;
        const buf = new Uint8Array(headroom + bad.length + 64).fill(0xee);
        buf.set(bad, headroom);
        const span = new PacketSpan(headroom, bad.length, headroom - 16, headroom + bad.length + 32);
        const v = pair.receiver.inbound(buf, span);
        expect(INBOUND_VERDICTS).toContain(v);
        seen.add(v);
        // Nothing written outside the room.
        expect(buf.subarray(0, headroom - 16).every((x) => x === 0xee)).toBe(true);
        expect(buf.subarray(headroom + bad.length + 32).every((x) => x === 0xee)).toBe(true);
        if (v === 'accepted' || v === 'bypass') {
          expect(span.offset).toBeGreaterThanOrEqual(span.roomStart);
          expect(span.offset + span.length).toBeLessThanOrEqual(span.roomEnd);
        }
      }
      // The mutations reach past the first checks.
      expect(seen.has('malformed')).toBe(true);
      expect(seen.size).toBeGreaterThan(3);
    });
  }

  it('outbound: 2000 random datagrams through a protect-everything policy', () => {
    const r = lcg(4301);
    for (const o of CONFIGS) {
      const pair = enginePair(o);
      for (let i = 0; i < 300; i++) {
        const base = udpPacket(1024 + (r() % 1000), 53, new Uint8Array(r() % 64));
        const bad = mutate(base, r);
        const buf = new Uint8Array(64 + bad.length + 64);
        buf.set(bad, 64);
        const span = new PacketSpan(64, bad.length, 0, buf.length);
        const v = pair.sender.outbound(buf, span);
        expect(OUTBOUND_VERDICTS).toContain(v);
      }
    }
  });

  it('spans that do not fit their buffer are refused, not followed', () => {
    const pair = enginePair();
    const buf = new Uint8Array(100);
    for (const span of [
      new PacketSpan(50, 60, 0, 100),
      new PacketSpan(-1, 20, 0, 100),
      new PacketSpan(10, 20, 20, 100),
      new PacketSpan(0, 20, 0, 200),
      new PacketSpan(0, -5, 0, 100),
    ]) {
      expect(pair.sender.outbound(buf, span)).toBe('no-room');
      expect(pair.receiver.inbound(buf, span)).toBe('malformed');
    }
  });
});
