/**
 * validateConfig and checkConfig: every problem at once (fields, unknown
 * keys with a suggestion, rules between fields), each with its path, the
 * value found and the expectation; and the schema walking under them.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig, validateConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { IkeConfigSchema } from '../../../src/config/ike-config.ts';
import { withRules } from '../../../src/config/rules.ts';
import { knownKeysAt, settle } from '../../../src/config/schema-walk.ts';

const lines = (schema: z.ZodType, data: unknown): string[] =>
  checkConfig(schema, data).problems.map(formatProblem);

describe('every problem at once', () => {
  it('wrong fields, unknown keys and broken rules of one router file are all reported, in that order', () => {
    const problems = lines(RouterConfigSchema, {
      sharedAddress: '198.51.100.30',
      lanAddress: '198.51.100.30',
      tun: 7,
      metrics: '127.0.0.1:99999',
      pap: { blocksize: 16, portRange: [1024, 65535], maxPortsPerHost: 16, spiFirst: 4294967290 },
    });
    expect(problems).toEqual([
      'field `tun`: got 7; Invalid input: expected string, received number',
      'field `pap.blocksize`: got 16; unknown field; did you mean blockSize?',
      'field `metrics`: got "127.0.0.1:99999"; expected a port of 0-65535 after the colon (0: any free port)',
      expect.stringMatching(
        /^field `lanAddress`: got "198.51.100.30"; expected the router's own LAN address, not sharedAddress/,
      ),
      expect.stringMatching(/^field `pap.maxPortsPerHost`: got 16; expected at least pap.blockSize \(32\)/),
      expect.stringMatching(/^field `pap.spiFirst`: got 4294967290; expected at most 4294967232/),
    ]);
  });

  it('a rule runs although an unrelated field is wrong', () => {
    const problems = lines(RouterConfigSchema, {
      sharedAddress: '198.51.100.30',
      lanAddress: '198.51.100.30',
      pap: { udpPort: 'x' },
    });
    expect(problems).toHaveLength(2);
    expect(problems[1]).toMatch(/^field `lanAddress`/);
  });

  it('a rule over a wrong field stays silent: the field is reported once, by the schema', () => {
    const problems = lines(RouterConfigSchema, {
      sharedAddress: '198.51.100.30',
      lanAddress: '10.0.0.7',
      pap: { blockSize: 0 },
    });
    expect(problems).toEqual(['field `pap.blockSize`: got 0; Too small: expected number to be >=1']);
  });

  it('a rule that blames a default says so', () => {
    const problems = lines(RouterConfigSchema, {
      sharedAddress: '198.51.100.30',
      lanAddress: '10.0.0.7',
      pap: { portRange: [1024, 65534] },
    });
    expect(problems).toEqual([
      expect.stringMatching(/^field `pap.blockSize`: got 32 \(the default\); expected a block size/),
    ]);
    expect(checkConfig(RouterConfigSchema, { pap: { portRange: [1024, 65534] } }).problems).toContainEqual(
      expect.objectContaining({ field: 'pap.blockSize', value: 32, defaulted: true }),
    );
  });

  it('validateConfig throws one ConfigError with them all, and returns the configuration when there are none', () => {
    let err: unknown;
    try {
      validateConfig(RouterConfigSchema, { sharedAddress: 'x', lanAdress: '10.0.0.7' }, 'router.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(78);
    expect((err as ConfigError).message).toBe(
      'router.yaml: invalid configuration\n' +
        '  - field `sharedAddress`: got "x"; expected an IPv4 address such as 10.0.0.7\n' +
        '  - field `lanAddress`: got nothing; expected an IPv4 address such as 10.0.0.7\n' +
        '  - field `lanAdress`: got "10.0.0.7"; unknown field; did you mean lanAddress?',
    );
    expect(
      validateConfig(RouterConfigSchema, { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7' }, 'r').tun,
    ).toBe('dn0');
  });

  it('a file that is not a mapping is one problem, and no rule runs on it', () => {
    expect(lines(RouterConfigSchema, ['a'])).toEqual(['expected a mapping of fields at the top level']);
    expect(lines(RouterConfigSchema, 'text')).toEqual(['expected a mapping of fields at the top level']);
  });
});

describe('unknown keys', () => {
  it('name the closest known key at their own level, in arrays too', () => {
    const problems = lines(IkeConfigSchema, {
      trust: [],
      peers: [{ adress: '203.0.113.3' }],
      rekeySeconds: { childSa: 1 },
      dpd: 3,
    });
    expect(problems).toContain(
      'field `peers.0.adress`: got "203.0.113.3"; unknown field; did you mean address?',
    );
    expect(problems).toContain('field `rekeySeconds.childSa`: got 1; unknown field; did you mean child?');
    expect(problems).toContain('field `dpd`: got 3; unknown field; did you mean dpdSeconds?');
  });

  it('list the known keys when none is close', () => {
    expect(
      lines(RouterConfigSchema, { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7', pap: { zzz: 1 } }),
    ).toEqual([
      'field `pap.zzz`: got 1; unknown field; expected one of udpPort, icmp, portRange, blockSize, spiFirst, ' +
        'spiBlockSize, leaseSeconds, quarantineSeconds, maxPortsPerHost, maxSpisPerHost',
    ]);
  });
});

describe('schema walking', () => {
  const Schema = z
    .object({
      a: z.number(),
      b: z
        .object({ c: z.number().default(3), d: z.string() })
        .strict()
        .prefault({ d: '' }),
      e: z.object({ f: z.number() }).optional(),
      list: z.array(z.object({ g: z.number() })).default([]),
    })
    .strict();

  it('knownKeysAt looks through optional, default and prefault, and into array elements', () => {
    expect(knownKeysAt(Schema, [])).toEqual(['a', 'b', 'e', 'list']);
    expect(knownKeysAt(Schema, ['b'])).toEqual(['c', 'd']);
    expect(knownKeysAt(Schema, ['e'])).toEqual(['f']);
    expect(knownKeysAt(Schema, ['list', 0])).toEqual(['g']);
    expect(knownKeysAt(Schema, ['a'])).toEqual([]);
    expect(knownKeysAt(Schema, ['nowhere', 'x'])).toEqual([]);
  });

  it('settle keeps the valid fields with their defaults and leaves out the wrong ones, in array elements too', () => {
    expect(settle(Schema, { a: 'x', b: { d: 5 }, list: [{ g: 1 }, { g: 'y' }] })).toEqual({
      b: { c: 3 },
      list: [{ g: 1 }, {}],
    });
    expect(settle(Schema, { a: 1, b: { d: 'z' } })).toEqual({ a: 1, b: { c: 3, d: 'z' }, list: [] });
    expect(settle(Schema, 7)).toBeUndefined();
  });

  it('withRules keeps rules with the schema, and checkConfig runs them after it', () => {
    const Ruled = withRules(z.object({ lo: z.number(), hi: z.number() }), [
      (c, report) => {
        if (c.lo !== undefined && c.hi !== undefined && c.lo > c.hi) report(['hi'], 'expected hi >= lo');
      },
    ]);
    expect(checkConfig(Ruled, { lo: 2, hi: 1 }).problems).toEqual([
      { field: 'hi', value: 1, expected: 'expected hi >= lo' },
    ]);
    expect(checkConfig(Ruled, { lo: 1, hi: 2 })).toEqual({ config: { lo: 1, hi: 2 }, problems: [] });
  });
});
