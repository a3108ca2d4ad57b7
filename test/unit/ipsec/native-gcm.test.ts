/**
 * The addon's AES-GCM (native-gcm.ts over aead.cc) against the Node suite it
 * replaces and against scapy's vectors: same bytes sealed, each other's
 * packets opened, forgeries refused with the packet left as it was.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNative } from '../../../src/io/native.ts';
import { createEspTransform } from '../../../src/ipsec/esp-transform.ts';
import type { EspTransform } from '../../../src/ipsec/types.ts';
import { AeadResult } from '../../../src/io/native.ts';
import { NativeGcmTransform, nativeGcmAvailable } from '../../../src/ipsec/native-gcm.ts';
import { bytes, fixedIv, golden, hex } from './helpers.ts';

interface SecEspCase {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  decrypted: string;
}
interface IpsecEspCase {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  esn_high: number | null;
}

const gcm = (key: Uint8Array, implementation: 'native' | 'node'): EspTransform =>
  createEspTransform({ encryption: 'aes-gcm-16', encryptionKey: key, implementation });

/** Offsets of an ESP packet whose header starts at `esp` and whose ICV is its last 16 bytes. */
const layout = (pkt: Uint8Array, esp: number) => ({ esp, ivEnd: esp + 16, icvAt: pkt.length - 16 });

const scapyEsp = golden<{ cases: SecEspCase[] }>('esp.json').cases.filter((c) => c.crypt_algo === 'AES-GCM');
const scapyIpsec = golden<{ esp: IpsecEspCase[] }>('ipsec.json').esp.filter(
  (c) => c.crypt_algo === 'AES-GCM',
);

