import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/util/clock.ts';
import { makePki, PEER, type TestPki } from './pki-fixture.ts';
import { hostAndPeer, pairsMatch, until } from './harness.ts';
import { emitIkeMessage } from '../../../src/ike/message.ts';
import { ExchangeType, HeaderFlag } from '../../../src/ike/constants.ts';
import type { ChildSa } from '../../../src/ike/child-sa.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

/** Moves a fake clock in small steps, letting the in-memory network deliver in between. */
async function walk(clock: FakeClock, ms: number, step = 150): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
  }
}

describe('after IKE_AUTH', () => {
  it('rekeys a child SA (with PFS): new matching pair, old pair removed at both ends as rekeyed', async () => {
    const { host, peer } = hostAndPeer(
      pki,
      { espProposals: ['aes128gcm16-x25519'] },
      { espProposals: ['aes128gcm16-x25519'] },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 1);
    const old = host.sad.live[0]!;
    const fresh = await host.daemon.rekeyChild(sa, sa.children[0]!);
    await until(() => peer.sad.live.length === 1 && peer.sad.live[0]!.id !== peer.sad.removed[0]?.sa.id);
    expect(host.sad.live.map((c) => c.id)).toEqual([fresh.id]);
    expect(fresh.negotiated.replaces).toBe(old.id);
    expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
    expect(host.sad.live[0]!.outbound.encryptionKey.equals(old.outbound.encryptionKey)).toBe(false);
    expect(host.sad.removed.map((r) => r.reason)).toEqual(['rekeyed']);
    expect(peer.sad.removed.map((r) => r.reason)).toEqual(['rekeyed']);
    // The old inbound SPI went back to the block and is handed out again.
    expect(host.sad.removed[0]!.sa.inbound.spi).toBe(old.inbound.spi);
  });

  it('creates a second child SA in transport mode with CREATE_CHILD_SA', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    const child = await host.daemon.createChild(sa, { mode: 'transport' });
    expect(child.negotiated.mode).toBe('transport');
    await until(() => peer.sad.live.length === 2);
    const peerCopy = peer.sad.live.find((c) => c.inbound.spi === child.outboundSpi)!;
    expect(pairsMatch(child.negotiated, peerCopy)).toBe(true);
  });

  it('rekeys the IKE SA: new SPIs and keys, children move over, old SA deleted at both ends', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 1);
    const next = await host.daemon.rekeyIke(sa);
    expect(next).not.toBe(sa);
    expect(sa.state).toBe('dead');
    expect(next.state).toBe('established');
    expect(next.spiI).not.toBe(sa.spiI);
    expect(next.keys!.skD.equals(sa.keys!.skD)).toBe(false);
    expect(next.children.length).toBe(1);
    await until(() => peer.daemon.sas.length === 1 && peer.daemon.sas[0]!.spiI === next.spiI);
    expect(host.sad.removed.length + peer.sad.removed.length).toBe(0);
    // The new SA carries traffic: a child made on it works, and so does a child rekey.
    const c2 = await host.daemon.createChild(next);
    await until(() => peer.sad.live.length === 2);
    expect(
      pairsMatch(
        c2.negotiated,
        peer.sad.live.find((c) => c.inbound.spi === c2.outboundSpi)!,
      ),
    ).toBe(true);
    await host.daemon.rekeyChild(next, next.children[0]!);
    // And the peer may rekey it again.
    const peerSa = peer.daemon.sas[0]!;
    const third = await peer.daemon.rekeyIke(peerSa);
    await until(() => host.daemon.sas.length === 1 && host.daemon.sas[0]!.spiR === third.spiR);
    expect(host.daemon.sas[0]!.children.length).toBe(2);
  });

  it('deletes a child SA and then the IKE SA, with the peer following', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await host.daemon.createChild(sa);
    await until(() => peer.sad.live.length === 2);
    await host.daemon.deleteChild(sa, sa.children[0]!);
    await until(() => peer.sad.live.length === 1);
    expect(host.sad.live.length).toBe(1);
    expect(peer.sad.removed[0]!.reason).toBe('deleted');
    await host.daemon.deleteIke(sa);
    await until(() => peer.daemon.sas.length === 0);
    expect(host.daemon.sas.length).toBe(0);
    expect(host.sad.live.length + peer.sad.live.length).toBe(0);
    expect(peer.sad.removed.map((r) => r.reason)).toEqual(['deleted', 'ike-gone']);
  });

  it('answers liveness checks, and declares a silent peer dead after the retransmissions (fake clock)', async () => {
    const clock = new FakeClock(Date.now());
    const { net, host } = hostAndPeer(pki, {}, {}, { clock });
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    expect(await host.daemon.checkLiveness(sa)).toBe(true);
    net.filter = () => false;
    const alive = host.daemon.checkLiveness(sa);
    // 200, 400, 800 ms retransmissions, then 1600 ms to give up.
    for (const step of [200, 400, 800, 1600]) {
      await settle();
      clock.advance(step);
    }
    expect(await alive).toBe(false);
    expect(sa.state).toBe('dead');
    expect(host.sad.live.length).toBe(0);
    expect(host.sad.removed[0]!.reason).toBe('ike-gone');
    expect(host.daemon.counters.get('retransmit')).toBe(3);
  });

  it('runs DPD and scheduled rekeys from the clock', async () => {
    const clock = new FakeClock(Date.now());
    const { host, peer } = hostAndPeer(
      pki,
      { dpdIntervalMs: 10_000, childRekeyMs: 60_000, ikeRekeyMs: 90_000 },
      {},
      { clock },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 1);
    const firstChild = sa.children[0]!.id;
    const heard = peer.daemon.sas[0]!.lastHeard;
    await walk(clock, 10_000);
    await until(() => peer.daemon.sas[0]!.lastHeard > heard);
    await walk(clock, 50_000);
    await until(() => host.sad.removed.length === 1);
    expect(host.sad.live[0]!.replaces).toBe(firstChild);
    await walk(clock, 30_000);
    await until(() => host.daemon.sas.length === 1 && host.daemon.sas[0] !== sa);
    expect(host.daemon.counters.get('retransmit') ?? 0).toBe(0);
    expect(host.events.some((e) => e.type === 'ike-rekeyed')).toBe(true);
    // The child moved to the new IKE SA and keeps its schedule there: rekeyed again at 120 s.
    const second = host.sad.live[0]!.id;
    await walk(clock, 30_000);
    await until(() => host.sad.removed.length === 2);
    expect(host.sad.live[0]!.replaces).toBe(second);
  });

  it('paces rekeys and liveness checks across SAs with one bucket, and counts what waited', async () => {
    const clock = new FakeClock(Date.now());
    const { host, peer } = hostAndPeer(
      pki,
      { childRekeyMs: 60_000, maintenanceRate: { perSecond: 2, burst: 2 } },
      {},
      { clock },
    );
    // Six IKE SAs with a child each, all due for a rekey at the same moment.
    for (let i = 0; i < 6; i++) await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 6);
    const first = new Set(host.sad.live.map((c) => c.id));
    await walk(clock, 60_000, 1000);
    await until(() => host.sad.removed.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    // Two at once (the burst); four wait their turn at two per second.
    expect(host.sad.removed.length).toBe(2);
    expect(host.daemon.counters.get('rekeys-started')).toBe(2);
    expect(host.daemon.counters.get('rekey-deferred')).toBe(4);
    await walk(clock, 2000, 100);
    await until(() => host.sad.removed.length === 6);
    expect(host.sad.live.every((c) => !first.has(c.id))).toBe(true);
    expect(host.daemon.counters.get('rekeys-started')).toBe(6);
  });

  it('drops a half-open SA that never authenticates (fake clock)', async () => {
    const clock = new FakeClock(Date.now());
    const { net, host, peer } = hostAndPeer(pki, {}, { halfOpenTimeoutMs: 5000 }, { clock });
    net.filter = (data) => data[18] !== ExchangeType.IKE_AUTH;
    void host.daemon.initiate({ address: PEER, port: 500 }).catch(() => undefined);
    await until(() => peer.daemon.halfOpenCount === 1);
    clock.advance(5000);
    expect(peer.daemon.sas.length).toBe(0);
    expect(peer.daemon.counters.get('half-open-timeout')).toBe(1);
  });

  it('shrugs off garbage, truncated and unknown-SPI messages', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    const t = host.transport;
    t.send(Buffer.from('hello'), { address: PEER, port: 500 }, false);
    const fake = emitIkeMessage(
      { spiI: 5n, spiR: 6n, exchange: ExchangeType.INFORMATIONAL, flags: HeaderFlag.INITIATOR, messageId: 0 },
      [],
    );
    t.send(fake, { address: PEER, port: 500 }, false);
    t.send(fake.subarray(0, 20), { address: PEER, port: 500 }, false);
    const wrongKeys = Buffer.from(fake);
    wrongKeys.writeBigUInt64BE(sa.spiI, 0);
    wrongKeys.writeBigUInt64BE(sa.spiR, 8);
    t.send(wrongKeys, { address: PEER, port: 500 }, false);
    await settle();
    expect(peer.daemon.counters.get('malformed-truncated')).toBe(2);
    expect(peer.daemon.counters.get('unknown-spi')).toBe(1);
    expect(await host.daemon.checkLiveness(sa)).toBe(true);
  });
});

