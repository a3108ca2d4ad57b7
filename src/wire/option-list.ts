/**
 * The option-list layout that IPv4 (RFC 791 3.1) and TCP (RFC 9293 3.1)
 * share. Type 0 (End of Option List) ends the list; type 1 (No-Operation) is
 * a single octet; every other type is type-length-value, where the length
 * octet counts the type and length octets themselves and so is at least 2.
 *
 *     +--------+                      +--------+--------+--------- - -
 *     |  type  |  (EOL, NOP)          |  type  | length |  data ...
 *     +--------+                      +--------+--------+--------- - -
 *
 * Octets after End of Option List up to the header's end are padding. Both
 * RFCs say padding is zero; like Linux we accept and ignore other values
 * there, because a forwarder must not drop what the end host would take.
 */
import type { WireError } from './result.ts';

export const OPTION_EOL = 0;
export const OPTION_NOP = 1;

/** One option as it sits on the wire. EOL and NOP have empty `data`. */
export interface RawOption {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Rounds an option area up to the 32-bit boundary both headers need. */
export const padTo4 = (n: number): number => (n + 3) & ~3;

/** 'bad-option' when a TLV length is below 2 or runs past `end`; null when the list is well formed. */
export function checkOptionList(buf: Uint8Array, start: number, end: number): WireError | null {
  let i = start;
  while (i < end) {
    const type = buf[i]!;
    if (type === OPTION_EOL) return null;
    if (type === OPTION_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 'bad-option';
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) return 'bad-option';
    i += len;
  }
  return null;
}

/**
 * Decodes buf[start, end) into options (data copied), or null when the list
 * is malformed. The list stops at the first EOL, which is kept as an entry.
 * When the area is longer than that EOL plus the least padding, extra EOL
 * entries are added so that encoding the list reproduces the area's length:
 * emit(parse(bytes)) keeps the header length, and the form is canonical.
 */
export function decodeOptionList(buf: Uint8Array, start: number, end: number): RawOption[] | null {
  const out: RawOption[] = [];
  let i = start;
  while (i < end) {
    const type = buf[i]!;
    if (type === OPTION_EOL) {
      out.push(EOL_ENTRY);
      const used = i + 1 - start;
      const area = end - start;
      for (let k = padTo4(used) < area ? area - used - 3 : 0; k > 0; k--) out.push(EOL_ENTRY);
      return out;
    }
    if (type === OPTION_NOP) {
      out.push(NOP_ENTRY);
      i++;
      continue;
    }
    if (i + 1 >= end) return null;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) return null;
    out.push({ type, data: buf.slice(i + 2, i + len) });
    i += len;
  }
  return out;
}

const EOL_ENTRY: RawOption = Object.freeze({ type: OPTION_EOL, data: new Uint8Array(0) });
const NOP_ENTRY: RawOption = Object.freeze({ type: OPTION_NOP, data: new Uint8Array(0) });

/** Encoded size of one option in octets. */
export const rawOptionLength = (o: RawOption): number =>
  o.type === OPTION_EOL || o.type === OPTION_NOP ? 1 : 2 + o.data.length;

/** Encoded size of a list, before padding. */
export function optionListLength(opts: readonly RawOption[]): number {
  let n = 0;
  for (const o of opts) n += rawOptionLength(o);
  return n;
}

/** Writes the list at buf[at] and zero-pads to a 32-bit boundary; returns the padded length. */
export function encodeOptionList(opts: readonly RawOption[], buf: Uint8Array, at: number): number {
  let i = at;
  for (const o of opts) {
    buf[i++] = o.type;
    if (o.type === OPTION_EOL || o.type === OPTION_NOP) continue;
    buf[i++] = 2 + o.data.length;
    buf.set(o.data, i);
    i += o.data.length;
  }
  const end = at + padTo4(i - at);
  buf.fill(0, i, end);
  return end - at;
}
