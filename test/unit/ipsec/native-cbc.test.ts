/**
 * The addon's AES-CBC + HMAC (native-cbc.ts over cbc-hmac.cc) and keyed HMAC
 * (hmac.ts over hmac.cc) against the node:crypto suite they replace and
 * against scapy's vectors: same bytes sealed for the same IV, each other's
 * packets opened, forgeries refused with the packet left as it was, and the
 * engine's verdicts and counters the same on both paths.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { AeadResult, loadNative } from '../../../src/io/native.ts';
import { createEspTransform } from '../../../src/ipsec/esp-transform.ts';
import { Hmac, HMAC_SCRATCH, nativeHmacAvailable } from '../../../src/ipsec/hmac.ts';
import { NativeCbcHmacTransform, nativeCbcAvailable } from '../../../src/ipsec/native-cbc.ts';
import { EspSa } from '../../../src/ipsec/sa.ts';
import type { EspTransform, IntegrityAlgorithm } from '../../../src/ipsec/types.ts';
import {
  bytes,
  enginePair,
  fixedIv,
  GOLDEN_AUTH,
  golden,
  hex,
  KEYS,
  place,
  suite,
  taken,
  udpPacket,
  type PairOptions,
} from './helpers.ts';

type Implementation = 'native' | 'node';
const IMPLEMENTATIONS: Implementation[] = ['native', 'node'];

interface SecEspCase {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  auth_algo: string;
  auth_key: string;
  iv: string;
  icv_length: number;
  decrypted: string;
}
interface IpsecEspCase {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  auth_algo: string;
  auth_key: string;
  esn_high: number | null;
}

const ICV: Record<IntegrityAlgorithm, number> = {
  'hmac-sha256-128': 16,
  'hmac-sha384-192': 24,
  'hmac-sha512-256': 32,
  'hmac-sha1-96': 12,
};
const KEY: Record<IntegrityAlgorithm, number> = {
  'hmac-sha256-128': 32,
  'hmac-sha384-192': 48,
  'hmac-sha512-256': 64,
  'hmac-sha1-96': 20,
};
const ALGORITHMS = Object.keys(ICV) as IntegrityAlgorithm[];

function cbc(
  key: Uint8Array,
  integrity: IntegrityAlgorithm,
  integrityKey: Uint8Array,
  implementation: Implementation,
  iv?: Uint8Array,
): EspTransform {
  return createEspTransform({
    encryption: 'aes-cbc',
    encryptionKey: key,
    integrity,
    integrityKey,
    implementation,
    // The IV already in the buffer stays when the source writes nothing.
    iv: iv === undefined ? () => {} : fixedIv(iv),
  });
}

/** Offsets of an ESP packet whose header starts at `esp` and whose ICV is its last `icv` bytes. */
const layout = (pkt: Uint8Array, esp: number, icv: number) => ({
  esp,
  ivEnd: esp + 24,
  icvAt: pkt.length - icv,
});

const scapyEsp = golden<{ cases: SecEspCase[] }>('esp.json').cases.filter((c) => c.crypt_algo === 'AES-CBC');
const scapyIpsec = golden<{ esp: IpsecEspCase[] }>('ipsec.json').esp.filter(
  (c) => c.crypt_algo === 'AES-CBC',
);

/** Builds an engine pair with the crypto where `implementation` says (the SAs read the choice when built). */
function pairOn(implementation: Implementation, o: PairOptions): ReturnType<typeof enginePair> {
  const saved = process.env.DISTNAT_ESP_CRYPTO;
  process.env.DISTNAT_ESP_CRYPTO = implementation === 'node' ? 'node' : '';
  try {
    return enginePair(o);
  } finally {
    if (saved === undefined) delete process.env.DISTNAT_ESP_CRYPTO;
    else process.env.DISTNAT_ESP_CRYPTO = saved;
  }
}

