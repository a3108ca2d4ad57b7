/**
 * The vocabulary shared by the IPsec modules: modes, directions, algorithm
 * names, the drop reasons every per-packet entry point returns instead of
 * throwing, and the span a packet occupies in its buffer.
 */

export type IpsecProtocol = 'esp' | 'ah';
export type IpsecMode = 'transport' | 'tunnel';
export type SaDirection = 'inbound' | 'outbound';

/** ESP confidentiality: AES-GCM with a 16-byte ICV (RFC 4106), AES-CBC (RFC 3602), or none (RFC 2410). */
export type EspEncryption = 'aes-gcm-16' | 'aes-cbc' | 'null';

/** HMAC truncated as RFC 4868 (SHA-2) and RFC 2404 (SHA-1, for interoperation only) specify. */
export type IntegrityAlgorithm = 'hmac-sha256-128' | 'hmac-sha384-192' | 'hmac-sha512-256' | 'hmac-sha1-96';

/** Writes the IV for the packet with 64-bit sequence number `seq` at buf[at]. Tests pass fixed IVs this way. */
export type IvSource = (buf: Uint8Array, at: number, seq: number) => void;

/** One ESP suite's cipher work on a packet in place: the node:crypto ones and the native AES-GCM alike. */
export interface EspTransform {
  readonly encryption: EspEncryption;
  readonly integrity: IntegrityAlgorithm | null;
  readonly ivLength: number;
  readonly icvLength: number;
  /** Padding unit (block size, or 4 for stream-like suites). */
  readonly blockSize: number;
  /** Whether `n` bytes between IV and ICV can be a sealed payload (whole blocks for CBC). */
  payloadLengthOk(n: number): boolean;
  writeIv(buf: Uint8Array, at: number, seq: number): void;
  /**
   * Encrypts buf[ivEnd, end) in place (IV already at ivEnd - ivLength) and
   * writes the ICV at buf[end]. `seqHigh` is the ESN high half, or -1.
   */
  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): void;
  /**
   * Verifies the ICV at buf[icvAt] and decrypts buf[ivEnd, icvAt) in place.
   * False when the ICV does not verify; the buffer is then unchanged.
   */
  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): boolean;
}

/**
 * Why a packet was not passed on. One list for both directions so that
 * counters and logs read the same everywhere.
 */
export type IpsecDrop =
  | 'malformed' // headers or lengths inconsistent, inner packet not IPv4, cipher text not whole blocks
  | 'fragment' // an IPsec packet (or a transport-mode candidate) that is a fragment: reassemble first
  | 'no-sa' // inbound SPI unknown, or an outbound protect policy without its SAs (yet)
  | 'replay' // sequence number already received (checked before the ICV)
  | 'too-old' // sequence number left of the anti-replay window (checked before the ICV)
  | 'auth-failed' // ICV did not verify
  | 'bad-padding' // ESP padding not 1, 2, 3, ... or Pad Length reaching before the data
  | 'policy-mismatch' // arrived in clear where policy says protect, or protected by an SA whose policy does not cover it
  | 'policy-discard' // the SPD says discard
  | 'seq-exhausted' // the outbound counter would wrap: the SA must be rekeyed
  | 'lifetime-expired' // an SA's hard byte or packet lifetime is used up
  | 'no-room' // not enough headroom or tailroom, or the result exceeds 65535 bytes
  | 'dummy' // an ESP traffic-flow-confidentiality dummy packet (next header 59), discarded as RFC 4303 2.6 says
  | 'nat-keepalive' // a one-byte 0xFF ESP-in-UDP keepalive (RFC 3948 2.3), consumed
  | 'ecn-drop'; // tunnel egress: outer CE over a not-ECT inner packet (RFC 6040 4.2)

/** What became of an outbound packet. */
export type OutboundVerdict = 'protected' | 'bypass' | IpsecDrop;

/** What became of an inbound packet. 'ike' marks a non-ESP-marker UDP datagram for the IKE daemon, unchanged. */
export type InboundVerdict = 'accepted' | 'bypass' | 'ike' | IpsecDrop;

/**
 * Where a packet sits in a buffer and how far it may grow. The engine reads
 * the datagram at [offset, offset + length) and may write anywhere in
 * [roomStart, roomEnd): headroom before the packet, tailroom after it. It
 * updates offset and length in place. For a packet in slot i of a
 * SlotBuffer: roomStart = i * slotSize, roomEnd = (i + 1) * slotSize.
 */
export class PacketSpan {
  constructor(
    public offset = 0,
    public length = 0,
    public roomStart = 0,
    public roomEnd = 0,
  ) {}

  /** Re-points the span (one instance per caller, reused for every packet). */
  set(offset: number, length: number, roomStart: number, roomEnd: number): this {
    this.offset = offset;
    this.length = length;
    this.roomStart = roomStart;
    this.roomEnd = roomEnd;
    return this;
  }
}
