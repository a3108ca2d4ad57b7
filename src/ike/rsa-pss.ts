/**
 * RSASSA-PSS in RFC 7427 AUTH payloads: the AlgorithmIdentifier of
 * id-RSASSA-PSS (RFC 4055 3.1) with its parameters, read and written.
 *
 *   AlgorithmIdentifier ::= SEQUENCE { id-RSASSA-PSS, RSASSA-PSS-params }
 *   RSASSA-PSS-params ::= SEQUENCE {
 *     hashAlgorithm     [0] HashAlgorithm    DEFAULT sha1,
 *     maskGenAlgorithm  [1] MaskGenAlgorithm DEFAULT mgf1SHA1,
 *     saltLength        [2] INTEGER          DEFAULT 20,
 *     trailerField      [3] INTEGER          DEFAULT 1 }
 *
 * Unlike the PKCS #1 v1.5 and ECDSA identifiers (fixed strings, compared
 * byte for byte in auth.ts), these parameters vary between
 * implementations (hash parameters NULL or absent, defaults written out or
 * left off), so they are parsed. What node:crypto can verify is accepted:
 * SHA-2 hashes, MGF1 with the same hash, any salt length, trailer 1.
 * SHA-1 (the default) is refused, as RFC 8247 asks.
 *
 * The reader is a bounded DER walk that never throws; a problem comes back
 * as a string for the AUTH failure log.
 */

export type PssHash = 'sha256' | 'sha384' | 'sha512';

export interface PssParams {
  readonly hash: PssHash;
  readonly saltLength: number;
}

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
/** OID contents (without tag and length). */
const OID = {
  rsassaPss: hex('2a864886f70d01010a'),
  mgf1: hex('2a864886f70d010108'),
  sha1: hex('2b0e03021a'),
  sha256: hex('608648016503040201'),
  sha384: hex('608648016503040202'),
  sha512: hex('608648016503040203'),
} as const;

const HASH_LENGTH: Record<PssHash, number> = { sha256: 32, sha384: 48, sha512: 64 };

interface Tlv {
  readonly tag: number;
  readonly value: Buffer;
  /** Offset just past this element. */
  readonly end: number;
}

/** One DER element at `at` in `b`, or undefined when it does not fit. Short and long lengths up to 2 bytes. */
function readTlv(b: Buffer, at: number): Tlv | undefined {
  if (at + 2 > b.length) return undefined;
  const tag = b[at]!;
  let length = b[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n < 1 || n > 2 || start + n > b.length) return undefined;
    length = n === 1 ? b[start]! : b.readUInt16BE(start);
    start += n;
  }
  if (start + length > b.length) return undefined;
  return { tag, value: b.subarray(start, start + length), end: start + length };
}

