/**
 * The outcome of parsing bytes from the wire. Parsing never throws for bad
 * input: it returns one of these, and the caller counts the reason.
 */
export type Parsed<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: WireError };

/**
 * Why a header was rejected. One vocabulary for every header module so that
 * drop counters and logs read the same everywhere.
 */
export type WireError =
  | 'truncated' // fewer bytes than the header (or its declared length) needs
  | 'bad-version' // IPv4 version field is not 4, or a protocol version we do not speak
  | 'bad-ihl' // IPv4 header length below 5 words or past the buffer
  | 'bad-total-length' // IPv4 total length below the header length or past the buffer
  | 'bad-checksum' // a checksum that does not verify
  | 'bad-data-offset' // TCP data offset below 5 words or past the segment
  | 'bad-length' // a length field (UDP, AH, PAP, ...) inconsistent with the bytes
  | 'bad-option' // malformed IPv4 or TCP option list
  | 'bad-type' // a message type this codec does not know where one must be known
  | 'bad-code' // a code value not defined for the message type
  | 'bad-padding' // ESP padding bytes not 1, 2, 3, ... (RFC 4303 2.4)
  | 'bad-value' // a field whose value is out of its defined range
  | 'bad-protocol' // an IP protocol other than the one this decoder is for (IP-in-IP outer header not 4)
  | 'fragmented'; // a fragment where a whole datagram is needed (an IP-in-IP outer header with MF or an offset)

export const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
export const fail = <T = never>(reason: WireError): Parsed<T> => ({ ok: false, reason });

/** IP protocol numbers (IANA "Assigned Internet Protocol Numbers"). Other values pass through as numbers. */
export const IpProtocol = {
  ICMP: 1,
  IPIP: 4,
  TCP: 6,
  UDP: 17,
  ESP: 50,
  AH: 51,
} as const;
export type IpProtocol = (typeof IpProtocol)[keyof typeof IpProtocol];
