import { describe, expect, it } from 'vitest';
import { H1, H2, SERVER, SHARED, fragment, hex, rig, tcp, tunnel, udp } from './forwarder-packets.ts';

const ownerOf = (sent: Uint8Array) =>
  ((sent[16]! << 24) | (sent[17]! << 16) | (sent[18]! << 8) | sent[19]!) >>> 0;

describe('RouterForwarder, inbound fragments', () => {
  it('sends later fragments where the first one went', () => {
    const r = rig();
    const frags = fragment(udp(SERVER, 53, SHARED, 1060, 1200), [400, 800]);
    r.fromWan(...frags);
    expect(r.lan.sent.map(ownerOf)).toEqual([H2, H2, H2]);
    expect(r.lan.sent.map((s) => hex(s.subarray(20)))).toEqual(frags.map(hex));
    expect(r.totalDrops()).toBe(0);
  });

  it('holds fragments that overtake their first fragment and releases them to its owner', () => {
    const r = rig();
    const frags = fragment(udp(SERVER, 53, SHARED, 1030, 1200, { id: 77 }), [400, 800]);
    r.fromWan(frags[2]!);
    r.fromWan(frags[1]!);
    expect(r.lan.sent).toHaveLength(0);
    expect(r.fwd.traffic.get('fragments-held')).toBe(2);
    r.clock.advance(100);
    r.fromWan(frags[0]!);
    expect(r.lan.sent.map(ownerOf)).toEqual([H1, H1, H1]);
    // The first goes in the batch, the held ones (oldest first) right after it.
    expect(r.lan.sent.map((s) => hex(s.subarray(20)))).toEqual([frags[0]!, frags[2]!, frags[1]!].map(hex));
    expect(r.fwd.traffic.get('fragments-released')).toBe(2);
    expect(r.totalDrops()).toBe(0);
  });

  it('releases within one batch too (later fragment first in the batch)', () => {
    const r = rig();
    const frags = fragment(udp(SERVER, 53, SHARED, 1030, 600, { id: 78 }), [304]);
    r.fromWan(frags[1]!, frags[0]!);
    expect(r.lan.sent.map(ownerOf)).toEqual([H1, H1]);
  });

  it('lets held fragments expire when their first never comes', () => {
    const r = rig();
    const frags = fragment(udp(SERVER, 53, SHARED, 1030, 600, { id: 79 }), [304]);
    r.fromWan(frags[1]!);
    r.clock.advance(r.tables.held.timeoutMs + 1);
    r.fromWan(frags[0]!);
    expect(r.lan.sent).toHaveLength(1);
    expect(r.tables.held.counters.expired).toBe(1);
  });

  it('does not send fragments of an unowned datagram anywhere', () => {
    const r = rig();
    const frags = fragment(udp(SERVER, 53, SHARED, 3000, 600, { id: 80 }), [304]);
    r.fromWan(frags[0]!, frags[1]!);
    expect(r.lan.sent).toHaveLength(0);
    expect(r.drops()).toEqual({ 'no-owner': 1 });
    expect(r.fwd.traffic.get('fragments-held')).toBe(1);
  });

  it('drops a first fragment too short for the ports (RFC 1858) and TCP at offset 8', () => {
    const r = rig();
    const [tiny] = fragment(tcp(SERVER, 80, SHARED, 1030, 64), [8]);
    r.fromWan(tiny!);
    const d = tcp(SERVER, 80, SHARED, 1030, 64);
    const [, overlap] = fragment(d, [8]);
    r.fromWan(overlap!);
    expect(r.drops()).toEqual({ 'tiny-fragment': 1, 'overlapping-fragment': 1 });
  });

  it('treats tiny and overlapping fragments from hosts the same way', () => {
    const r = rig();
    const frags = fragment(tcp(SHARED, 1030, SERVER, 80, 64), [8]);
    r.fromLan(tunnel(H1, frags[0]!), tunnel(H1, frags[1]!));
    expect(r.drops()).toEqual({ 'tiny-fragment': 1, 'overlapping-fragment': 1 });
  });

  it('routes fragments of a hairpinned datagram like inbound ones', () => {
    const r = rig();
    const frags = fragment(udp(SHARED, 1030, SHARED, 1060, 600, { id: 81 }), [304]);
    r.fromLan(tunnel(H1, frags[1]!), tunnel(H1, frags[0]!));
    expect(r.lan.sent.map(ownerOf)).toEqual([H2, H2]);
    expect(r.lan.sent.every((s) => s[20 + 8] === 63)).toBe(true);
  });
});
