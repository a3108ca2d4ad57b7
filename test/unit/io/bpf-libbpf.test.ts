/**
 * libbpf is needed by the eBPF data path only: the packet I/O addon does
 * not link it, and a machine whose libbpf cannot be loaded gets
 * BpfUnavailableError('no-libbpf') from the BPF wrapper (one log line in a
 * daemon) while the TUN path's addon loads as before.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bpfAddonPath } from '../../../src/io/bpf.ts';
import { addonDir, nativeAvailable } from '../../../src/io/native.ts';

const NATIVE = `${addonDir()}build/Release/distnat_native.node`;

/** DT_NEEDED entries of an ELF shared object, read by binutils. */
function needed(file: string): string[] {
  const out = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
}

describe('libbpf at run time', () => {
  it.skipIf(!nativeAvailable())('is needed by the BPF addon and not by the packet I/O addon', () => {
    expect(needed(bpfAddonPath())).toContain('libbpf.so.1');
    expect(needed(NATIVE).filter((l) => l.startsWith('libbpf'))).toEqual([]);
  });

  it.skipIf(!nativeAvailable())(
    'when it cannot be loaded, takes only the eBPF data path away',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'distnat-no-libbpf-'));
      try {
        // An empty file where the loader looks first: "file too short", as a
        // missing or broken libbpf1 package would fail.
        writeFileSync(join(dir, 'libbpf.so.1'), '');
        const out = execFileSync(
          process.execPath,
          ['--import', 'tsx', join(import.meta.dirname, 'bpf-libbpf-probe.ts')],
          { encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: dir } },
        );
        const r = JSON.parse(out.trim().split('\n').at(-1)!) as {
          bpf?: { name: string; reason?: string; message: string };
          nativeVersion: number;
        };
        expect(r.bpf?.name).toBe('BpfUnavailableError');
        expect(r.bpf?.reason).toBe('no-libbpf');
        expect(r.bpf?.message).toMatch(/libbpf1/);
        expect(r.nativeVersion).toBeGreaterThan(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    30_000,
  );
});
