/**
 * IKE header (RFC 7296 3.1).
 *
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                       IKE SA Initiator's SPI                  |
 * |                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                       IKE SA Responder's SPI                  |
 * |                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                          Message ID                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                            Length                             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                              |
 * |--------|------|----------------------------------------------------|
 * | 0      | 8    | initiator's SPI (never zero)                       |
 * | 8      | 8    | responder's SPI (zero in the first IKE_SA_INIT)    |
 * | 16     | 1    | first payload's type                               |
 * | 17     | 1    | major version (high 4 bits, 2), minor (low 4, 0)   |
 * | 18     | 1    | exchange type                                      |
 * | 19     | 1    | flags: R 0x20, V 0x10, I 0x08                      |
 * | 20     | 4    | message ID                                         |
 * | 24     | 4    | length of the whole message, header included       |
 *
 * When IKE shares a UDP port with ESP (RFC 3948, port 4500 or a distnat
 * host's leased port), each IKE message is preceded by the four-byte non-ESP
 * marker (zero, where ESP has its non-zero SPI); the transport adds and strips
 * it, the header starts after it.
 */
import { fail, ok, type Parsed } from '../wire/result.ts';
import { HeaderFlag, IKE_MAJOR_VERSION, IKE_MINOR_VERSION } from './constants.ts';

export const IKE_HEADER_LENGTH = 28;
/** Bigger than any UDP payload over IPv4: lengths beyond it are lies. */
export const MAX_IKE_MESSAGE = 65_507;
export const NON_ESP_MARKER_LENGTH = 4;
/** IKE's ports (RFC 7296 2.23): plain IKE on 500; on 4500 (NAT-T, RFC 3948) IKE after a non-ESP marker, ESP without. */
export const IKE_PORT = 500;
export const NATT_PORT = 4500;

export interface IkeHeader {
  readonly spiI: bigint;
  readonly spiR: bigint;
  readonly nextPayload: number;
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly exchange: number;
  readonly flags: number;
  readonly messageId: number;
  /** The length field; the whole message including this header. */
  readonly length: number;
}

export const isResponse = (h: IkeHeader): boolean => (h.flags & HeaderFlag.RESPONSE) !== 0;
export const fromInitiator = (h: IkeHeader): boolean => (h.flags & HeaderFlag.INITIATOR) !== 0;

/**
 * Reads the header of a message that fills `buf` (one UDP payload, marker
 * removed). The length field must equal the datagram's length: RFC 7296 gives
 * no meaning to trailing bytes, and a short datagram is a truncated message.
 * The major version is returned, not checked: a responder answers a higher
 * one with INVALID_MAJOR_VERSION.
 */
export function parseIkeHeader(buf: Uint8Array): Parsed<IkeHeader> {
  if (buf.length < IKE_HEADER_LENGTH) return fail('truncated');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const length = b.readUInt32BE(24);
  if (length < IKE_HEADER_LENGTH || length > MAX_IKE_MESSAGE) return fail('bad-length');
  if (length > buf.length) return fail('truncated');
  if (length < buf.length) return fail('bad-length');
  return ok({
    spiI: b.readBigUInt64BE(0),
    spiR: b.readBigUInt64BE(8),
    nextPayload: b[16]!,
    majorVersion: b[17]! >> 4,
    minorVersion: b[17]! & 0x0f,
    exchange: b[18]!,
    flags: b[19]!,
    messageId: b.readUInt32BE(20),
    length,
  });
}

/** Writes the header into `out` at `offset`; `length` is the whole message's. */
export function emitIkeHeader(
  out: Buffer,
  offset: number,
  h: Omit<IkeHeader, 'length' | 'majorVersion' | 'minorVersion'> & {
    majorVersion?: number;
    minorVersion?: number;
  },
  length: number,
): void {
  out.writeBigUInt64BE(h.spiI, offset);
  out.writeBigUInt64BE(h.spiR, offset + 8);
  out[offset + 16] = h.nextPayload;
  out[offset + 17] = ((h.majorVersion ?? IKE_MAJOR_VERSION) << 4) | (h.minorVersion ?? IKE_MINOR_VERSION);
  out[offset + 18] = h.exchange;
  out[offset + 19] = h.flags;
  out.writeUInt32BE(h.messageId >>> 0, offset + 20);
  out.writeUInt32BE(length, offset + 24);
}

/** "0123456789abcdef": SPIs in logs and as map keys, as strongSwan prints them. */
export const spiHex = (spi: bigint): string => spi.toString(16).padStart(16, '0');