describe('native AES-CBC + HMAC transform', () => {
  it('is built into the addon (npm install builds it)', () => {
    expect(nativeCbcAvailable()).toBe(true);
    expect(nativeHmacAvailable()).toBe(true);
  });

  describe('factory', () => {
    const saved = process.env.DISTNAT_ESP_CRYPTO;
    afterEach(() => {
      if (saved === undefined) delete process.env.DISTNAT_ESP_CRYPTO;
      else process.env.DISTNAT_ESP_CRYPTO = saved;
    });
    const key = new Uint8Array(16);
    const ikey = new Uint8Array(32);
    const params = {
      encryption: 'aes-cbc',
      encryptionKey: key,
      integrity: 'hmac-sha256-128',
      integrityKey: ikey,
    } as const;

    it('prefers the native transform, keeps Node on request', () => {
      delete process.env.DISTNAT_ESP_CRYPTO;
      expect(createEspTransform(params)).toBeInstanceOf(NativeCbcHmacTransform);
      expect(createEspTransform({ ...params, implementation: 'node' })).not.toBeInstanceOf(
        NativeCbcHmacTransform,
      );
      process.env.DISTNAT_ESP_CRYPTO = 'node';
      expect(createEspTransform(params)).not.toBeInstanceOf(NativeCbcHmacTransform);
      expect(new Hmac('hmac-sha256-128', ikey).isNative).toBe(false);
      expect(createEspTransform({ ...params, implementation: 'native' })).toBeInstanceOf(
        NativeCbcHmacTransform,
      );
      delete process.env.DISTNAT_ESP_CRYPTO;
      expect(new Hmac('hmac-sha256-128', ikey).isNative).toBe(true);
    });

    it.each(IMPLEMENTATIONS)(
      '%s: refuses keys the algorithms do not have, with the same words',
      (implementation) => {
        for (const n of [0, 8, 15, 17, 20, 33]) {
          expect(() => cbc(new Uint8Array(n), 'hmac-sha256-128', ikey, implementation)).toThrow(
            /16, 24 or 32-byte/,
          );
        }
        for (const n of [0, 16, 31, 33, 64]) {
          expect(() => cbc(key, 'hmac-sha256-128', new Uint8Array(n), implementation)).toThrow(/32-byte key/);
        }
      },
    );

    it('the native contexts themselves refuse what they cannot do', () => {
      const Cbc = loadNative().AesCbcHmacContext!;
      expect(() => new Cbc(new Uint8Array(17), 'hmac-sha256-128', ikey, true)).toThrow(RangeError);
      expect(() => new Cbc(key, 'hmac-md5-96', ikey, true)).toThrow(RangeError);
      expect(() => new Cbc(key, 'hmac-sha256-128', new Uint8Array(20), true)).toThrow(RangeError);
      const H = loadNative().HmacContext!;
      expect(() => new H('hmac-sha384-192', ikey)).toThrow(RangeError);
    });
  });

  describe.each(IMPLEMENTATIONS)('%s', (implementation) => {
    describe.each(scapyEsp.map((c) => [c.name, c] as const))('scapy esp.json %s', (_, c) => {
      it('opens scapy’s packet and seals the plaintext back into it', () => {
        const pkt = bytes(c.hex);
        const { esp, ivEnd, icvAt } = layout(pkt, c.esp_offset, c.icv_length);
        const t = cbc(bytes(c.crypt_key), GOLDEN_AUTH[c.auth_algo]!, bytes(c.auth_key), implementation);
        const buf = pkt.slice();
        expect(t.open(buf, esp, ivEnd, icvAt, -1)).toBe(true);
        expect(hex(buf.subarray(ivEnd, icvAt))).toBe(c.decrypted);
        t.seal(buf, esp, ivEnd, icvAt, -1);
        expect(hex(buf)).toBe(c.hex);
      });
    });

    describe.each(scapyIpsec.map((c) => [c.name, c] as const))('scapy ipsec.json %s', (_, c) => {
      it('opens it and seals it back; the ESN high half counts though it is not sent', () => {
        const integrity = GOLDEN_AUTH[c.auth_algo]!;
        const pkt = bytes(c.hex);
        const { esp, ivEnd, icvAt } = layout(pkt, c.esp_offset, ICV[integrity]);
        const seqHigh = c.esn_high ?? -1;
        const t = cbc(bytes(c.crypt_key), integrity, bytes(c.auth_key), implementation);
        const buf = pkt.slice();
        expect(t.open(buf, esp, ivEnd, icvAt, seqHigh)).toBe(true);
        expect(hex(buf)).not.toBe(c.hex);
        t.seal(buf, esp, ivEnd, icvAt, seqHigh);
        expect(hex(buf)).toBe(c.hex);
        const wrong = pkt.slice();
        expect(t.open(wrong, esp, ivEnd, icvAt, seqHigh + 1)).toBe(false);
        expect(hex(wrong)).toBe(c.hex);
      });
    });
  });

  /** A packet of `blocks` cipher blocks after the ESP header, with `pre` and `post` bytes of slot around it. */
  const arbPacket = fc.record({
    keyLength: fc.constantFrom(16, 24, 32),
    integrity: fc.constantFrom(...ALGORITHMS),
    keySeed: fc.uint8Array({ minLength: 32 + 64, maxLength: 32 + 64 }),
    header: fc.uint8Array({ minLength: 8, maxLength: 8 }),
    iv: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    blocks: fc.integer({ min: 1, max: 95 }),
    fill: fc.nat({ max: 255 }),
    seqHigh: fc.oneof(fc.constant(-1), fc.nat({ max: 0xffffffff })),
    pre: fc.nat({ max: 40 }),
    post: fc.nat({ max: 40 }),
  });

  type PacketCase = typeof arbPacket extends fc.Arbitrary<infer T> ? T : never;

  function placed(p: PacketCase) {
    const key = p.keySeed.slice(0, p.keyLength);
    const ikey = p.keySeed.slice(32, 32 + KEY[p.integrity]);
    const icv = ICV[p.integrity];
    const esp = p.pre;
    const ivEnd = esp + 24;
    const end = ivEnd + p.blocks * 16;
    const buf = new Uint8Array(end + icv + p.post).fill(0xa5);
    buf.set(p.header, esp);
    buf.set(p.iv, esp + 8);
    for (let i = ivEnd; i < end; i++) buf[i] = (i * 29 + p.fill) & 0xff;
    return { key, ikey, icv, buf, esp, ivEnd, end };
  }

  it('seals exactly what Node seals for the same IV, and each opens the other’s packets', () => {
    fc.assert(
      fc.property(arbPacket, (p) => {
        const { key, ikey, icv, buf, esp, ivEnd, end } = placed(p);
        const native = cbc(key, p.integrity, ikey, 'native', p.iv);
        const node = cbc(key, p.integrity, ikey, 'node', p.iv);
        const a = buf.slice();
        const b = buf.slice();
        native.writeIv(a, ivEnd - 16, 1);
        native.seal(a, esp, ivEnd, end, p.seqHigh);
        node.writeIv(b, ivEnd - 16, 1);
        node.seal(b, esp, ivEnd, end, p.seqHigh);
        expect(hex(a)).toBe(hex(b));
        expect(native.open(b, esp, ivEnd, end, p.seqHigh)).toBe(true);
        expect(node.open(a, esp, ivEnd, end, p.seqHigh)).toBe(true);
        // Only the payload changes back; the ICV stays, the slot around is untouched.
        const expected = buf.slice();
        expected.set(a.subarray(end, end + icv), end);
        expect(hex(a)).toBe(hex(expected));
        expect(hex(b)).toBe(hex(expected));
      }),
      { seed: 0x3c4b, numRuns: 300 },
    );
  });

  it('draws a fresh IV per packet from its pool when none is given, and Node opens the result', () => {
    const key = new Uint8Array(16).fill(3);
    const ikey = new Uint8Array(32).fill(4);
    const native = createEspTransform({
      encryption: 'aes-cbc',
      encryptionKey: key,
      integrity: 'hmac-sha256-128',
      integrityKey: ikey,
      implementation: 'native',
    });
    const node = cbc(key, 'hmac-sha256-128', ikey, 'node');
    const seen = new Set<string>();
    // More than one 1 KiB pool's worth, so the refill is crossed.
    for (let i = 0; i < 200; i++) {
      const buf = new Uint8Array(8 + 16 + 32 + 16);
      native.writeIv(buf, 8, i);
      native.seal(buf, 0, 24, 56, -1);
      seen.add(hex(buf.subarray(8, 24)));
      expect(node.open(buf, 0, 24, 56, -1)).toBe(true);
      expect(buf.subarray(24, 56).every((x) => x === 0)).toBe(true);
    }
    expect(seen.size).toBe(200);
  });

  it('works on any view: a Uint8Array at an offset in its ArrayBuffer, or the ArrayBuffer itself', () => {
    const key = new Uint8Array(16).map((_, i) => i);
    const ikey = new Uint8Array(32).map((_, i) => 100 + i);
    const ctx = new (loadNative().AesCbcHmacContext!)(key, 'hmac-sha256-128', ikey, false);
    const whole = new Uint8Array(256).map((_, i) => i);
    const view = whole.subarray(37, 37 + 100);
    const reference = view.slice();
    cbc(key, 'hmac-sha256-128', ikey, 'node').seal(reference, 0, 24, 72, -1);
    expect(ctx.seal(view, 0, 24, 72, -1)).toBe(AeadResult.Done);
    expect(hex(view)).toBe(hex(reference));
    expect(hex(whole.subarray(0, 37))).toBe(hex(new Uint8Array(37).map((_, i) => i)));
    const ab = reference.slice().buffer;
    expect(ctx.open(ab as unknown as Uint8Array, 0, 24, 72, -1)).toBe(AeadResult.Done);
    expect(hex(new Uint8Array(ab).subarray(24, 72))).toBe(hex(new Uint8Array(48).map((_, i) => 37 + 24 + i)));
  });

  it('refuses every single-bit flip of header, IV, cipher text and ICV, and a wrong key, leaving the packet as it came', () => {
    for (const integrity of ['hmac-sha256-128', 'hmac-sha1-96'] as const) {
      const key = new Uint8Array(16).map((_, i) => i * 7 + 1);
      const ikey = new Uint8Array(KEY[integrity]).map((_, i) => i * 5 + 2);
      const t = cbc(key, integrity, ikey, 'native', new Uint8Array(16).fill(9));
      const icv = ICV[integrity];
      const buf = new Uint8Array(8 + 24 + 48 + icv + 8).map((_, i) => i * 13);
      const esp = 8;
      const ivEnd = esp + 24;
      const end = ivEnd + 48;
      t.writeIv(buf, ivEnd - 16, 1);
      t.seal(buf, esp, ivEnd, end, 7);
      const sealed = buf.slice();
      let refused = 0;
      for (let bit = esp * 8; bit < (end + icv) * 8; bit++) {
        const forged = sealed.slice();
        forged[bit >>> 3]! ^= 0x80 >>> (bit & 7);
        const before = forged.slice();
        if (!t.open(forged, esp, ivEnd, end, 7)) refused += 1;
        expect(hex(forged)).toBe(hex(before));
      }
      expect(refused).toBe((end + icv - esp) * 8);
      for (const other of [
        cbc(
          key.map((x) => x ^ 1),
          integrity,
          ikey,
          'native',
        ),
        cbc(
          key,
          integrity,
          ikey.map((x) => x ^ 1),
          'native',
        ),
      ]) {
        const copy = sealed.slice();
        if (other === undefined) continue;
        // A wrong cipher key still verifies (the ICV covers cipher text); a wrong integrity key does not.
        const opened = other.open(copy, esp, ivEnd, end, 7);
        if (opened) expect(hex(copy.subarray(ivEnd, end))).not.toBe(hex(buf.subarray(ivEnd, end)));
        else expect(hex(copy)).toBe(hex(sealed));
      }
      const ok = sealed.slice();
      expect(t.open(ok, esp, ivEnd, end, 7)).toBe(true);
    }
  });

  it('answers out-of-range offsets, partial blocks and a closed context with a status, not an exception', () => {
    const Context = loadNative().AesCbcHmacContext!;
    const ctx = new Context(new Uint8Array(16), 'hmac-sha256-128', new Uint8Array(32), false);
    const buf = new Uint8Array(100);
    const bad: [number, number, number, number][] = [
      [-1, 23, 55, -1], // esp before the buffer
      [0, 23, 55, -1], // no room for SPI, seq and IV
      [0, 24, 24, -1], // no cipher text at all
      [0, 24, 23, -1], // end before ivEnd
      [0, 24, 41, -1], // not whole blocks
      [0, 24, 88, -1], // ICV past the end
      [0, 24, 56, 0x1_0000_0000], // ESN high half too wide
    ];
    for (const [esp, ivEnd, end, seqHigh] of bad) {
      expect(ctx.seal(buf, esp, ivEnd, end, seqHigh)).toBe(AeadResult.BadArgs);
      expect(ctx.open(buf, esp, ivEnd, end, seqHigh)).toBe(AeadResult.BadArgs);
    }
    expect(ctx.seal(new Int32Array(25) as unknown as Uint8Array, 0, 24, 56, -1)).toBe(AeadResult.BadArgs);
    expect(buf.every((x) => x === 0)).toBe(true);
    expect(ctx.seal(buf, 0, 24, 56, -1)).toBe(AeadResult.Done);
    expect(ctx.open(buf, 0, 24, 56, -1)).toBe(AeadResult.Done);
    ctx.close();
    ctx.close();
    expect(ctx.seal(buf, 0, 24, 56, -1)).toBe(AeadResult.BadArgs);
    expect(ctx.open(buf, 0, 24, 56, -1)).toBe(AeadResult.BadArgs);

    const t = new NativeCbcHmacTransform(
      new Uint8Array(16),
      'hmac-sha256-128',
      new Uint8Array(32),
      undefined,
    );
    t.close();
    expect(t.open(buf, 0, 24, 56, -1)).toBe(false);
    expect(() => t.seal(buf, 0, 24, 56, -1)).toThrow(/status -1/);
  });
});

