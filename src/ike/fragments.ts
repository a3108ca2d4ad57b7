/**
 * IKE fragmentation (RFC 7383): a message whose SK payload would make the
 * datagram too big for the path travels as several messages, each with one
 * Encrypted Fragment payload (SKF, type 53), each encrypted and
 * authenticated on its own, so that networks that drop IP fragments still
 * carry an IKE_AUTH with a certificate chain.
 *
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Next Payload  |C|  RESERVED   |         Payload Length        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |        Fragment Number        |        Total Fragments        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                     Initialization Vector                     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                      Encrypted content                        ~
 * +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |               |             Padding (0-255 octets)            |
 * +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
 * |                                               |  Pad Length   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                    Integrity Checksum Data                    ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                                  |
 * |--------|------|--------------------------------------------------------|
 * | 0      | 1    | first fragment: type of the first inner payload; else 0|
 * | 2      | 2    | length of the SKF payload                              |
 * | 4      | 2    | fragment number, 1 to Total Fragments                  |
 * | 6      | 2    | total fragments                                        |
 * | 8      | IV.. | as in SK (sk-cipher.ts)                                |
 *
 * Everything before the IV (IKE header, SKF header, number and total) is
 * what AES-GCM authenticates as associated data and what the HMAC of
 * AES-CBC covers, so a fragment cannot be renumbered. The content of all
 * fragments, in order, is the inner payload chain the SK payload would
 * have held (2.5).
 */
import { IPV4_MIN_HEADER_LENGTH } from '../wire/ipv4.ts';
import { fail, ok, type Parsed, type WireError } from '../wire/result.ts';
import { UDP_HEADER_LENGTH } from '../wire/udp.ts';
import { PayloadType } from './constants.ts';
import { emitIkeHeader, IKE_HEADER_LENGTH, NON_ESP_MARKER_LENGTH } from './header.ts';
import { emitEncryptedIkeMessage, type HeaderFields, type IkeMessage } from './message.ts';
import { emitPayloadChain, GENERIC_HEADER_LENGTH, type Payload } from './payloads.ts';
import type { SkCipher, SkOpenFailure } from './sk-cipher.ts';

/** Generic header, Fragment Number and Total Fragments. */
export const SKF_HEADER_LENGTH = GENERIC_HEADER_LENGTH + 4;
/** IPv4 and UDP headers in front of every IKE message; the NAT-T path adds the non-ESP marker. */
export const IPV4_UDP_OVERHEAD = IPV4_MIN_HEADER_LENGTH + UDP_HEADER_LENGTH;
/** The smallest datagram we fragment for: every IPv4 host must take 576 bytes (RFC 791). */
export const MIN_FRAGMENT_DATAGRAM = 576;

export interface FragmentHeader {
  readonly number: number;
  readonly total: number;
  /** The first inner payload's type (meaningful in fragment 1 only). */
  readonly firstInner: number;
  /** Where the IV starts in the message. */
  readonly ivOffset: number;
}

/** Reads Fragment Number and Total Fragments of a message that ends in SKF. Never throws. */
export function fragmentHeader(msg: IkeMessage): Parsed<FragmentHeader> {
  const e = msg.encrypted;
  if (e === undefined || e.type !== PayloadType.SKF) return fail('bad-type');
  if (e.body.length < 4) return fail('truncated');
  const number = e.body.readUInt16BE(0);
  const total = e.body.readUInt16BE(2);
  if (total === 0 || number === 0 || number > total) return fail('bad-value');
  return ok({ number, total, firstInner: e.firstInner, ivOffset: e.offset + SKF_HEADER_LENGTH });
}

export type OpenedFragment =
  | { readonly ok: true; readonly content: Buffer }
  | { readonly ok: false; readonly reason: SkOpenFailure | WireError };

