/**
 * src/router/ebpf/layout.ts against native-setup/bpf/router.h and the
 * compiled object: the counter names in the header's enums, and the struct
 * layouts, map and program names as clang laid them out (the object's BTF,
 * dumped by bpftool, is the independent account).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bpfObjectPath } from '../../../src/io/bpf.ts';
import {
  CONFIG_BYTES,
  CONFIG_OFFSETS,
  COUNTERS_BYTES,
  FAST_DROPS,
  FAST_PASSES,
  FAST_TRAFFIC,
  MAX_SHARED,
  PORTS,
  RouterMap,
  RouterProgram,
  SA_KEY_BYTES,
  SA_VALUE_BYTES,
  WITHDRAWN_SHIFT,
} from '../../../src/router/data-path/ebpf/layout.ts';

const HEADER = fileURLToPath(new URL('../../../native-setup/bpf/router.h', import.meta.url));
const OBJECT = bpfObjectPath('router');

/** The enumerators of `enum name` without their prefix, lower case with dashes; the *_COUNT sentinel last. */
function enumNames(text: string, name: string, prefix: string): string[] {
  const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(text)?.[1];
  if (body === undefined) throw new Error(`no enum ${name} in router.h`);
  return body
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => s.slice(prefix.length).toLowerCase().replaceAll('_', '-'));
}

interface BtfType {
  kind: string;
  name: string;
  size?: number;
  members?: { name: string; bits_offset: number }[];
}

describe('the fast path layout', () => {
  const header = readFileSync(HEADER, 'utf8');

  it('names the counters in the order of router.h', () => {
    expect(enumNames(header, 'dn_traffic', 'DN_')).toEqual([...FAST_TRAFFIC.map((n) => n), 'traffic-count']);
    expect(enumNames(header, 'dn_drop', 'DN_DROP_')).toEqual([...FAST_DROPS, 'count']);
    expect(enumNames(header, 'dn_pass', 'DN_PASS_')).toEqual([...FAST_PASSES, 'count']);
    expect(enumNames(header, 'dn_direction', 'DN_FROM_')).toEqual(['lan', 'wan']);
  });

  it('serves as many shared addresses, with as many ports each, as router.h', () => {
    expect(Number(/#define DN_MAX_SHARED (\d+)/.exec(header)?.[1])).toBe(MAX_SHARED);
    expect(Number(/#define DN_PORTS (\d+)/.exec(header)?.[1])).toBe(PORTS);
  });

  it('keys withdrawn_spis by the granule of router.h', () => {
    expect(Number(/#define DN_WITHDRAWN_SHIFT (\d+)/.exec(header)?.[1])).toBe(WITHDRAWN_SHIFT);
  });

  it.skipIf(!existsSync(OBJECT))('matches the compiled object (BTF)', () => {
    const btf = JSON.parse(
      execFileSync('bpftool', ['btf', 'dump', 'file', OBJECT, '-j'], { encoding: 'utf8' }),
    ) as {
      types: BtfType[];
    };
    const struct = (name: string): BtfType => {
      const t = btf.types.find((x) => x.kind === 'STRUCT' && x.name === name);
      if (t === undefined) throw new Error(`no struct ${name} in ${OBJECT}`);
      return t;
    };
    const config = struct('dn_router_config');
    expect(config.size).toBe(CONFIG_BYTES);
    const offsets = Object.fromEntries(config.members!.map((m) => [m.name, m.bits_offset / 8]));
    for (const [field, at] of Object.entries(CONFIG_OFFSETS)) expect(offsets[field], field).toBe(at);
    expect(struct('dn_router_counters').size).toBe(COUNTERS_BYTES);
    expect(struct('dn_sa_key').size).toBe(SA_KEY_BYTES);
    expect(struct('dn_sa_value').size).toBe(SA_VALUE_BYTES);
    const names = new Set(btf.types.map((t) => t.name));
    for (const map of Object.values(RouterMap)) expect(names.has(map), map).toBe(true);
    for (const prog of Object.values(RouterProgram)) expect(names.has(prog), prog).toBe(true);
  });
});
