/**
 * IKE fragmentation between two daemons on the in-memory network: a path
 * that drops every datagram above 576 bytes (as a network that drops IP
 * fragments does to an IKE_AUTH with RSA certificates), lost and
 * retransmitted fragments, and an attacker who completed IKE_SA_INIT and
 * now sends fragments meant to fill memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExchangeType, HeaderFlag, PayloadType } from '../../../src/ike/constants.ts';
import { emitFragment, fragmentHeader } from '../../../src/ike/fragments.ts';
import type { IkeSa } from '../../../src/ike/ike-sa.ts';
import { parseIkeMessage } from '../../../src/ike/message.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { hostAndPeer, pairsMatch, until } from './harness.ts';
import { makePki, PEER, type TestPki } from './pki-fixture.ts';

let rsa: TestPki;
// RSA-3072 keys take a while to make on a busy machine.
beforeAll(async () => {
  rsa = await makePki('rsa-3072');
}, 60_000);
afterAll(() => rsa?.cleanup());

const DATAGRAM = 576;
/**
 * Fragmenting at 576 bytes, with a first retransmission after 2 s: the
 * counts below assume no retransmission the test did not cause, and
 * RSA-3072 on a busy machine can take longer than the harness's 200 ms.
 */
const FRAG = { fragmentSize: DATAGRAM, retransmit: { timeoutMs: 2000, base: 2, tries: 3 } };
const isFragment = (d: Buffer): boolean => d[16] === PayloadType.SKF;
/** What a path that drops IP fragments lets through: datagrams that fit its MTU whole. */
const fitsPath = (d: Buffer, natt: boolean): boolean => d.length + 28 + (natt ? 4 : 0) <= DATAGRAM;

describe('IKE fragmentation (RFC 7383) in memory', () => {
  it('IKE_AUTH with RSA-3072 certificates crosses a 576-byte path in fragments, both ways', async () => {
    const { net, host, peer } = hostAndPeer(rsa, FRAG, FRAG);
    let biggest = 0;
    let fragments = 0;
    net.filter = (d, _from, _to, natt) => {
      biggest = Math.max(biggest, d.length);
      if (isFragment(d)) fragments++;
      // IKE_SA_INIT is never fragmented; it is small enough on its own.
      return fitsPath(d, natt);
    };
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 1);
    expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
    expect(sa.fragmentation).toBe(true);
    expect(net.dropped).toBe(0);
    expect(biggest).toBeLessThanOrEqual(DATAGRAM - 28);
    for (const s of [host, peer]) {
      expect(s.daemon.counters.get('fragmented-messages-sent')).toBe(1);
      expect(s.daemon.counters.get('fragmented-messages-received')).toBe(1);
      expect(s.daemon.fragmentBytesHeld).toBe(0);
    }
    expect(fragments).toBe(
      host.daemon.counters.get('fragments-sent')! + peer.daemon.counters.get('fragments-sent')!,
    );
    expect(fragments).toBeGreaterThanOrEqual(8);
    // Later exchanges stay whole while they fit: a child SA rekey.
    await host.daemon.rekeyChild(sa, sa.children[0]!);
    expect(host.daemon.counters.get('fragmented-messages-sent')).toBe(1);
  });

  it('without fragmentation on one side the same IKE_AUTH dies on that path (the control)', async () => {
    const { net, host, peer } = hostAndPeer(
      rsa,
      { fragmentSize: DATAGRAM, retransmit: { timeoutMs: 50, base: 1, tries: 2 } },
      { fragmentation: false },
    );
    net.filter = (d, _f, _t, natt) => fitsPath(d, natt);
    const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/gone|answer/);
    expect(host.daemon.counters.get('fragments-sent')).toBeUndefined();
    expect(peer.daemon.sas.every((s) => s.state === 'half-open')).toBe(true);
  });

  it('a lost fragment is made good by the retransmission; the rest arrive twice and are counted as duplicates', async () => {
    const { net, host, peer } = hostAndPeer(rsa, FRAG, FRAG);
    let lost = 0;
    net.filter = (d, from) => {
      if (from.address !== PEER && isFragment(d) && lost === 0) {
        const p = parseIkeMessage(d);
        const h = p.ok ? fragmentHeader(p.value) : undefined;
        if (h?.ok && h.value.number === 2) {
          lost++;
          return false;
        }
      }
      return true;
    };
    await host.daemon.initiate({ address: PEER, port: 500 });
    expect(lost).toBe(1);
    expect(host.daemon.counters.get('retransmit')).toBe(1);
    expect(peer.daemon.counters.get('fragment-duplicate')).toBeGreaterThanOrEqual(1);
    expect(peer.daemon.counters.get('fragmented-messages-received')).toBe(1);
  });

  it('a retransmitted request in fragments gets the cached response on its first fragment only (2.6.1)', async () => {
    const { net, host, peer } = hostAndPeer(rsa, FRAG, FRAG);
    let responseLost = false;
    net.filter = (d, from) => {
      // The whole first IKE_AUTH response is lost.
      if (from.address === PEER && d[18] === ExchangeType.IKE_AUTH && !responseLost) {
        const p = parseIkeMessage(d);
        const h = p.ok ? fragmentHeader(p.value) : undefined;
        if (h?.ok && h.value.number === h.value.total) responseLost = true;
        return false;
      }
      return true;
    };
    await host.daemon.initiate({ address: PEER, port: 500 });
    // The request's fragments went out twice (sealed once, retransmitted as they were).
    const sent = host.daemon.counters.get('fragments-sent')!;
    expect(host.daemon.counters.get('retransmit')).toBe(1);
    expect(peer.daemon.counters.get('retransmitted-request')).toBe(1);
    expect(peer.daemon.counters.get('retransmitted-fragment')).toBe(sent - 1);
    expect(peer.daemon.counters.get('fragmented-messages-sent')).toBe(1);
  });
});

