/**
 * The BIRD configurations the multi-router testbed makes from
 * native-setup/bird/: every name filled in, and BIRD itself (bird -p, which
 * parses and exits) takes them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bgpPeerName,
  fillTemplate,
  routerBirdConfig,
  upstreamBirdConfig,
} from '../../../scripts/lib/testbed/routing.ts';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';
import { run } from '../../helpers/process.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-bird-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function birdParses(text: string): Promise<string> {
  const file = join(dir, 'bird.conf');
  writeFileSync(file, text);
  const r = await run(['/usr/sbin/bird', '-p', '-c', file]);
  return r.code === 0 ? 'ok' : r.stderr.trim();
}

describe('BIRD configurations from native-setup/bird/', () => {
  const m = TOPOLOGY.multiRouter;

  it('a router: its own WAN address as source, the upstream as neighbour, a linked route per address', async () => {
    const text = routerBirdConfig('router2', m.shared);
    expect(text).not.toMatch(/@[A-Z_]+@/);
    expect(text).toContain(`local ${m.addresses['router2']!.wan} as ${m.routersAs};`);
    expect(text).toContain(`neighbor ${TOPOLOGY.server.wan} as ${m.upstreamAs};`);
    expect(text).toContain('check link yes;');
    for (const a of m.shared) expect(text).toContain(`route ${a}/32 via "${TOPOLOGY.tun}";`);
    expect(await birdParses(text)).toBe('ok');
  });

  it('the server: a session per router, paths merged into the kernel', async () => {
    const text = upstreamBirdConfig();
    expect(text).not.toMatch(/@[A-Z_]+@/);
    for (const r of m.routers) {
      expect(text).toContain(`protocol bgp ${bgpPeerName(r)} from routers {`);
      expect(text).toContain(`neighbor ${m.addresses[r]!.wan} as ${m.routersAs};`);
    }
    expect(text).toContain('merge paths yes;');
    expect(await birdParses(text)).toBe('ok');
  });

  it('refuses a template name it has no value for', () => {
    expect(() => fillTemplate('a @B@ c', {}, 'x.conf.in')).toThrow(/x\.conf\.in: no value for @B@/);
    expect(fillTemplate('a @B@ c', { B: 'b' }, 'x')).toBe('a b c');
  });
});
