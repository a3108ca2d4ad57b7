import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExchangeType, HeaderFlag, PayloadType } from '../../../src/ike/constants.ts';
import { emitIkeHeader, IKE_HEADER_LENGTH, parseIkeHeader } from '../../../src/ike/header.ts';
import { emitIkeMessage, parseIkeMessage, reemitClear } from '../../../src/ike/message.ts';
import { emitPayloadChain, parsePayloadChain, type Payload } from '../../../src/ike/payloads.ts';
import { emitSaBody, parseSaBody } from '../../../src/ike/sa-payload.ts';
import { emitTsBody, parseTsBody } from '../../../src/ike/ts-payload.ts';
import { payloadArb, proposalArb } from './arbitraries.ts';

const header = {
  spiI: 0x0123456789abcdefn,
  spiR: 0n,
  exchange: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.INITIATOR,
  messageId: 0,
};

describe('IKE header', () => {
  it('round-trips every field at the offsets of RFC 7296 3.1', () => {
    const b = Buffer.alloc(IKE_HEADER_LENGTH);
    emitIkeHeader(b, 0, { ...header, spiR: 0xfedcba9876543210n, nextPayload: 33, messageId: 0xdeadbeef }, 28);
    expect(b.toString('hex')).toBe(
      '0123456789abcdef' + 'fedcba9876543210' + '21' + '20' + '22' + '08' + 'deadbeef' + '0000001c',
    );
    const h = parseIkeHeader(b);
    expect(h.ok && h.value).toMatchObject({
      spiR: 0xfedcba9876543210n,
      majorVersion: 2,
      minorVersion: 0,
      messageId: 0xdeadbeef,
      length: 28,
    });
  });

  it('refuses short buffers and a length that is not the datagram length', () => {
    const b = Buffer.alloc(40);
    emitIkeHeader(b, 0, { ...header, nextPayload: 0 }, 40);
    expect(parseIkeHeader(b.subarray(0, 27))).toEqual({ ok: false, reason: 'truncated' });
    expect(parseIkeHeader(b.subarray(0, 39))).toEqual({ ok: false, reason: 'truncated' });
    b.writeUInt32BE(36, 24);
    expect(parseIkeHeader(b)).toEqual({ ok: false, reason: 'bad-length' });
    b.writeUInt32BE(20, 24);
    expect(parseIkeHeader(b)).toEqual({ ok: false, reason: 'bad-length' });
  });

  it('reports the major version instead of refusing it (the responder answers INVALID_MAJOR_VERSION)', () => {
    const b = Buffer.alloc(28);
    emitIkeHeader(b, 0, { ...header, nextPayload: 0, majorVersion: 3 }, 28);
    const h = parseIkeHeader(b);
    expect(h.ok && h.value.majorVersion).toBe(3);
  });
});

describe('SA payload', () => {
  it('round-trips any proposal list', () => {
    fc.assert(
      fc.property(fc.array(proposalArb, { minLength: 1, maxLength: 5 }), (ps) => {
        const r = parseSaBody(emitSaBody(ps));
        expect(r).toEqual({ ok: true, value: ps });
      }),
      { seed: 7, numRuns: 300 },
    );
  });

  it('refuses a wrong Last Substruc, a wrong transform count and overlong lengths', () => {
    const good = emitSaBody([
      {
        number: 1,
        protocol: 1,
        spi: Buffer.alloc(0),
        transforms: [
          { type: 1, id: 12, attributes: [{ type: 14, tv: true, value: 128 }] },
          { type: 2, id: 5, attributes: [] },
        ],
      },
    ]);
    expect(parseSaBody(good).ok).toBe(true);
    const lastWrong = Buffer.from(good);
    lastWrong[0] = 2;
    expect(parseSaBody(lastWrong)).toEqual({ ok: false, reason: 'bad-value' });
    const countWrong = Buffer.from(good);
    countWrong[7] = 3;
    expect(parseSaBody(countWrong).ok).toBe(false);
    const lenWrong = Buffer.from(good);
    lenWrong.writeUInt16BE(good.length + 4, 2);
    expect(parseSaBody(lenWrong)).toEqual({ ok: false, reason: 'truncated' });
    expect(parseSaBody(Buffer.alloc(0))).toEqual({ ok: false, reason: 'truncated' });
  });
});

