/**
 * IKEv2 numbers (RFC 7296 section 3 and IANA's "Internet Key Exchange
 * Version 2 (IKEv2) Parameters" registry). Unknown values stay plain numbers:
 * a codec passes them through, the state machines decide what they mean.
 */

export const IKE_MAJOR_VERSION = 2;
export const IKE_MINOR_VERSION = 0;

/** Exchange types (RFC 7296 3.1). */
export const ExchangeType = {
  IKE_SA_INIT: 34,
  IKE_AUTH: 35,
  CREATE_CHILD_SA: 36,
  INFORMATIONAL: 37,
} as const;

/** Header flags (RFC 7296 3.1): the low three bits are reserved. */
export const HeaderFlag = {
  INITIATOR: 0x08,
  VERSION: 0x10,
  RESPONSE: 0x20,
} as const;

/** Payload types (RFC 7296 3.2, RFC 7383 for SKF). */
export const PayloadType = {
  NONE: 0,
  SA: 33,
  KE: 34,
  IDi: 35,
  IDr: 36,
  CERT: 37,
  CERTREQ: 38,
  AUTH: 39,
  NONCE: 40,
  NOTIFY: 41,
  DELETE: 42,
  VENDOR: 43,
  TSi: 44,
  TSr: 45,
  SK: 46,
  CP: 47,
  EAP: 48,
  SKF: 53,
} as const;

/** Security protocol identifiers (RFC 7296 3.3.1). */
export const ProtocolId = {
  IKE: 1,
  AH: 2,
  ESP: 3,
} as const;

/** Transform types (RFC 7296 3.3.2). */
export const TransformType = {
  ENCR: 1,
  PRF: 2,
  INTEG: 3,
  DH: 4,
  ESN: 5,
} as const;

/** Encryption algorithms (transform type 1). */
export const EncrId = {
  AES_CBC: 12,
  AES_GCM_8: 18,
  AES_GCM_12: 19,
  AES_GCM_16: 20,
} as const;

/** Pseudo-random functions (transform type 2). */
export const PrfId = {
  HMAC_SHA1: 2,
  HMAC_SHA2_256: 5,
  HMAC_SHA2_384: 6,
  HMAC_SHA2_512: 7,
} as const;

/** Integrity algorithms (transform type 3). */
export const IntegId = {
  NONE: 0,
  HMAC_SHA1_96: 2,
  HMAC_SHA2_256_128: 12,
  HMAC_SHA2_384_192: 13,
  HMAC_SHA2_512_256: 14,
} as const;

/** Diffie-Hellman groups (transform type 4): RFC 3526, RFC 5903, RFC 8031. */
export const DhGroup = {
  NONE: 0,
  MODP_2048: 14,
  ECP_256: 19,
  ECP_384: 20,
  CURVE25519: 31,
} as const;

/** Extended sequence numbers (transform type 5). */
export const EsnId = {
  NO: 0,
  YES: 1,
} as const;

/** The one transform attribute in use: the key length of a variable-length cipher (TV format). */
export const ATTRIBUTE_KEY_LENGTH = 14;

/** Identification types (RFC 7296 3.5). */
export const IdType = {
  IPV4_ADDR: 1,
  FQDN: 2,
  RFC822_ADDR: 3,
  IPV6_ADDR: 5,
  DER_ASN1_DN: 9,
  DER_ASN1_GN: 10,
  KEY_ID: 11,
} as const;

/** Certificate encodings (RFC 7296 3.6); only X.509 signature certificates are used here. */
export const CertEncoding = {
  X509_SIGNATURE: 4,
  CRL: 7,
  HASH_URL_X509: 12,
} as const;

/** Authentication methods (RFC 7296 3.8, RFC 4754, RFC 7427). */
export const AuthMethod = {
  RSA_SIGNATURE: 1,
  SHARED_KEY_MIC: 2,
  DSS_SIGNATURE: 3,
  ECDSA_SHA256_P256: 9,
  ECDSA_SHA384_P384: 10,
  ECDSA_SHA512_P521: 11,
  DIGITAL_SIGNATURE: 14,
} as const;

/** Hash algorithm identifiers of SIGNATURE_HASH_ALGORITHMS (RFC 7427 section 7). */
export const HashAlgorithmId = {
  SHA1: 1,
  SHA2_256: 2,
  SHA2_384: 3,
  SHA2_512: 4,
  IDENTITY: 5,
} as const;

/** Notify message types (RFC 7296 3.10.1 and later RFCs). Below 16384: errors. */
export const NotifyType = {
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  INVALID_IKE_SPI: 4,
  INVALID_MAJOR_VERSION: 5,
  INVALID_SYNTAX: 7,
  INVALID_MESSAGE_ID: 9,
  INVALID_SPI: 11,
  NO_PROPOSAL_CHOSEN: 14,
  INVALID_KE_PAYLOAD: 17,
  AUTHENTICATION_FAILED: 24,
  SINGLE_PAIR_REQUIRED: 34,
  NO_ADDITIONAL_SAS: 35,
  INTERNAL_ADDRESS_FAILURE: 36,
  FAILED_CP_REQUIRED: 37,
  TS_UNACCEPTABLE: 38,
  INVALID_SELECTORS: 39,
  TEMPORARY_FAILURE: 43,
  CHILD_SA_NOT_FOUND: 44,
  INITIAL_CONTACT: 16384,
  SET_WINDOW_SIZE: 16385,
  ADDITIONAL_TS_POSSIBLE: 16386,
  IPCOMP_SUPPORTED: 16387,
  NAT_DETECTION_SOURCE_IP: 16388,
  NAT_DETECTION_DESTINATION_IP: 16389,
  COOKIE: 16390,
  USE_TRANSPORT_MODE: 16391,
  HTTP_CERT_LOOKUP_SUPPORTED: 16392,
  REKEY_SA: 16393,
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  MOBIKE_SUPPORTED: 16396,
  MULTIPLE_AUTH_SUPPORTED: 16404,
  REDIRECT_SUPPORTED: 16406,
  CHILDLESS_IKEV2_SUPPORTED: 16418,
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  SIGNATURE_HASH_ALGORITHMS: 16431,
} as const;

/** Notify types below this value are errors (RFC 7296 3.10.1). */
export const FIRST_STATUS_NOTIFY = 16384;

/** Traffic selector types (RFC 7296 3.13.1). */
export const TsType = {
  IPV4_ADDR_RANGE: 7,
  IPV6_ADDR_RANGE: 8,
} as const;

/** Name of a value in one of the tables above, for logs: "NO_PROPOSAL_CHOSEN" or "notify 12345". */
export function nameOf(table: Readonly<Record<string, number>>, value: number, what = 'value'): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k;
  return `${what} ${value}`;
}
