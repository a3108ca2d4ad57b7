import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import { MemoryNetwork } from '../../../src/pap/transport.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { PAP_MESSAGE_LENGTH, PapStatus, emitPap, parsePap } from '../../../src/wire/pap.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const EPOCH = 0x5eed0001;
const ext = { status: 0, transactionId: 1, epoch: 0, leaseTime: 0 };

function setup(extra: Partial<LeaseTableOptions> = {}) {
  const clock = new FakeClock();
  const table = new LeaseTable({ clock, randomEpoch: () => EPOCH, ...extra });
  return { clock, table, server: new PapServer(table) };
}

const bytesOf = (msg: PapMessage): Uint8Array => {
  const b = new Uint8Array(PAP_MESSAGE_LENGTH);
  emitPap(msg, b, 0);
  return b;
};

describe('PapServer.handle', () => {
  it('answers a port request (code 0) with a FIG. 5 response carrying the extension', () => {
    const { server } = setup();
    const r = server.handle(
      { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext, transactionId: 77 },
      H1,
    );
    expect(r).toEqual({
      kind: 'port-response',
      success: true,
      lowestPort: 1024,
      portCount: 32,
      status: PapStatus.Ok,
      transactionId: 77,
      epoch: EPOCH,
      leaseTime: 300,
    });
  });

  it('serves code 1 from 10000 up, a count of 0 as the default block, and the lease asked for', () => {
    const { server } = setup();
    const r = server.handle(
      { kind: 'port-request', highPorts: true, portsRequested: 0, ...ext, leaseTime: 600 },
      H1,
    );
    expect(r).toMatchObject({ success: true, lowestPort: 10000, portCount: 32, leaseTime: 600 });
  });

  it('answers an SPI request in the FIG. 5A layout', () => {
    const { server } = setup();
    const r = server.handle({ kind: 'spi-request', spisRequested: 32, ...ext }, H1)!;
    expect(r).toMatchObject({ kind: 'spi-response', success: true, lowestSpi: 256, spiCount: 32 });
    const b = bytesOf(r);
    expect([b[4], b[5]]).toEqual([0, 32]); // total SPIs at 4
    expect([b[8], b[9], b[10], b[11]]).toEqual([0, 0, 1, 0]); // lowest SPI 256 at 8
  });

  it('refuses with the status the lease table gives', () => {
    const { server } = setup({ portRange: { min: 5000, max: 5031 }, maxPerHost: { spi: 64 } });
    expect(
      server.handle({ kind: 'port-request', highPorts: false, portsRequested: 32, ...ext }, H1),
    ).toMatchObject({
      success: true,
    });
    expect(
      server.handle({ kind: 'port-request', highPorts: false, portsRequested: 32, ...ext }, H2),
    ).toMatchObject({
      success: false,
      status: PapStatus.PoolExhausted,
      lowestPort: 0,
      portCount: 0,
      leaseTime: 0,
    });
    server.handle({ kind: 'spi-request', spisRequested: 64, ...ext }, H1);
    expect(server.handle({ kind: 'spi-request', spisRequested: 1, ...ext }, H1)).toMatchObject({
      success: false,
      status: PapStatus.QuotaExceeded,
    });
  });

  it('renews a held block and refuses others, and refuses another epoch outright', () => {
    const { server, clock } = setup();
    server.handle({ kind: 'port-request', highPorts: false, portsRequested: 32, ...ext }, H1);
    clock.advance(100_000);
    const renew = { kind: 'port-renew', lowestPort: 1024, portCount: 32, ...ext } as const;
    expect(server.handle({ ...renew, epoch: EPOCH }, H1)).toMatchObject({
      success: true,
      lowestPort: 1024,
      leaseTime: 300,
    });
    expect(server.handle(renew, H1)).toMatchObject({ success: true }); // epoch 0: not checked
    expect(server.handle(renew, H2)).toMatchObject({
      success: false,
      status: PapStatus.UnknownLease,
      lowestPort: 1024,
    });
    expect(server.handle({ ...renew, epoch: EPOCH + 1 }, H1)).toMatchObject({
      success: false,
      status: PapStatus.StaleEpoch,
      epoch: EPOCH,
    });
    expect(server.counters.staleEpoch).toBe(1);
  });

  it('invalidates the block containing the value and echoes the block', () => {
    const { server, table } = setup();
    server.handle({ kind: 'spi-request', spisRequested: 16, ...ext }, H1);
    expect(server.handle({ kind: 'spi-invalidate', spi: 260, ...ext }, H2)).toMatchObject({
      success: false,
      status: PapStatus.UnknownLease,
    });
    expect(server.handle({ kind: 'spi-invalidate', spi: 260, ...ext, transactionId: 9 }, H1)).toMatchObject({
      success: true,
      lowestSpi: 256,
      spiCount: 16,
      leaseTime: 0,
    });
    expect(table.leases()).toEqual([]);
    // The retransmitted invalidate gets the same success; a new one does not.
    expect(server.handle({ kind: 'spi-invalidate', spi: 260, ...ext, transactionId: 9 }, H1)).toMatchObject({
      success: true,
    });
    expect(server.handle({ kind: 'spi-invalidate', spi: 260, ...ext, transactionId: 10 }, H1)).toMatchObject({
      success: false,
    });
  });

  it('does not answer router-to-host messages', () => {
    const { server } = setup();
    expect(
      server.handle({ kind: 'port-response', success: true, lowestPort: 1, portCount: 1, ...ext }, H1),
    ).toBeUndefined();
    expect(server.handle({ kind: 'spi-withdraw', lowestSpi: 256, spiCount: 1, ...ext }, H1)).toBeUndefined();
    expect(server.counters.dropped['not-a-request']).toBe(2);
  });
});

