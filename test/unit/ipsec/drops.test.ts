/**
 * Every drop reason, produced on purpose, with the window and the buffer
 * checked afterwards: a packet that fails must leave no trace.
 */
import { describe, expect, it, vi } from 'vitest';
import { IpsecEngine } from '../../../src/ipsec/engine.ts';
import { EspSa } from '../../../src/ipsec/sa.ts';
import { SecurityAssociationDatabase } from '../../../src/ipsec/sad.ts';
import { cidrRange, selector } from '../../../src/ipsec/selector.ts';
import { SecurityPolicy, SecurityPolicyDatabase } from '../../../src/ipsec/spd.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import {
  addr,
  enginePair,
  get16,
  hex,
  ipv4,
  place,
  SERVER,
  SHARED,
  suite,
  taken,
  udpPacket,
  type PairOptions,
  type SuiteName,
} from './helpers.ts';

/** Protects `n` datagrams and returns the wire bytes. */
function sealed(pair: ReturnType<typeof enginePair>, n: number, size = 4): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const p = place(udpPacket(1030 + i, 53, new Uint8Array(size).fill(i)));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
    out.push(taken(p));
  }
  return out;
}

function receive(engine: IpsecEngine, wire: Uint8Array): string {
  const p = place(wire);
  return engine.inbound(p.buf, p.span);
}

function fixIpChecksum(b: Uint8Array): void {
  b[10] = 0;
  b[11] = 0;
  const c = internetChecksum(b, 0, (b[0]! & 0x0f) * 4);
  b[10] = c >>> 8;
  b[11] = c & 0xff;
}

describe('replayed packets', () => {
  for (const o of [{ suite: 'gcm128' }, { suite: 'cbc128' }, { protocol: 'ah' }] as PairOptions[]) {
    it(`${o.suite ?? o.protocol}: a second copy is 'replay', checked before the ICV`, () => {
      const pair = enginePair(o);
      const [a, b] = sealed(pair, 2);
      expect(receive(pair.receiver, b!)).toBe('accepted');
      expect(receive(pair.receiver, a!)).toBe('accepted');
      expect(receive(pair.receiver, a!)).toBe('replay');
      expect(receive(pair.receiver, b!)).toBe('replay');
      // Checked before the ICV: a replay with a broken ICV is still a replay, and costs no cryptography.
      const broken = a!.slice();
      broken[broken.length - 1]! ^= 0xff;
      expect(receive(pair.receiver, broken)).toBe('replay');
      expect(pair.in.replay!.highest).toBe(2);
      expect(pair.in.packets).toBe(2);
    });
  }

  it('a packet left of the window is too-old; the window edge is exact', () => {
    const pair = enginePair({ suite: 'gcm128', replayWindow: 64 });
    const wire = sealed(pair, 70);
    expect(receive(pair.receiver, wire[69]!)).toBe('accepted'); // seq 70: window [7, 70]
    expect(receive(pair.receiver, wire[6]!)).toBe('accepted'); // seq 7, at the edge
    expect(receive(pair.receiver, wire[5]!)).toBe('too-old'); // seq 6, one past
    const broken = wire[0]!.slice();
    broken[broken.length - 1]! ^= 0xff;
    expect(receive(pair.receiver, broken)).toBe('too-old');
    expect(pair.receiver.counters.inbound['too-old']).toBe(2);
  });

  it('a forged packet neither moves the window nor marks its number as seen', () => {
    const pair = enginePair({ suite: 'gcm128' });
    const wire = sealed(pair, 5);
    const forged = wire[4]!.slice();
    forged[forged.length - 1]! ^= 1;
    expect(receive(pair.receiver, forged)).toBe('auth-failed');
    expect(pair.in.replay!.highest).toBe(0);
    expect(receive(pair.receiver, wire[4]!)).toBe('accepted');
    expect(receive(pair.receiver, wire[0]!)).toBe('accepted');
  });
});

