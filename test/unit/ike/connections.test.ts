import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeptConnections } from '../../../src/ike/connections.ts';
import { SystemClock } from '../../../src/util/clock.ts';
import { hostAndPeer, until } from './harness.ts';
import { PEER, makePki, type TestPki } from './pki-fixture.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

describe('KeptConnections: SAs kept up on our own initiative', () => {
  it('retries while the peer is unreachable, comes up when it answers, and starts again when the SA goes', async () => {
    const { net, host, peer } = hostAndPeer(pki);
    // The peer drops everything at first: the attempt times out (3 tries of 200 ms, then 400, 800).
    let reachable = false;
    net.filter = () => reachable;
    const kept = new KeptConnections(host.daemon, new SystemClock(), { firstDelayMs: 50 });
    kept.add({ remote: { address: PEER, port: 500 }, child: () => ({ mode: 'tunnel' }) });
    await until(() => kept.describe()[0]!.lastError !== '', 5000);
    expect(kept.describe()[0]!.state).not.toBe('up');

    reachable = true;
    await until(() => kept.describe()[0]!.state === 'up', 10_000);
    const attempts = kept.describe()[0]!.attempts;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(peer.sad.live).toHaveLength(1);

    // The peer deletes the IKE SA: ours goes down and is started again.
    const theirs = peer.daemon.sas.find((s) => s.state === 'established')!;
    await peer.daemon.deleteIke(theirs);
    await until(() => kept.describe()[0]!.attempts > attempts && kept.describe()[0]!.state === 'up', 10_000);
    expect(host.daemon.sas.filter((s) => s.state === 'established')).toHaveLength(1);
    kept.close();
    await host.daemon.close();
    await peer.daemon.close();
  }, 30_000);

  it('held, it starts nothing after its SA goes, and starts at once on resume', async () => {
    const { host, peer } = hostAndPeer(pki);
    const kept = new KeptConnections(host.daemon, new SystemClock(), { firstDelayMs: 20 });
    kept.add({ remote: { address: PEER, port: 500 }, child: () => ({ mode: 'tunnel' }) });
    await until(() => kept.describe()[0]!.state === 'up', 10_000);
    const ours = host.daemon.sas.find((s) => s.state === 'established')!;
    // The certificate it signed with is kept on the SA, for revocation to find.
    expect(ours.ownCertificate?.serialNumber).toBe(host.daemon.config.identity.certificate.serialNumber);
    expect(peer.daemon.sas[0]!.ownCertificate).toBeDefined();

    kept.hold();
    await host.daemon.deleteIke(ours);
    await new Promise((r) => setTimeout(r, 300));
    expect(kept.describe()[0]).toMatchObject({ state: 'waiting', attempts: 1 });
    expect(host.daemon.sas).toHaveLength(0);

    kept.resume();
    await until(() => kept.describe()[0]!.state === 'up', 10_000);
    expect(kept.describe()[0]!.attempts).toBe(2);
    kept.close();
    await host.daemon.close();
    await peer.daemon.close();
  }, 30_000);
});
