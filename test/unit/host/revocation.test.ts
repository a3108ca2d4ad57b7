import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planRevocation, type RevocableIkeSa } from '../../../src/host/daemon/revocation.ts';
import type { Block } from '../../../src/util/block.ts';

interface Child {
  name: string;
  inboundSpi: number;
  state: string;
}
interface Sa extends RevocableIkeSa<Child> {
  name: string;
}

const PORTS: Block = { lowest: 1024, count: 32 };
const OLD_SPIS: Block = { lowest: 0x1000, count: 64 };
const NEW_SPIS: Block = { lowest: 0x2000, count: 64 };
const child = (name: string, inboundSpi: number, state = 'installed'): Child => ({ name, inboundSpi, state });
const sa = (name: string, spis: Block[] | undefined, children: Child[], state = 'established'): Sa => ({
  name,
  state,
  ownBlocks: spis === undefined ? undefined : { ports: [PORTS], spis },
  children,
});
const names = (p: ReturnType<typeof planRevocation<Child, Sa>>) => ({
  deleteIke: p.deleteIke.map((s) => s.name),
  deleteChildren: p.deleteChildren.map((x) => `${x.sa.name}/${x.child.name}`),
  abandon: p.abandon.map((s) => s.name),
});

describe('planRevocation: what a host ends when a block of its is withdrawn', () => {
  it('deletes the IKE SAs whose certificate names the withdrawn SPI block, children and all', () => {
    const a = sa('a', [OLD_SPIS], [child('a1', 0x1001), child('a2', 0x1002)]);
    const b = sa('b', [OLD_SPIS, NEW_SPIS], [child('b1', 0x2001)]);
    expect(names(planRevocation('spi', OLD_SPIS, [a, b]))).toEqual({
      deleteIke: ['a', 'b'],
      deleteChildren: [],
      abandon: [],
    });
  });

  it('on an IKE SA whose certificate did not name the block, deletes only the child SAs with inbound SPIs in it', () => {
    // Authenticated before the host leased 0x1000: its certificate stands, its children in the block do not.
    const c = sa('c', [NEW_SPIS], [child('c1', 0x2001), child('c2', 0x1003), child('c3', 0x103f)]);
    expect(names(planRevocation('spi', OLD_SPIS, [c]))).toEqual({
      deleteIke: [],
      deleteChildren: ['c/c2', 'c/c3'],
      abandon: [],
    });
  });

  it('leaves SAs on other blocks, SAs already going, and children already being deleted alone', () => {
    const d = sa('d', [NEW_SPIS], [child('d1', 0x2001), child('d2', 0x1001, 'deleting')]);
    const gone = ['rekeyed', 'deleting', 'dead'].map((st) => sa(st, [OLD_SPIS], [child('x', 0x1001)], st));
    expect(names(planRevocation('spi', OLD_SPIS, [d, ...gone]))).toEqual({
      deleteIke: [],
      deleteChildren: [],
      abandon: [],
    });
  });

  it('abandons an IKE SA being set up with the revoked certificate; a half-open one without a certificate stays', () => {
    const e = sa('e', [OLD_SPIS], [], 'auth-sent');
    const f = sa('f', undefined, [], 'half-open');
    expect(names(planRevocation('spi', OLD_SPIS, [e, f]))).toEqual({
      deleteIke: [],
      deleteChildren: [],
      abandon: ['e'],
    });
  });

  it('a withdrawn port block ends the IKE SAs whose certificate names it and no child by SPI', () => {
    const g = sa('g', [OLD_SPIS], [child('g1', 1030)]);
    const h = { ...sa('h', [OLD_SPIS], [child('h1', 0x1001)]), ownBlocks: { ports: [], spis: [OLD_SPIS] } };
    expect(names(planRevocation('port', PORTS, [g, h]))).toEqual({
      deleteIke: ['g'],
      deleteChildren: [],
      abandon: [],
    });
  });

  it('never leaves an established SA carrying a child SA whose inbound SPI is in the withdrawn block', () => {
    const spi = fc.integer({ min: 0x0f00, max: 0x2100 });
    const block = fc.record({
      lowest: fc.integer({ min: 0x0f00, max: 0x2000 }),
      count: fc.integer({ min: 1, max: 256 }),
    });
    const anSa = fc.record({
      name: fc.string(),
      state: fc.constantFrom('established', 'rekeyed', 'auth-sent'),
      ownBlocks: fc.option(
        fc.record({ ports: fc.constant([PORTS]), spis: fc.array(block, { maxLength: 2 }) }),
        {
          nil: undefined,
        },
      ),
      children: fc.array(
        fc.record({ name: fc.string(), inboundSpi: spi, state: fc.constantFrom('installed', 'deleting') }),
        {
          maxLength: 4,
        },
      ),
    });
    fc.assert(
      fc.property(block, fc.array(anSa, { maxLength: 5 }), (w, sas) => {
        const p = planRevocation<Child, Sa>('spi', w, sas);
        for (const s of sas) {
          if (s.state !== 'established' || p.deleteIke.includes(s)) continue;
          for (const c of s.children)
            if (c.state === 'installed' && c.inboundSpi >= w.lowest && c.inboundSpi < w.lowest + w.count)
              expect(p.deleteChildren.some((x) => x.child === c)).toBe(true);
        }
        // An SA is deleted whole or child by child, never both.
        for (const x of p.deleteChildren) expect(p.deleteIke).not.toContain(x.sa);
      }),
    );
  });
});
