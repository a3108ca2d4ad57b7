/**
 * Arbitrary and damaged packets, seeded: the forwarder never throws, and
 * every packet read is accounted for as forwarded, dropped with a reason, or
 * held (released fragments are extra forwarded packets).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import {
  H1,
  H2,
  H9,
  HOP,
  SERVER,
  SHARED,
  ah,
  echo,
  esp,
  fragment,
  icmpError,
  rig,
  tcp,
  tunnel,
  udp,
  type Rig,
} from './forwarder-packets.ts';

/** Valid packets of every kind the router handles, as seeds for damage. */
function seeds(): { wan: Uint8Array[]; lan: Uint8Array[] } {
  const sentTcp = tcp(SHARED, 1060, SERVER, 80, 60);
  const wan = [
    tcp(SERVER, 80, SHARED, 1030, 40),
    udp(SERVER, 53, SHARED, 1060, 30),
    echo(SERVER, SHARED, 'echo-reply', 1040),
    icmpError(HOP, SHARED, 'destination-unreachable', 4, sentTcp),
    icmpError(HOP, SHARED, 'time-exceeded', 0, esp(SHARED, SERVER, 0x4444)),
    esp(SERVER, SHARED, 300),
    ah(SERVER, SHARED, 260),
    ...fragment(udp(SERVER, 53, SHARED, 1030, 300, { id: 5 }), [104, 208]),
  ];
  const lan = [
    tunnel(H1, tcp(SHARED, 1030, SERVER, 80, 40)),
    tunnel(H2, udp(SHARED, 1060, SERVER, 53)),
    tunnel(H1, echo(SHARED, SERVER, 'echo-request', 1040)),
    tunnel(H1, icmpError(SHARED, SERVER, 'destination-unreachable', 3, udp(SERVER, 9, SHARED, 1030))),
    tunnel(H1, esp(SHARED, SERVER, 0x4444)),
    tunnel(H9, ah(SHARED, SERVER, 0x4444)),
    tunnel(H1, udp(SHARED, 1030, SHARED, 1060, 8, { ttl: 3 })),
    ...fragment(udp(SHARED, 1030, SERVER, 53, 300, { id: 6 }), [104]).map((f) => tunnel(H2, f)),
  ];
  return { wan, lan };
}

/** Fixes an IPv4 header checksum at `at` when the header length is plausible, to get past the first check. */
function refreshHeader(p: Uint8Array, at: number): void {
  if (p.length < at + 20) return;
  const hl = (p[at]! & 0x0f) * 4;
  if (hl < 20 || at + hl > p.length) return;
  p[at + 10] = 0;
  p[at + 11] = 0;
  const sum = internetChecksum(p, at, at + hl);
  p[at + 10] = sum >>> 8;
  p[at + 11] = sum & 0xff;
}

interface Damage {
  seed: number;
  edits: { at: number; value: number }[];
  cut: number;
  fixChecksums: boolean;
}

const damage = fc.record({
  seed: fc.nat(),
  edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 6 }),
  cut: fc.nat(),
  fixChecksums: fc.boolean(),
});

function damaged(base: Uint8Array, d: Damage, innerAt: number): Uint8Array {
  const p = base.slice();
  for (const e of d.edits) p[e.at % p.length] = e.value;
  const cut = d.cut % 4 === 0 ? p.length - (d.cut % p.length) : p.length;
  const out = p.subarray(0, Math.max(1, cut));
  if (d.fixChecksums) {
    if (innerAt > 0) refreshHeader(out, innerAt);
    refreshHeader(out, 0);
  }
  return out;
}

/** Forwarded + dropped + held = read + released, over both directions. */
function accounted(r: Rig): void {
  const t = r.fwd.traffic.snapshot();
  const read = t['lan-rx-packets'] + t['wan-rx-packets'] + t['fragments-released'];
  const done = t['outbound-packets'] + t['inbound-packets'] + r.totalDrops() + t['fragments-held'];
  expect(done).toBe(read);
}

describe('RouterForwarder with malformed input', () => {
  it('never throws on random bytes and counts every packet', () => {
    const r = rig();
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 16 }),
        (ps) => {
          r.fromWan(...ps);
          r.fromLan(...ps);
        },
      ),
      { seed: 0x5eed, numRuns: 400 },
    );
    accounted(r);
    expect(r.totalDrops()).toBeGreaterThan(0);
  });

  it('never throws on damaged valid packets (a few thousand) and counts every packet', () => {
    const r = rig();
    const { wan, lan } = seeds();
    let n = 0;
    fc.assert(
      fc.property(fc.array(damage, { minLength: 1, maxLength: 12 }), (ds) => {
        r.fromWan(...ds.map((d) => damaged(wan[d.seed % wan.length]!, d, 0)));
        r.fromLan(...ds.map((d) => damaged(lan[d.seed % lan.length]!, d, 20)));
        n += 2 * ds.length;
        r.clock.advance(50);
      }),
      { seed: 0xd15a7, numRuns: 500 },
    );
    expect(n).toBeGreaterThan(2000);
    accounted(r);
    // Damage reached past the header checks into the per-protocol paths.
    const reasons = Object.keys(r.drops());
    expect(reasons.length).toBeGreaterThan(8);
    expect(r.fwd.traffic.get('outbound-packets') + r.fwd.traffic.get('inbound-packets')).toBeGreaterThan(0);
  });

  it('keeps its views in bounds for every truncation of every seed', () => {
    const r = rig();
    const { wan, lan } = seeds();
    for (const p of wan)
      for (let len = 1; len <= p.length; len++) {
        const q = p.slice(0, len);
        // Claim the cut length so the header checks pass and the transport checks are exercised.
        if (len >= 20) {
          q[2] = len >>> 8;
          q[3] = len & 0xff;
          refreshHeader(q, 0);
        }
        r.fromWan(q);
      }
    for (const p of lan)
      for (let len = 1; len <= p.length; len++) {
        const q = p.slice(0, len);
        if (len >= 40) {
          q[2] = len >>> 8;
          q[3] = len & 0xff;
          q[22] = (len - 20) >>> 8;
          q[23] = (len - 20) & 0xff;
          refreshHeader(q, 20);
          refreshHeader(q, 0);
        }
        r.fromLan(q);
      }
    accounted(r);
    expect(r.fwd.drops.get('transport-truncated')).toBeGreaterThan(0);
    expect(r.fwd.drops.get('icmp-error-malformed')).toBeGreaterThan(0);
  });
});
