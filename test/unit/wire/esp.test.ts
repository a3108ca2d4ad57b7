import { createDecipheriv, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkEsp,
  emitEsp,
  emitEspPlaintext,
  EspField,
  ESP_HEADER_LENGTH,
  espLength,
  espPadLength,
  espPlaintextLength,
  EspTrailerView,
  EspView,
  parseEsp,
  parseEspTrailer,
  writeEspTrailer,
  type EspHeader,
  type EspPlaintext,
} from '../../../src/wire/esp.ts';
import { u32 as read32 } from '../../../src/wire/bytes.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { guarded, mulberry32 } from './hostile.ts';

interface Case {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  auth_algo: string | null;
  auth_key: string;
  block_size: number;
  iv: string;
  icv_length: number;
  fields: { spi: number; seq: number; padlen: number; nh: number; icv: string };
  plaintext: string;
  decrypted: string;
  ciphertext: string;
}
const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/golden/esp.json', import.meta.url), 'utf8'),
) as {
  cases: Case[];
};
const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const HMAC: Record<string, [string, number]> = {
  'HMAC-SHA1-96': ['sha1', 12],
  'SHA2-256-128': ['sha256', 16],
};

describe('ESP against scapy', () => {
  it('has NULL, AES-CBC + HMAC and AES-GCM vectors, in transport and tunnel mode', () => {
    const algos = new Set(golden.cases.map((c) => c.crypt_algo));
    expect([...algos].sort()).toEqual(['AES-CBC', 'AES-GCM', 'NULL']);
    expect(golden.cases.some((c) => c.fields.nh === 4)).toBe(true);
  });

  for (const c of golden.cases) {
    const pkt = bytes(c.hex);
    const espEnd = pkt.length;

    it(`${c.name}: header parses to scapy's fields and emits the same bytes`, () => {
      const view = new EspView(pkt, c.esp_offset);
      expect(view.check()).toBeNull();
      expect(view.spi).toBe(c.fields.spi);
      expect(view.sequence).toBe(c.fields.seq);
      expect([
        read32(pkt, c.esp_offset + EspField.SPI),
        read32(pkt, c.esp_offset + EspField.SEQUENCE),
      ]).toEqual([c.fields.spi, c.fields.seq]);
      expect(c.esp_offset + EspField.PAYLOAD).toBe(view.payloadOffset);
      expect(view.payloadOffset).toBe(c.esp_offset + 8);
      expect(hex(pkt.subarray(view.icvOffset(c.icv_length), espEnd))).toBe(c.fields.icv);
      const ivLength = c.iv.length / 2;
      expect(hex(pkt.subarray(view.payloadOffset, view.payloadOffset + ivLength))).toBe(c.iv);

      const expected: EspHeader = {
        spi: c.fields.spi,
        sequence: c.fields.seq,
        payload: pkt.subarray(c.esp_offset + 8),
      };
      expect(parseEsp(pkt, c.esp_offset)).toEqual({ ok: true, value: expected });
      const out = new Uint8Array(espLength(expected));
      emitEsp(expected, out);
      expect(out).toEqual(pkt.subarray(c.esp_offset));
    });

    it(`${c.name}: the decrypted trailer parses to scapy's pad length and next header`, () => {
      const dec = bytes(c.decrypted);
      expect(parseEspTrailer(dec, 0, dec.length)).toEqual({
        ok: true,
        value: { data: bytes(c.plaintext), padLength: c.fields.padlen, nextHeader: c.fields.nh },
      });
      const view = new EspTrailerView().wrap(dec, 0, dec.length);
      expect(view.check()).toBeNull();
      expect(view.dataLength).toBe(c.plaintext.length / 2);
      expect(view.padOffset).toBe(view.dataLength);
      expect(view.trailerOffset).toBe(dec.length - 2);
      // Writing the trailer in place for the cipher's block size gives scapy's bytes.
      const buf = new Uint8Array(dec.length + 300).fill(0xcc);
      buf.set(bytes(c.plaintext), 7);
      const end = writeEspTrailer(buf, 7, c.plaintext.length / 2, c.fields.nh, c.block_size);
      expect(hex(buf.subarray(7, end))).toBe(c.decrypted);
      expect(buf[end]).toBe(0xcc);
      expect(emitEspPlaintext(parsedPlain(dec), buf, 1)).toBe(dec.length);
      expect(hex(buf.subarray(1, 1 + dec.length))).toBe(c.decrypted);
    });

    it(`${c.name}: the vector decrypts and authenticates with node:crypto`, () => {
      const ivLength = c.iv.length / 2;
      const ct = bytes(c.ciphertext);
      const icv = bytes(c.fields.icv);
      const key = bytes(c.crypt_key);
      let plain: Uint8Array;
      if (c.crypt_algo === 'NULL') {
        plain = ct;
        // With NULL encryption the trailer is readable in place.
        const r = parseEspTrailer(pkt, c.esp_offset + 8, espEnd, c.icv_length);
        expect(r.ok && hex(r.value.data)).toBe(c.plaintext);
      } else if (c.crypt_algo === 'AES-CBC') {
        const d = createDecipheriv(`aes-${key.length * 8}-cbc`, key, bytes(c.iv)).setAutoPadding(false);
        plain = Buffer.concat([d.update(ct), d.final()]);
      } else {
        // RFC 4106: the last 4 key bytes are the salt; nonce = salt || IV; AAD = SPI || sequence.
        const k = key.subarray(0, key.length - 4);
        const nonce = Buffer.concat([key.subarray(key.length - 4), bytes(c.iv)]);
        const d = createDecipheriv(k.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', k, nonce);
        d.setAAD(pkt.subarray(c.esp_offset, c.esp_offset + 8));
        d.setAuthTag(icv);
        plain = Buffer.concat([d.update(ct), d.final()]);
      }
      expect(hex(plain)).toBe(c.decrypted);
      if (c.auth_algo !== null) {
        const [hash, len] = HMAC[c.auth_algo]!;
        const mac = createHmac(hash, bytes(c.auth_key))
          .update(pkt.subarray(c.esp_offset, espEnd - c.icv_length))
          .digest()
          .subarray(0, len);
        expect(hex(mac)).toBe(c.fields.icv);
      }
      expect(ESP_HEADER_LENGTH + ivLength + ct.length + c.icv_length).toBe(espEnd - c.esp_offset);
    });
  }
});

function parsedPlain(dec: Uint8Array): EspPlaintext {
  const r = parseEspTrailer(dec, 0, dec.length);
  if (!r.ok) throw new Error(r.reason);
  return r.value;
}

describe('ESP padding', () => {
  it('pads payload + 2 to the block size and to 4 bytes, like RFC 4303 2.4 (and scapy)', () => {
    expect(espPadLength(0, 16)).toBe(14);
    expect(espPadLength(14, 16)).toBe(0);
    expect(espPadLength(15, 16)).toBe(15);
    expect(espPadLength(2, 1)).toBe(0);
    expect(espPadLength(3, 1)).toBe(3);
    expect(espPadLength(6, 8)).toBe(0);
    expect(espPadLength(5, 1, 8)).toBe(1);
    expect(espPadLength(0, 3)).toBe(10); // lcm(3, 4) = 12
    for (let len = 0; len < 3000; len++) {
      for (const block of [1, 4, 8, 16, 32]) {
        const align = Math.max(block, 4);
        const pad = espPadLength(len, block);
        expect(pad).toBeGreaterThanOrEqual(0);
        expect(pad).toBeLessThan(align);
        expect((len + pad + 2) % align).toBe(0);
      }
    }
  });
  it('refuses block sizes it cannot pad for', () => {
    expect(() => espPadLength(1, 0)).toThrow(RangeError);
    expect(() => espPadLength(1, 512)).toThrow(RangeError);
    expect(() => espPadLength(1, 1.5)).toThrow(RangeError);
    expect(() => writeEspTrailer(new Uint8Array(10), 0, 9, 17, 16)).toThrow(RangeError);
  });
});

describe('ESP trailer rejects', () => {
  // data "abc" + padding 1..5 + pad length 5 + next header 17 + 4-byte ICV
  const good = Uint8Array.of(0x61, 0x62, 0x63, 1, 2, 3, 4, 5, 5, 17, 0xee, 0xee, 0xee, 0xee);
  it('padding bytes other than 1, 2, 3, ...', () => {
    expect(parseEspTrailer(good, 0, good.length, 4)).toEqual({
      ok: true,
      value: { data: Uint8Array.of(0x61, 0x62, 0x63), padLength: 5, nextHeader: 17 },
    });
    for (let i = 3; i < 8; i++) {
      const m = good.slice();
      m[i] = 0;
      expect(parseEspTrailer(m, 0, m.length, 4)).toEqual({ ok: false, reason: 'bad-padding' });
    }
  });
  it('a pad length longer than the plaintext', () => {
    const m = good.slice();
    m[8] = 9;
    expect(parseEspTrailer(m, 0, m.length, 4)).toEqual({ ok: false, reason: 'bad-length' });
    m[8] = 8; // exactly everything after dataOffset, but the data are not 1..8
    expect(parseEspTrailer(m, 0, m.length, 4)).toEqual({ ok: false, reason: 'bad-padding' });
  });
  it('a plaintext too short to hold the trailer before the ICV', () => {
    expect(parseEspTrailer(good, 0, 5, 4)).toEqual({ ok: false, reason: 'truncated' });
    expect(parseEspTrailer(good, 0, good.length, 13)).toEqual({ ok: false, reason: 'truncated' });
    expect(parseEspTrailer(good, 0, good.length + 1, 4)).toEqual({ ok: false, reason: 'truncated' });
    expect(new EspTrailerView().wrap(good, 9, 14, 4).check()).toBe('truncated');
  });
  it('an ESP header shorter than 8 bytes', () => {
    expect(checkEsp(new Uint8Array(7), 0, 7)).toBe('truncated');
    expect(checkEsp(new Uint8Array(8), 0, 8)).toBeNull();
    expect(parseEsp(new Uint8Array(8), 1)).toEqual({ ok: false, reason: 'truncated' });
  });
});

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const plaintext: fc.Arbitrary<EspPlaintext> = fc.record({
  data: fc.uint8Array({ maxLength: 300 }),
  padLength: fc.integer({ min: 0, max: 255 }),
  nextHeader: fc.integer({ min: 0, max: 255 }),
});

describe('ESP properties', () => {
  it('header: parse(emit(x)) deep-equals x, at any offset', () => {
    fc.assert(
      fc.property(
        fc.record({ spi: u32, sequence: u32, payload: fc.uint8Array({ maxLength: 300 }) }),
        fc.nat(40),
        (h, at) => {
          const buf = new Uint8Array(at + espLength(h));
          const n = emitEsp(h, buf, at);
          expect(parseEsp(buf, at, n)).toEqual({ ok: true, value: h });
        },
      ),
      { seed: 0xe5, numRuns: 1000 },
    );
  });
  it('trailer: parse(emit(x)) deep-equals x, with an IV before and an ICV after', () => {
    fc.assert(
      fc.property(plaintext, fc.nat(24), fc.nat(32), (p, iv, icv) => {
        const buf = new Uint8Array(iv + espPlaintextLength(p) + icv).fill(0x99);
        const n = emitEspPlaintext(p, buf, iv);
        expect(n).toBe(espPlaintextLength(p));
        expect(parseEspTrailer(buf, iv, buf.length, icv)).toEqual({ ok: true, value: p });
      }),
      { seed: 0xe6, numRuns: 2000 },
    );
  });
  it('writeEspTrailer output always parses back to the data it padded', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(1, 4, 8, 16), (data, block) => {
        const buf = new Uint8Array(data.length + 300);
        buf.set(data);
        const end = writeEspTrailer(buf, 0, data.length, 6, block);
        expect(end % Math.max(block, 4)).toBe(0);
        const r = parseEspTrailer(buf, 0, end);
        expect(r.ok && r.value.data).toEqual(data);
      }),
      { seed: 0xe7, numRuns: 500 },
    );
  });
});

