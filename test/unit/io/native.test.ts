import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

describe('loadNative', () => {
  it('explains how to build the addon when it is missing', async () => {
    vi.stubEnv('DISTNAT_NATIVE_ADDON', '/nonexistent/distnat_native.node');
    const { loadNative, nativeAvailable, NativeAddonError } = await import('../../../src/io/native.ts');
    expect(nativeAvailable()).toBe(false);
    expect(() => loadNative()).toThrow(NativeAddonError);
    expect(() => loadNative()).toThrow(/npx node-gyp rebuild --directory native-setup\/addon/);
  });

  const built = existsSync(
    new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
  );
  it.skipIf(!built)('loads the built addon, whose version matches this code', async () => {
    const { loadNative, BINDING_VERSION } = await import('../../../src/io/native.ts');
    const n = loadNative();
    expect(n.version()).toBe(BINDING_VERSION);
    expect(typeof n.Poller).toBe('function');
  });

  it.skipIf(!built)(
    'turns argument mistakes into TypeErrors and bad fds into errno errors, not crashes',
    async () => {
      const { loadNative } = await import('../../../src/io/native.ts');
      const n = loadNative();
      const counters = new Float64Array(7);
      expect(() =>
        n.writeBatch(-1, 0, 0, new Uint8Array(4), new Int32Array(2), 1, new Float64Array(2)),
      ).toThrow(/counters/);
      expect(() => n.writeBatch(-1, 9, 0, new Uint8Array(4), new Int32Array(2), 1, counters)).toThrow(/mode/);
      // @ts-expect-error a wrong type on purpose
      expect(() => n.writeBatch(-1, 0, 0, 'x', new Int32Array(2), 1, counters)).toThrow(TypeError);
      // A write to a bad fd is a per-packet failure: counted, never thrown.
      expect(n.writeBatch(-1, 0, 0, new Uint8Array(64), new Int32Array([0, 64]), 1, counters)).toBe(0);
      expect(counters[4]).toBe(1); // errors
      expect(counters[5]).toBe(9); // EBADF
      expect(() => n.closeFd(-1)).toThrow(expect.objectContaining({ code: 'EBADF' }));
      expect(() => n.tunOpen('a-name-longer-than-ifnamsiz', 0)).toThrow(RangeError);
    },
  );
});
