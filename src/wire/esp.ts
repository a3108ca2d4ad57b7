/**
 * IP Encapsulating Security Payload (RFC 4303): the cleartext header, and the
 * trailer as it appears after decryption. Ciphers and integrity algorithms
 * live elsewhere; this module only finds and writes the bytes around them.
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
 *    |               Security Parameters Index (SPI)                 | ^Int.
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
 *    |                      Sequence Number                          | |ered
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ | ----
 *    |                    Payload Data* (variable)                   | |   ^
 *    ~                                                               ~ |   |
 *    |                                                               | |Conf.
 *    +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
 *    |               |     Padding (0-255 bytes)                     | |ered*
 *    +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |   |
 *    |                               |  Pad Length   | Next Header   | v   v
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ------
 *    |         Integrity Check Value-ICV   (variable)                |
 *    ~                                                               ~
 *    |                                                               |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset          | size   | field                                        |
 * |-----------------|--------|----------------------------------------------|
 * | 0               | 4      | SPI                                          |
 * | 4               | 4      | sequence number (low 32 bits with ESN)       |
 * | 8               | ...    | payload data (an IV first, for most ciphers) |
 * | end-icv-2-pad   | pad    | padding 1, 2, 3, ... (RFC 4303 2.4)          |
 * | end-icv-2       | 1      | pad length                                   |
 * | end-icv-1       | 1      | next header (59: dummy packet, discard)      |
 * | end-icv         | icv    | ICV, length fixed by the SA                  |
 */