describe('native keyed HMAC (AH, ESP with NULL encryption)', () => {
  it('gives node:crypto’s ICV for every algorithm, region and ESN tail', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ALGORITHMS),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.uint8Array({ minLength: 0, maxLength: 600 }),
        fc.nat({ max: 20 }),
        fc.oneof(fc.constant(-1), fc.nat({ max: 0xffffffff })),
        (integrity, seed, data, start, tail) => {
          const key = seed.slice(0, KEY[integrity]);
          const native = new Hmac(integrity, key, 'native');
          const node = new Hmac(integrity, key, 'node');
          expect(native.isNative).toBe(true);
          const buf = new Uint8Array(start + data.length);
          buf.set(data, start);
          const a = new Uint8Array(40);
          const b = new Uint8Array(40);
          native.macOf(buf, start, buf.length, tail, a, 3);
          node.macOf(buf, start, buf.length, tail, b, 3);
          expect(hex(a)).toBe(hex(b));
          // macScratch: the message laid out after the pad room, as AH does.
          HMAC_SCRATCH.set(data, native.blockSize);
          native.macScratch(native.blockSize + data.length, a, 0);
          HMAC_SCRATCH.set(data, node.blockSize);
          node.macScratch(node.blockSize + data.length, b, 0);
          expect(hex(a)).toBe(hex(b));
        },
      ),
      { seed: 0x4a11, numRuns: 200 },
    );
  });

  it('answers bad regions with a status, and the Hmac wrapper stops rather than send a wrong ICV', () => {
    const ctx = new (loadNative().HmacContext!)('hmac-sha256-128', new Uint8Array(32));
    const buf = new Uint8Array(50);
    const out = new Uint8Array(16);
    expect(ctx.mac(buf, 0, 51, -1, out, 0)).toBe(AeadResult.BadArgs);
    expect(ctx.mac(buf, 10, 9, -1, out, 0)).toBe(AeadResult.BadArgs);
    expect(ctx.mac(buf, 0, 50, -1, out, 1)).toBe(AeadResult.BadArgs);
    expect(ctx.mac(buf, 0, 50, 0x1_0000_0000, out, 0)).toBe(AeadResult.BadArgs);
    expect(out.every((x) => x === 0)).toBe(true);
    expect(ctx.mac(buf, 0, 0, -1, out, 0)).toBe(AeadResult.Done);
    ctx.close();
    expect(ctx.mac(buf, 0, 50, -1, out, 0)).toBe(AeadResult.BadArgs);
    const h = new Hmac('hmac-sha256-128', new Uint8Array(32), 'native');
    expect(() => h.macOf(buf, 0, 51, -1, out, 0)).toThrow(/status -1/);
  });
});

