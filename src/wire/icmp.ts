/**
 * ICMP for IPv4 (RFC 792), with the Path MTU field of RFC 1191 and the
 * original-datagram length of RFC 4884.
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |     Type      |     Code      |          Checksum             |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |            (second word: depends on the type, see below)      |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |  Echo data, or for errors: Internet Header + 64 bits of the   |
 *    |  original datagram's data (more is allowed, RFC 1812 4.3.2.3) |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                                      |
 * |--------|------|------------------------------------------------------------|
 * | 0      | 1    | type                                                       |
 * | 1      | 1    | code                                                       |
 * | 2      | 2    | checksum, RFC 1071 over the whole ICMP message             |
 * | 4      | 2    | echo (0, 8): identifier                                    |
 * | 6      | 2    | echo (0, 8): sequence number                               |
 * | 4      | 4    | redirect (5): gateway internet address                     |
 * | 4      | 1    | parameter problem (12): pointer                            |
 * | 5      | 1    | unreachable (3), time exceeded (11), parameter problem     |
 * |        |      | (12): RFC 4884 length of the original datagram, 32-bit words |
 * | 6      | 2    | unreachable (3), code 4: next-hop MTU (RFC 1191)           |
 * | 8      | ...  | echo data, or the quoted original datagram                 |
 *
 * The remaining bytes of the second word are unused (sent as zero). Unknown
 * types keep their second word as one 32-bit value.
 */
import { put16, put32, u16, u32 } from './bytes.ts';
import { internetChecksum, verifiesTo0 } from './checksum.ts';
import { fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const ICMP_HEADER_LENGTH = 8;

// Where each field starts, in octets from the start of the message (the
// table above; the second word's fields overlap, by type): module constants,
// as bytes.ts explains; IcmpField gathers them for other modules.
const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
/** The whole second word, for types without a shape here. */
const REST_OF_HEADER = 4;
const IDENTIFIER = 4;
const SEQUENCE = 6;
const GATEWAY = 4;
const POINTER = 4;
const ORIGINAL_LENGTH = 5;
const NEXT_HOP_MTU = 6;
/** Echo data, or the quoted datagram of an error. */
const DATA = 8;
export const IcmpField = {
  TYPE,
  CODE,
  CHECKSUM,
  REST_OF_HEADER,
  IDENTIFIER,
  SEQUENCE,
  GATEWAY,
  POINTER,
  ORIGINAL_LENGTH,
  NEXT_HOP_MTU,
  DATA,
} as const;

/**
 * ICMP types that this codec gives a shape to, and the timestamp messages
 * (RFC 792), which the data path translates like echo. Other type values are
 * carried as numbers.
 */
export const IcmpType = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  SourceQuench: 4,
  Redirect: 5,
  EchoRequest: 8,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
} as const;
export type IcmpType = (typeof IcmpType)[keyof typeof IcmpType];

/** Destination Unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1). */
export const IcmpUnreachableCode = {
  Net: 0,
  Host: 1,
  Protocol: 2,
  Port: 3,
  FragmentationNeeded: 4,
  SourceRouteFailed: 5,
  DestinationNetworkUnknown: 6,
  DestinationHostUnknown: 7,
  NetAdministrativelyProhibited: 9,
  HostAdministrativelyProhibited: 10,
  CommunicationAdministrativelyProhibited: 13,
} as const;

/** Time Exceeded codes (RFC 792). */
export const IcmpTimeExceededCode = { TtlInTransit: 0, FragmentReassembly: 1 } as const;

/** True for the types whose body quotes an original datagram, the ones an ICMP error must be demultiplexed by. */
export function isIcmpErrorType(type: number): boolean {
  return (
    type === IcmpType.DestinationUnreachable ||
    type === IcmpType.SourceQuench ||
    type === IcmpType.Redirect ||
    type === IcmpType.TimeExceeded ||
    type === IcmpType.ParameterProblem
  );
}

/**
 * True for echo and timestamp, requests and replies: the messages with an
 * identifier at offset 4 that a NAT translates like a port (RFC 5508 3).
 */
export function isIcmpQueryType(type: number): boolean {
  return (
    type === IcmpType.EchoRequest ||
    type === IcmpType.EchoReply ||
    type === IcmpType.Timestamp ||
    type === IcmpType.TimestampReply
  );
}

/** RFC 4884 defines its length octet only for these three types. */
function hasRfc4884Length(type: number): boolean {
  return (
    type === IcmpType.DestinationUnreachable ||
    type === IcmpType.TimeExceeded ||
    type === IcmpType.ParameterProblem
  );
}

/**
 * The checks every ICMP entry point shares: at least the 8-byte header inside
 * `buf`, and (unless told otherwise) a checksum that verifies over the whole
 * message.
 */