import { put32, u32 } from './bytes.ts';
import { fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const ESP_HEADER_LENGTH = 8;
/** Pad Length and Next Header. */
export const ESP_TRAILER_LENGTH = 2;
/** RFC 4303 2.6: a Next Header of 59 marks a traffic-flow-confidentiality dummy packet. */
export const ESP_NEXT_HEADER_DUMMY = 59;

/**
 * The lowest SPI an SA may carry, and so the lowest a host may lease: 1-255
 * are reserved by IANA and 0 never goes on the wire (RFC 4303 2.1; RFC 4302
 * 2.4 says the same of AH).
 */
export const MIN_SPI = 256;

// Where each field of the cleartext header starts, in octets from its start
// (the table above): module constants, as bytes.ts explains; EspField
// gathers them for other modules.
const SPI = 0;
const SEQUENCE = 4;
const PAYLOAD = 8;
export const EspField = { SPI, SEQUENCE, PAYLOAD } as const;

/** The trailer's fields, in octets from Pad Length (end - icv - 2 in the table above). */
const TRAILER_PAD_LENGTH = 0;
const TRAILER_NEXT_HEADER = 1;
export const EspTrailerField = { PAD_LENGTH: TRAILER_PAD_LENGTH, NEXT_HEADER: TRAILER_NEXT_HEADER } as const;

/** The cleartext header must be present; everything after it is opaque until decrypted. */
export function checkEsp(buf: Uint8Array, offset: number, length: number): WireError | null {
  return offset >= 0 && length >= ESP_HEADER_LENGTH && offset + length <= buf.length ? null : 'truncated';
}

/** A view over the cleartext ESP header; `wrap` per packet, `check` once, then read. */
export class EspView extends HeaderView {
  constructor(buf: Uint8Array = new Uint8Array(ESP_HEADER_LENGTH), offset = 0, length = buf.length - offset) {
    super(buf, offset, length);
  }

  check(): WireError | null {
    return checkEsp(this.buf, this.offset, this.length);
  }

  get spi(): number {
    return u32(this.buf, this.offset + SPI);
  }
  get sequence(): number {
    return u32(this.buf, this.offset + SEQUENCE);
  }
  /** Start of IV + ciphertext + ICV. */
  get payloadOffset(): number {
    return this.offset + PAYLOAD;
  }
  get payloadLength(): number {
    return this.length - ESP_HEADER_LENGTH;
  }
  /** Where an ICV of `icvLength` bytes starts; below payloadOffset means the packet is too short for it. */
  icvOffset(icvLength: number): number {
    return this.offset + this.length - icvLength;
  }
}

/** The cleartext part of an ESP packet; `payload` is everything after the header, still encrypted. */
export interface EspHeader {
  readonly spi: number;
  readonly sequence: number;
  readonly payload: Uint8Array;
}

export function parseEsp(buf: Uint8Array, offset = 0, length = buf.length - offset): Parsed<EspHeader> {
  if (!(offset >= 0 && length >= ESP_HEADER_LENGTH && offset + length <= buf.length))
    return fail('truncated');
  return ok({
    spi: u32(buf, offset + SPI),
    sequence: u32(buf, offset + SEQUENCE),
    payload: buf.subarray(offset + PAYLOAD, offset + length),
  });
}

export function espLength(h: EspHeader): number {
  return ESP_HEADER_LENGTH + h.payload.length;
}

/** Writes header and payload at buf[offset]; returns bytes written. Throws RangeError if the buffer is too small. */
export function emitEsp(h: EspHeader, buf: Uint8Array, offset = 0): number {
  const length = espLength(h);
  if (!(offset >= 0 && offset + length <= buf.length))
    throw new RangeError('ESP packet does not fit the buffer');
  put32(buf, offset + SPI, h.spi);
  put32(buf, offset + SEQUENCE, h.sequence);
  buf.set(h.payload, offset + PAYLOAD);
  return length;
}

/**
 * Locates and checks the trailer of a decrypted ESP payload. The plaintext
 * runs from `dataOffset` (after any IV) to `end - icvLength`, where `end` is
 * the end of the ESP packet. Returns the offset of the trailer, or why not.
 */
function locateTrailer(
  buf: Uint8Array,
  dataOffset: number,
  end: number,
  icvLength: number,
): number | WireError {
  if (!(dataOffset >= 0 && icvLength >= 0 && end <= buf.length)) return 'truncated';
  const trailer = end - icvLength - ESP_TRAILER_LENGTH;
  if (!(trailer >= dataOffset)) return 'truncated';
  const padLength = buf[trailer + TRAILER_PAD_LENGTH]!;
  const padStart = trailer - padLength;
  if (padStart < dataOffset) return 'bad-length';
  // RFC 4303 2.4: with the default padding, the receiver checks the bytes are 1, 2, 3, ...
  for (let i = 0; i < padLength; i++) if (buf[padStart + i] !== i + 1) return 'bad-padding';
  return trailer;
}

/**
 * A view over a decrypted ESP payload's data, padding and trailer. `wrap`
 * takes the plaintext's start (after any IV), the end of the ESP packet and
 * the SA's ICV length; `check` locates and verifies the trailer, after which
 * the accessors are valid.
 */
export class EspTrailerView {
  buf: Uint8Array = new Uint8Array(ESP_TRAILER_LENGTH);
  dataOffset = 0;
  end = ESP_TRAILER_LENGTH;
  icvLength = 0;
  /** Offset of Pad Length, set by a successful `check`. */
  trailerOffset = 0;

  wrap(buf: Uint8Array, dataOffset: number, end: number, icvLength = 0): this {
    this.buf = buf;
    this.dataOffset = dataOffset;
    this.end = end;
    this.icvLength = icvLength;
    this.trailerOffset = dataOffset;
    return this;
  }

  check(): WireError | null {
    const r = locateTrailer(this.buf, this.dataOffset, this.end, this.icvLength);
    if (typeof r !== 'number') return r;
    this.trailerOffset = r;
    return null;
  }

  get padLength(): number {
    return this.buf[this.trailerOffset + TRAILER_PAD_LENGTH]!;
  }
  get nextHeader(): number {
    return this.buf[this.trailerOffset + TRAILER_NEXT_HEADER]!;
  }
  get padOffset(): number {
    return this.trailerOffset - this.padLength;
  }
  /** Length of the inner packet (transport segment or, in tunnel mode, IP datagram). */
  get dataLength(): number {
    return this.padOffset - this.dataOffset;
  }
}

/** The plain representation of a decrypted ESP payload (without IV and ICV). */
export interface EspPlaintext {
  readonly data: Uint8Array;
  readonly padLength: number;
  readonly nextHeader: number;
}

/** Parses a decrypted payload; see `EspTrailerView.wrap` for the arguments. `data` is a subarray. */
export function parseEspTrailer(
  buf: Uint8Array,
  dataOffset: number,
  end: number,
  icvLength = 0,
): Parsed<EspPlaintext> {
  const r = locateTrailer(buf, dataOffset, end, icvLength);
  if (typeof r !== 'number') return fail(r);
  const padLength = buf[r + TRAILER_PAD_LENGTH]!;
  return ok({
    data: buf.subarray(dataOffset, r - padLength),
    padLength,
    nextHeader: buf[r + TRAILER_NEXT_HEADER]!,
  });
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Padding for `dataLength` bytes of payload so that payload + padding + 2 is
 * a multiple of both the cipher's block size and `alignment` (4 for IPv4,
 * RFC 4303 2.4). Block size 1 suits stream and AEAD counter modes. Throws
 * RangeError if no padding of at most 255 bytes can reach that alignment.
 */
export function espPadLength(dataLength: number, blockSize: number, alignment = 4): number {
  if (!(Number.isInteger(blockSize) && blockSize >= 1 && Number.isInteger(alignment) && alignment >= 1)) {
    throw new RangeError('block size and alignment must be positive integers');
  }
  const align = (blockSize / gcd(blockSize, alignment)) * alignment;
  if (align > 256) throw new RangeError('alignment needs more than 255 bytes of padding');
  const r = (dataLength + ESP_TRAILER_LENGTH) % align;
  return r === 0 ? 0 : align - r;
}

/** Writes padding 1, 2, ..., pad length and next header after the data; returns the offset after the trailer. */
function writeTrailer(buf: Uint8Array, dataEnd: number, padLength: number, nextHeader: number): number {
  const trailer = dataEnd + padLength;
  const end = trailer + ESP_TRAILER_LENGTH;
  if (!(dataEnd >= 0 && end <= buf.length)) throw new RangeError('ESP trailer does not fit the buffer');
  for (let i = 0; i < padLength; i++) buf[dataEnd + i] = i + 1;
  buf[trailer + TRAILER_PAD_LENGTH] = padLength;
  buf[trailer + TRAILER_NEXT_HEADER] = nextHeader;
  return end;
}

/**
 * Pads the payload at buf[dataOffset, dataOffset + dataLength) in place for
 * the given block size and alignment, then writes Pad Length and Next
 * Header. Returns the offset just after the trailer (where the plaintext to
 * encrypt ends). Throws RangeError if the buffer has no room: size it for
 * the data plus 257 bytes.
 */
export function writeEspTrailer(
  buf: Uint8Array,
  dataOffset: number,
  dataLength: number,
  nextHeader: number,
  blockSize: number,
  alignment = 4,
): number {
  return writeTrailer(
    buf,
    dataOffset + dataLength,
    espPadLength(dataLength, blockSize, alignment),
    nextHeader,
  );
}

export function espPlaintextLength(p: EspPlaintext): number {
  return p.data.length + p.padLength + ESP_TRAILER_LENGTH;
}

/** Writes data, padding of exactly `padLength` and the trailer at buf[offset]; returns bytes written. */
export function emitEspPlaintext(p: EspPlaintext, buf: Uint8Array, offset = 0): number {
  if (!(p.padLength >= 0 && p.padLength <= 255)) throw new RangeError('ESP pad length out of range');
  if (!(offset >= 0 && offset + espPlaintextLength(p) <= buf.length)) {
    throw new RangeError('ESP plaintext does not fit the buffer');
  }
  buf.set(p.data, offset);
  return writeTrailer(buf, offset + p.data.length, p.padLength, p.nextHeader) - offset;
}
