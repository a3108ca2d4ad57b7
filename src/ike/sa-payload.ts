/**
 * Security Association payload body (RFC 7296 3.3): proposals, their
 * transforms, and the transforms' attributes.
 *
 * Proposal substructure:
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Last Substruc |   RESERVED    |         Proposal Length       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                        SPI (variable)                         ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                        <Transforms>                           ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                          |
 * |--------|------|------------------------------------------------|
 * | 0      | 1    | 0 for the last proposal, 2 when more follow    |
 * | 2      | 2    | length of this proposal, transforms included   |
 * | 4      | 1    | proposal number: 1, then same or one more      |
 * | 5      | 1    | protocol: IKE 1, AH 2, ESP 3                   |
 * | 6      | 1    | SPI size: 0 (IKE_SA_INIT), 8 (IKE rekey), 4    |
 * | 7      | 1    | number of transforms                           |
 * | 8      | n    | SPI                                            |
 *
 * Transform substructure:
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Last Substruc |   RESERVED    |        Transform Length       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Transform Type |   RESERVED    |          Transform ID         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                      Transform Attributes                     ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                          |
 * |--------|------|------------------------------------------------|
 * | 0      | 1    | 0 for the last transform, 3 when more follow   |
 * | 2      | 2    | length of this transform, attributes included  |
 * | 4      | 1    | type: ENCR 1, PRF 2, INTEG 3, DH 4, ESN 5      |
 * | 6      | 2    | transform ID                                   |
 *
 * Attribute: 2 bytes A bit + type; A=1 (TV): 2 bytes value; A=0 (TLV):
 * 2 bytes length then the value. Only Key Length (14, TV) is defined.
 */
import { fail, ok, type Parsed } from '../wire/result.ts';
import { ATTRIBUTE_KEY_LENGTH } from './constants.ts';

export type TransformAttribute =
  | { readonly type: number; readonly tv: true; readonly value: number }
  | { readonly type: number; readonly tv: false; readonly value: Buffer };

export interface Transform {
  readonly type: number;
  readonly id: number;
  readonly attributes: readonly TransformAttribute[];
}

export interface Proposal {
  readonly number: number;
  readonly protocol: number;
  /** Empty in IKE_SA_INIT, 8 bytes when rekeying an IKE SA, 4 for ESP and AH. */
  readonly spi: Buffer;
  readonly transforms: readonly Transform[];
}

/** Bounds on what a peer may make us hold: far above any real offer. */
export const MAX_PROPOSALS = 64;
export const MAX_TRANSFORMS = 128;
const MAX_ATTRIBUTES = 8;

const LAST = 0;
const MORE_PROPOSALS = 2;
const MORE_TRANSFORMS = 3;
const PROPOSAL_HEADER = 8;
const TRANSFORM_HEADER = 8;

/** The transform's Key Length attribute in bits, or undefined when it has none. */
export function keyLengthOf(t: Transform): number | undefined {
  const a = t.attributes.find((x) => x.type === ATTRIBUTE_KEY_LENGTH && x.tv);
  return a === undefined ? undefined : (a.value as number);
}

/** A transform, with a Key Length attribute when `keyLength` is given. */
export function transform(type: number, id: number, keyLength?: number): Transform {
  return {
    type,
    id,
    attributes: keyLength === undefined ? [] : [{ type: ATTRIBUTE_KEY_LENGTH, tv: true, value: keyLength }],
  };
}

function parseAttributes(b: Buffer, start: number, end: number): Parsed<TransformAttribute[]> {
  const out: TransformAttribute[] = [];
  let i = start;
  while (i < end) {
    if (out.length >= MAX_ATTRIBUTES) return fail('bad-value');
    if (i + 4 > end) return fail('truncated');
    const word = b.readUInt16BE(i);
    const type = word & 0x7fff;
    if (word & 0x8000) {
      out.push({ type, tv: true, value: b.readUInt16BE(i + 2) });
      i += 4;
    } else {
      const len = b.readUInt16BE(i + 2);
      if (i + 4 + len > end) return fail('truncated');
      out.push({ type, tv: false, value: Buffer.from(b.subarray(i + 4, i + 4 + len)) });
      i += 4 + len;
    }
  }
  return ok(out);
}

