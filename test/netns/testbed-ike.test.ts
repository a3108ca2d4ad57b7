/**
 * `scripts/testbed --ike demo`: the testbed's own process table with IKE
 * (hosts with --ike, `distnat peer --ike` on the server) brings both child
 * SAs up and the demo's downloads through them; `down` removes everything,
 * the server's certificate and IKE files included.
 */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { run } from '../helpers/process.ts';
import { TESTBED_SCRIPT, uniquePrefix } from '../helpers/testbed.ts';

const prefix = uniquePrefix();
const layout = new TestbedLayout(prefix);
const runDir = layout.runDir;
const testbed = (...args: string[]) =>
  run([TESTBED_SCRIPT, '--prefix', prefix, ...args], { timeoutMs: 240_000 });

afterAll(async () => {
  await testbed('down');
});

describe('scripts/testbed --ike', () => {
  it('demo: both hosts hold a child SA with the server and download through it', async () => {
    const r = await testbed('--ike', 'demo');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/ok +h1 IKE SA with the server +child SA up/);
    expect(r.stdout).toMatch(/ok +h2 IKE SA with the server +child SA up/);
    expect(r.stdout).toMatch(/ok +h1 curl 3 MB from server +sha256 \w+\.\.\. matches/);
    expect(r.stdout).toMatch(/ok +h2 curl 3 MB from server +sha256 \w+\.\.\. matches/);
    // The SAs as the hosts print them: SPIs in, aes-gcm, the host's ports less its IKE port.
    expect(r.stdout).toMatch(
      /0x[0-9a-f]+ +0x[0-9a-f]+ +tunnel +aes-gcm-16-128 +198\.51\.100\.30\/32\[tcp\/\d+-\d+\]/,
    );
    expect(existsSync(layout.ikeMarker)).toBe(true);
  }, 240_000);

  it('down removes the IKE files and the server certificate with the rest', async () => {
    const r = await testbed('down');
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(runDir)).toBe(false);
  }, 60_000);
});