describe('one flipped bit anywhere', () => {
  const cases: [string, PairOptions][] = [
    ['gcm128 transport', { suite: 'gcm128' }],
    ['cbc128 transport', { suite: 'cbc128' }],
    ['null transport', { suite: 'null' }],
    ['gcm256 tunnel', { suite: 'gcm256', mode: 'tunnel' }],
    ['cbc256 ESP-in-UDP', { suite: 'cbc256', encap: true }],
    ['AH transport', { protocol: 'ah' }],
    ['AH tunnel', { protocol: 'ah', mode: 'tunnel' }],
  ];
  for (const [name, o] of cases) {
    it(`${name}: dropped for the right reason, window unmoved, buffer untouched`, () => {
      const pair = enginePair(o);
      pair.out.seq = 1000; // flips of the sequence number stay non-zero
      const original = udpPacket(1030, 53, new Uint8Array(4));
      const [wire] = sealed(pair, 1);
      const w = wire!;
      const spiAt = o.protocol === 'ah' ? 24 : o.encap ? 28 : 20;
      // RFC 3948: the UDP source port (a NAT may change it) and checksum are outside the ICV.
      const outsideIcv = (byte: number): boolean =>
        o.encap === true && (byte < 22 || byte === 26 || byte === 27);
      for (let bit = 0; bit < w.length * 8; bit++) {
        const byte = bit >>> 3;
        const bad = w.slice();
        bad[byte]! ^= 0x80 >>> (bit & 7);
        const p = place(bad);
        const before = hex(p.buf);
        if (byte >= 20 && outsideIcv(byte)) {
          const fresh = enginePair(o);
          expect(fresh.receiver.inbound(p.buf, p.span)).toBe('accepted');
          expect(hex(taken(p))).toBe(hex(original));
          continue;
        }
        const v = pair.receiver.inbound(p.buf, p.span);
        if (byte < 20)
          expect(v).toBe('malformed'); // the header checksum catches any one bit
        else if (o.encap && byte < 24)
          expect(v).toBe('policy-mismatch'); // no longer an ESP-in-UDP port: clear UDP
        else if (o.encap && byte < 26)
          expect(['malformed', 'auth-failed']).toContain(v); // UDP length
        else if (byte >= spiAt && byte < spiAt + 4) {
          // An SPI of zero is RFC 3948's non-ESP marker: the datagram goes to IKE, untouched.
          const zero = bad[spiAt]! + bad[spiAt + 1]! + bad[spiAt + 2]! + bad[spiAt + 3]! === 0;
          expect(v).toBe(zero && o.encap ? 'ike' : 'no-sa');
        } else if (o.protocol === 'ah' && byte < spiAt) expect(['malformed', 'auth-failed']).toContain(v);
        else expect(v).toBe('auth-failed');
        expect(hex(p.buf)).toBe(before);
        expect(pair.in.replay!.highest).toBe(0);
      }
    });
  }

  it('a fresh receiver still accepts the genuine packet after all that', () => {
    const pair = enginePair({ suite: 'cbc128' });
    const [wire] = sealed(pair, 1);
    for (let bit = 0; bit < wire!.length * 8; bit++) {
      const bad = wire!.slice();
      bad[bit >>> 3]! ^= 0x80 >>> (bit & 7);
      expect(receive(pair.receiver, bad)).not.toBe('accepted');
    }
    expect(receive(pair.receiver, wire!)).toBe('accepted');
  });

  it('AH ignores the mutable fields a router changes on the way (TTL, TOS, DF)', () => {
    const pair = enginePair({ protocol: 'ah' });
    const [wire] = sealed(pair, 1);
    const routed = wire!.slice();
    routed[8] = 17; // TTL
    routed[1] = 0x2e; // DSCP
    routed[6]! |= 0x40; // DF
    fixIpChecksum(routed);
    expect(receive(pair.receiver, routed)).toBe('accepted');
  });
});