function parseTransforms(b: Buffer, start: number, end: number, count: number): Parsed<Transform[]> {
  const out: Transform[] = [];
  let i = start;
  for (let n = 0; n < count; n++) {
    if (i + TRANSFORM_HEADER > end) return fail('truncated');
    const last = b[i]!;
    const len = b.readUInt16BE(i + 2);
    if (len < TRANSFORM_HEADER) return fail('bad-length');
    if (i + len > end) return fail('truncated');
    const isLast = n === count - 1;
    if (last !== (isLast ? LAST : MORE_TRANSFORMS)) return fail('bad-value');
    const attrs = parseAttributes(b, i + TRANSFORM_HEADER, i + len);
    if (!attrs.ok) return attrs;
    out.push({ type: b[i + 4]!, id: b.readUInt16BE(i + 6), attributes: attrs.value });
    i += len;
  }
  if (i !== end) return fail('bad-length');
  return ok(out);
}

/** Parses an SA payload body; never throws. */
export function parseSaBody(b: Buffer): Parsed<Proposal[]> {
  const out: Proposal[] = [];
  let i = 0;
  if (b.length === 0) return fail('truncated');
  while (i < b.length) {
    if (out.length >= MAX_PROPOSALS) return fail('bad-value');
    if (i + PROPOSAL_HEADER > b.length) return fail('truncated');
    const last = b[i]!;
    const len = b.readUInt16BE(i + 2);
    if (len < PROPOSAL_HEADER) return fail('bad-length');
    if (i + len > b.length) return fail('truncated');
    const isLast = i + len === b.length;
    if (last !== (isLast ? LAST : MORE_PROPOSALS)) return fail('bad-value');
    const spiSize = b[i + 6]!;
    const count = b[i + 7]!;
    if (count > MAX_TRANSFORMS) return fail('bad-value');
    if (PROPOSAL_HEADER + spiSize > len) return fail('bad-length');
    const transforms = parseTransforms(b, i + PROPOSAL_HEADER + spiSize, i + len, count);
    if (!transforms.ok) return transforms;
    out.push({
      number: b[i + 4]!,
      protocol: b[i + 5]!,
      spi: Buffer.from(b.subarray(i + PROPOSAL_HEADER, i + PROPOSAL_HEADER + spiSize)),
      transforms: transforms.value,
    });
    i += len;
  }
  return ok(out);
}

function attributeBytes(a: TransformAttribute): Buffer {
  if (a.tv) {
    const x = Buffer.alloc(4);
    x.writeUInt16BE(0x8000 | a.type, 0);
    x.writeUInt16BE(a.value, 2);
    return x;
  }
  const x = Buffer.alloc(4 + a.value.length);
  x.writeUInt16BE(a.type & 0x7fff, 0);
  x.writeUInt16BE(a.value.length, 2);
  a.value.copy(x, 4);
  return x;
}

/** Encodes proposals as an SA payload body. */
export function emitSaBody(proposals: readonly Proposal[]): Buffer {
  const parts: Buffer[] = [];
  proposals.forEach((p, pi) => {
    const transforms = p.transforms.map((t, ti) => {
      const attrs = Buffer.concat(t.attributes.map(attributeBytes));
      const h = Buffer.alloc(TRANSFORM_HEADER);
      h[0] = ti === p.transforms.length - 1 ? LAST : MORE_TRANSFORMS;
      h.writeUInt16BE(TRANSFORM_HEADER + attrs.length, 2);
      h[4] = t.type;
      h.writeUInt16BE(t.id, 6);
      return Buffer.concat([h, attrs]);
    });
    const body = Buffer.concat(transforms);
    const h = Buffer.alloc(PROPOSAL_HEADER);
    h[0] = pi === proposals.length - 1 ? LAST : MORE_PROPOSALS;
    h.writeUInt16BE(PROPOSAL_HEADER + p.spi.length + body.length, 2);
    h[4] = p.number;
    h[5] = p.protocol;
    h[6] = p.spi.length;
    h[7] = p.transforms.length;
    parts.push(h, p.spi, body);
  });
  return Buffer.concat(parts);
}
