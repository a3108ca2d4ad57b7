/**
 * A HostForwarder between in-memory devices, stepped by hand, and packets
 * built with the wire codec.
 */
import { HostForwarder } from '../../../src/host/data-path/forwarder.ts';
import type { HostForwarderOptions } from '../../../src/host/data-path/forwarder.ts';
import type { HostMode } from '../../../src/host/data-path/shared-steps.ts';
import type { IpsecStep } from '../../../src/host/data-path/ipsec-step.ts';
import { SourcePortTranslationTable } from '../../../src/host/data-path/translation/sptt.ts';
import { PortTranslator } from '../../../src/host/data-path/translation/translator.ts';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { emitIpv4 } from '../../../src/wire/ipv4.ts';
import type { Ipv4Header } from '../../../src/wire/ipv4.ts';
import { emitTcp, tcpHeaderLength } from '../../../src/wire/tcp.ts';
import type { TcpHeader } from '../../../src/wire/tcp.ts';
import type { TcpOption } from '../../../src/wire/tcp-options.ts';
import { addr, BlockPortSource } from './packets.ts';

export const LAN = addr('10.0.0.1');
export const ROUTER = addr('10.0.0.7');
export const LEASE_FIRST = 1026;
export const LEASE_COUNT = 32;

export interface RigOptions {
  mode?: HostMode;
  held?: number;
  lanMtu?: number;
  tunMtu?: number;
  ipsec?: IpsecStep;
  /** Ports the forwarder leaves untranslated (IKE's). */
  servicePorts?: Set<number>;
}

export function rig(o: RigOptions = {}) {
  const clock = new FakeClock(1_000_000);
  const scheduler = new MemoryScheduler(false);
  const tun = new MemoryDevice({ name: 'dn0', record: true, scheduler });
  const tunnelIn = new MemoryDevice({ name: 'raw:4', scheduler });
  const tunnelOut = new MemoryDevice({ name: 'raw:255', record: true, scheduler });
  const source = new BlockPortSource(LEASE_FIRST, LEASE_COUNT);
  const table = new SourcePortTranslationTable(source);
  const translator = new PortTranslator(table);
  const leases = {
    held: o.held ?? LEASE_COUNT,
    isLeased: (p: number) => p >= LEASE_FIRST && p < LEASE_FIRST + LEASE_COUNT,
  };
  const options: HostForwarderOptions = {
    tun,
    tunnelIn,
    tunnelOut,
    translator,
    leases,
    clock,
    mode: o.mode ?? 'translate',
    lanAddress: LAN,
    routerAddress: ROUTER,
    sharedAddress: addr('198.51.100.30'),
    ...(o.lanMtu !== undefined ? { lanMtu: o.lanMtu } : {}),
    ...(o.tunMtu !== undefined ? { tunMtu: o.tunMtu } : {}),
    ...(o.ipsec !== undefined ? { ipsec: o.ipsec } : {}),
    ...(o.servicePorts !== undefined ? { servicePorts: o.servicePorts } : {}),
  };
  const fwd = new HostForwarder(options);
  fwd.start();
  /** The local stack sends these into the TUN device; returns what went to the router. */
  const send = (...packets: Uint8Array[]): Uint8Array[] => {
    const before = tunnelOut.sent.length;
    for (const p of packets) tun.inject(p);
    scheduler.runUntilIdle();
    return tunnelOut.sent.slice(before);
  };
  /** The router's packets arrive on the protocol-4 socket; returns what was written into the TUN device. */
  const receive = (...packets: Uint8Array[]): Uint8Array[] => {
    const before = tun.sent.length;
    for (const p of packets) tunnelIn.inject(p);
    scheduler.runUntilIdle();
    return tun.sent.slice(before);
  };
  return { clock, tun, tunnelIn, tunnelOut, source, table, translator, leases, fwd, send, receive };
}

export interface BuildTcp {
  src: number;
  sport: number;
  dst: number;
  dport: number;
  flags: number;
  payload?: Uint8Array;
  options?: TcpOption[];
  df?: boolean;
  tos?: number;
  id?: number;
}

/** An IPv4 + TCP packet through emitIpv4 and emitTcp. */
export function buildTcp(b: BuildTcp): Uint8Array {
  const t: TcpHeader = {
    srcPort: b.sport,
    dstPort: b.dport,
    seq: 0x11223344,
    ack: b.flags & 0x10 ? 0x55667788 : 0,
    reserved: 0,
    flags: b.flags,
    window: 64240,
    urgentPointer: 0,
    options: b.options ?? [],
    payload: b.payload ?? new Uint8Array(0),
  };
  const tl = tcpHeaderLength(t) + t.payload.length;
  const h: Ipv4Header = {
    tos: b.tos ?? 0,
    identification: b.id ?? 0x2222,
    flags: b.df === false ? 0 : 2,
    fragmentOffset: 0,
    ttl: 64,
    protocol: 6,
    src: b.src,
    dst: b.dst,
    options: [],
    payloadLength: tl,
  };
  const out = new Uint8Array(20 + tl);
  emitIpv4(h, out, 0);
  emitTcp(t, out, 20, b.src, b.dst);
  return out;
}

/** An outer IP-in-IP header (through emitIpv4) before `inner`. */
export function buildOuter(src: number, dst: number, inner: Uint8Array, id = 0x0101, df = false): Uint8Array {
  const h: Ipv4Header = {
    tos: inner[1]!,
    identification: id,
    flags: df ? 2 : 0,
    fragmentOffset: 0,
    ttl: 64,
    protocol: 4,
    src,
    dst,
    options: [],
    payloadLength: inner.length,
  };
  const out = new Uint8Array(20 + inner.length);
  emitIpv4(h, out, 0);
  out.set(inner, 20);
  return out;
}
