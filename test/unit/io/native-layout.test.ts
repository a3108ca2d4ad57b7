import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { layoutDifferences, NATIVE_LAYOUT } from '../../../src/io/native.ts';

const ADDON = new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url);

describe('the numbers shared with the native addon (native-setup/addon/src/layout.h)', () => {
  it.skipIf(!existsSync(ADDON))('are the same in the built binding as in src/io/native.ts', () => {
    const binding = createRequire(import.meta.url)(ADDON.pathname) as { layout(): unknown };
    expect(binding.layout()).toEqual(NATIVE_LAYOUT);
    expect(layoutDifferences(binding.layout())).toEqual([]);
  });

  it('names every value that drifted, and groups or names only one side has', () => {
    const drifted = structuredClone(NATIVE_LAYOUT) as unknown as Record<string, Record<string, number>>;
    drifted.TxCounter!.Invalid = 7;
    drifted.PollMode!.Busy = 2;
    delete drifted.AeadResult;
    expect(layoutDifferences(drifted)).toEqual([
      'PollMode.Busy: 2 (expected undefined)',
      'TxCounter.Invalid: 7 (expected 6)',
      'AeadResult.Done: undefined (expected 1)',
      'AeadResult.AuthFailed: undefined (expected 0)',
      'AeadResult.BadArgs: undefined (expected -1)',
      'AeadResult.CryptoFailed: undefined (expected -2)',
    ]);
  });
});
