import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/config-error.ts';
import { readConfigFile, validateConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('router configuration', () => {
  it('fills defaults around a minimal file', () => {
    const c = validateConfig(
      RouterConfigSchema,
      { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7' },
      'r',
    );
    expect(c.pap.udpPort).toBe(7032);
    expect(c.pap.blockSize).toBe(32);
    expect(c.pap.portRange).toEqual([1024, 65535]);
    expect(c.pap.spiFirst).toBe(256);
    expect(c.pap.quarantineSeconds).toBe(120);
    expect(c.tun).toBe('dn0');
  });

  it('names each bad field with the value and what was expected', () => {
    const problems = problemsOf(() =>
      validateConfig(
        RouterConfigSchema,
        {
          sharedAddress: '198.51.100.300',
          lanAddress: '10.0.0.7',
          pap: { blockSize: 0, quarantineSeconds: 30 },
        },
        'router.yaml',
      ),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/field `sharedAddress`: got "198.51.100.300"; expected an IPv4/),
    );
    expect(problems).toContainEqual(expect.stringMatching(/field `pap.blockSize`: got 0; .*>=1/));
    expect(problems).toContainEqual(expect.stringMatching(/field `pap.quarantineSeconds`: got 30; RFC 6888/));
  });

  it('rejects unknown fields, which are usually typos', () => {
    const problems = problemsOf(() =>
      validateConfig(RouterConfigSchema, { sharedAddress: '198.51.100.30', lanAddres: '10.0.0.7' }, 'r'),
    );
    expect(problems.join('\n')).toMatch(/lanAddres/);
    expect(problems.join('\n')).toMatch(/field `lanAddress`: got nothing/);
  });

  it('rejects an inverted port range', () => {
    const problems = problemsOf(() =>
      validateConfig(
        RouterConfigSchema,
        { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7', pap: { portRange: [5000, 2000] } },
        'r',
      ),
    );
    expect(problems.join('\n')).toMatch(/pap.portRange.*low <= high/);
  });
});

describe('host configuration', () => {
  it('defaults to port translation over UDP PAP', () => {
    const c = validateConfig(
      HostConfigSchema,
      { router: '10.0.0.7', lanAddress: '10.0.0.1', sharedAddress: '198.51.100.30' },
      'h',
    );
    expect(c.mode).toBe('translate');
    expect(c.pap.transport).toBe('udp');
  });

  it('rejects an unknown mode naming the choices', () => {
    const problems = problemsOf(() =>
      validateConfig(
        HostConfigSchema,
        { router: '10.0.0.7', lanAddress: '10.0.0.1', sharedAddress: '198.51.100.30', mode: 'nat' },
        'h',
      ),
    );
    expect(problems.join('\n')).toMatch(/field `mode`: got "nat"; .*translate.*native/);
  });
});

describe('reading files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'distnat-config-'));

  it('reads YAML', () => {
    const f = join(dir, 'ok.yaml');
    writeFileSync(f, 'sharedAddress: 198.51.100.30\nlanAddress: 10.0.0.7\npap:\n  blockSize: 16\n');
    expect(readConfigFile(f)).toEqual({
      sharedAddress: '198.51.100.30',
      lanAddress: '10.0.0.7',
      pap: { blockSize: 16 },
    });
  });

  it('names the line of a syntax error', () => {
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, 'sharedAddress: 198.51.100.30\npap: [unclosed\n');
    expect(() => readConfigFile(f)).toThrow(/bad\.yaml[\s\S]*line/);
  });

  it('says when the file cannot be read', () => {
    expect(() => readConfigFile(join(dir, 'missing.yaml'))).toThrow(/missing\.yaml[\s\S]*cannot read/);
  });
});
