/**
 * The example configurations native-setup/install.sh puts in /etc/distnat/
 * are valid for the schemas the daemons load, and every setting they show
 * commented out is exactly the schema's default, so that uncommenting one
 * changes nothing until its value is edited.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { validateConfig } from '../../../src/config/load.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';

const CONFIG_DIR = resolve(import.meta.dirname, '../../../native-setup/config');

/** A commented-out setting: "# key: value", nested ones indented after the "#". */
const COMMENTED_SETTING = /^#\s?(\s*[A-Za-z][A-Za-z0-9]*:(?:\s.*)?)$/;

function uncomment(text: string): string {
  return text
    .split('\n')
    .map((line) => COMMENTED_SETTING.exec(line)?.[1] ?? line)
    .join('\n');
}

/** Optional settings without a default, shown as examples. */
const EXAMPLES_ONLY = [
  'metrics',
  'pcap',
  'ipsec',
  'ike',
  'pki',
  'wanInterface',
  'routers',
  'etcd',
  'sharedAddresses',
];

/** Examples that exclude another one shown (ike is the alternative to ipsec): left out of the validation. */
const ALTERNATIVES = ['ike'];

function without<T extends object>(o: T, keys: string[]): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k))) as Partial<T>;
}

const { shared, router, h1 } = TOPOLOGY;

describe.each([
  ['router.yaml', RouterConfigSchema, { sharedAddress: shared, lanAddress: router.lan }],
  ['host.yaml', HostConfigSchema, { router: router.lan, lanAddress: h1.lan, sharedAddress: shared }],
] as const)('native-setup/config/%s', (file, schema, required) => {
  const text = readFileSync(join(CONFIG_DIR, file), 'utf8');

  it('is valid as shipped and holds the topology’s addresses and nothing else', () => {
    const data: unknown = parseYaml(text);
    expect(data).toEqual(required);
    expect(() => validateConfig(schema, data, file)).not.toThrow();
  });

  it('shows every default correctly: uncommented, it equals the defaults', () => {
    const full = without(parseYaml(uncomment(text)) as object, ALTERNATIVES);
    const withAll = validateConfig(schema, full, `${file} (uncommented)`);
    const defaults = validateConfig(schema, required, file);
    expect(without(withAll, EXAMPLES_ONLY)).toEqual(without(defaults, EXAMPLES_ONLY));
    // The examples are valid values too.
    for (const k of EXAMPLES_ONLY.filter((k) => k in schema.shape && !ALTERNATIVES.includes(k)))
      expect(withAll[k as keyof typeof withAll], k).toBeDefined();
  });

  it('mentions every setting of the schema, so that the file documents them all', () => {
    const full = parseYaml(uncomment(text)) as Record<string, unknown>;
    expect(Object.keys(full).sort()).toEqual(Object.keys(schema.shape).sort());
    const pap = full.pap as Record<string, unknown>;
    expect(Object.keys(pap).sort()).toEqual(Object.keys(schema.shape.pap.unwrap().shape).sort());
  });
});

describe('uncomment', () => {
  it('turns commented settings into settings and leaves prose and nested comments alone', () => {
    const text = ['# The router.', '# tun: dn0', '# pap:', '#   udpPort: 7032', '#   # a note', 'x: 1'].join(
      '\n',
    );
    expect(uncomment(text)).toBe(
      ['# The router.', 'tun: dn0', 'pap:', '  udpPort: 7032', '#   # a note', 'x: 1'].join('\n'),
    );
  });
});
