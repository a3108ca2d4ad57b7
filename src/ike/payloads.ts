/**
 * IKEv2 payloads (RFC 7296 3.2-3.12) and the chain they form.
 *
 * Generic payload header, in front of every payload:
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Next Payload  |C|  RESERVED   |         Payload Length        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                            |
 * |--------|------|--------------------------------------------------|
 * | 0      | 1    | type of the payload after this one (0: none)     |
 * | 1      | 1    | bit 7: critical (an unknown critical payload     |
 * |        |      | rejects the message); the rest reserved          |
 * | 2      | 2    | length of this payload, generic header included  |
 *
 * Bodies after the generic header (offsets relative to the body):
 *
 * | payload       | layout                                                    |
 * |---------------|-----------------------------------------------------------|
 * | KE (34)       | 0 DH group (2), 2 reserved (2), 4 key exchange data       |
 * | IDi/IDr (35/6)| 0 ID type (1), 1 reserved (3), 4 identification data      |
 * | CERT (37)     | 0 encoding (1), 1 certificate data                        |
 * | CERTREQ (38)  | 0 encoding (1), 1 SHA-1 hashes of trusted CAs' keys       |
 * | AUTH (39)     | 0 auth method (1), 1 reserved (3), 4 authentication data  |
 * | Ni/Nr (40)    | 0 nonce data, 16 to 256 bytes                             |
 * | N (41)        | 0 protocol (1), 1 SPI size (1), 2 notify type (2), 4 SPI, |
 * |               | then notification data                                    |
 * | D (42)        | 0 protocol (1), 1 SPI size (1), 2 number of SPIs (2), SPIs|
 * | V (43)        | 0 vendor ID                                               |
 * | SA, TSi/TSr   | sa-payload.ts, ts-payload.ts                              |
 * | SK (46)       | IV, ciphertext, ICV: message.ts and sk-cipher.ts          |
 */
import { fail, ok, type Parsed } from '../wire/result.ts';
import { PayloadType } from './constants.ts';
import { emitSaBody, parseSaBody, type Proposal } from './sa-payload.ts';
import { emitTsBody, parseTsBody, type TrafficSelectorPayloadEntry } from './ts-payload.ts';

type PT = typeof PayloadType;

export interface SaPayload {
  readonly type: PT['SA'];
  readonly proposals: readonly Proposal[];
}
export interface KePayload {
  readonly type: PT['KE'];
  readonly group: number;
  readonly data: Buffer;
}
export interface IdPayload {
  readonly type: PT['IDi'] | PT['IDr'];
  readonly idType: number;
  readonly data: Buffer;
}
export interface CertPayload {
  readonly type: PT['CERT'] | PT['CERTREQ'];
  readonly encoding: number;
  readonly data: Buffer;
}
export interface AuthPayload {
  readonly type: PT['AUTH'];
  readonly method: number;
  readonly data: Buffer;
}
export interface NoncePayload {
  readonly type: PT['NONCE'];
  readonly data: Buffer;
}
export interface NotifyPayload {
  readonly type: PT['NOTIFY'];
  /** 0 when the notification concerns no SA; IKE 1, AH 2, ESP 3. */
  readonly protocol: number;
  readonly spi: Buffer;
  readonly notifyType: number;
  readonly data: Buffer;
}
export interface DeletePayload {
  readonly type: PT['DELETE'];
  readonly protocol: number;
  /** 0 for IKE (the SA the message travels in), 4 for ESP and AH. */
  readonly spiSize: number;
  readonly spis: readonly Buffer[];
}
export interface VendorPayload {
  readonly type: PT['VENDOR'];
  readonly data: Buffer;
}
export interface TsPayload {
  readonly type: PT['TSi'] | PT['TSr'];
  readonly selectors: readonly TrafficSelectorPayloadEntry[];
}
/** A payload this codec does not interpret (CP, EAP, ...), kept as its body. */
export interface OpaquePayload {
  readonly type: number;
  readonly critical: boolean;
  readonly body: Buffer;
  readonly opaque: true;
}

export type Payload =
  | SaPayload
  | KePayload
  | IdPayload
  | CertPayload
  | AuthPayload
  | NoncePayload
  | NotifyPayload
  | DeletePayload
  | VendorPayload
  | TsPayload
  | OpaquePayload;