describe('policy', () => {
  it('a packet in clear where policy says protect is policy-mismatch; outside the selector it passes', () => {
    const pair = enginePair({ selector: selector({ remotePort: { first: 53, last: 53 }, protocol: 17 }) });
    // The receiver is the peer (SERVER): a clear DNS datagram from SHARED to it should have been protected.
    expect(receive(pair.receiver, udpPacket(1030, 53))).toBe('policy-mismatch');
    expect(receive(pair.receiver, udpPacket(1030, 54))).toBe('bypass');
    // And the sender protects only what the selector covers.
    const p = place(udpPacket(1030, 54));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('bypass');
  });

  it('a tunnel whose inner source lies outside the SA policy is policy-mismatch', () => {
    const shared = { first: SHARED, last: SHARED };
    const pair = enginePair({ mode: 'tunnel', selector: selector({ local: shared }) });
    // The sender's policy is widened so that it tunnels a spoofed source as well.
    const wide = new SecurityPolicy({
      name: 'wide',
      selector: selector(),
      action: 'protect',
      protect: ['esp'],
    });
    pair.sender.spd.add(wide, 0);
    pair.sender.sad.bindOutbound(wide, [pair.out]);
    const p = place(udpPacket(1030, 53, new Uint8Array(4), { src: addr('198.51.100.31') }));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
    expect(receive(pair.receiver, taken(p))).toBe('policy-mismatch');
    expect(pair.in.replay!.highest).toBe(1); // authentic, so the window moved; the policy refused it
  });

  it('ESP where policy says AH over ESP is policy-mismatch', () => {
    const pair = enginePair({ suite: 'gcm128' });
    const policy = pair.receiver.spd.get('p')!;
    const strict = new SecurityPolicy({
      name: 'strict',
      selector: policy.selector,
      action: 'protect',
      protect: ['ah', 'esp'],
    });
    pair.receiver.spd.remove('p');
    pair.receiver.spd.add(strict);
    pair.receiver.sad.unbind(pair.in); // unbound: the SPD decides
    const [wire] = sealed(pair, 1);
    expect(receive(pair.receiver, wire!)).toBe('policy-mismatch');
  });

  it('discard policies drop both ways; a closed database drops what no policy names', () => {
    const spd = new SecurityPolicyDatabase('discard');
    spd.add(
      new SecurityPolicy({
        name: 'dns',
        selector: selector({ protocol: 17, remotePort: { first: 53, last: 53 } }),
        action: 'bypass',
      }),
    );
    spd.add(
      new SecurityPolicy({
        name: 'no-net',
        selector: selector({ remote: cidrRange(addr('192.0.2.0'), 24) }),
        action: 'discard',
      }),
    );
    const e = new IpsecEngine(spd, new SecurityAssociationDatabase());
    const out = (pkt: Uint8Array): string => {
      const p = place(pkt);
      return e.outbound(p.buf, p.span);
    };
    expect(out(udpPacket(1030, 53))).toBe('bypass');
    expect(out(udpPacket(1030, 80, new Uint8Array(0), { dst: addr('192.0.2.9') }))).toBe('policy-discard');
    expect(out(udpPacket(1030, 80))).toBe('policy-discard');
    expect(receive(e, udpPacket(53, 1030, new Uint8Array(0), { src: SERVER, dst: SHARED }))).toBe('bypass');
    expect(receive(e, udpPacket(80, 1030, new Uint8Array(0), { src: SERVER, dst: SHARED }))).toBe(
      'policy-discard',
    );
    expect(e.counters.outbound['policy-discard']).toBe(2);
  });

  it('a protect policy without SAs yet is no-sa outbound; an unknown SPI is no-sa inbound', () => {
    const pair = enginePair();
    pair.sender.sad.remove(pair.out);
    const p = place(udpPacket(1030, 53));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('no-sa');
    const other = enginePair({ spi: 0x2000 });
    const [wire] = sealed(other, 1);
    expect(receive(pair.receiver, wire!)).toBe('no-sa');
  });
});