/** The elements of a constructed value, or undefined when they do not fill it exactly. */
function children(b: Buffer): Tlv[] | undefined {
  const out: Tlv[] = [];
  for (let at = 0; at < b.length;) {
    const t = readTlv(b, at);
    if (t === undefined || out.length >= 8) return undefined;
    out.push(t);
    at = t.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const OID_TAG = 0x06;
const NULL_TAG = 0x05;
const INTEGER = 0x02;

/** A hash AlgorithmIdentifier: SEQUENCE { OID, NULL or nothing }. */
function hashOf(alg: Tlv | undefined): PssHash | 'sha1' | undefined {
  if (alg?.tag !== SEQUENCE) return undefined;
  const parts = children(alg.value);
  if (parts === undefined || parts.length < 1 || parts.length > 2 || parts[0]!.tag !== OID_TAG)
    return undefined;
  if (parts.length === 2 && (parts[1]!.tag !== NULL_TAG || parts[1]!.value.length !== 0)) return undefined;
  const oid = parts[0]!.value;
  for (const name of ['sha1', 'sha256', 'sha384', 'sha512'] as const) if (oid.equals(OID[name])) return name;
  return undefined;
}

function smallInteger(t: Tlv): number | undefined {
  const v = t.value;
  if (t.tag !== INTEGER || v.length < 1 || v.length > 2 || (v[0]! & 0x80) !== 0) return undefined;
  return v.length === 1 ? v[0]! : v.readUInt16BE(0);
}

/** True when `ai` (an AlgorithmIdentifier's DER) names RSASSA-PSS, whatever its parameters. */
export function isPssAlgorithmIdentifier(ai: Buffer): boolean {
  const outer = readTlv(ai, 0);
  if (outer?.tag !== SEQUENCE || outer.end !== ai.length) return false;
  const oid = readTlv(outer.value, 0);
  return oid?.tag === OID_TAG && oid.value.equals(OID.rsassaPss);
}

/** The hash and salt length of an id-RSASSA-PSS AlgorithmIdentifier, or why it cannot be used. */
export function parsePssAlgorithmIdentifier(ai: Buffer): PssParams | string {
  const outer = readTlv(ai, 0);
  if (outer?.tag !== SEQUENCE || outer.end !== ai.length) return 'RSASSA-PSS AlgorithmIdentifier is not DER';
  const parts = children(outer.value);
  if (
    parts === undefined ||
    parts.length !== 2 ||
    parts[0]!.tag !== OID_TAG ||
    !parts[0]!.value.equals(OID.rsassaPss)
  )
    return 'not an RSASSA-PSS AlgorithmIdentifier';
  if (parts[1]!.tag !== SEQUENCE) return 'RSASSA-PSS parameters are not a SEQUENCE';
  const fields = children(parts[1]!.value);
  if (fields === undefined) return 'RSASSA-PSS parameters are not DER';
  let hash: PssHash | 'sha1' | undefined = 'sha1';
  let mgfHash: PssHash | 'sha1' | undefined = 'sha1';
  let saltLength: number | undefined = 20;
  let lastTag = 0;
  for (const f of fields) {
    // Each field at most once, in order ([0] < [1] < [2] < [3]).
    if (f.tag <= lastTag || f.tag < 0xa0 || f.tag > 0xa3) return 'RSASSA-PSS parameters out of order';
    lastTag = f.tag;
    const inner = readTlv(f.value, 0);
    if (inner === undefined || inner.end !== f.value.length) return 'RSASSA-PSS parameter is not DER';
    if (f.tag === 0xa0) hash = hashOf(inner);
    else if (f.tag === 0xa1) {
      const m = inner.tag === SEQUENCE ? children(inner.value) : undefined;
      if (m === undefined || m.length !== 2 || m[0]!.tag !== OID_TAG || !m[0]!.value.equals(OID.mgf1))
        return 'RSASSA-PSS mask generation is not MGF1';
      mgfHash = hashOf(m[1]);
    } else if (f.tag === 0xa2) saltLength = smallInteger(inner);
    else if (smallInteger(inner) !== 1) return 'RSASSA-PSS trailer field is not 1';
  }
  if (hash === undefined || mgfHash === undefined) return 'RSASSA-PSS with an unknown hash';
  if (hash === 'sha1') return 'RSASSA-PSS with SHA-1 is not accepted';
  if (mgfHash !== hash) return `RSASSA-PSS with MGF1-${mgfHash} and ${hash}: the hashes must agree`;
  if (saltLength === undefined) return 'RSASSA-PSS salt length is not a small INTEGER';
  return { hash, saltLength };
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const value = Buffer.concat(parts);
  if (value.length > 127) throw new RangeError('DER element too long for this writer');
  return Buffer.concat([Buffer.from([tag, value.length]), value]);
}

const hashAlgorithm = (hash: PssHash): Buffer => tlv(SEQUENCE, tlv(OID_TAG, OID[hash]), tlv(NULL_TAG));

/**
 * The AlgorithmIdentifier we send: hash and MGF1 hash the same, salt as
 * long as the hash (RFC 8017's recommendation, and what strongSwan does),
 * hash parameters NULL as RFC 4055 writes them, trailer left at its default.
 */
export function pssAlgorithmIdentifier(hash: PssHash): Buffer {
  return tlv(
    SEQUENCE,
    tlv(OID_TAG, OID.rsassaPss),
    tlv(
      SEQUENCE,
      tlv(0xa0, hashAlgorithm(hash)),
      tlv(0xa1, tlv(SEQUENCE, tlv(OID_TAG, OID.mgf1), hashAlgorithm(hash))),
      tlv(0xa2, tlv(INTEGER, Buffer.from([HASH_LENGTH[hash]]))),
    ),
  );
}

export const pssSaltLength = (hash: PssHash): number => HASH_LENGTH[hash];