export const GENERIC_HEADER_LENGTH = 4;
/** More payloads than any exchange carries (a full IKE_AUTH has about 15). */
export const MAX_PAYLOADS = 64;
export const MIN_NONCE = 16;
export const MAX_NONCE = 256;
const MAX_DELETE_SPIS = 1024;

const isOpaque = (p: Payload): p is OpaquePayload => 'opaque' in p;

/** Interprets one payload body of a known type; unknown types become OpaquePayload. */
export function parsePayloadBody(type: number, critical: boolean, b: Buffer): Parsed<Payload> {
  switch (type) {
    case PayloadType.SA: {
      const r = parseSaBody(b);
      return r.ok ? ok({ type, proposals: r.value }) : r;
    }
    case PayloadType.KE:
      if (b.length < 4) return fail('truncated');
      return ok({ type, group: b.readUInt16BE(0), data: Buffer.from(b.subarray(4)) });
    case PayloadType.IDi:
    case PayloadType.IDr:
      if (b.length < 4) return fail('truncated');
      return ok({ type, idType: b[0]!, data: Buffer.from(b.subarray(4)) });
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      if (b.length < 1) return fail('truncated');
      return ok({ type, encoding: b[0]!, data: Buffer.from(b.subarray(1)) });
    case PayloadType.AUTH:
      if (b.length < 4) return fail('truncated');
      return ok({ type, method: b[0]!, data: Buffer.from(b.subarray(4)) });
    case PayloadType.NONCE:
      if (b.length < MIN_NONCE || b.length > MAX_NONCE) return fail('bad-length');
      return ok({ type, data: Buffer.from(b) });
    case PayloadType.NOTIFY: {
      if (b.length < 4) return fail('truncated');
      const spiSize = b[1]!;
      if (4 + spiSize > b.length) return fail('truncated');
      return ok({
        type,
        protocol: b[0]!,
        notifyType: b.readUInt16BE(2),
        spi: Buffer.from(b.subarray(4, 4 + spiSize)),
        data: Buffer.from(b.subarray(4 + spiSize)),
      });
    }
    case PayloadType.DELETE: {
      if (b.length < 4) return fail('truncated');
      const spiSize = b[1]!;
      const count = b.readUInt16BE(2);
      if (count > MAX_DELETE_SPIS) return fail('bad-value');
      if (b.length !== 4 + spiSize * count) return fail('bad-length');
      const spis: Buffer[] = [];
      for (let i = 0; i < count; i++)
        spis.push(Buffer.from(b.subarray(4 + i * spiSize, 4 + (i + 1) * spiSize)));
      return ok({ type, protocol: b[0]!, spiSize, spis });
    }
    case PayloadType.VENDOR:
      return ok({ type, data: Buffer.from(b) });
    case PayloadType.TSi:
    case PayloadType.TSr: {
      const r = parseTsBody(b);
      return r.ok ? ok({ type, selectors: r.value }) : r;
    }
    default:
      return ok({ type, critical, body: Buffer.from(b), opaque: true });
  }
}