describe('sequence numbers and lifetimes', () => {
  it('never wraps: after 2^32 - 1 the SA is seq-exhausted until rekeyed', () => {
    const pair = enginePair({ suite: 'gcm128' });
    pair.out.seq = 0xffff_fffe;
    expect(sealed(pair, 1)).toHaveLength(1);
    const p = place(udpPacket(1030, 53));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('seq-exhausted');
    expect(pair.out.seq).toBe(0xffff_ffff);
  });

  for (const s of ['gcm128', 'cbc128'] as SuiteName[]) {
    it(`${s}: with ESN the counter runs past 2^32 and the receiver follows`, () => {
      const pair = enginePair({ suite: s, esn: true });
      pair.out.seq = 0xffff_fffd;
      pair.in.replay!.accept(0xffff_fffd);
      const wire = sealed(pair, 4); // 2^32 - 2 .. 2^32 + 1: low halves ...fe, ...ff, 0, 1
      expect(wire.map((w) => receive(pair.receiver, w))).toEqual([
        'accepted',
        'accepted',
        'accepted',
        'accepted',
      ]);
      expect(pair.in.replay!.highest).toBe(0x1_0000_0001);
      expect(receive(pair.receiver, wire[2]!)).toBe('replay');
    });
  }

  it('hard lifetime stops the SA; soft is reported once', () => {
    const onLifetime = vi.fn();
    const sad = new SecurityAssociationDatabase({ onLifetime });
    const sa = new EspSa({
      spi: 0x3000,
      direction: 'outbound',
      mode: 'transport',
      lifetime: { softPackets: 2, hardPackets: 3 },
      ...suite('gcm128'),
    });
    expect(sad.add(sa)).toBeNull();
    const spd = new SecurityPolicyDatabase();
    const policy = spd.add(
      new SecurityPolicy({ name: 'all', selector: selector(), action: 'protect', protect: ['esp'] }),
    );
    sad.bindOutbound(policy, [sa]);
    const e = new IpsecEngine(spd, sad);
    const verdicts = [1, 2, 3, 4].map(() => {
      const p = place(udpPacket(1030, 53));
      return e.outbound(p.buf, p.span);
    });
    expect(verdicts).toEqual(['protected', 'protected', 'protected', 'lifetime-expired']);
    expect(onLifetime.mock.calls.map((c) => c[1])).toEqual(['soft', 'hard']);
  });
});

describe('padding', () => {
  /** An ESP packet sealed by hand around `plaintext` (data, padding, pad length, next header). */
  function sealByHand(sa: EspSa, plaintext: Uint8Array): Uint8Array {
    const t = sa.transform;
    const ivEnd = 28 + t.ivLength;
    const esp = new Uint8Array(8 + t.ivLength + plaintext.length + t.icvLength);
    const pkt = ipv4(esp, { protocol: 50 });
    pkt.set([sa.spi >>> 24, (sa.spi >>> 16) & 0xff, (sa.spi >>> 8) & 0xff, sa.spi & 0xff, 0, 0, 0, 1], 20);
    t.writeIv(pkt, 28, 1);
    pkt.set(plaintext, ivEnd);
    t.seal(pkt, 20, ivEnd, ivEnd + plaintext.length, -1);
    return pkt;
  }

  for (const s of ['cbc128', 'gcm128'] as SuiteName[]) {
    it(`${s}: padding not 1, 2, 3, ... or longer than the data is bad-padding (after the ICV)`, () => {
      const data = udpPacket(1030, 53, new Uint8Array(2)).subarray(20); // 10 bytes of UDP
      const cases: [number[], string][] = [
        [[1, 2, 3, 4], 'accepted'],
        [[1, 2, 4, 4], 'bad-padding'],
        [[0, 0, 0, 0], 'bad-padding'],
      ];
      for (const [pad, want] of cases) {
        const pair = enginePair({ suite: s });
        const plain = Uint8Array.from([...data, ...pad, pad.length, 17]);
        expect(receive(pair.receiver, sealByHand(pair.out as EspSa, plain))).toBe(want);
        expect(pair.in.replay!.highest).toBe(1); // authentic: the window moved before the trailer was read
      }
      const pair = enginePair({ suite: s });
      const tooLong = Uint8Array.from([...data, 1, 2, 3, 4, 200, 17]);
      expect(receive(pair.receiver, sealByHand(pair.out as EspSa, tooLong))).toBe('bad-padding');
    });
  }
});