function mutate(rand: () => number, src: Uint8Array): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  let b = src.slice();
  const ops = 1 + int(3);
  for (let k = 0; k < ops; k++) {
    const op = int(5);
    if (op === 0) b = b.subarray(0, int(b.length + 1)).slice();
    else if (op === 1) b = b.subarray(int(b.length + 1)).slice();
    else if (b.length > 0) {
      // Aim at the trailer half the time: pad length and the padding bytes before it.
      const i = rand() < 0.5 ? Math.max(0, b.length - 1 - int(20)) : int(b.length);
      if (op === 2) b[i]! ^= 1 << int(8);
      else if (op === 3) b[i] = int(256);
      else b[i] = [0, 1, 2, 3, 15, 16, 255][int(7)]!;
    }
  }
  return b;
}

describe('ESP malformed input', () => {
  it('never throws on 25,000 mutated payloads; fails only with its reasons; accessors stay in bounds', () => {
    const rand = mulberry32(0xe59);
    const seen = new Set<string>();
    const trailer = new EspTrailerView();
    const header = new EspView();
    const reasons: WireError[] = ['truncated', 'bad-length', 'bad-padding'];
    for (let n = 0; n < 25_000; n++) {
      const c = golden.cases[n % golden.cases.length]!;
      const m = mutate(rand, bytes(n % 2 === 0 ? c.decrypted : c.hex));
      const icv = n % 3 === 0 ? 0 : c.icv_length;
      const start = Math.floor(rand() * 12);
      const r = parseEspTrailer(m, start, m.length, icv);
      if (r.ok) {
        seen.add('ok');
        const again = new Uint8Array(espPlaintextLength(r.value));
        emitEspPlaintext(r.value, again);
        expect(parseEspTrailer(again, 0, again.length)).toEqual(r);
      } else {
        expect(reasons).toContain(r.reason);
        seen.add(r.reason);
      }
      const lo = Math.min(start, m.length);
      if (trailer.wrap(guarded(m, lo, m.length), start, m.length, icv).check() === null) {
        void [trailer.padLength, trailer.nextHeader, trailer.padOffset, trailer.dataLength];
      }
      const h = parseEsp(m, 0);
      if (!h.ok) expect(h.reason).toBe('truncated');
      if (header.wrap(guarded(m, 0, m.length), 0).check() === null) {
        void [header.spi, header.sequence, header.payloadLength];
      }
    }
    for (const r of ['ok', ...reasons]) expect(seen).toContain(r);
  });
});