describe.each(IMPLEMENTATIONS)('engine over %s crypto', (implementation) => {
  const cases: PairOptions[] = [
    { suite: 'cbc128' },
    { suite: 'cbc256', mode: 'tunnel', esn: true },
    { suite: 'null', esn: true },
    { protocol: 'ah', mode: 'tunnel' },
  ];

  it.each(cases.map((o) => [o.suite ?? o.protocol, o] as const))(
    '%s: any datagram size, 0 and odd included, comes back as it was sent',
    (_, o) => {
      const pair = pairOn(implementation, o);
      let port = 1024;
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 1400 }), (payload) => {
          const sent = udpPacket(port++, 53, payload);
          const p = place(sent);
          expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
          const q = place(taken(p));
          expect(pair.receiver.inbound(q.buf, q.span)).toBe('accepted');
          expect(hex(taken(q))).toBe(hex(sent));
        }),
        {
          seed: 0x5e7,
          numRuns: 120,
          examples: [[new Uint8Array(0)], [new Uint8Array(1)], [new Uint8Array(15)]],
        },
      );
    },
  );

  it('cbc128: a tampered ICV, a wrong key and a truncated packet are dropped and counted', () => {
    const pair = pairOn(implementation, { suite: 'cbc128' });
    const other = pairOn(implementation, { suite: 'cbc128' });
    // The same SPI and cipher key under another integrity key.
    const forger = new EspSa({
      spi: 0x1000,
      direction: 'outbound',
      mode: 'transport',
      ...suite('cbc128'),
      integrityKey: KEYS.sha256.map((x) => x ^ 0x40),
    });
    other.sender.sad.remove(other.out);
    other.sender.sad.add(forger);
    other.sender.sad.bindOutbound(other.sender.spd.policies[0]!, [forger]);
    const seal = (engine: typeof pair.sender, i: number) => {
      const p = place(udpPacket(2000 + i, 53, new Uint8Array(33).fill(i)));
      expect(engine.outbound(p.buf, p.span)).toBe('protected');
      return taken(p);
    };
    const receive = (wire: Uint8Array) => {
      const p = place(wire);
      const before = p.buf.slice();
      const verdict = pair.receiver.inbound(p.buf, p.span);
      if (verdict !== 'accepted') expect(hex(p.buf)).toBe(hex(before));
      return verdict;
    };
    const tampered = seal(pair.sender, 1);
    tampered[tampered.length - 1]! ^= 1;
    expect(receive(tampered)).toBe('auth-failed');
    // Same SPI, other keys: the ICV cannot verify.
    expect(receive(seal(other.sender, 2))).toBe('auth-failed');
    const whole = seal(pair.sender, 3);
    // Cut inside the cipher text, with the IPv4 total length kept consistent.
    const cut = whole.slice(0, whole.length - 8);
    cut[2] = cut.length >>> 8;
    cut[3] = cut.length & 0xff;
    cut[10] = cut[11] = 0;
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += (cut[i]! << 8) | cut[i + 1]!;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    cut[10] = (~sum >>> 8) & 0xff;
    cut[11] = ~sum & 0xff;
    expect(receive(cut)).toBe('malformed');
    expect(receive(whole)).toBe('accepted');
    const c = pair.receiver.counters.inbound;
    expect([c['auth-failed'], c.malformed, c.accepted]).toEqual([2, 1, 1]);
  });
});
