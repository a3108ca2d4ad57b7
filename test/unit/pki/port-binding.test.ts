import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Block } from '../../../src/util/block.ts';
import {
  decodePortBinding,
  encodePortBinding,
  portsCoveredBy,
  rangesCover,
} from '../../../src/pki/port-binding.ts';

/** Sorted, disjoint ranges inside [0, limit): what the encoder accepts. */
const ranges = (limit: number, min: number) =>
  fc
    .uniqueArray(fc.integer({ min: 0, max: limit - 1 }), { minLength: 2 * min, maxLength: 12 })
    .map((cuts) => {
      const s = [...cuts].sort((a, b) => a - b);
      const out: Block[] = [];
      for (let i = 0; i + 1 < s.length; i += 2) out.push({ lowest: s[i]!, count: s[i + 1]! - s[i]! + 1 });
      return out;
    })
    .filter((r) => r.length >= min);

describe('DistnatPortBinding encoding', () => {
  it('round-trips any sorted, disjoint port and SPI ranges', () => {
    fc.assert(
      fc.property(ranges(0x10000, 1), ranges(0x100000000, 0), (ports, spis) => {
        const d = decodePortBinding(encodePortBinding(ports, spis));
        expect(d).toEqual({ ok: true, ports, spis });
      }),
      { seed: 7033, numRuns: 300 },
    );
  });

  it('encodes the documented DER exactly', () => {
    const der = Buffer.from(encodePortBinding([{ lowest: 1026, count: 32 }], [{ lowest: 256, count: 64 }]));
    // SEQUENCE { [0] { SEQUENCE { 1026, 32 } }, [1] { SEQUENCE { 256, 64 } } }
    expect(der.toString('hex')).toBe('3016a009300702020402020120a109300702020100020140');
  });

  it('leaves out the SPI list when there are no SPIs', () => {
    const der = Buffer.from(encodePortBinding([{ lowest: 65535, count: 1 }], []));
    expect(der.toString('hex')).toBe('300ca00a3008020300ffff020101');
    expect(decodePortBinding(der)).toEqual({ ok: true, ports: [{ lowest: 65535, count: 1 }], spis: [] });
  });

  it('refuses to encode what a verifier would refuse to read', () => {
    expect(() => encodePortBinding([], [])).toThrow(/at least one/);
    expect(() => encodePortBinding([{ lowest: 65535, count: 2 }], [])).toThrow(/past 65535/);
    expect(() =>
      encodePortBinding(
        [
          { lowest: 2000, count: 10 },
          { lowest: 1000, count: 10 },
        ],
        [],
      ),
    ).toThrow(/sorted/);
    expect(() =>
      encodePortBinding(
        [
          { lowest: 1000, count: 10 },
          { lowest: 1005, count: 10 },
        ],
        [],
      ),
    ).toThrow(/disjoint/);
    expect(() => encodePortBinding([{ lowest: 1000, count: 0 }], [])).toThrow(/not a range/);
    expect(() => encodePortBinding([{ lowest: 1000, count: 1 }], [{ lowest: 0xffffffff, count: 2 }])).toThrow(
      /past/,
    );
  });

  it('decodes bad bytes to a reason, never an exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const d = decodePortBinding(bytes);
        if (d.ok) expect(d.ports.length).toBeGreaterThan(0);
        else expect(typeof d.problem).toBe('string');
      }),
      { seed: 1, numRuns: 500 },
    );
    // Well-formed DER, but a negative first value and an overlap.
    expect(decodePortBinding(Buffer.from('300aa00830060201ff020101', 'hex'))).toMatchObject({ ok: false });
    const overlap = Buffer.from(
      encodePortBinding(
        [
          { lowest: 10, count: 5 },
          { lowest: 20, count: 5 },
        ],
        [],
      ),
    ).toString('hex');
    expect(decodePortBinding(Buffer.from(overlap.replace('020114', '02010c'), 'hex'))).toMatchObject({
      ok: false,
      problem: /disjoint/,
    });
  });

  it('rangesCover: inside, at both edges, and one past', () => {
    const r = [
      { lowest: 1026, count: 32 },
      { lowest: 4000, count: 1 },
    ];
    expect(rangesCover(r, [1026, 1057, 4000])).toBe(true);
    expect(rangesCover(r, [1025])).toBe(false);
    expect(rangesCover(r, [1058])).toBe(false);
    expect(rangesCover(r, [4001])).toBe(false);
    expect(rangesCover(r, [])).toBe(true);
  });

  it('portsCoveredBy is undefined for input that is no certificate', () => {
    expect(portsCoveredBy('nothing here')).toBeUndefined();
    expect(portsCoveredBy(new Uint8Array([0x30, 0x00]))).toBeUndefined();
  });
});