describe('fragments from a peer that holds the keys but means harm', () => {
  /**
   * The host completes IKE_SA_INIT with the peer, whose SA stays half open
   * because the host's own IKE_AUTH never leaves; `inject` then sends
   * fragments of message 1 sealed with the host's keys.
   */
  async function halfOpen(
    peerExtra: Parameters<typeof hostAndPeer>[2] = {},
    clock?: FakeClock,
  ): Promise<{
    ctx: ReturnType<typeof hostAndPeer>;
    sa: IkeSa;
    inject: (number: number, total: number, content: Buffer, messageId?: number) => void;
    /** Lets an IKE_AUTH datagram through: only injected ones pass. */
    allow: (d: Buffer) => void;
    injected: (d: Buffer) => boolean;
  }> {
    const ctx = hostAndPeer(rsa, {}, peerExtra, clock ? { clock } : {});
    const allowed: Buffer[] = [];
    const injected = (d: Buffer): boolean => allowed.some((b) => b.equals(d));
    ctx.net.filter = (d) => d[18] !== ExchangeType.IKE_AUTH || injected(d);
    void ctx.host.daemon.initiate({ address: PEER, port: 500 }).catch(() => undefined);
    await until(() => ctx.peer.daemon.halfOpenCount === 1 && ctx.host.daemon.sas[0]?.state === 'auth-sent');
    const sa = ctx.host.daemon.sas[0]!;
    const inject = (number: number, total: number, content: Buffer, messageId = 1): void => {
      const b = emitFragment(
        {
          spiI: sa.spiI,
          spiR: sa.spiR,
          exchange: ExchangeType.IKE_AUTH,
          flags: HeaderFlag.INITIATOR,
          messageId,
        },
        number,
        total,
        number === 1 ? PayloadType.IDi : 0,
        content,
        sa.outCipher!,
      );
      allowed.push(b);
      ctx.host.transport.send(b, { address: PEER, port: 500 }, sa.natt);
    };
    return { ctx, sa, inject, allow: (d) => allowed.push(d), injected };
  }

  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

  it('counts bad numbering, overlaps, stale totals, oversize and other message IDs, holding nothing after', async () => {
    const { ctx, inject, injected } = await halfOpen({
      fragmentLimits: { maxFragments: 16, maxMessageBytes: 2000 },
    });
    const c = ctx.peer.daemon.counters;
    inject(1, 17, Buffer.alloc(10)); // more fragments than allowed
    inject(1, 4, Buffer.alloc(100, 1));
    inject(1, 4, Buffer.alloc(100, 2)); // the same number, other content
    inject(1, 4, Buffer.alloc(100, 1)); // the same again
    inject(2, 3, Buffer.alloc(100)); // fewer fragments than the message being collected
    inject(2, 4, Buffer.alloc(1000));
    inject(3, 4, Buffer.alloc(1000)); // beyond maxMessageBytes: the collection goes
    inject(1, 2, Buffer.alloc(10), 7); // not the message ID expected
    await settle();
    expect(
      Object.fromEntries([...c].filter(([k]) => k.startsWith('fragment') || k === 'bad-message-id')),
    ).toEqual({
      'fragment-too-many': 1,
      'fragment-overlap': 1,
      'fragment-duplicate': 1,
      'fragment-stale-total': 1,
      'fragment-too-big': 1,
      'fragments-received': 7,
      'bad-message-id': 1,
    });
    expect(ctx.peer.daemon.fragmentBytesHeld).toBe(0);
    // A fragment that is not what it says (its number changed after sealing) fails its ICV.
    const before = c.get('fragment-icv-mismatch') ?? 0;
    ctx.net.filter = (d) => {
      if (!injected(d)) return d[18] !== ExchangeType.IKE_AUTH;
      d.writeUInt16BE(2, 32);
      return true;
    };
    inject(1, 3, Buffer.alloc(20));
    await settle();
    expect(c.get('fragment-icv-mismatch')).toBe(before + 1);
  });

  it('a flood of fragments over many half-open SAs stays within the daemon-wide budget, and times out', async () => {
    const clock = new FakeClock(Date.now());
    const memory = 20_000;
    const peerExtra = { fragmentLimits: { memoryBytes: memory, timeoutMs: 5000 }, halfOpenTimeoutMs: 60_000 };
    const first = await halfOpen(peerExtra, clock);
    // More attackers on the same responder: each completes IKE_SA_INIT, then floods fragments.
    const { side } = await import('./harness.ts');
    const attackers = [first.inject];
    for (let i = 0; i < 5; i++) {
      const a = side(first.ctx.net, `192.0.2.${10 + i}`, 500, 4500, rsa.peer, rsa, {}, clock);
      void a.daemon.initiate({ address: PEER, port: 500 }).catch(() => undefined);
      await until(() => a.daemon.sas[0]?.state === 'auth-sent');
      const sa = a.daemon.sas[0]!;
      attackers.push((number, total, content) => {
        const b = emitFragment(
          { spiI: sa.spiI, spiR: sa.spiR, exchange: 35, flags: HeaderFlag.INITIATOR, messageId: 1 },
          number,
          total,
          0,
          content,
          sa.outCipher!,
        );
        first.allow(b);
        a.transport.send(b, { address: PEER, port: 500 }, false);
      });
    }
    // Each attacker sends 60 of 64 fragments of 1000 bytes: a message never complete.
    for (let n = 1; n <= 60; n++) for (const inject of attackers) inject(n, 64, Buffer.alloc(1000, n));
    await until(() => (first.ctx.peer.daemon.counters.get('fragment-memory') ?? 0) > 0);
    await settle();
    const c = first.ctx.peer.daemon.counters;
    expect(first.ctx.peer.daemon.fragmentBytesHeld).toBeLessThanOrEqual(memory);
    expect(c.get('fragments-received')).toBe(360);
    expect(c.get('fragment-memory')).toBeGreaterThanOrEqual(360 - memory / 1000);
    clock.advance(5000);
    expect(first.ctx.peer.daemon.fragmentBytesHeld).toBe(0);
    expect(c.get('fragment-timeout')).toBeGreaterThanOrEqual(1);
  });
});