describe('simultaneous child SA rekeys (RFC 7296 2.8.1)', () => {
  it('both ends rekey the same child SA at once: the nonce rule leaves exactly one pair, the same at both ends', async () => {
    // Nonces are random, so over the rounds either end wins; the checks hold whichever does.
    for (let round = 0; round < 8; round++) {
      const { host, peer } = hostAndPeer(pki);
      const sa = await host.daemon.initiate({ address: PEER, port: 500 });
      await until(() => peer.sad.live.length === 1);
      const peerSa = peer.daemon.sas[0]!;
      const ups = (s: typeof host): ChildSa[] =>
        s.events.flatMap((e) => (e.type === 'child-up' && e.child.rekeyNonces ? [e.child] : []));
      // Both requests leave before either is answered: they cross on the network.
      const [a, b] = await Promise.all([
        host.daemon.rekeyChild(sa, sa.children[0]!),
        peer.daemon.rekeyChild(peerSa, peerSa.children[0]!),
      ]);
      await until(() => host.sad.live.length === 1 && peer.sad.live.length === 1);
      await new Promise((r) => setTimeout(r, 20));
      expect(host.sad.live.length).toBe(1);
      expect(peer.sad.live.length).toBe(1);
      expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
      // Each end's rekeyChild resolves with the pair that stays.
      expect(a.inboundSpi).toBe(host.sad.live[0]!.inbound.spi);
      expect(b.inboundSpi).toBe(peer.sad.live[0]!.inbound.spi);
      // The pair made with the lowest of the four nonces went; the other stayed.
      const made = ups(host);
      expect(made.length).toBe(2);
      const all = made.flatMap((c) => c.rekeyNonces!);
      const lowest = all.reduce((m, n) => (Buffer.compare(n, m) < 0 ? n : m));
      const survivor = made.find((c) => c.inboundSpi === host.sad.live[0]!.inbound.spi)!;
      expect(survivor.rekeyNonces!.some((n) => n.equals(lowest))).toBe(false);
      const won = (s: typeof host): number => s.daemon.counters.get('rekey-collision-won') ?? 0;
      const lost = (s: typeof host): number => s.daemon.counters.get('rekey-collision-lost') ?? 0;
      expect([won(host) + won(peer), lost(host) + lost(peer)]).toEqual([1, 1]);
      expect(host.daemon.counters.get('rekey-collision')).toBe(1);
      expect(peer.daemon.counters.get('rekey-collision')).toBe(1);
      // And the survivor works: it rekeys once more, alone.
      const owner = host.daemon.sas[0]!;
      await host.daemon.rekeyChild(owner, owner.children[0]!);
      await until(() => host.sad.live.length === 1 && peer.sad.live.length === 1);
      expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
      await host.daemon.close();
      await peer.daemon.close();
    }
  });
});
