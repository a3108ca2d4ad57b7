import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { closestKey, editDistance } from '../../../src/config/did-you-mean.ts';

const PAP_KEYS = [
  'udpPort',
  'icmp',
  'portRange',
  'blockSize',
  'spiFirst',
  'spiBlockSize',
  'leaseSeconds',
  'quarantineSeconds',
  'maxPortsPerHost',
  'maxSpisPerHost',
];

describe('editDistance', () => {
  it.for([
    ['', '', 0],
    ['abc', '', 3],
    ['kitten', 'sitting', 3],
    ['lanaddres', 'lanaddress', 1],
    ['flaw', 'lawn', 2],
  ] as const)('%s -> %s: %i', ([a, b, d]) => {
    expect(editDistance(a, b)).toBe(d);
  });

  it('is a metric: zero only for equal strings, symmetric, and within the triangle inequality', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        fc.string({ maxLength: 12 }),
        (a, b, c) => {
          expect(editDistance(a, b) === 0).toBe(a === b);
          expect(editDistance(a, b)).toBe(editDistance(b, a));
          expect(editDistance(a, c)).toBeLessThanOrEqual(editDistance(a, b) + editDistance(b, c));
          expect(editDistance(a, b)).toBeLessThanOrEqual(Math.max(a.length, b.length));
        },
      ),
    );
  });
});

describe('closestKey', () => {
  it.for([
    ['blocksize', 'blockSize'], // case only
    ['blockSise', 'blockSize'],
    ['udpport', 'udpPort'],
    ['leaseSecond', 'leaseSeconds'],
    ['quarantine', 'quarantineSeconds'], // shortened: a prefix of the key
    ['maxPortPerHost', 'maxPortsPerHost'],
    ['spiBlock', 'spiBlockSize'],
  ] as const)('%s: did you mean %s?', ([typed, meant]) => {
    expect(closestKey(typed, PAP_KEYS)).toBe(meant);
  });

  it.for(['mtu', 'interface', 'x', 'bandwidth', 'max', 'spi'])(
    '%s: nothing close or too many starting so, no guess',
    (typed) => {
      expect(closestKey(typed, PAP_KEYS)).toBeUndefined();
    },
  );

  it('knows nothing when nothing is known', () => {
    expect(closestKey('blockSize', [])).toBeUndefined();
  });
});
