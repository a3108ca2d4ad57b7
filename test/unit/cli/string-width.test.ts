/**
 * src/cli/string-width.ts stands in for the string-width package in the
 * bundled command line (scripts/build.mjs). The package itself is the
 * oracle: on the text a help screen can hold (ASCII, colours, accents,
 * CJK, fullwidth forms, common emoji) both must agree.
 */
import fc from 'fast-check';
import realStringWidth from 'string-width';
import { describe, expect, it } from 'vitest';
import stringWidth from '../../../src/cli/string-width.ts';

describe('stringWidth', () => {
  it.for([
    ['', 0],
    ['distnat status [role]', 21],
    ['\u001b[1m\u001b[31mred\u001b[39m\u001b[22m', 3],
    ['\u001b]8;;https://example.com\u0007link\u001b]8;;\u0007', 4],
    ['tab\there', 7],
    ['café', 4],
    ['cafe\u0301', 4],
    ['日本語', 6],
    ['ｄｉｓｔｎａｔ', 14],
    ['한국어', 6],
    ['zero\u200bwidth', 9],
    ['ok \u2705', 5],
    ['\u{1F600}', 2],
  ] as const)('%j is %i columns, as string-width says', ([text, width]) => {
    expect(stringWidth(text)).toBe(width);
    expect(realStringWidth(text)).toBe(width);
  });

  it('agrees with string-width on strings of ASCII, Latin, combining marks, CJK and fullwidth forms', () => {
    const piece = fc.oneof(
      fc.string({ unit: 'grapheme-ascii' }),
      fc.constantFrom('é', 'ß', 'ñ', 'Ω', 'Ж', '\u0301', '\u0308', '–', '→', '«'),
      fc.integer({ min: 0x4e00, max: 0x9fff }).map((c) => String.fromCodePoint(c)),
      fc.integer({ min: 0xac00, max: 0xd7a3 }).map((c) => String.fromCodePoint(c)),
      fc.integer({ min: 0xff01, max: 0xff5e }).map((c) => String.fromCodePoint(c)),
      fc.constantFrom('\u001b[1m', '\u001b[0m', '\u001b[38;5;208m'),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        const text = pieces.join('');
        expect(stringWidth(text)).toBe(realStringWidth(text));
      }),
      { numRuns: 500 },
    );
  });

  it('is 0 for what is not a string (yargs passes what it was given)', () => {
    expect(stringWidth(undefined as unknown as string)).toBe(0);
  });
});