describe('native AES-GCM transform', () => {
  it('is built into the addon (npm install builds it)', () => {
    expect(nativeGcmAvailable()).toBe(true);
  });

  describe('factory', () => {
    const saved = process.env.DISTNAT_ESP_CRYPTO;
    afterEach(() => {
      if (saved === undefined) delete process.env.DISTNAT_ESP_CRYPTO;
      else process.env.DISTNAT_ESP_CRYPTO = saved;
    });
    const key = bytes('000102030405060708090a0b0c0d0e0f10111213');

    it('prefers the native transform, keeps Node on request', () => {
      delete process.env.DISTNAT_ESP_CRYPTO;
      expect(createEspTransform({ encryption: 'aes-gcm-16', encryptionKey: key })).toBeInstanceOf(
        NativeGcmTransform,
      );
      expect(gcm(key, 'node')).not.toBeInstanceOf(NativeGcmTransform);
      process.env.DISTNAT_ESP_CRYPTO = 'node';
      expect(createEspTransform({ encryption: 'aes-gcm-16', encryptionKey: key })).not.toBeInstanceOf(
        NativeGcmTransform,
      );
      expect(gcm(key, 'native')).toBeInstanceOf(NativeGcmTransform);
    });

    it('refuses key lengths AES-GCM does not have', () => {
      for (const n of [0, 4, 16, 19, 21, 40]) {
        expect(() => gcm(new Uint8Array(n), 'native')).toThrow(RangeError);
      }
      const Context = loadNative().AesGcmContext!;
      expect(() => new Context(new Uint8Array(17))).toThrow(RangeError);
    });
  });

  describe.each(scapyEsp.map((c) => [c.name, c] as const))('scapy esp.json %s', (_, c) => {
    it('opens scapy’s packet and seals the plaintext back into it', () => {
      const pkt = bytes(c.hex);
      const { esp, ivEnd, icvAt } = layout(pkt, c.esp_offset);
      const t = gcm(bytes(c.crypt_key), 'native');
      const buf = pkt.slice();
      expect(t.open(buf, esp, ivEnd, icvAt, -1)).toBe(true);
      expect(hex(buf.subarray(ivEnd, icvAt))).toBe(c.decrypted);
      t.seal(buf, esp, ivEnd, icvAt, -1);
      expect(hex(buf)).toBe(c.hex);
    });
  });

  describe.each(scapyIpsec.map((c) => [c.name, c] as const))('scapy ipsec.json %s', (_, c) => {
    it('opens it to what Node opens it to and seals it back', () => {
      const pkt = bytes(c.hex);
      const { esp, ivEnd, icvAt } = layout(pkt, c.esp_offset);
      const seqHigh = c.esn_high ?? -1;
      const native = pkt.slice();
      const node = pkt.slice();
      expect(gcm(bytes(c.crypt_key), 'native').open(native, esp, ivEnd, icvAt, seqHigh)).toBe(true);
      expect(gcm(bytes(c.crypt_key), 'node').open(node, esp, ivEnd, icvAt, seqHigh)).toBe(true);
      expect(hex(native)).toBe(hex(node));
      expect(hex(native)).not.toBe(c.hex);
      gcm(bytes(c.crypt_key), 'native').seal(native, esp, ivEnd, icvAt, seqHigh);
      expect(hex(native)).toBe(c.hex);
      if (seqHigh >= 0) {
        // The ESN high half is in the AAD though not on the wire.
        const wrong = pkt.slice();
        expect(gcm(bytes(c.crypt_key), 'native').open(wrong, esp, ivEnd, icvAt, seqHigh + 1)).toBe(false);
        expect(hex(wrong)).toBe(c.hex);
      }
    });
  });

  /** A packet of `payload` bytes after the ESP header, with `pre` and `post` bytes of slot around it. */
  const arbPacket = fc.record({
    keyLength: fc.constantFrom(16, 24, 32),
    keySeed: fc.uint8Array({ minLength: 36, maxLength: 36 }),
    header: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    iv: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    payload: fc.uint8Array({ minLength: 2, maxLength: 1500 }),
    seqHigh: fc.oneof(fc.constant(-1), fc.nat({ max: 0xffffffff })),
    pre: fc.nat({ max: 40 }),
    post: fc.nat({ max: 40 }),
  });

  type PacketCase = typeof arbPacket extends fc.Arbitrary<infer T> ? T : never;

  function place(p: PacketCase) {
    const key = p.keySeed.slice(0, p.keyLength + 4);
    const esp = p.pre;
    const ivEnd = esp + 16;
    const end = ivEnd + p.payload.length;
    const buf = new Uint8Array(end + 16 + p.post).fill(0xa5);
    buf.set(p.header, esp);
    buf.set(p.iv, esp + 8);
    buf.set(p.payload, ivEnd);
    return { key, buf, esp, ivEnd, end };
  }

  it('seals exactly what Node seals, and each opens the other’s packets', () => {
    fc.assert(
      fc.property(arbPacket, (p) => {
        const { key, buf, esp, ivEnd, end } = place(p);
        const native = gcm(key, 'native');
        const node = gcm(key, 'node');
        const a = buf.slice();
        const b = buf.slice();
        native.seal(a, esp, ivEnd, end, p.seqHigh);
        node.seal(b, esp, ivEnd, end, p.seqHigh);
        expect(hex(a)).toBe(hex(b));
        expect(native.open(b, esp, ivEnd, end, p.seqHigh)).toBe(true);
        expect(node.open(a, esp, ivEnd, end, p.seqHigh)).toBe(true);
        // Only the payload changes back; the ICV stays, the slot around is untouched.
        const expected = buf.slice();
        expected.set(a.subarray(end, end + 16), end);
        expect(hex(a)).toBe(hex(expected));
        expect(hex(b)).toBe(hex(expected));
      }),
      { seed: 0x6c3a, numRuns: 300 },
    );
  });

  it('works on any view: a Uint8Array at an offset in its ArrayBuffer, or the ArrayBuffer itself', () => {
    const key = bytes('000102030405060708090a0b0c0d0e0f10111213');
    const Context = loadNative().AesGcmContext!;
    const ctx = new Context(key);
    const whole = new Uint8Array(256).map((_, i) => i);
    const view = whole.subarray(37, 37 + 100);
    const reference = view.slice();
    gcm(key, 'node').seal(reference, 0, 16, 84, -1);
    expect(ctx.seal(view, 0, 16, 84, -1)).toBe(AeadResult.Done);
    expect(hex(view)).toBe(hex(reference));
    expect(hex(whole.subarray(0, 37))).toBe(hex(new Uint8Array(37).map((_, i) => i)));
    const ab = reference.slice().buffer;
    expect(ctx.open(ab as unknown as Uint8Array, 0, 16, 84, -1)).toBe(AeadResult.Done);
    expect(hex(new Uint8Array(ab).subarray(16, 84))).toBe(
      hex(whole.subarray(37 + 16, 37 + 84).map((_, i) => 37 + 16 + i)),
    );
  });

  it('refuses every single-bit flip of header, IV, cipher text and ICV, leaving the packet as it came', () => {
    for (const keyLength of [16, 32]) {
      const key = new Uint8Array(keyLength + 4).map((_, i) => i * 7 + 1);
      const t = gcm(key, 'native');
      const buf = new Uint8Array(8 + 16 + 45 + 16 + 8).map((_, i) => i * 13);
      const esp = 8;
      const ivEnd = esp + 16;
      const end = ivEnd + 45;
      t.seal(buf, esp, ivEnd, end, 7);
      const sealed = buf.slice();
      let refused = 0;
      for (let bit = esp * 8; bit < (end + 16) * 8; bit++) {
        const forged = sealed.slice();
        forged[bit >>> 3]! ^= 0x80 >>> (bit & 7);
        const before = forged.slice();
        if (!t.open(forged, esp, ivEnd, end, 7)) refused += 1;
        expect(hex(forged)).toBe(hex(before));
      }
      expect(refused).toBe((end + 16 - esp) * 8);
      const ok = sealed.slice();
      expect(t.open(ok, esp, ivEnd, end, 7)).toBe(true);
    }
  });

  it('answers out-of-range offsets and a closed context with a status, not an exception', () => {
    const Context = loadNative().AesGcmContext!;
    const ctx = new Context(new Uint8Array(20));
    const buf = new Uint8Array(100);
    const bad: [number, number, number, number][] = [
      [-1, 15, 50, -1], // esp before the buffer
      [0, 15, 50, -1], // no room for SPI, seq and IV
      [0, 16, 15, -1], // end before ivEnd
      [0, 16, 85, -1], // ICV past the end
      [0, 16, 50, 0x1_0000_0000], // ESN high half too wide
    ];
    for (const [esp, ivEnd, end, seqHigh] of bad) {
      expect(ctx.seal(buf, esp, ivEnd, end, seqHigh)).toBe(AeadResult.BadArgs);
      expect(ctx.open(buf, esp, ivEnd, end, seqHigh)).toBe(AeadResult.BadArgs);
    }
    expect(ctx.seal(new Int32Array(25) as unknown as Uint8Array, 0, 16, 50, -1)).toBe(AeadResult.BadArgs);
    expect(buf.every((x) => x === 0)).toBe(true);
    expect(ctx.seal(buf, 0, 16, 84, -1)).toBe(AeadResult.Done);
    ctx.close();
    ctx.close();
    expect(ctx.seal(buf, 0, 16, 84, -1)).toBe(AeadResult.BadArgs);
    expect(ctx.open(buf, 0, 16, 84, -1)).toBe(AeadResult.BadArgs);

    const t = new NativeGcmTransform(new Uint8Array(20), fixedIv(new Uint8Array(8)));
    t.close();
    expect(t.open(buf, 0, 16, 84, -1)).toBe(false);
    expect(() => t.seal(buf, 0, 16, 84, -1)).toThrow(/status -1/);
  });
});
