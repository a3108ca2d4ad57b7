/**
 * src/host/ebpf/host-layout.ts against native-setup/bpf/host.h and the
 * compiled object's BTF (bpftool's account of what clang laid out).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { bpfObjectPath } from '../../../src/io/bpf.ts';
import {
  HOST_CONFIG_BYTES,
  HOST_CONFIG_OFFSETS,
  HOST_COUNTERS_BYTES,
  HOST_PASSES,
  HOST_TRAFFIC,
  HostMap,
  HostProgram,
} from '../../../src/host/data-path/ebpf/host-layout.ts';

const HEADER = fileURLToPath(new URL('../../../native-setup/bpf/host.h', import.meta.url));
const OBJECT = bpfObjectPath('host');

function enumNames(text: string, name: string, prefix: string): string[] {
  const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(text)?.[1];
  if (body === undefined) throw new Error(`no enum ${name} in host.h`);
  return body
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => s.slice(prefix.length).toLowerCase().replaceAll('_', '-'));
}

describe('the host fast path layout', () => {
  const header = readFileSync(HEADER, 'utf8');

  it('names the counters in the order of host.h', () => {
    expect(enumNames(header, 'dn_host_traffic', 'DN_HOST_')).toEqual([...HOST_TRAFFIC, 'traffic-count']);
    expect(enumNames(header, 'dn_host_pass', 'DN_HOST_PASS_')).toEqual([...HOST_PASSES, 'count']);
  });

  it.skipIf(!existsSync(OBJECT))('matches the compiled object (BTF)', () => {
    const btf = JSON.parse(
      execFileSync('bpftool', ['btf', 'dump', 'file', OBJECT, '-j'], { encoding: 'utf8' }),
    ) as {
      types: {
        kind: string;
        name: string;
        size?: number;
        members?: { name: string; bits_offset: number }[];
      }[];
    };
    const struct = (name: string) => btf.types.find((t) => t.kind === 'STRUCT' && t.name === name)!;
    const config = struct('dn_host_config');
    expect(config.size).toBe(HOST_CONFIG_BYTES);
    const offsets = Object.fromEntries(config.members!.map((m) => [m.name, m.bits_offset / 8]));
    for (const [field, at] of Object.entries(HOST_CONFIG_OFFSETS)) expect(offsets[field], field).toBe(at);
    expect(struct('dn_host_counters').size).toBe(HOST_COUNTERS_BYTES);
    const names = new Set(btf.types.map((t) => t.name));
    for (const n of [...Object.values(HostMap), ...Object.values(HostProgram)])
      expect(names.has(n), n).toBe(true);
  });
});