describe('traffic selectors', () => {
  it('encodes an IPv4 range as RFC 7296 3.13.1 lays it out', () => {
    const b = emitTsBody([
      {
        kind: 'ipv4',
        protocol: 17,
        startPort: 1026,
        endPort: 1057,
        startAddress: 0xc633641e,
        endAddress: 0xc633641e,
      },
    ]);
    expect(b.toString('hex')).toBe('01000000' + '07110010' + '04020421' + 'c633641e' + 'c633641e');
    expect(parseTsBody(b)).toEqual({
      ok: true,
      value: [
        {
          kind: 'ipv4',
          protocol: 17,
          startPort: 1026,
          endPort: 1057,
          startAddress: 0xc633641e,
          endAddress: 0xc633641e,
        },
      ],
    });
  });

  it('refuses zero selectors, a short IPv4 selector and trailing bytes', () => {
    expect(parseTsBody(Buffer.from('00000000', 'hex'))).toEqual({ ok: false, reason: 'bad-value' });
    expect(parseTsBody(Buffer.from('01000000' + '0700000c' + '00000000' + '00000000', 'hex'))).toEqual({
      ok: false,
      reason: 'bad-length',
    });
    const one = emitTsBody([
      { kind: 'ipv4', protocol: 0, startPort: 0, endPort: 65535, startAddress: 0, endAddress: 0xffffffff },
    ]);
    expect(parseTsBody(Buffer.concat([one, Buffer.alloc(1)]))).toEqual({ ok: false, reason: 'bad-length' });
  });
});

describe('payload chain', () => {
  it('round-trips any sequence of payloads through emit and parse', () => {
    fc.assert(
      fc.property(fc.array(payloadArb, { minLength: 0, maxLength: 8 }), (ps: Payload[]) => {
        const b = emitPayloadChain(ps);
        const r = parsePayloadChain(b, 0, ps[0]?.type ?? 0);
        expect(r.ok).toBe(true);
        if (r.ok) {
          expect(r.value.payloads).toEqual(ps);
          expect(emitPayloadChain(r.value.payloads).equals(b)).toBe(true);
        }
      }),
      { seed: 11, numRuns: 300 },
    );
  });

  it('marks unknown critical payloads and keeps unknown ones opaque', () => {
    const b = emitPayloadChain([{ type: 99, critical: true, body: Buffer.from('hi'), opaque: true }]);
    expect(b.toString('hex')).toBe('0080' + '0006' + '6869');
    const r = parsePayloadChain(b, 0, 99);
    expect(r.ok && r.value.payloads[0]).toEqual({
      type: 99,
      critical: true,
      body: Buffer.from('hi'),
      opaque: true,
    });
  });

  it('refuses a nonce outside 16..256 bytes, a generic length below 4 and bytes after the last payload', () => {
    const n15 = emitPayloadChain([{ type: PayloadType.VENDOR, data: Buffer.alloc(15) }]);
    expect(parsePayloadChain(n15, 0, PayloadType.NONCE)).toEqual({ ok: false, reason: 'bad-length' });
    const tiny = Buffer.from('00000003', 'hex');
    expect(parsePayloadChain(tiny, 0, PayloadType.VENDOR)).toEqual({ ok: false, reason: 'bad-length' });
    const v = emitPayloadChain([{ type: PayloadType.VENDOR, data: Buffer.alloc(3) }]);
    expect(parsePayloadChain(Buffer.concat([v, Buffer.alloc(2)]), 0, PayloadType.VENDOR)).toEqual({
      ok: false,
      reason: 'bad-length',
    });
  });

  it('stops at SK and hands back its offset, first inner type and body', () => {
    const msg = Buffer.concat([Buffer.from('2400000801020304', 'hex')]);
    const r = parsePayloadChain(msg, 0, PayloadType.SK);
    expect(r.ok && r.value.encrypted).toEqual({
      type: PayloadType.SK,
      offset: 0,
      firstInner: 0x24,
      body: Buffer.from('01020304', 'hex'),
    });
  });

  it('writes a Delete payload of two ESP SPIs as RFC 7296 3.11', () => {
    const b = emitPayloadChain([
      {
        type: PayloadType.DELETE,
        protocol: 3,
        spiSize: 4,
        spis: [Buffer.from('00000100', 'hex'), Buffer.from('00000101', 'hex')],
      },
    ]);
    expect(b.toString('hex')).toBe('00000010' + '03040002' + '00000100' + '00000101');
  });

  it('writes a Notify with SPI as RFC 7296 3.10', () => {
    const b = emitPayloadChain([
      {
        type: PayloadType.NOTIFY,
        protocol: 3,
        spi: Buffer.from('0000abcd', 'hex'),
        notifyType: 16393,
        data: Buffer.alloc(0),
      },
    ]);
    expect(b.toString('hex')).toBe('0000000c' + '03044009' + '0000abcd');
  });
});

describe('message', () => {
  it('re-emits a clear message byte for byte', () => {
    const m = emitIkeMessage(header, [
      { type: PayloadType.NONCE, data: Buffer.alloc(32, 7) },
      {
        type: PayloadType.NOTIFY,
        protocol: 0,
        spi: Buffer.alloc(0),
        notifyType: 16388,
        data: Buffer.alloc(20, 1),
      },
    ]);
    const p = parseIkeMessage(m);
    expect(p.ok).toBe(true);
    if (p.ok) {
      expect(p.value.header.nextPayload).toBe(PayloadType.NONCE);
      expect(reemitClear(p.value).equals(m)).toBe(true);
    }
  });
});