describe('packets that are not for the data path', () => {
  it('a TFC dummy packet (next header 59) is counted and dropped', () => {
    const pair = enginePair({ suite: 'cbc128' });
    const p = place(ipv4(new Uint8Array(16), { protocol: 59 }));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
    expect(receive(pair.receiver, taken(p))).toBe('dummy');
    expect(pair.receiver.counters.inbound.dummy).toBe(1);
  });

  it('fragments of ESP are refused before any work (reassemble first)', () => {
    const pair = enginePair();
    const [wire] = sealed(pair, 1);
    const frag = wire!.slice();
    frag[6]! |= 0x20;
    fixIpChecksum(frag);
    expect(receive(pair.receiver, frag)).toBe('fragment');
    // Transport mode cannot carry a fragment outbound either.
    const p = place(udpPacket(1030, 53, new Uint8Array(8), { moreFragments: true }));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('fragment');
  });

  it('ESP-in-UDP: keepalives are consumed, IKE passes unchanged, raw ESP for a UDP SA is refused', () => {
    const pair = enginePair({ encap: true });
    const keepalive = udpPacket(4500, 4500, Uint8Array.of(0xff), { src: SERVER, dst: SHARED });
    expect(receive(pair.receiver, keepalive)).toBe('nat-keepalive');
    const ikeBytes = udpPacket(4500, 4500, Uint8Array.of(0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8), {
      src: SHARED,
      dst: SERVER,
    });
    const ike = place(ikeBytes);
    expect(pair.receiver.inbound(ike.buf, ike.span)).toBe('ike');
    expect(hex(taken(ike))).toBe(hex(ikeBytes));
    // The same SA's packet without its UDP header.
    const [wire] = sealed(pair, 1);
    const raw = new Uint8Array(wire!.length - 8);
    raw.set(wire!.subarray(0, 20));
    raw.set(wire!.subarray(28), 20);
    raw[9] = 50;
    raw[2] = raw.length >>> 8;
    raw[3] = raw.length & 0xff;
    fixIpChecksum(raw);
    expect(receive(pair.receiver, raw)).toBe('policy-mismatch');
    // A UDP length that runs past the datagram is malformed.
    const longer = wire!.slice();
    longer[25]! += 1;
    expect(receive(pair.receiver, longer)).toBe('malformed');
    // Too short to be ESP.
    expect(receive(pair.receiver, udpPacket(4500, 4500, Uint8Array.of(1, 2, 3, 4, 5)))).toBe('malformed');
  });

  it('ESP-in-UDP packets carry the SA ports, length and a zero checksum', () => {
    const pair = enginePair({ encap: true });
    const [wire] = sealed(pair, 1);
    expect(wire![9]).toBe(17);
    expect(get16(wire!, 20)).toBe(4500);
    expect(get16(wire!, 22)).toBe(4500);
    expect(get16(wire!, 24)).toBe(wire!.length - 20);
    expect(get16(wire!, 26)).toBe(0);
  });
});

describe('ECN at tunnel egress (RFC 6040)', () => {
  function viaCongestedRouter(innerEcn: number): { verdict: string; ecn: number } {
    const pair = enginePair({ mode: 'tunnel' });
    const p = place(udpPacket(1030, 53, new Uint8Array(4), { tos: 0xb8 | innerEcn }));
    expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
    const wire = taken(p);
    expect(wire[1]).toBe(0xb8 | innerEcn); // copied outward at encapsulation
    wire[1] = (wire[1]! & 0xfc) | 3; // a router marks CE on the outer header
    fixIpChecksum(wire);
    const q = place(wire);
    const verdict = pair.receiver.inbound(q.buf, q.span);
    const inner = taken(q);
    if (verdict === 'accepted') expect(internetChecksum(inner, 0, 20)).toBe(0);
    return { verdict, ecn: inner[1]! & 3 };
  }

  it('outer CE over ECT(0) or ECT(1) marks the inner datagram CE', () => {
    expect(viaCongestedRouter(2)).toEqual({ verdict: 'accepted', ecn: 3 });
    expect(viaCongestedRouter(1)).toEqual({ verdict: 'accepted', ecn: 3 });
  });

  it('outer CE over a not-ECT inner datagram is dropped', () => {
    expect(viaCongestedRouter(0).verdict).toBe('ecn-drop');
  });
});