export function checkIcmp(
  buf: Uint8Array,
  offset: number,
  length: number,
  verifyChecksum = true,
): WireError | null {
  if (!(offset >= 0 && length >= ICMP_HEADER_LENGTH && offset + length <= buf.length)) return 'truncated';
  if (verifyChecksum && !verifiesTo0(buf, offset, offset + length)) return 'bad-checksum';
  return null;
}

/**
 * A view over an ICMP message in place. Re-point one instance per packet with
 * `wrap`, call `check` once; after a null from `check` every accessor reads
 * inside [offset, offset + length), so the hot path allocates nothing.
 */
export class IcmpView extends HeaderView {
  constructor(
    buf: Uint8Array = new Uint8Array(ICMP_HEADER_LENGTH),
    offset = 0,
    length = buf.length - offset,
  ) {
    super(buf, offset, length);
  }

  check(verifyChecksum = true): WireError | null {
    return checkIcmp(this.buf, this.offset, this.length, verifyChecksum);
  }

  get type(): number {
    return this.buf[this.offset + TYPE]!;
  }
  get code(): number {
    return this.buf[this.offset + CODE]!;
  }
  get checksum(): number {
    return u16(this.buf, this.offset + CHECKSUM);
  }
  /** The whole second word, for types this codec does not shape. */
  get restOfHeader(): number {
    return u32(this.buf, this.offset + REST_OF_HEADER);
  }
  get identifier(): number {
    return u16(this.buf, this.offset + IDENTIFIER);
  }
  get sequence(): number {
    return u16(this.buf, this.offset + SEQUENCE);
  }
  get gateway(): number {
    return u32(this.buf, this.offset + GATEWAY);
  }
  get pointer(): number {
    return this.buf[this.offset + POINTER]!;
  }
  /** RFC 4884 length of the original datagram in 32-bit words; 0 = not given. */
  get originalLength(): number {
    return hasRfc4884Length(this.type) ? this.buf[this.offset + ORIGINAL_LENGTH]! : 0;
  }
  get nextHopMtu(): number {
    return u16(this.buf, this.offset + NEXT_HOP_MTU);
  }
  get isError(): boolean {
    return isIcmpErrorType(this.type);
  }
  /** Start of the echo data or of the quoted datagram. */
  get dataOffset(): number {
    return this.offset + ICMP_HEADER_LENGTH;
  }
  get dataLength(): number {
    return this.length - ICMP_HEADER_LENGTH;
  }
  get quotedOffset(): number {
    return this.offset + ICMP_HEADER_LENGTH;
  }
  /**
   * Bytes of the quoted original datagram. With an RFC 4884 length that fits,
   * the extension structure after it is excluded; a length that does not fit
   * comes from a sender that does not follow RFC 4884, so it is ignored and
   * the whole body is taken as the datagram.
   */
  get quotedLength(): number {
    const words = this.originalLength;
    const available = this.length - ICMP_HEADER_LENGTH;
    return words !== 0 && words * 4 <= available ? words * 4 : available;
  }

  verifyChecksum(): boolean {
    return verifiesTo0(this.buf, this.offset, this.offset + this.length);
  }
  fillChecksum(): void {
    put16(this.buf, this.offset + CHECKSUM, 0);
    put16(
      this.buf,
      this.offset + CHECKSUM,
      internetChecksum(this.buf, this.offset, this.offset + this.length),
    );
  }
}

/** The plain representation. `code` is kept for every type since codes outside the RFC's list are still values. */
export type IcmpMessage =
  | {
      readonly kind: 'echo-request' | 'echo-reply';
      readonly code: number;
      readonly identifier: number;
      readonly sequence: number;
      readonly data: Uint8Array;
    }
  | {
      readonly kind: 'destination-unreachable';
      readonly code: number;
      /** RFC 4884 length in 32-bit words, 0 when the sender gave none. */
      readonly originalLength: number;
      /** RFC 1191, meaningful for code 4 (fragmentation needed); 0 otherwise. */
      readonly nextHopMtu: number;
      readonly quoted: Uint8Array;
    }
  | {
      readonly kind: 'time-exceeded';
      readonly code: number;
      readonly originalLength: number;
      readonly quoted: Uint8Array;
    }
  | {
      readonly kind: 'parameter-problem';
      readonly code: number;
      readonly pointer: number;
      readonly originalLength: number;
      readonly quoted: Uint8Array;
    }
  | { readonly kind: 'source-quench'; readonly code: number; readonly quoted: Uint8Array }
  | {
      readonly kind: 'redirect';
      readonly code: number;
      readonly gateway: number;
      readonly quoted: Uint8Array;
    }
  | {
      readonly kind: 'other';
      readonly type: number;
      readonly code: number;
      readonly restOfHeader: number;
      readonly data: Uint8Array;
    };

/**
 * Parses an ICMP message and verifies its checksum. Byte arrays in the result
 * are subarrays of `buf` (no copy). Unknown types come back as kind 'other'.
 */
