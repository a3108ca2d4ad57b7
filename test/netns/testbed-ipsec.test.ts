/**
 * `scripts/testbed --ipsec demo`: the testbed's own process table with
 * manual keying (hosts with --ipsec and a keying file each, `distnat peer
 * --mirror` on the server) installs both hosts' SAs on the SPIs a fresh
 * router leases them, and the demo's downloads travel through them; --ike
 * is refused on that testbed; `down` removes the keying files with the rest.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { readStatus } from '../../scripts/lib/testbed/status.ts';
import { run } from '../helpers/process.ts';
import { TESTBED_SCRIPT, TOPOLOGY, uniquePrefix } from '../helpers/testbed.ts';

const prefix = uniquePrefix();
const layout = new TestbedLayout(prefix);
const runDir = layout.runDir;
const testbed = (...args: string[]) =>
  run([TESTBED_SCRIPT, '--prefix', prefix, ...args], { timeoutMs: 240_000 });

afterAll(async () => {
  await testbed('down');
});

describe('scripts/testbed --ipsec', () => {
  it('demo: both hosts install their SAs and download through ESP', async () => {
    const r = await testbed('--ipsec', 'demo');
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    for (const host of TOPOLOGY.hosts) {
      expect(r.stdout).toMatch(
        new RegExp(`ok +${host} manual keying +\\S+/${host}/ipsec\\.yaml \\(SAs installed\\)`),
      );
      expect(r.stdout).toMatch(new RegExp(`ok +${host} curl 3 MB from server +sha256 \\w+\\.\\.\\. matches`));
      // The 3 MB arrived as ESP: well over 2000 datagrams accepted.
      const m = new RegExp(`${host}: (\\d+) datagrams protected, (\\d+) accepted`).exec(r.stdout);
      expect(m, r.stdout).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(20);
      expect(Number(m![2])).toBeGreaterThan(2000);
      expect(readFileSync(layout.ipsecFile(host), 'utf8')).toContain('protect: [ah]');
    }
    expect(r.stdout).toMatch(/10\.0\.0\.1 +256 +64 /);
    expect(r.stdout).toMatch(/10\.0\.0\.3 +320 +64 /);
    // The peer opened what both hosts sent.
    const peer = await readStatus(layout.nodeDir('server'), 'peer');
    expect(peer.counters['ipsec.inbound.accepted'] ?? 0).toBeGreaterThan(40);
    expect(peer.counters['ipsec.inbound.auth-failed'] ?? 0).toBe(0);
    expect(existsSync(layout.ipsecMarker)).toBe(true);
  }, 240_000);

  it('refuses --ike on a testbed that runs manual keying', async () => {
    const r = await testbed('--ike', 'up');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--ike and this testbed's manual keying \(up --ipsec\) exclude each other/);
  }, 60_000);

  it('down removes the keying files with the rest', async () => {
    const r = await testbed('down');
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(runDir)).toBe(false);
  }, 60_000);
});
