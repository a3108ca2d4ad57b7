/**
 * Raw IPv4 sockets through the addon between two namespaces of this file's
 * own (dxio-r-a, dxio-r-b) over a veth: IP-in-IP (protocol 4) sent with
 * sendmmsg and received with recvmmsg, ICMP through a protocol-1 socket,
 * SO_BINDTODEVICE, and per-packet failures counted rather than thrown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inNs, NamespaceSet, NsProgram, runTs, startTs } from './io-ns.ts';

const nss = new NamespaceSet();
const A = 'dxio-r-a';
const B = 'dxio-r-b';

beforeAll(() => {
  nss.add(A);
  nss.add(B);
  nss.link(A, 'dxio-ra', '10.98.0.1/24', B, 'dxio-rb', '10.98.0.2/24');
});
afterAll(() => nss.cleanup());

const icmpOutUnreachable = (ns: string): number => {
  const snmp = inNs(ns, 'cat', '/proc/net/snmp').split('\n');
  const names = snmp.find((l) => l.startsWith('Icmp:'))!.split(/\s+/);
  const values = snmp.filter((l) => l.startsWith('Icmp:'))[1]!.split(/\s+/);
  return Number(values[names.indexOf('OutDestUnreachs')]);
};

interface RecvResult {
  received: number;
  sources: string[];
  packets: string[];
  rxTruncated: number;
}

describe('raw IPv4 sockets through the addon', () => {
  it('carries IP-in-IP from an IPPROTO_RAW sender to a protocol-4 receiver, with no protocol unreachable', async () => {
    const before = icmpOutUnreachable(B);
    const recv = new NsProgram(B, 'scripts/bench/io-raw.ts', [
      'recv',
      '--protocol',
      '4',
      '--count',
      '500',
      '--seconds',
      '20',
      '--show',
      '1',
    ]);
    try {
      await recv.ready();
      const send = await new NsProgram(A, 'scripts/bench/io-raw.ts', [
        'send',
        '--src',
        '10.98.0.1',
        '--dst',
        '10.98.0.2',
        '--count',
        '500',
        '--batch',
        '50',
        '--pace-us',
        '2000',
      ]).result<{ txPackets: number; txDropped: number; txErrors: number }>();
      expect(send).toMatchObject({ txPackets: 500, txDropped: 0, txErrors: 0 });
      const got = await recv.result<RecvResult>();
      expect(got.received).toBe(500);
      expect(got.sources).toEqual(['10.98.0.1']);
      const p = Buffer.from(got.packets[0]!, 'hex');
      expect(p[9]).toBe(4); // outer protocol
      expect([...p.subarray(16, 20)]).toEqual([10, 98, 0, 2]);
      expect(p.readUInt16BE(2)).toBe(p.length); // the kernel set the total length
      expect(p[20]! >> 4).toBe(4); // an inner IPv4 header follows
      expect([...p.subarray(20 + 12, 20 + 20)]).toEqual([198, 51, 100, 30, 203, 0, 113, 3]);
      // A raw socket took protocol 4, so B's kernel answered nothing.
      expect(icmpOutUnreachable(B) - before).toBe(0);
    } finally {
      recv.kill();
    }
  });

  it('without a protocol-4 socket the kernel answers protocol unreachable (what the socket prevents)', async () => {
    const before = icmpOutUnreachable(B);
    await new NsProgram(A, 'scripts/bench/io-raw.ts', [
      'send',
      '--src',
      '10.98.0.1',
      '--dst',
      '10.98.0.2',
      '--count',
      '1',
    ]).result();
    await new Promise((r) => setTimeout(r, 200));
    expect(icmpOutUnreachable(B) - before).toBe(1);
  });

  it('pings through a protocol-1 socket (the kernel of the other namespace answers)', async () => {
    const r = await new NsProgram(A, 'scripts/bench/io-raw.ts', [
      'ping',
      '--dst',
      '10.98.0.2',
      '--count',
      '3',
    ]).result<{
      received: number;
    }>();
    expect(r.received).toBe(3);
  });

  it('counts oversize and unroutable packets instead of throwing, and honours SO_BINDTODEVICE', async () => {
    const r = await runTs<Record<string, number>>(
      A,
      `import { openRawSender, openRawSocket } from '$io/raw.ts';
       const s = openRawSender();
       const big = new Uint8Array(1600); big[0] = 0x45; big[9] = 17; big.set([10, 98, 0, 2], 16);
       const nowhere = new Uint8Array(40); nowhere[0] = 0x45; nowhere[9] = 17; nowhere.set([192, 0, 2, 1], 16);
       const ok1 = s.send(big); const ok2 = s.send(nowhere); const ok3 = s.send(new Uint8Array(8));
       const st = s.stats();
       const bound = openRawSocket(4, { device: 'lo' });
       const b = bound.buffers();
       console.log(JSON.stringify({ ok: Number(ok1) + Number(ok2) + Number(ok3), errors: st.txErrors, invalid: st.txInvalid, lastErrno: st.lastErrno, rcvbuf: b.rcvbuf }));
       s.close(); bound.close();`,
    );
    expect(r.ok).toBe(0);
    expect(r.errors).toBe(2); // EMSGSIZE (over the veth MTU), ENETUNREACH
    expect(r.invalid).toBe(1); // shorter than an IPv4 header
    expect(r.lastErrno).toBe(101); // ENETUNREACH, the last one
    expect(r.rcvbuf).toBeGreaterThanOrEqual(4 * 1024 * 1024);

    // Bound to lo, a protocol-4 socket in B does not see what arrives on the veth.
    // No fixed listening time: on a busy machine the sender's start alone took longer than one.
    // The free socket ends with the fifth packet; the bound one is stopped after the sender.
    const bound = new NsProgram(B, 'scripts/bench/io-raw.ts', ['recv', '--protocol', '4', '--device', 'lo']);
    const free = new NsProgram(B, 'scripts/bench/io-raw.ts', [
      'recv',
      '--protocol',
      '4',
      '--count',
      '5',
      '--seconds',
      '60',
    ]);
    await bound.ready();
    await free.ready();
    await new NsProgram(A, 'scripts/bench/io-raw.ts', [
      'send',
      '--src',
      '10.98.0.1',
      '--dst',
      '10.98.0.2',
      '--count',
      '5',
    ]).result();
    expect((await free.result<RecvResult>()).received).toBe(5);
    expect((await bound.result<RecvResult>(true)).received).toBe(0);
  });

  it('counts what a full receive buffer dropped as rxDropped', async () => {
    const slow = startTs(
      B,
      `import { openRawSocket } from '$io/raw.ts';
       const s = openRawSocket(4, { rcvbuf: 1 }); // the kernel's minimum: a few packets
       // Reads only once the sender is done (SIGUSR2), however long its start takes.
       const sent = new Promise((r) => process.once('SIGUSR2', r));
       setInterval(() => {}, 1000); // a signal handler alone does not keep Node waiting
       console.log('ready');
       await sent;
       let got = 0;
       s.onBatch((n) => (got += n));
       await new Promise((r) => setTimeout(r, 300));
       console.log(JSON.stringify({ got, dropped: s.stats().rxDropped }));
       s.close();
       process.exit(0);`,
    );
    await slow.ready();
    await new NsProgram(A, 'scripts/bench/io-raw.ts', [
      'send',
      '--src',
      '10.98.0.1',
      '--dst',
      '10.98.0.2',
      '--count',
      '200',
    ]).result();
    slow.child.kill('SIGUSR2');
    const r = await slow.result<{ got: number; dropped: number }>();
    expect(r.got).toBeGreaterThan(0);
    expect(r.got).toBeLessThan(200);
    expect(r.got + r.dropped).toBe(200);
  });
});
