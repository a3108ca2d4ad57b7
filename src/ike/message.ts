/**
 * Whole IKE messages: header plus payload chain, in clear (IKE_SA_INIT) or
 * with the payloads inside an SK payload (every later exchange).
 *
 *   HDR, SA, KEi, Ni, N...            (IKE_SA_INIT: the chain follows the header)
 *   HDR, SK {IDi, CERT, AUTH, ...}    (the rest: SK is the one outer payload)
 *
 * Parsing happens in two steps because the second needs keys: parseIkeMessage
 * reads the header and the clear chain and stops at SK; openIkeMessage
 * decrypts SK and parses the inner chain, whose first type is in SK's Next
 * Payload field. Neither throws for bad input.
 */
import { ok, type Parsed, type WireError } from '../wire/result.ts';
import { PayloadType } from './constants.ts';
import { emitIkeHeader, IKE_HEADER_LENGTH, parseIkeHeader, type IkeHeader } from './header.ts';
import {
  emitPayloadChain,
  GENERIC_HEADER_LENGTH,
  parsePayloadChain,
  type Payload,
  type ParsedChain,
} from './payloads.ts';
import type { SkCipher, SkOpenFailure } from './sk-cipher.ts';

export interface IkeMessage {
  readonly header: IkeHeader;
  /** Payloads in clear (all of them in IKE_SA_INIT; usually none before SK). */
  readonly payloads: readonly Payload[];
  readonly encrypted: ParsedChain['encrypted'];
  /** The bytes the message was parsed from (AUTH signs IKE_SA_INIT's, SK's ICV covers them). */
  readonly raw: Buffer;
}

/** Header fields a sender chooses (next payload and length are derived). */
export type HeaderFields = Omit<IkeHeader, 'length' | 'nextPayload' | 'majorVersion' | 'minorVersion'>;

export function parseIkeMessage(data: Uint8Array): Parsed<IkeMessage> {
  const h = parseIkeHeader(data);
  if (!h.ok) return h;
  const raw = Buffer.from(data.buffer, data.byteOffset, data.length);
  const chain = parsePayloadChain(raw, IKE_HEADER_LENGTH, h.value.nextPayload);
  if (!chain.ok) return chain;
  return ok({ header: h.value, payloads: chain.value.payloads, encrypted: chain.value.encrypted, raw });
}

export type OpenedMessage =
  | { readonly ok: true; readonly payloads: Payload[] }
  | {
      readonly ok: false;
      readonly reason: SkOpenFailure | 'no-sk' | WireError;
    };

/** Decrypts and parses the SK payload of a message parsed by parseIkeMessage. */
export function openIkeMessage(msg: IkeMessage, cipher: SkCipher): OpenedMessage {
  const e = msg.encrypted;
  if (e === undefined || e.type !== PayloadType.SK) return { ok: false, reason: 'no-sk' };
  const ivOffset = e.offset + GENERIC_HEADER_LENGTH;
  if (msg.raw.length < ivOffset + cipher.ivLength + cipher.icvLength + 1)
    return { ok: false, reason: 'malformed' };
  const opened = cipher.open(msg.raw, ivOffset);
  if (!opened.ok) return opened;
  const chain = parsePayloadChain(opened.plain, 0, e.firstInner);
  if (!chain.ok) return { ok: false, reason: chain.reason };
  // An SK inside an SK is nonsense.
  if (chain.value.encrypted !== undefined) return { ok: false, reason: 'bad-value' };
  return { ok: true, payloads: chain.value.payloads };
}

/** A message in clear. */
export function emitIkeMessage(header: HeaderFields, payloads: readonly Payload[]): Buffer {
  const chain = emitPayloadChain(payloads);
  const out = Buffer.alloc(IKE_HEADER_LENGTH + chain.length);
  emitIkeHeader(out, 0, { ...header, nextPayload: payloads[0]?.type ?? PayloadType.NONE }, out.length);
  chain.copy(out, IKE_HEADER_LENGTH);
  return out;
}

/** A message whose payloads all travel inside one SK payload. */
export function emitEncryptedIkeMessage(
  header: HeaderFields,
  payloads: readonly Payload[],
  cipher: SkCipher,
): Buffer {
  const chain = emitPayloadChain(payloads);
  const plainLength = cipher.paddedLength(chain.length);
  const plain = Buffer.alloc(plainLength);
  chain.copy(plain, 0);
  plain[plainLength - 1] = plainLength - chain.length - 1;
  const skLength = GENERIC_HEADER_LENGTH + cipher.ivLength + plainLength + cipher.icvLength;
  const out = Buffer.alloc(IKE_HEADER_LENGTH + skLength);
  emitIkeHeader(out, 0, { ...header, nextPayload: PayloadType.SK }, out.length);
  out[IKE_HEADER_LENGTH] = payloads[0]?.type ?? PayloadType.NONE;
  out.writeUInt16BE(skLength, IKE_HEADER_LENGTH + 2);
  cipher.seal(out, IKE_HEADER_LENGTH + GENERIC_HEADER_LENGTH, plain);
  return out;
}

/**
 * Re-encodes a parsed message in clear exactly as the codec would write it:
 * for golden tests (strongSwan's bytes must come back unchanged).
 */
export function reemitClear(msg: IkeMessage): Buffer {
  const h = msg.header;
  const chain = emitPayloadChain(msg.payloads, msg.encrypted?.type ?? PayloadType.NONE);
  const parts = [chain];
  if (msg.encrypted !== undefined) {
    const g = Buffer.alloc(GENERIC_HEADER_LENGTH);
    g[0] = msg.encrypted.firstInner;
    g.writeUInt16BE(GENERIC_HEADER_LENGTH + msg.encrypted.body.length, 2);
    parts.push(g, msg.encrypted.body);
  }
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(IKE_HEADER_LENGTH + body.length);
  emitIkeHeader(out, 0, h, out.length);
  body.copy(out, IKE_HEADER_LENGTH);
  return out;
}
