import { describe, expect, it } from 'vitest';
import { MemoryRawNetwork } from '../../../src/io/memory.ts';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { IcmpPapTransport } from '../../../src/pap/icmp-transport.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapClient } from '../../../src/pap/pap-client.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import type { PapPeer } from '../../../src/pap/transport.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { verifiesTo0 } from '../../../src/wire/checksum.ts';
import { emitIcmp } from '../../../src/wire/icmp.ts';
import { emitIpv4, ipv4FromString } from '../../../src/wire/ipv4.ts';
import { PAP_MESSAGE_LENGTH, emitPap } from '../../../src/wire/pap.ts';

function pair(net: MemoryRawNetwork, address: string): IcmpPapTransport {
  return IcmpPapTransport.open({
    address,
    receiver: net.socket(address, 1),
    sender: net.socket(address, 255),
  });
}

function portRequest(txid: number): Uint8Array {
  const b = new Uint8Array(PAP_MESSAGE_LENGTH);
  emitPap(
    {
      kind: 'port-request',
      highPorts: false,
      portsRequested: 4,
      status: 0,
      transactionId: txid,
      epoch: 0,
      leaseTime: 0,
    },
    b,
  );
  return b;
}

/** A whole IPv4 datagram carrying an ICMP message, for injecting into a receiver. */
function datagram(src: string, dst: string, icmp: Uint8Array): Uint8Array {
  const b = new Uint8Array(20 + icmp.length);
  emitIpv4(
    {
      tos: 0,
      identification: 1,
      flags: 0,
      fragmentOffset: 0,
      ttl: 64,
      protocol: 1,
      src: ipv4FromString(src)!,
      dst: ipv4FromString(dst)!,
      options: [],
      payloadLength: icmp.length,
    },
    b,
    0,
  );
  b.set(icmp, 20);
  return b;
}

describe('IcmpPapTransport over in-memory raw sockets', () => {
  it('sends the PAP message as the ICMP message of an IPv4 datagram it builds', () => {
    const net = new MemoryRawNetwork({ autoDeliver: false });
    const seen: Uint8Array[] = [];
    net.tap = (p) => seen.push(p.slice());
    const router = pair(net, '10.0.0.7');
    const host = pair(net, '10.0.0.1');
    const got: { bytes: Uint8Array; peer: PapPeer }[] = [];
    router.onMessage((bytes, peer) => got.push({ bytes, peer }));
    const msg = portRequest(41);
    host.send(msg, { address: '10.0.0.7' });
    net.runUntilIdle();
    const p = seen[0]!;
    expect(p).toHaveLength(48);
    expect([p[0], p[8], p[9]]).toEqual([0x45, 64, 1]);
    expect([...p.subarray(12, 20)]).toEqual([10, 0, 0, 1, 10, 0, 0, 7]);
    expect(verifiesTo0(p, 0, 20)).toBe(true);
    expect(verifiesTo0(p, 20, 48)).toBe(true);
    expect(got).toHaveLength(1);
    expect(Buffer.from(got[0]!.bytes).equals(Buffer.from(msg))).toBe(true);
    expect(got[0]!.peer).toEqual({ address: '10.0.0.1' });
    expect(router.counters.received).toBe(1);
  });

  it('skips other ICMP types and messages for other addresses', () => {
    const net = new MemoryRawNetwork({ autoDeliver: false });
    const receiver = net.socket('10.0.0.7', 1);
    const t = IcmpPapTransport.open({ address: '10.0.0.7', receiver, sender: net.socket('10.0.0.7', 255) });
    const got: Uint8Array[] = [];
    t.onMessage((b) => got.push(b));
    const ping = new Uint8Array(16);
    emitIcmp({ kind: 'echo-request', code: 0, identifier: 1, sequence: 1, data: new Uint8Array(8) }, ping);
    receiver.inject(datagram('10.0.0.1', '10.0.0.7', ping));
    receiver.inject(datagram('10.0.0.1', '10.0.0.8', portRequest(1)));
    receiver.inject(new Uint8Array([0x45, 0, 0]));
    receiver.inject(datagram('10.0.0.1', '10.0.0.7', portRequest(2)));
    net.runUntilIdle();
    expect(got).toHaveLength(1);
    expect(t.counters).toMatchObject({ received: 1, ignored: 3 });
  });

  it('carries a whole PAP exchange between PapClient and PapServer', async () => {
    const clock = new FakeClock();
    const net = new MemoryRawNetwork({ autoDeliver: false });
    const table = new LeaseTable({ clock });
    new PapServer(table).attach(pair(net, '10.0.0.7'));
    const leases = new HostLeases({ clock });
    const client = new PapClient({
      clock,
      leases,
      transport: pair(net, '10.0.0.1'),
      router: { address: '10.0.0.7' },
    });
    const outcome = client.request('port', 8);
    net.runUntilIdle();
    const o = await outcome;
    expect(o.status).toBe('ok');
    const r = o.response!;
    expect(r.kind === 'port-response' && r.portCount).toBe(8);
    expect(table.leasesOf('10.0.0.1')).toHaveLength(1);
    client.stop();
  });
});
