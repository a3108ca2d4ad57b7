/**
 * Port Allocation Protocol (PAP): the patent's FIG. 4, 5, 6 (ports) and
 * 4A, 5A, 6A (SPIs) messages, plus renewal and a 16-byte extension that
 * gives direction, status, transaction id, router epoch and lease time.
 * docs/pap.md is the full description; this is the codec.
 *
 * Every message is 28 bytes, carried as a UDP payload (port 7032) or as an
 * ICMP message of type 32/33 (type, code and checksum line up with ICMP's).
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +---------------+---------------+-------------------------------+
 *  0 |     Type      |     Code      |           Checksum            |
 *    +---------------+---------------+-------------------------------+
 *  4 |       patent part: fields of FIG. 4/5/6/4A/5A/6A, see below   |
 *  8 |     (shared address of a port message, SPI fields, or zero)   |
 *    +---------------+---------------+-------------------------------+
 * 12 |    Version    |R|  reserved   |            Status             |
 *    +---------------+---------------+-------------------------------+
 * 16 |                        Transaction ID                         |
 *    +---------------------------------------------------------------+
 * 20 |                         Router Epoch                          |
 *    +---------------------------------------------------------------+
 * 24 |                      Lease Time (seconds)                     |
 *    +---------------------------------------------------------------+
 *
 * Patent part (offset: size field), by type / direction / code:
 *
 * | type | R | code    | kind            | 4            | 6           | 8            |
 * |------|---|---------|-----------------|--------------|-------------|--------------|
 * | 32   | 0 | 0, 1    | port-request    | u8 requested | -           | u32 address  |
 * | 32   | 0 | 2       | port-invalidate | u16 port     | -           | u32 address  |
 * | 32   | 0 | 3       | port-renew      | u16 lowest   | u8 count    | u32 address  |
 * | 32   | 1 | 0, 1    | port-response   | u16 lowest   | u8 count    | u32 address  |
 * | 32   | 1 | 2       | port-withdraw   | u16 lowest   | u8 count    | u32 address  |
 * | 33   | 0 | 0       | spi-request     | u16 requested| u16 unused  | -            |
 * | 33   | 0 | 2       | spi-invalidate  | u32 SPI      |             | -            |
 * | 33   | 0 | 3       | spi-renew       | u32 lowest   |             | u16 count    |
 * | 33   | 1 | 0, 1    | spi-response    | u16 count    | u16 unused  | u32 lowest   |
 * | 33   | 1 | 2       | spi-withdraw    | u32 lowest   |             | u16 count    |
 *
 * The address of a port message is the shared address whose ports it is
 * about (a router may have several; the port space is addresses x ports).
 * Zero means the router's first shared address, which is what a message of
 * a host that names none says, so hosts that never name one keep working.
 * SPIs are one space per router whatever its addresses, so SPI messages
 * carry none.
 *
 * The checksum is RFC 1071 over all 28 bytes, as for ICMP.
 */
