/**
 * The pieces of a usage error: which command's help to point at, number
 * flags given words, addresses that are not addresses, and a daemon's
 * configuration whose bad values are blamed on the flag or the file field
 * they came from.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../../../src/config/config-error.ts';
import { validateWithFlags } from '../../../src/cli/flag-config.ts';
import { commandOfUsage, ipv4Flags, numbersAreNumbers } from '../../../src/cli/usage.ts';
import { ExitCode, UserError } from '../../../src/util/exit-codes.ts';

describe('commandOfUsage', () => {
  it.for([
    ['$0 ca init', 'distnat ca init'],
    ['$0 status [role]', 'distnat status'],
    ['$0 withdraw <host>', 'distnat withdraw'],
    ['$0 <command> [options]\n\nDistributed NAT: ...', 'distnat'],
    ['', 'distnat'],
    [undefined, 'distnat'],
    ['something else entirely', 'distnat'],
  ] as const)('%j -> %s', ([usage, command]) => {
    expect(commandOfUsage(usage)).toBe(command);
  });
});

describe('numbersAreNumbers', () => {
  it('passes numbers and what is not a number flag', () => {
    expect(numbersAreNumbers({ _: [], days: 3, 'run-dir': '/x', json: false })).toBe(true);
  });

  it('names the flag as typed, once, for NaN', () => {
    expect(numbersAreNumbers({ _: [], 'ca-port': NaN, caPort: NaN, days: NaN })).toBe(
      '--ca-port: expected a number\n--days: expected a number',
    );
  });
});

describe('ipv4Flags', () => {
  const check = ipv4Flags('address', '<host>');
  it('passes addresses and absent flags', () => {
    expect(check({ address: '203.0.113.3' })).toBe(true);
    expect(check({})).toBe(true);
  });
  it.for([
    [{ address: '203.0.113.300' }, '--address: got "203.0.113.300"'],
    [{ address: '010.0.0.1' }, '--address: got "010.0.0.1"'],
    [{ host: 'h1' }, '<host>: got "h1"'],
  ] as const)('%j is refused', ([argv, start]) => {
    const r = check(argv);
    expect(r).toMatch(
      new RegExp(`^${start.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; expected an IPv4 address`),
    );
  });
});

describe('validateWithFlags', () => {
  const schema = z
    .object({
      address: z.string().regex(/^\d+\.\d+\.\d+\.\d+$/, 'expected an address'),
      pki: z.object({ port: z.number().max(65535) }).optional(),
      size: z.number().min(1),
    })
    .strict();
  const given = (flags: Record<string, [string[], unknown]>) =>
    Object.entries(flags).map(([flag, [path, value]]) => ({ flag, path, value }));

  it('returns the parsed configuration when all is well', () => {
    expect(validateWithFlags(schema, { address: '1.2.3.4', size: 2 }, [], 'f.yaml', 'distnat x')).toEqual({
      address: '1.2.3.4',
      size: 2,
    });
  });

  it("a file's bad field: the ConfigError of the file (78)", () => {
    const e = (() => {
      try {
        validateWithFlags(
          schema,
          { address: '1.2.3.4', size: 0 },
          given({ ca: [['pki'], undefined] }),
          'f.yaml',
          'distnat x',
        );
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).exitCode).toBe(ExitCode.CONFIG);
    expect((e as ConfigError).problems).toEqual([
      'field `size`: got 0; Too small: expected number to be >=1',
    ]);
  });

  it("a flag's bad value: a usage error naming the most specific flag, and the file's problems too (64)", () => {
    const data = { address: 'x', size: 0, pki: { port: 70000 } };
    const flags = given({ address: [['address'], 'x'], 'ca-port': [['pki', 'port'], 70000] });
    let e: unknown;
    try {
      validateWithFlags(schema, data, flags, 'f.yaml', 'distnat x');
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(UserError);
    expect(e).not.toBeInstanceOf(ConfigError);
    expect((e as UserError).exitCode).toBe(ExitCode.USAGE);
    expect((e as UserError).message).toBe(
      '--address: got "x"; expected an address\n' +
        '--ca-port: got 70000; Too big: expected number to be <=65535\n' +
        'f.yaml: invalid configuration\n' +
        '  - field `size`: got 0; Too small: expected number to be >=1\n' +
        "Try 'distnat x --help' for more information.",
    );
  });
});