describe('PapServer.receive', () => {
  it('answers a retransmission with the same bytes and allocates once', () => {
    const { server, table, clock } = setup();
    const req = bytesOf({
      kind: 'port-request',
      highPorts: false,
      portsRequested: 32,
      ...ext,
      transactionId: 0xabcdef,
    });
    const a = server.receive(req, { address: H1, port: 40000 })!;
    clock.advance(1_000);
    const b = server.receive(req, { address: H1, port: 40000 })!;
    expect(b).toEqual(a);
    expect(table.leasesOf(H1)).toHaveLength(1);
    const parsed = parsePap(a, 0, a.length);
    expect(parsed.ok && parsed.value.transactionId).toBe(0xabcdef);
  });

  it('answers an undefined code with status malformed and drops what is not PAP', () => {
    const { server } = setup();
    const req = bytesOf({ kind: 'spi-request', spisRequested: 8, ...ext, transactionId: 5 });
    req[1] = 1; // code 1 is for ports only
    req[2] = 0;
    req[3] = 0;
    const sum = internetChecksum(req, 0, PAP_MESSAGE_LENGTH);
    req[2] = sum >> 8;
    req[3] = sum & 0xff;
    const reply = server.receive(req, { address: H1 })!;
    const parsed = parsePap(reply, 0, reply.length);
    expect(parsed.ok && parsed.value).toMatchObject({
      kind: 'spi-response',
      success: false,
      status: PapStatus.Malformed,
      transactionId: 5,
    });

    const bad = bytesOf({ kind: 'port-request', highPorts: false, portsRequested: 32, ...ext });
    bad[4] = bad[4]! ^ 1;
    expect(server.receive(bad, { address: H1 })).toBeUndefined();
    expect(server.receive(bad.subarray(0, 20), { address: H1 })).toBeUndefined();
    expect(server.counters.dropped).toMatchObject({ 'bad-code': 1, 'bad-checksum': 1, 'bad-length': 1 });
  });

  it('withdraws a block by telling the host where it was last heard from', () => {
    const clock = new FakeClock();
    const net = new MemoryNetwork(clock);
    const table = new LeaseTable({ clock, randomEpoch: () => EPOCH });
    const server = new PapServer(table);
    server.attach(net.endpoint({ address: '10.0.0.7', port: 7032 }));
    const host = net.endpoint({ address: H1, port: 40000 });
    const got: PapMessage[] = [];
    host.onMessage((b) => {
      const p = parsePap(b, 0, b.length);
      if (p.ok) got.push(p.value);
    });
    host.send(bytesOf({ kind: 'port-request', highPorts: false, portsRequested: 16, ...ext }), {
      address: '10.0.0.7',
      port: 7032,
    });
    clock.advance(10);
    expect(server.withdraw('port', 1024)).toBe(true);
    expect(server.withdraw('port', 1024)).toBe(false);
    clock.advance(10);
    expect(got.map((m) => m.kind)).toEqual(['port-response', 'port-withdraw']);
    expect(got[1]).toMatchObject({ lowestPort: 1024, portCount: 16, epoch: EPOCH });
    expect(table.leases()).toEqual([]);
  });
});
