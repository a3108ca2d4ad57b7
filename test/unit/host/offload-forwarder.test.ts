import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostForwarder } from '../../../src/host/data-path/forwarder.ts';
import { SourcePortTranslationTable } from '../../../src/host/data-path/translation/sptt.ts';
import { PortTranslator } from '../../../src/host/data-path/translation/translator.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { OffloadTun } from '../../../src/io/offload-tun.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { pseudoHeaderSumFromIp, verifiesTo0 } from '../../../src/wire/checksum.ts';
import {
  be16,
  be32,
  gsoHdr,
  pattern,
  segment,
  superPacket,
  VnetTunDouble,
} from '../router/offload-double.ts';
import { buildOuter, LAN, LEASE_COUNT, LEASE_FIRST, ROUTER } from './forwarder-rig.ts';
import { addr, BlockPortSource } from './packets.ts';

const built = existsSync(
  new URL('../../../native-setup/addon/build/Release/distnat_native.node', import.meta.url),
);
const OUT = { src: '198.51.100.30', dst: '203.0.113.3', srcPort: 40000, dstPort: 5201 };

function offloadRig() {
  const scheduler = new MemoryScheduler(false);
  const dev = new VnetTunDouble();
  const tun = new OffloadTun(dev);
  const tunnelIn = new MemoryDevice({ name: 'raw:4', scheduler });
  const tunnelOut = new MemoryDevice({ name: 'raw:255', record: true, scheduler });
  const translator = new PortTranslator(
    new SourcePortTranslationTable(new BlockPortSource(LEASE_FIRST, LEASE_COUNT)),
  );
  const fwd = new HostForwarder({
    tun,
    tunnelIn,
    tunnelOut,
    translator,
    leases: { held: LEASE_COUNT, isLeased: (p) => p >= LEASE_FIRST && p < LEASE_FIRST + LEASE_COUNT },
    clock: new FakeClock(1_000_000),
    mode: 'translate',
    lanAddress: LAN,
    routerAddress: ROUTER,
    sharedAddress: addr('198.51.100.30'),
  });
  fwd.start();
  return { dev, tun, tunnelIn, tunnelOut, fwd, scheduler };
}

describe.skipIf(!built)('HostForwarder over an offloading TUN', () => {
  it('segments a super-packet before translation: MTU-sized, translated, tunnelled segments', () => {
    const r = offloadRig();
    const payload = pattern(30_000);
    r.dev.read({ packet: superPacket(OUT, 5000, payload), hdr: gsoHdr(1440) });
    const sent = r.tunnelOut.sent;
    expect(sent).toHaveLength(Math.ceil(30_000 / 1440));
    const ports = new Set<number>();
    const joined: number[] = [];
    sent.forEach((p, k) => {
      expect(p.length).toBeLessThanOrEqual(1500);
      expect(p[9]).toBe(4);
      const inner = p.subarray(20);
      ports.add(be16(inner, 20));
      expect(be32(inner, 24)).toBe(5000 + k * 1440);
      expect(
        verifiesTo0(inner, 20, inner.length, pseudoHeaderSumFromIp(inner, 0, 6, inner.length - 20)),
      ).toBe(true);
      joined.push(...inner.subarray(40));
    });
    expect(ports.size).toBe(1);
    const port = [...ports][0]!;
    expect(port).toBeGreaterThanOrEqual(LEASE_FIRST);
    expect(port).toBeLessThan(LEASE_FIRST + LEASE_COUNT);
    expect(Uint8Array.from(joined)).toEqual(payload);
    expect(r.fwd.counters().outboundDrops).toSatisfy((d: Record<string, number>) =>
      Object.values(d).every((v) => v === 0),
    );
  });

  it('coalesces after translating back: one super-packet into the TUN with a TCPV4 header', () => {
    const r = offloadRig();
    // Open the mapping with one outbound segment, then learn the leased port.
    r.dev.read({ packet: segment(OUT, 1, pattern(10), 0x18) });
    const leased = be16(r.tunnelOut.sent[0]!.subarray(20), 20);
    const back = { src: OUT.dst, dst: OUT.src, srcPort: OUT.dstPort, dstPort: leased };
    for (let k = 0; k < 10; k++)
      r.tunnelIn.inject(buildOuter(ROUTER, LAN, segment(back, 7000 + k * 1400, pattern(1400, k * 1400))));
    r.scheduler.runUntilIdle();
    expect(r.dev.written).toHaveLength(1);
    const [w] = r.dev.written;
    expect(w!.hdr).toMatchObject({ gsoType: 1, gsoSize: 1400, flags: 1, csumStart: 20, csumOffset: 16 });
    expect(be16(w!.packet, 22)).toBe(OUT.srcPort); // translated back before coalescing
    expect(be32(w!.packet, 24)).toBe(7000);
    expect(w!.packet.subarray(40)).toEqual(pattern(14_000));
  });
});
