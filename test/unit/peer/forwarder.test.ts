/**
 * The peer's data path between in-memory devices, against the host's
 * engine step keyed with the same file: ESP from the WAN goes into the TUN
 * opened, the stack's answer leaves by the WAN protected, clear traffic
 * the SPD bypasses leaves untouched, forgeries are counted and dropped.
 */
import { describe, expect, it } from 'vitest';
import { EngineIpsecStep } from '../../../src/host/data-path/ipsec-engine-step.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { buildManualKeying, IpsecEngine, PacketSpan, parseManualKeying } from '../../../src/ipsec/index.ts';
import { PeerForwarder } from '../../../src/peer/data-path/forwarder.ts';
import { mirrorManualKeying } from '../../../src/peer/daemon/mirror.ts';
import { buildTcp } from '../host/forwarder-rig.ts';
import { get16, SERVER, SHARED } from '../host/packets.ts';

const cfg = parseManualKeying(
  {
    policies: [{ name: 'web', protocol: 'tcp', remote: '203.0.113.3', remotePort: 80, action: 'protect' }],
    sas: [
      {
        spi: 0x9000,
        direction: 'outbound',
        protocol: 'esp',
        policy: 'web',
        encryption: { algorithm: 'aes-gcm-16', key: '0x' + '01'.repeat(20) },
      },
      {
        spi: 0x100,
        direction: 'inbound',
        protocol: 'esp',
        policy: 'web',
        encryption: { algorithm: 'aes-gcm-16', key: '0x' + '02'.repeat(20) },
      },
    ],
  },
  'test',
);

function setup() {
  const scheduler = new MemoryScheduler(false);
  const tun = new MemoryDevice({ name: 'dnp0', record: true, scheduler });
  const wan = new MemoryDevice({ name: 'raw:255', record: true, scheduler });
  const esp = new MemoryDevice({ name: 'raw:50', scheduler });
  const ah = new MemoryDevice({ name: 'raw:51', scheduler });
  const db = buildManualKeying(mirrorManualKeying(cfg));
  const fwd = new PeerForwarder(new IpsecEngine(db.spd, db.sad), { tun, wan, receivers: [esp, ah] });
  fwd.start();
  const host = new EngineIpsecStep(cfg);
  host.install(() => true);
  const hostSeal = (p: Uint8Array): Uint8Array => {
    const buf = new Uint8Array(p.length + 256);
    buf.set(p, 128);
    const span = new PacketSpan();
    span.offset = 128;
    span.length = p.length;
    expect(host.protect(buf, span, 128, 128)).toBeNull();
    return buf.slice(span.offset, span.offset + span.length);
  };
  const hostOpen = (p: Uint8Array): Uint8Array | string => {
    const buf = p.slice();
    const span = new PacketSpan();
    span.length = p.length;
    return host.verify(buf, span) ?? buf.slice(span.offset, span.offset + span.length);
  };
  const run = (dev: MemoryDevice, p: Uint8Array): void => {
    dev.inject(p);
    scheduler.runUntilIdle();
  };
  return { tun, wan, esp, fwd, hostSeal, hostOpen, run };
}

describe('PeerForwarder', () => {
  it('opens ESP from the WAN into the TUN and protects the answer out of the WAN', () => {
    const { tun, wan, esp, fwd, hostSeal, hostOpen, run } = setup();
    const request = buildTcp({ src: SHARED, sport: 1030, dst: SERVER, dport: 80, flags: 0x02 });
    run(esp, hostSeal(request));
    expect(tun.sent).toHaveLength(1);
    expect(Buffer.from(tun.sent[0]!)).toEqual(Buffer.from(request));
    run(tun, buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: 1030, flags: 0x12 }));
    expect(wan.sent).toHaveLength(1);
    expect(wan.sent[0]![9]).toBe(50);
    const opened = hostOpen(wan.sent[0]!);
    expect(typeof opened).not.toBe('string');
    expect(get16(opened as Uint8Array, 22)).toBe(1030);
    expect(fwd.counters()['ipsec.inbound.accepted']).toBe(1);
    expect(fwd.counters()['ipsec.outbound.protected']).toBe(1);
  });

  it('lets bypassed traffic leave untouched', () => {
    const { tun, wan, fwd, run } = setup();
    const clear = buildTcp({ src: SERVER, sport: 443, dst: SHARED, dport: 1031, flags: 0x12 });
    run(tun, clear);
    expect(wan.sent).toHaveLength(1);
    expect(Buffer.from(wan.sent[0]!)).toEqual(Buffer.from(clear));
    expect(fwd.counters()['ipsec.outbound.bypass']).toBe(1);
  });

  it('drops a replay and a flipped bit, counted, and writes nothing into the TUN', () => {
    const { tun, esp, fwd, hostSeal, run } = setup();
    const sealed = hostSeal(buildTcp({ src: SHARED, sport: 1032, dst: SERVER, dport: 80, flags: 0x02 }));
    const next = hostSeal(buildTcp({ src: SHARED, sport: 1032, dst: SERVER, dport: 80, flags: 0x10 }));
    run(esp, sealed);
    run(esp, sealed);
    const bad = next.slice();
    bad[bad.length - 1]! ^= 1;
    run(esp, bad);
    expect(tun.sent).toHaveLength(1);
    const c = fwd.counters();
    expect(c['ipsec.inbound.replay']).toBe(1);
    expect(c['ipsec.inbound.auth-failed']).toBe(1);
    run(esp, next);
    expect(tun.sent).toHaveLength(2);
  });
});