import { put16, put32, u16, u32 } from './bytes.ts';
import { internetChecksum, verifiesTo0 } from './checksum.ts';
import { fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const PAP_UDP_PORT = 7032;
export const PAP_TYPE_PORTS = 32;
export const PAP_TYPE_SPI = 33;
export const PAP_MESSAGE_LENGTH = 28;
export const PAP_VERSION = 1;
/** Flags bit R: set on every message from the router to a host. */
export const PAP_FLAG_RESPONSE = 0x80;

// Where each field starts, in octets from the start of the message (the
// diagrams above; the patent part's fields by kind): module constants, as
// bytes.ts explains; PapField gathers them for other modules.
const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
/** Port request (FIG. 4): u8. */
const PORTS_REQUESTED = 4;
/** Port invalidate (FIG. 6): u16. */
const PORT = 4;
/** Port renew, response, withdraw: u16 lowest port, u8 count. */
const LOWEST_PORT = 4;
const PORT_COUNT = 6;
/** Every port message: u32 shared address, 0 = the router's first. */
const SHARED_ADDRESS = 8;
/** SPI request (FIG. 4A): u16. */
const SPIS_REQUESTED = 4;
/** SPI invalidate (FIG. 6A): u32. */
const SPI = 4;
/** SPI renew and withdraw: u32 lowest SPI, u16 count. */
const LOWEST_SPI = 4;
const SPI_COUNT = 8;
/** SPI response (FIG. 5A): u16 count, then u32 lowest SPI. */
const RESPONSE_SPI_COUNT = 4;
const RESPONSE_LOWEST_SPI = 8;
const VERSION = 12;
/** The R bit (PAP_FLAG_RESPONSE) and reserved bits. */
const FLAGS = 13;
const STATUS = 14;
const TRANSACTION_ID = 16;
const EPOCH = 20;
const LEASE_TIME = 24;
export const PapField = {
  TYPE,
  CODE,
  CHECKSUM,
  PORTS_REQUESTED,
  PORT,
  LOWEST_PORT,
  PORT_COUNT,
  SHARED_ADDRESS,
  SPIS_REQUESTED,
  SPI,
  LOWEST_SPI,
  SPI_COUNT,
  RESPONSE_SPI_COUNT,
  RESPONSE_LOWEST_SPI,
  VERSION,
  FLAGS,
  STATUS,
  TRANSACTION_ID,
  EPOCH,
  LEASE_TIME,
} as const;

/** Codes of host-to-router messages (R = 0). */
export const PapRequestCode = { Request: 0, RequestHighPorts: 1, Invalidate: 2, Renew: 3 } as const;
/** Codes of router-to-host messages (R = 1). */
export const PapResponseCode = { Failure: 0, Success: 1, Withdraw: 2 } as const;

/** Status field values. Unknown values are passed through as numbers. */
export const PapStatus = {
  Ok: 0,
  QuotaExceeded: 1,
  PoolExhausted: 2,
  UnknownLease: 3,
  StaleEpoch: 4,
  Malformed: 5,
  /** The router lost its lease state and grants nothing new yet; lease time = seconds until it does. */
  TryLater: 6,
  /** A port message named a shared address the router does not serve. */
  UnknownAddress: 7,
} as const;
export type PapStatus = (typeof PapStatus)[keyof typeof PapStatus];

/** Each status's name, as docs/pap.md section 4 and the counters and logs of both ends give it. */
export const PAP_STATUS_NAME = {
  [PapStatus.Ok]: 'ok',
  [PapStatus.QuotaExceeded]: 'quota-exceeded',
  [PapStatus.PoolExhausted]: 'pool-exhausted',
  [PapStatus.UnknownLease]: 'unknown-lease',
  [PapStatus.StaleEpoch]: 'stale-epoch',
  [PapStatus.Malformed]: 'malformed',
  [PapStatus.TryLater]: 'try-later',
  [PapStatus.UnknownAddress]: 'unknown-address',
} as const satisfies Record<PapStatus, string>;
export type PapStatusName = (typeof PAP_STATUS_NAME)[PapStatus];

/** The name of a status read off the wire; undefined for one this version does not define. */
export function papStatusName(status: number): PapStatusName | undefined {
  return (PAP_STATUS_NAME as Readonly<Record<number, PapStatusName>>)[status];
}

/** Whether `code` is defined for this type and direction. */
export function isPapCodeValid(type: number, response: boolean, code: number): boolean {
  if (type === PAP_TYPE_PORTS) return response ? code <= 2 : code <= 3;
  if (type === PAP_TYPE_SPI) return response ? code <= 2 : code === 0 || code === 2 || code === 3;
  return false;
}

/**
 * The receiver's checks, in the order docs/pap.md gives: exactly 28 bytes
 * ('truncated' if the range leaves `buf`, 'bad-length' otherwise), checksum,
 * version, type, code for the direction. Reserved bits and unused bytes are
 * not checked.
 */
export function checkPap(
  buf: Uint8Array,
  offset: number,
  length: number,
  verifyChecksum = true,
): WireError | null {
  if (!(offset >= 0 && length >= 0 && offset + length <= buf.length)) return 'truncated';
  if (length !== PAP_MESSAGE_LENGTH) return 'bad-length';
  if (verifyChecksum && !verifiesTo0(buf, offset, offset + PAP_MESSAGE_LENGTH)) return 'bad-checksum';
  if (buf[offset + VERSION] !== PAP_VERSION) return 'bad-version';
  const type = buf[offset + TYPE]!;
  if (type !== PAP_TYPE_PORTS && type !== PAP_TYPE_SPI) return 'bad-type';
  if (!isPapCodeValid(type, (buf[offset + FLAGS]! & PAP_FLAG_RESPONSE) !== 0, buf[offset + CODE]!))
    return 'bad-code';
  return null;
}

/**
 * A view over a PAP message in place: `wrap`, `check` once, then read. Field
 * getters follow the layout that type, direction and code select (see the
 * table above).
 */
export class PapView extends HeaderView {
  constructor(
    buf: Uint8Array = new Uint8Array(PAP_MESSAGE_LENGTH),
    offset = 0,
    length = buf.length - offset,
  ) {
    super(buf, offset, length);
  }

  check(verifyChecksum = true): WireError | null {
    return checkPap(this.buf, this.offset, this.length, verifyChecksum);
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
  get version(): number {
    return this.buf[this.offset + VERSION]!;
  }
  get flags(): number {
    return this.buf[this.offset + FLAGS]!;
  }
  get isResponse(): boolean {
    return (this.flags & PAP_FLAG_RESPONSE) !== 0;
  }
  get status(): number {
    return u16(this.buf, this.offset + STATUS);
  }
  get transactionId(): number {
    return u32(this.buf, this.offset + TRANSACTION_ID);
  }
  get epoch(): number {
    return u32(this.buf, this.offset + EPOCH);
  }
  get leaseTime(): number {
    return u32(this.buf, this.offset + LEASE_TIME);
  }
  /** FIG. 4 ports-requested field (type 32 request). */
  get portsRequested(): number {
    return this.buf[this.offset + PORTS_REQUESTED]!;
  }
  /** FIG. 6 port field, widened to 16 bits (type 32 invalidate). */
  get port(): number {
    return u16(this.buf, this.offset + PORT);
  }
  /** Lowest port of a block (type 32 renew, response, withdraw). */
  get lowestPort(): number {
    return u16(this.buf, this.offset + LOWEST_PORT);
  }
  /** Number of ports in a block (type 32 renew, response, withdraw). */
  get portCount(): number {
    return this.buf[this.offset + PORT_COUNT]!;
  }
  /** Shared address of a port message (type 32), 0 = the router's first. */
  get sharedAddress(): number {
    return u32(this.buf, this.offset + SHARED_ADDRESS);
  }
  /** FIG. 4A security-values-requested field (type 33 request). */
  get spisRequested(): number {
    return u16(this.buf, this.offset + SPIS_REQUESTED);
  }
  /** FIG. 6A security-value field (type 33 invalidate). */
  get spi(): number {
    return u32(this.buf, this.offset + SPI);
  }
  private get isFig5A(): boolean {
    return this.isResponse && this.code <= PapResponseCode.Success;
  }
  /** Lowest SPI of a block: offset 8 in a FIG. 5A response, offset 4 in renew and withdraw. */
  get lowestSpi(): number {
    return u32(this.buf, this.offset + (this.isFig5A ? RESPONSE_LOWEST_SPI : LOWEST_SPI));
  }
  /** Number of SPIs: offset 4 in a FIG. 5A response, offset 8 in renew and withdraw. */
  get spiCount(): number {
    return u16(this.buf, this.offset + (this.isFig5A ? RESPONSE_SPI_COUNT : SPI_COUNT));
  }

  verifyChecksum(): boolean {
    return verifiesTo0(this.buf, this.offset, this.offset + PAP_MESSAGE_LENGTH);
  }
  fillChecksum(): void {
    put16(this.buf, this.offset + CHECKSUM, 0);
    put16(
      this.buf,
      this.offset + CHECKSUM,
      internetChecksum(this.buf, this.offset, this.offset + PAP_MESSAGE_LENGTH),
    );
  }
}

/** The extension fields every message carries (offsets 14-27). */
export interface PapExtension {
  /** A PapStatus value; others pass through. */
  readonly status: number;
  /** Chosen by the host, echoed by the router; a retransmission reuses it. */
  readonly transactionId: number;
  /** Router's epoch in router messages; the last epoch the host saw (0 = none) in host messages. */
  readonly epoch: number;
  /** Seconds: granted (router) or wanted, 0 = router default (host). */
  readonly leaseTime: number;
}

/**
 * The shared address a port message names, as an unsigned 32-bit number;
 * absent (and parsed as absent) when zero: the router's first address.
 */
export interface PapAddressed {
  readonly address?: number;
}

/** The plain representation; `kind` selects type, direction and code. */
export type PapMessage = PapExtension &
  (
    | (PapAddressed & {
        readonly kind: 'port-request';
        readonly highPorts: boolean;
        readonly portsRequested: number;
      })
    | (PapAddressed & { readonly kind: 'port-invalidate'; readonly port: number })
    | (PapAddressed & {
        readonly kind: 'port-renew';
        readonly lowestPort: number;
        readonly portCount: number;
      })
    | (PapAddressed & {
        readonly kind: 'port-response';
        readonly success: boolean;
        readonly lowestPort: number;
        readonly portCount: number;
      })
    | (PapAddressed & {
        readonly kind: 'port-withdraw';
        readonly lowestPort: number;
        readonly portCount: number;
      })
    | { readonly kind: 'spi-request'; readonly spisRequested: number }
    | { readonly kind: 'spi-invalidate'; readonly spi: number }
    | { readonly kind: 'spi-renew'; readonly lowestSpi: number; readonly spiCount: number }
    | {
        readonly kind: 'spi-response';
        readonly success: boolean;
        readonly lowestSpi: number;
        readonly spiCount: number;
      }
    | { readonly kind: 'spi-withdraw'; readonly lowestSpi: number; readonly spiCount: number }
  );
export type PapKind = PapMessage['kind'];

function bodyOf(v: PapView): PapMessage {
  const ext = { status: v.status, transactionId: v.transactionId, epoch: v.epoch, leaseTime: v.leaseTime };
  const code = v.code;
  if (v.type === PAP_TYPE_PORTS) {
    const address = v.sharedAddress;
    const px = address === 0 ? ext : { ...ext, address };
    if (!v.isResponse) {
      if (code <= PapRequestCode.RequestHighPorts) {
        return { kind: 'port-request', highPorts: code === 1, portsRequested: v.portsRequested, ...px };
      }
      if (code === PapRequestCode.Invalidate) return { kind: 'port-invalidate', port: v.port, ...px };
      return { kind: 'port-renew', lowestPort: v.lowestPort, portCount: v.portCount, ...px };
    }
    if (code === PapResponseCode.Withdraw) {
      return { kind: 'port-withdraw', lowestPort: v.lowestPort, portCount: v.portCount, ...px };
    }
    return {
      kind: 'port-response',
      success: code === 1,
      lowestPort: v.lowestPort,
      portCount: v.portCount,
      ...px,
    };
  }
  if (!v.isResponse) {
    if (code === PapRequestCode.Request)
      return { kind: 'spi-request', spisRequested: v.spisRequested, ...ext };
    if (code === PapRequestCode.Invalidate) return { kind: 'spi-invalidate', spi: v.spi, ...ext };
    return { kind: 'spi-renew', lowestSpi: v.lowestSpi, spiCount: v.spiCount, ...ext };
  }
  if (code === PapResponseCode.Withdraw) {
    return { kind: 'spi-withdraw', lowestSpi: v.lowestSpi, spiCount: v.spiCount, ...ext };
  }
  return { kind: 'spi-response', success: code === 1, lowestSpi: v.lowestSpi, spiCount: v.spiCount, ...ext };
}

/** Parses a PAP message after `checkPap`'s checks. */
export function parsePap(buf: Uint8Array, offset = 0, length = buf.length - offset): Parsed<PapMessage> {
  const view = new PapView(buf, offset, length);
  const err = view.check();
  return err === null ? ok(bodyOf(view)) : fail(err);
}

/** Type, R flag and code that `kind` stands for. */
function header(msg: PapMessage): [type: number, response: boolean, code: number] {
  switch (msg.kind) {
    case 'port-request':
      return [PAP_TYPE_PORTS, false, msg.highPorts ? 1 : 0];
    case 'port-invalidate':
      return [PAP_TYPE_PORTS, false, PapRequestCode.Invalidate];
    case 'port-renew':
      return [PAP_TYPE_PORTS, false, PapRequestCode.Renew];
    case 'port-response':
      return [PAP_TYPE_PORTS, true, msg.success ? 1 : 0];
    case 'port-withdraw':
      return [PAP_TYPE_PORTS, true, PapResponseCode.Withdraw];
    case 'spi-request':
      return [PAP_TYPE_SPI, false, PapRequestCode.Request];
    case 'spi-invalidate':
      return [PAP_TYPE_SPI, false, PapRequestCode.Invalidate];
    case 'spi-renew':
      return [PAP_TYPE_SPI, false, PapRequestCode.Renew];
    case 'spi-response':
      return [PAP_TYPE_SPI, true, msg.success ? 1 : 0];
    case 'spi-withdraw':
      return [PAP_TYPE_SPI, true, PapResponseCode.Withdraw];
  }
}

/**
 * Writes `msg` at buf[offset], checksum filled, and returns 28. Field values
 * are truncated to their widths. Throws RangeError if fewer than 28 bytes
 * remain: a caller bug, not input.
 */
export function emitPap(msg: PapMessage, buf: Uint8Array, offset = 0): number {
  if (!(offset >= 0 && offset + PAP_MESSAGE_LENGTH <= buf.length)) {
    throw new RangeError('PAP message does not fit the buffer');
  }
  const [type, response, code] = header(msg);
  buf.fill(0, offset, offset + PAP_MESSAGE_LENGTH);
  buf[offset + TYPE] = type;
  buf[offset + CODE] = code;
  if (type === PAP_TYPE_PORTS) put32(buf, offset + SHARED_ADDRESS, (msg as PapAddressed).address ?? 0);
  switch (msg.kind) {
    case 'port-request':
      buf[offset + PORTS_REQUESTED] = msg.portsRequested;
      break;
    case 'port-invalidate':
      put16(buf, offset + PORT, msg.port);
      break;
    case 'port-renew':
    case 'port-response':
    case 'port-withdraw':
      put16(buf, offset + LOWEST_PORT, msg.lowestPort);
      buf[offset + PORT_COUNT] = msg.portCount;
      break;
    case 'spi-request':
      put16(buf, offset + SPIS_REQUESTED, msg.spisRequested);
      break;
    case 'spi-invalidate':
      put32(buf, offset + SPI, msg.spi);
      break;
    case 'spi-renew':
    case 'spi-withdraw':
      put32(buf, offset + LOWEST_SPI, msg.lowestSpi);
      put16(buf, offset + SPI_COUNT, msg.spiCount);
      break;
    case 'spi-response':
      put16(buf, offset + RESPONSE_SPI_COUNT, msg.spiCount);
      put32(buf, offset + RESPONSE_LOWEST_SPI, msg.lowestSpi);
      break;
  }
  buf[offset + VERSION] = PAP_VERSION;
  buf[offset + FLAGS] = response ? PAP_FLAG_RESPONSE : 0;
  put16(buf, offset + STATUS, msg.status);
  put32(buf, offset + TRANSACTION_ID, msg.transactionId);
  put32(buf, offset + EPOCH, msg.epoch);
  put32(buf, offset + LEASE_TIME, msg.leaseTime);
  put16(buf, offset + CHECKSUM, internetChecksum(buf, offset, offset + PAP_MESSAGE_LENGTH));
  return PAP_MESSAGE_LENGTH;
}