export function parseIcmp(buf: Uint8Array, offset = 0, length = buf.length - offset): Parsed<IcmpMessage> {
  const err = checkIcmp(buf, offset, length);
  if (err !== null) return fail(err);
  const end = offset + length;
  const type = buf[offset + TYPE]!;
  const code = buf[offset + CODE]!;
  const body = buf.subarray(offset + DATA, end);
  switch (type) {
    case IcmpType.EchoRequest:
    case IcmpType.EchoReply:
      return ok({
        kind: type === IcmpType.EchoRequest ? 'echo-request' : 'echo-reply',
        code,
        identifier: u16(buf, offset + IDENTIFIER),
        sequence: u16(buf, offset + SEQUENCE),
        data: body,
      });
    case IcmpType.DestinationUnreachable:
      return ok({
        kind: 'destination-unreachable',
        code,
        originalLength: buf[offset + ORIGINAL_LENGTH]!,
        nextHopMtu: u16(buf, offset + NEXT_HOP_MTU),
        quoted: body,
      });
    case IcmpType.TimeExceeded:
      return ok({
        kind: 'time-exceeded',
        code,
        originalLength: buf[offset + ORIGINAL_LENGTH]!,
        quoted: body,
      });
    case IcmpType.ParameterProblem:
      return ok({
        kind: 'parameter-problem',
        code,
        pointer: buf[offset + POINTER]!,
        originalLength: buf[offset + ORIGINAL_LENGTH]!,
        quoted: body,
      });
    case IcmpType.SourceQuench:
      return ok({ kind: 'source-quench', code, quoted: body });
    case IcmpType.Redirect:
      return ok({ kind: 'redirect', code, gateway: u32(buf, offset + GATEWAY), quoted: body });
    default:
      return ok({
        kind: 'other',
        type,
        code,
        restOfHeader: u32(buf, offset + REST_OF_HEADER),
        data: body,
      });
  }
}

function typeOf(msg: IcmpMessage): number {
  switch (msg.kind) {
    case 'echo-request':
      return IcmpType.EchoRequest;
    case 'echo-reply':
      return IcmpType.EchoReply;
    case 'destination-unreachable':
      return IcmpType.DestinationUnreachable;
    case 'time-exceeded':
      return IcmpType.TimeExceeded;
    case 'parameter-problem':
      return IcmpType.ParameterProblem;
    case 'source-quench':
      return IcmpType.SourceQuench;
    case 'redirect':
      return IcmpType.Redirect;
    case 'other':
      return msg.type;
  }
}

/** Bytes `emitIcmp` will write for `msg`. */
export function icmpLength(msg: IcmpMessage): number {
  return ICMP_HEADER_LENGTH + ('data' in msg ? msg.data.length : msg.quoted.length);
}

/**
 * Writes `msg` at buf[offset] with its checksum and returns the bytes written.
 * Throws RangeError only for a buffer too small, a caller bug rather than bad input.
 */
export function emitIcmp(msg: IcmpMessage, buf: Uint8Array, offset = 0): number {
  const length = icmpLength(msg);
  if (!(offset >= 0 && offset + length <= buf.length))
    throw new RangeError('ICMP message does not fit the buffer');
  buf[offset + TYPE] = typeOf(msg);
  buf[offset + CODE] = msg.code;
  put32(buf, offset + REST_OF_HEADER, 0);
  switch (msg.kind) {
    case 'echo-request':
    case 'echo-reply':
      put16(buf, offset + IDENTIFIER, msg.identifier);
      put16(buf, offset + SEQUENCE, msg.sequence);
      buf.set(msg.data, offset + DATA);
      break;
    case 'destination-unreachable':
      buf[offset + ORIGINAL_LENGTH] = msg.originalLength;
      put16(buf, offset + NEXT_HOP_MTU, msg.nextHopMtu);
      buf.set(msg.quoted, offset + DATA);
      break;
    case 'time-exceeded':
      buf[offset + ORIGINAL_LENGTH] = msg.originalLength;
      buf.set(msg.quoted, offset + DATA);
      break;
    case 'parameter-problem':
      buf[offset + POINTER] = msg.pointer;
      buf[offset + ORIGINAL_LENGTH] = msg.originalLength;
      buf.set(msg.quoted, offset + DATA);
      break;
    case 'source-quench':
      buf.set(msg.quoted, offset + DATA);
      break;
    case 'redirect':
      put32(buf, offset + GATEWAY, msg.gateway);
      buf.set(msg.quoted, offset + DATA);
      break;
    case 'other':
      put32(buf, offset + REST_OF_HEADER, msg.restOfHeader);
      buf.set(msg.data, offset + DATA);
      break;
  }
  put16(buf, offset + CHECKSUM, 0);
  put16(buf, offset + CHECKSUM, internetChecksum(buf, offset, offset + length));
  return length;
}
