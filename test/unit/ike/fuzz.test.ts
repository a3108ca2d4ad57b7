import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encrAlgorithm } from '../../../src/ike/algorithms.ts';
import { EncrId, ExchangeType, HeaderFlag } from '../../../src/ike/constants.ts';
import {
  emitEncryptedIkeMessage,
  emitIkeMessage,
  openIkeMessage,
  parseIkeMessage,
} from '../../../src/ike/message.ts';
import { SkCipher } from '../../../src/ike/sk-cipher.ts';
import { payloadArb } from './arbitraries.ts';

const h = {
  spiI: 1n,
  spiR: 2n,
  exchange: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.INITIATOR,
  messageId: 0,
};

describe('parsing hostile bytes', () => {
  it('never throws on random datagrams', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (u) => {
        const r = parseIkeMessage(u);
        expect(typeof r.ok).toBe('boolean');
      }),
      { seed: 3, numRuns: 2000 },
    );
  });

  it('never throws on valid messages with bytes changed, cut or appended, and reports a known reason', () => {
    const reasons = new Set(['truncated', 'bad-length', 'bad-value']);
    fc.assert(
      fc.property(
        fc.array(payloadArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        fc.nat(),
        (payloads, edits, cut) => {
          const m = emitIkeMessage(h, payloads);
          for (const [at, v] of edits) m[28 + (at % (m.length - 28))] = v;
          const variants = [
            m,
            m.subarray(0, 28 + (cut % (m.length - 27))),
            Buffer.concat([m, Buffer.alloc(3)]),
          ];
          for (const v of variants) {
            // Keep the header's length honest so the payload walk is what is tested.
            const b = Buffer.from(v);
            if (b.length >= 28) b.writeUInt32BE(b.length, 24);
            const r = parseIkeMessage(b);
            if (!r.ok) expect(reasons.has(r.reason)).toBe(true);
          }
        },
      ),
      { seed: 5, numRuns: 1000 },
    );
  });

  it('never throws when decrypting mangled SK payloads', () => {
    const keys = {
      encr: encrAlgorithm(EncrId.AES_GCM_16, 128)!,
      integ: undefined,
      encryptionKey: Buffer.alloc(20, 1),
      integrityKey: Buffer.alloc(0),
    };
    fc.assert(
      fc.property(fc.array(payloadArb, { maxLength: 4 }), fc.nat(), (payloads, cut) => {
        const m = emitEncryptedIkeMessage(
          { ...h, exchange: ExchangeType.IKE_AUTH },
          payloads,
          new SkCipher(keys),
        );
        const short = Buffer.from(m.subarray(0, Math.max(32, m.length - (cut % 40))));
        short.writeUInt32BE(short.length, 24);
        short.writeUInt16BE(short.length - 28, 30);
        const p = parseIkeMessage(short);
        if (p.ok) expect(typeof openIkeMessage(p.value, new SkCipher(keys)).ok).toBe('boolean');
      }),
      { seed: 9, numRuns: 500 },
    );
  });
});
