import { afterEach, describe, expect, it } from 'vitest';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapClient } from '../../../src/pap/pap-client.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import type { PapPeer } from '../../../src/pap/transport.ts';
import { UdpPapTransport } from '../../../src/pap/udp-transport.ts';
import { SystemClock } from '../../../src/util/clock.ts';
import { PAP_MESSAGE_LENGTH, emitPap, parsePap } from '../../../src/wire/pap.ts';

const open: UdpPapTransport[] = [];
async function bind(port = 0): Promise<UdpPapTransport> {
  const t = await UdpPapTransport.open({ address: '127.0.0.1', port });
  open.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

function next(t: UdpPapTransport): Promise<{ bytes: Uint8Array; peer: PapPeer }> {
  return new Promise((resolve) => t.onMessage((bytes, peer) => resolve({ bytes, peer })));
}

describe('UdpPapTransport on loopback', () => {
  it('carries a message both ways with the sender as peer', async () => {
    const router = await bind();
    const host = await bind();
    const request = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap(
      {
        kind: 'port-request',
        highPorts: false,
        portsRequested: 8,
        status: 0,
        transactionId: 9,
        epoch: 0,
        leaseTime: 0,
      },
      request,
    );
    const got = next(router);
    host.send(request, router.local);
    // The transport must not keep the caller's bytes: scribble over them at once.
    request.fill(0);
    const { bytes, peer } = await got;
    expect(peer).toEqual(host.local);
    const parsed = parsePap(bytes);
    expect(parsed.ok && parsed.value.kind === 'port-request' && parsed.value.transactionId).toBe(9);
    const back = next(host);
    router.send(bytes, peer);
    expect((await back).peer).toEqual(router.local);
    expect(router.counters).toMatchObject({ received: 1, sent: 1 });
  });

  it('hands up datagrams of any length (the PAP receiver rules judge them)', async () => {
    const a = await bind();
    const b = await bind();
    const got = next(b);
    a.send(new Uint8Array(5), b.local);
    expect((await got).bytes).toHaveLength(5);
  });

  it('refuses a port another socket holds, with EADDRINUSE', async () => {
    const first = await bind();
    await expect(
      UdpPapTransport.open({ address: '127.0.0.1', port: first.local.port! }),
    ).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  it('refuses an address that is not on this machine, with EADDRNOTAVAIL', async () => {
    await expect(UdpPapTransport.open({ address: '192.0.2.77', port: 0 })).rejects.toMatchObject({
      code: 'EADDRNOTAVAIL',
    });
  });

  it('serves a PapClient through a PapServer', async () => {
    const clock = new SystemClock({ unref: true });
    const routerSide = await bind();
    const hostSide = await bind();
    const table = new LeaseTable({ clock });
    new PapServer(table).attach(routerSide);
    const leases = new HostLeases({ clock });
    const client = new PapClient({ clock, transport: hostSide, router: routerSide.local, leases });
    const outcome = await client.request('port', 16);
    expect(outcome.status).toBe('ok');
    expect(table.leasesOf('127.0.0.1')).toHaveLength(1);
    client.stop();
    table.close();
  });
});