/** Checks a fragment's ICV and decrypts it: the piece of inner chain it carries. */
export function openFragment(msg: IkeMessage, h: FragmentHeader, cipher: SkCipher): OpenedFragment {
  if (msg.raw.length < h.ivOffset + cipher.ivLength + cipher.icvLength + 1)
    return { ok: false, reason: 'truncated' };
  const opened = cipher.open(msg.raw, h.ivOffset);
  return opened.ok ? { ok: true, content: opened.plain } : opened;
}

/**
 * Bytes of inner chain one fragment carries when the whole message may be
 * `maxMessage` bytes (IKE header included): what is left after the headers,
 * IV and ICV, cut to whole cipher blocks, less the Pad Length octet.
 */
export function fragmentContentLength(cipher: SkCipher, maxMessage: number): number {
  const room = maxMessage - IKE_HEADER_LENGTH - SKF_HEADER_LENGTH - cipher.ivLength - cipher.icvLength;
  const bs = cipher.keys.encr.blockSize;
  return Math.floor(room / bs) * bs - 1;
}

/** The largest IKE message (header included) that fits a datagram of `datagram` bytes on this path. */
export const maxMessageFor = (datagram: number, natt: boolean): number =>
  datagram - IPV4_UDP_OVERHEAD - (natt ? NON_ESP_MARKER_LENGTH : 0);

/**
 * An encrypted message as datagrams: one SK message when it fits in
 * `maxMessage` bytes (or `maxMessage` is undefined: the peer did not offer
 * fragmentation), otherwise SKF fragments of at most that size.
 */
export function emitProtected(
  header: HeaderFields,
  payloads: readonly Payload[],
  cipher: SkCipher,
  maxMessage: number | undefined,
): Buffer[] {
  const chain = emitPayloadChain(payloads);
  const whole =
    IKE_HEADER_LENGTH +
    GENERIC_HEADER_LENGTH +
    cipher.ivLength +
    cipher.paddedLength(chain.length) +
    cipher.icvLength;
  if (maxMessage === undefined || whole <= maxMessage)
    return [emitEncryptedIkeMessage(header, payloads, cipher)];
  const piece = fragmentContentLength(cipher, maxMessage);
  if (piece < 1) throw new RangeError(`IKE fragments of ${maxMessage} bytes have no room for content`);
  const total = Math.ceil(chain.length / piece);
  if (total > 0xffff)
    throw new RangeError(`an IKE message of ${chain.length} bytes needs too many fragments`);
  const first = payloads[0]?.type ?? PayloadType.NONE;
  const out: Buffer[] = [];
  for (let n = 1; n <= total; n++) {
    const content = chain.subarray((n - 1) * piece, Math.min(chain.length, n * piece));
    out.push(emitFragment(header, n, total, n === 1 ? first : PayloadType.NONE, content, cipher));
  }
  return out;
}

/** One SKF message carrying `content` (a slice of the inner chain). */
export function emitFragment(
  header: HeaderFields,
  number: number,
  total: number,
  firstInner: number,
  content: Buffer,
  cipher: SkCipher,
): Buffer {
  const plainLength = cipher.paddedLength(content.length);
  const plain = Buffer.alloc(plainLength);
  content.copy(plain, 0);
  plain[plainLength - 1] = plainLength - content.length - 1;
  const skfLength = SKF_HEADER_LENGTH + cipher.ivLength + plainLength + cipher.icvLength;
  const out = Buffer.alloc(IKE_HEADER_LENGTH + skfLength);
  emitIkeHeader(out, 0, { ...header, nextPayload: PayloadType.SKF }, out.length);
  out[IKE_HEADER_LENGTH] = firstInner;
  out.writeUInt16BE(skfLength, IKE_HEADER_LENGTH + 2);
  out.writeUInt16BE(number, IKE_HEADER_LENGTH + 4);
  out.writeUInt16BE(total, IKE_HEADER_LENGTH + 6);
  cipher.seal(out, IKE_HEADER_LENGTH + SKF_HEADER_LENGTH, plain);
  return out;
}
