import { createHmac, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encrAlgorithm, INTEG_ALGORITHMS, PRF_ALGORITHMS } from '../../../src/ike/algorithms.ts';
import { createAuth, verifyAuth } from '../../../src/ike/auth.ts';
import {
  AuthMethod,
  DhGroup,
  EncrId,
  ExchangeType,
  HashAlgorithmId,
  HeaderFlag,
  IntegId,
  PayloadType,
  PrfId,
} from '../../../src/ike/constants.ts';
import { CookieJar } from '../../../src/ike/cookie.ts';
import { createDh } from '../../../src/ike/dh.ts';
import { deriveChildKeys, deriveIkeKeys, skeyseed } from '../../../src/ike/keys.ts';
import { emitEncryptedIkeMessage, openIkeMessage, parseIkeMessage } from '../../../src/ike/message.ts';
import { detectNat, natDetectionPayloads } from '../../../src/ike/nat.ts';
import { prf, prfPlus } from '../../../src/ike/prf.ts';
import { SkCipher } from '../../../src/ike/sk-cipher.ts';
import { FakeClock } from '../../../src/util/clock.ts';

const sha256 = PRF_ALGORITHMS.get(PrfId.HMAC_SHA2_256)!;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('PRF', () => {
  it('PRF_HMAC_SHA2_256 gives the RFC 4231 / RFC 4868 answers', () => {
    // RFC 4231 test case 1 and 2.
    expect(prf(sha256, Buffer.alloc(20, 0x0b), Buffer.from('Hi There')).toString('hex')).toBe(
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    expect(
      prf(sha256, Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?')).toString('hex'),
    ).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('prf+ is T1 | T2 | ... with T1 = prf(K, S | 1), Tn = prf(K, Tn-1 | S | n)', () => {
    const k = Buffer.from('key');
    const s = Buffer.from('seed');
    const t1 = createHmac('sha256', k)
      .update(Buffer.concat([s, Buffer.from([1])]))
      .digest();
    const t2 = createHmac('sha256', k)
      .update(Buffer.concat([t1, s, Buffer.from([2])]))
      .digest();
    const t3 = createHmac('sha256', k)
      .update(Buffer.concat([t2, s, Buffer.from([3])]))
      .digest();
    expect(prfPlus(sha256, k, s, 70)).toEqual(Buffer.concat([t1, t2, t3]).subarray(0, 70));
    expect(() => prfPlus(sha256, k, s, 255 * 32 + 1)).toThrow(RangeError);
    expect(prfPlus(sha256, k, s, 255 * 32).length).toBe(255 * 32);
  });
});

describe('Diffie-Hellman', () => {
  it('X25519 gives the RFC 7748 6.1 public keys and shared secret', () => {
    const alice = createDh(
      DhGroup.CURVE25519,
      hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
    )!;
    const bob = createDh(
      DhGroup.CURVE25519,
      hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
    )!;
    expect(alice.publicValue.toString('hex')).toBe(
      '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
    );
    expect(bob.publicValue.toString('hex')).toBe(
      'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
    );
    expect(alice.computeSecret(bob.publicValue)!.toString('hex')).toBe(
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });

  for (const [group, length, secretLength] of [
    [DhGroup.MODP_2048, 256, 256],
    [DhGroup.ECP_256, 64, 32],
    [DhGroup.ECP_384, 96, 48],
    [DhGroup.CURVE25519, 32, 32],
  ] as const) {
    it(`group ${group}: KE data of ${length} bytes, both ends agree on a ${secretLength}-byte g^ir`, () => {
      const a = createDh(group)!;
      const b = createDh(group)!;
      expect(a.publicValue.length).toBe(length);
      const s = a.computeSecret(b.publicValue)!;
      expect(s.length).toBe(secretLength);
      expect(s).toEqual(b.computeSecret(a.publicValue));
      expect(a.computeSecret(b.publicValue.subarray(1))).toBeUndefined();
    });
  }

  it('refuses the MODP values 0, 1 and p-1, a point off the curve and a low-order X25519 point', () => {
    const m = createDh(DhGroup.MODP_2048)!;
    expect(m.computeSecret(Buffer.alloc(256))).toBeUndefined();
    const one = Buffer.alloc(256);
    one[255] = 1;
    expect(m.computeSecret(one)).toBeUndefined();
    const pm1 = Buffer.alloc(256, 0xff);
    pm1[255] = 0xfe;
    expect(m.computeSecret(pm1)).toBeUndefined();
    const e = createDh(DhGroup.ECP_256)!;
    const off = Buffer.from(createDh(DhGroup.ECP_256)!.publicValue);
    off[63]! ^= 1;
    expect(e.computeSecret(off)).toBeUndefined();
    expect(createDh(DhGroup.CURVE25519)!.computeSecret(Buffer.alloc(32))).toBeUndefined();
    expect(createDh(5)).toBeUndefined();
  });

  it('X25519 key pairs from the pool made ahead are each handed out once and agree', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const a = createDh(DhGroup.CURVE25519)!;
      const b = createDh(DhGroup.CURVE25519)!;
      for (const k of [a, b]) {
        expect(seen.has(k.publicValue.toString('hex'))).toBe(false);
        seen.add(k.publicValue.toString('hex'));
      }
      expect(a.computeSecret(b.publicValue)).toEqual(b.computeSecret(a.publicValue));
      // Give the threadpool time to refill, so that later pairs come from the pool.
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 20));
    }
  });
});

describe('key derivation', () => {
  const gcm = encrAlgorithm(EncrId.AES_GCM_16, 256)!;
  const cbc = encrAlgorithm(EncrId.AES_CBC, 128)!;
  const integ = INTEG_ALGORITHMS.get(IntegId.HMAC_SHA2_256_128)!;

  it('cuts SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr from prf+ in that order', () => {
    const ni = Buffer.alloc(32, 1);
    const nr = Buffer.alloc(32, 2);
    const seed = skeyseed(sha256, ni, nr, Buffer.alloc(32, 3));
    expect(seed).toEqual(
      createHmac('sha256', Buffer.concat([ni, nr]))
        .update(Buffer.alloc(32, 3))
        .digest(),
    );
    const k = deriveIkeKeys({ encr: cbc, integ, prf: sha256, dhGroup: 31 }, seed, ni, nr, 1n, 2n);
    const stream = prfPlus(
      sha256,
      seed,
      Buffer.concat([ni, nr, hex('0000000000000001'), hex('0000000000000002')]),
      32 * 3 + 32 * 2 + 16 * 2,
    );
    expect(Buffer.concat([k.skD, k.skAi, k.skAr, k.skEi, k.skEr, k.skPi, k.skPr])).toEqual(stream);
    expect([k.skD.length, k.skAi.length, k.skEi.length, k.skPi.length]).toEqual([32, 32, 16, 32]);
    const g = deriveIkeKeys({ encr: gcm, integ: undefined, prf: sha256, dhGroup: 31 }, seed, ni, nr, 1n, 2n);
    expect([g.skAi.length, g.skEi.length]).toEqual([0, 36]);
  });

  it('takes child keys i->r encryption, i->r integrity, r->i encryption, r->i integrity (2.17)', () => {
    const skD = Buffer.alloc(32, 9);
    const ni = Buffer.alloc(16, 1);
    const nr = Buffer.alloc(16, 2);
    const k = deriveChildKeys(sha256, skD, cbc, integ, ni, nr);
    const stream = prfPlus(sha256, skD, Buffer.concat([ni, nr]), 2 * (16 + 32));
    expect(
      Buffer.concat([
        k.initiatorToResponder.encryption,
        k.initiatorToResponder.integrity,
        k.responderToInitiator.encryption,
        k.responderToInitiator.integrity,
      ]),
    ).toEqual(stream);
    const pfs = deriveChildKeys(sha256, skD, gcm, undefined, ni, nr, Buffer.alloc(32, 5));
    expect(pfs.initiatorToResponder.encryption).toEqual(
      prfPlus(sha256, skD, Buffer.concat([Buffer.alloc(32, 5), ni, nr]), 36),
    );
    expect(pfs.initiatorToResponder.integrity.length).toBe(0);
  });
});

describe('SK payload', () => {
  const suites = [
    ['AES-GCM-16-128', encrAlgorithm(EncrId.AES_GCM_16, 128)!, undefined],
    ['AES-GCM-16-256', encrAlgorithm(EncrId.AES_GCM_16, 256)!, undefined],
    [
      'AES-CBC-128 + HMAC-SHA-256-128',
      encrAlgorithm(EncrId.AES_CBC, 128)!,
      INTEG_ALGORITHMS.get(IntegId.HMAC_SHA2_256_128)!,
    ],
    [
      'AES-CBC-256 + HMAC-SHA-256-128',
      encrAlgorithm(EncrId.AES_CBC, 256)!,
      INTEG_ALGORITHMS.get(IntegId.HMAC_SHA2_256_128)!,
    ],
  ] as const;
  for (const [name, encr, integ] of suites) {
    it(`${name}: seals, opens, and refuses every single-bit flip`, () => {
      const keys = {
        encr,
        integ,
        encryptionKey: Buffer.alloc(encr.keyMaterial, 0x42),
        integrityKey: Buffer.alloc(integ?.keyLength ?? 0, 0x17),
      };
      const payloads = [
        { type: PayloadType.IDi, idType: 1, data: Buffer.from([192, 0, 2, 1]) },
        {
          type: PayloadType.NOTIFY,
          protocol: 0,
          spi: Buffer.alloc(0),
          notifyType: 16384,
          data: Buffer.alloc(0),
        },
      ] as const;
      const m = emitEncryptedIkeMessage(
        { spiI: 5n, spiR: 6n, exchange: ExchangeType.IKE_AUTH, flags: HeaderFlag.INITIATOR, messageId: 1 },
        payloads,
        new SkCipher(keys),
      );
      if (!encr.aead) expect((m.length - 28 - 4 - 16 - 16) % 16).toBe(0);
      const p = parseIkeMessage(m);
      expect(p.ok).toBe(true);
      if (!p.ok) return;
      const opened = openIkeMessage(p.value, new SkCipher(keys));
      expect(opened).toEqual({ ok: true, payloads });
      for (let bit = 0; bit < m.length * 8; bit += 7) {
        const bad = Buffer.from(m);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        const q = parseIkeMessage(bad);
        if (!q.ok) continue;
        const r = openIkeMessage(q.value, new SkCipher(keys));
        expect(r.ok).toBe(false);
      }
    });
  }
});

describe('AUTH', () => {
  const octets = Buffer.from('RealMessage1 | NonceRData | MACedIDForI');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

  it('ECDSA P-256 without RFC 7427: method 9, 64 bytes r | s', () => {
    const a = createAuth(ec.privateKey, octets, undefined);
    expect(a.method).toBe(AuthMethod.ECDSA_SHA256_P256);
    expect(a.data.length).toBe(64);
    expect(verifyAuth(ec.publicKey, a.method, a.data, octets)).toEqual({
      ok: true,
      scheme: 'ECDSA-P256-SHA256',
    });
    expect(verifyAuth(ec.publicKey, a.method, a.data, Buffer.from('other')).ok).toBe(false);
  });

  it('RSA without RFC 7427: method 1', () => {
    const a = createAuth(rsa.privateKey, octets, []);
    expect(a.method).toBe(AuthMethod.RSA_SIGNATURE);
    expect(verifyAuth(rsa.publicKey, a.method, a.data, octets)).toEqual({ ok: true, scheme: 'RSA-SHA1' });
    expect(verifyAuth(ec.publicKey, a.method, a.data, octets).ok).toBe(false);
  });

  it('RFC 7427 when the peer announced SHA-2: length, AlgorithmIdentifier, signature', () => {
    const e = createAuth(ec.privateKey, octets, [HashAlgorithmId.SHA2_384, HashAlgorithmId.SHA2_256]);
    expect(e.method).toBe(AuthMethod.DIGITAL_SIGNATURE);
    expect(e.data.subarray(0, 13).toString('hex')).toBe('0c300a06082a8648ce3d040302');
    expect(verifyAuth(ec.publicKey, e.method, e.data, octets)).toEqual({ ok: true, scheme: 'ECDSA-SHA256' });
    const r = createAuth(rsa.privateKey, octets, [HashAlgorithmId.SHA2_256]);
    expect(r.data.subarray(0, 16).toString('hex')).toBe('0f300d06092a864886f70d01010b0500');
    expect(verifyAuth(rsa.publicKey, r.method, r.data, octets)).toEqual({ ok: true, scheme: 'RSA-SHA256' });
    // An AlgorithmIdentifier for the wrong key family, and one we do not know.
    expect(verifyAuth(ec.publicKey, r.method, r.data, octets).ok).toBe(false);
    const unknown = Buffer.from(r.data);
    unknown[13] = 0x0e;
    expect(verifyAuth(rsa.publicKey, r.method, unknown, octets).ok).toBe(false);
    expect(verifyAuth(rsa.publicKey, r.method, Buffer.from([200]), octets).ok).toBe(false);
  });
});

describe('NAT detection', () => {
  const a = { address: '192.0.2.1', port: 500 };
  const b = { address: '192.0.2.2', port: 500 };
  it('finds no NAT when the addresses are as sent, and each side when rewritten', () => {
    const sent = natDetectionPayloads(1n, 0n, a, b);
    expect(detectNat(sent, 1n, 0n, b, a)).toEqual({
      supported: true,
      peerBehindNat: false,
      localBehindNat: false,
    });
    expect(detectNat(sent, 1n, 0n, b, { address: '203.0.113.9', port: 4096 })).toMatchObject({
      peerBehindNat: true,
      localBehindNat: false,
    });
    expect(detectNat(sent, 1n, 0n, { ...b, port: 4500 }, a)).toMatchObject({
      peerBehindNat: false,
      localBehindNat: true,
    });
    expect(detectNat([], 1n, 0n, b, a).supported).toBe(false);
  });
});

describe('cookies', () => {
  it('accepts its own cookie across one rotation, not two, and not for another SPI or address', () => {
    const clock = new FakeClock();
    const jar = new CookieJar(clock, { rotateMs: 1000 });
    const ni = Buffer.alloc(32, 1);
    const c = jar.make(ni, '192.0.2.1', 7n);
    expect(c.length).toBe(33);
    expect(jar.check(c, ni, '192.0.2.1', 7n)).toBe(true);
    expect(jar.check(c, ni, '192.0.2.1', 8n)).toBe(false);
    expect(jar.check(c, ni, '192.0.2.2', 7n)).toBe(false);
    expect(jar.check(c, Buffer.alloc(32, 2), '192.0.2.1', 7n)).toBe(false);
    clock.advance(1000);
    expect(jar.check(c, ni, '192.0.2.1', 7n)).toBe(true);
    clock.advance(1000);
    expect(jar.check(c, ni, '192.0.2.1', 7n)).toBe(false);
    expect(jar.check(c.subarray(1), ni, '192.0.2.1', 7n)).toBe(false);
  });
});