/** The body of a payload, without its generic header. */
export function emitPayloadBody(p: Payload): Buffer {
  if (isOpaque(p)) return p.body;
  switch (p.type) {
    case PayloadType.SA:
      return emitSaBody(p.proposals);
    case PayloadType.KE: {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(p.group, 0);
      return Buffer.concat([h, p.data]);
    }
    case PayloadType.IDi:
    case PayloadType.IDr:
      return Buffer.concat([Buffer.from([p.idType, 0, 0, 0]), p.data]);
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      return Buffer.concat([Buffer.from([p.encoding]), p.data]);
    case PayloadType.AUTH:
      return Buffer.concat([Buffer.from([p.method, 0, 0, 0]), p.data]);
    case PayloadType.NONCE:
    case PayloadType.VENDOR:
      return p.data;
    case PayloadType.NOTIFY: {
      const h = Buffer.alloc(4);
      h[0] = p.protocol;
      h[1] = p.spi.length;
      h.writeUInt16BE(p.notifyType, 2);
      return Buffer.concat([h, p.spi, p.data]);
    }
    case PayloadType.DELETE: {
      const h = Buffer.alloc(4);
      h[0] = p.protocol;
      h[1] = p.spiSize;
      h.writeUInt16BE(p.spis.length, 2);
      return Buffer.concat([h, ...p.spis]);
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      return emitTsBody(p.selectors);
  }
}

/** A chain of payloads as found in a message, with where the chain stopped. */
export interface ParsedChain {
  readonly payloads: Payload[];
  /**
   * Set when the chain ends in an Encrypted and Authenticated payload
   * (SK, or SKF for a fragment): its offset in the buffer, the type of the
   * first payload inside it, and its body (IV, ciphertext, ICV).
   */
  readonly encrypted?: {
    readonly type: number;
    readonly offset: number;
    readonly firstInner: number;
    readonly body: Buffer;
  };
}

/**
 * Walks a payload chain from `offset` to the end of `b`, starting with
 * payload type `first`. An SK (or SKF) payload must be the last; its inner
 * chain is left to the caller, who has the keys. Never throws.
 */
export function parsePayloadChain(b: Buffer, offset: number, first: number): Parsed<ParsedChain> {
  const payloads: Payload[] = [];
  let next = first;
  let i = offset;
  while (next !== PayloadType.NONE) {
    if (payloads.length >= MAX_PAYLOADS) return fail('bad-value');
    if (i + GENERIC_HEADER_LENGTH > b.length) return fail('truncated');
    const following = b[i]!;
    const critical = (b[i + 1]! & 0x80) !== 0;
    const len = b.readUInt16BE(i + 2);
    if (len < GENERIC_HEADER_LENGTH) return fail('bad-length');
    if (i + len > b.length) return fail('truncated');
    const body = b.subarray(i + GENERIC_HEADER_LENGTH, i + len);
    if (next === PayloadType.SK || next === PayloadType.SKF) {
      if (i + len !== b.length) return fail('bad-length');
      return ok({
        payloads,
        encrypted: { type: next, offset: i, firstInner: following, body: Buffer.from(body) },
      });
    }
    const p = parsePayloadBody(next, critical, body);
    if (!p.ok) return p;
    payloads.push(p.value);
    next = following;
    i += len;
  }
  if (i !== b.length) return fail('bad-length');
  return ok({ payloads });
}

/** Encodes payloads with linked generic headers; the last one's Next Payload is `after`. */
export function emitPayloadChain(payloads: readonly Payload[], after: number = PayloadType.NONE): Buffer {
  const parts: Buffer[] = [];
  payloads.forEach((p, k) => {
    const body = emitPayloadBody(p);
    const h = Buffer.alloc(GENERIC_HEADER_LENGTH);
    h[0] = k + 1 < payloads.length ? payloads[k + 1]!.type : after;
    h[1] = isOpaque(p) && p.critical ? 0x80 : 0;
    h.writeUInt16BE(GENERIC_HEADER_LENGTH + body.length, 2);
    parts.push(h, body);
  });
  return Buffer.concat(parts);
}

/** The interpreted payload kind whose type field admits T (TsPayload for TSi and for TSr). */
export type PayloadOf<T extends number> =
  Exclude<Payload, OpaquePayload> extends infer P
    ? P extends { type: infer U }
      ? T extends U
        ? P
        : never
      : never
    : never;

/** Payloads of one type, in message order. */
export function payloadsOf<T extends number>(payloads: readonly Payload[], type: T): PayloadOf<T>[] {
  return payloads.filter((p) => p.type === type && !isOpaque(p)) as PayloadOf<T>[];
}

export function firstPayload<T extends number>(
  payloads: readonly Payload[],
  type: T,
): PayloadOf<T> | undefined {
  return payloadsOf(payloads, type)[0];
}

export function notifiesOf(payloads: readonly Payload[]): NotifyPayload[] {
  return payloadsOf(payloads, PayloadType.NOTIFY) as NotifyPayload[];
}

export function findNotify(payloads: readonly Payload[], notifyType: number): NotifyPayload | undefined {
  return notifiesOf(payloads).find((n) => n.notifyType === notifyType);
}

/** A notification about no particular SA. */
export function notify(
  notifyType: number,
  data: Buffer = Buffer.alloc(0),
  protocol = 0,
  spi: Buffer = Buffer.alloc(0),
): NotifyPayload {
  return { type: PayloadType.NOTIFY, protocol, spi, notifyType, data };
}

/** Unknown payloads the sender marked critical: the message must be refused (RFC 7296 2.5). */
export function unsupportedCritical(payloads: readonly Payload[]): number | undefined {
  return payloads.find((p) => isOpaque(p) && p.critical)?.type;
}

export { isOpaque };
