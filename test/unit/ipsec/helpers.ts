/**
 * Shared pieces of the IPsec tests: packets built the slow way, buffers with
 * headroom, SAs and databases wired up the way a host would.
 */
import { readFileSync } from 'node:fs';
import type { IvSource } from '../../../src/ipsec/types.ts';
import { IpsecEngine } from '../../../src/ipsec/engine.ts';
import { AhSa, EspSa, type AhSaParams, type EspSaParams } from '../../../src/ipsec/sa.ts';
import { SecurityAssociationDatabase } from '../../../src/ipsec/sad.ts';
import { selector, type TrafficSelector } from '../../../src/ipsec/selector.ts';
import { SecurityPolicy, SecurityPolicyDatabase } from '../../../src/ipsec/spd.ts';
import { PacketSpan, type IntegrityAlgorithm, type IpsecProtocol } from '../../../src/ipsec/types.ts';
import { internetChecksum, pseudoHeaderSum, udpWireChecksum } from '../../../src/wire/checksum.ts';

export const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export function addr(text: string): number {
  return text.split('.').reduce((a, b) => a * 256 + Number(b), 0);
}
export const SHARED = addr('198.51.100.30');
export const SERVER = addr('203.0.113.3');
export const GATEWAY = addr('192.0.2.1');

const put16 = (b: Uint8Array, i: number, v: number): void => {
  b[i] = v >>> 8;
  b[i + 1] = v & 0xff;
};
const put32 = (b: Uint8Array, i: number, v: number): void => {
  put16(b, i, v >>> 16);
  put16(b, i + 2, v & 0xffff);
};
export const get16 = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;

export interface Ipv4Fields {
  src?: number;
  dst?: number;
  protocol?: number;
  id?: number;
  tos?: number;
  df?: boolean;
  fragmentOffset?: number;
  moreFragments?: boolean;
  ttl?: number;
}

/** IPv4 header (no options) + payload, checksum computed over the whole header. */
export function ipv4(payload: Uint8Array, f: Ipv4Fields = {}): Uint8Array {
  const b = new Uint8Array(20 + payload.length);
  b[0] = 0x45;
  b[1] = f.tos ?? 0;
  put16(b, 2, b.length);
  put16(b, 4, f.id ?? 0x4242);
  put16(b, 6, (f.df ? 0x4000 : 0) | (f.moreFragments ? 0x2000 : 0) | (f.fragmentOffset ?? 0));
  b[8] = f.ttl ?? 64;
  b[9] = f.protocol ?? 17;
  put32(b, 12, f.src ?? SHARED);
  put32(b, 16, f.dst ?? SERVER);
  put16(b, 10, internetChecksum(b, 0, 20));
  b.set(payload, 20);
  return b;
}

/** A UDP datagram with a correct checksum. */
export function udpPacket(
  sport: number,
  dport: number,
  data: Uint8Array = new Uint8Array(0),
  f: Ipv4Fields = {},
): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  put16(u, 0, sport);
  put16(u, 2, dport);
  put16(u, 4, u.length);
  u.set(data, 8);
  const src = f.src ?? SHARED;
  const dst = f.dst ?? SERVER;
  put16(u, 6, udpWireChecksum(internetChecksum(u, 0, u.length, pseudoHeaderSum(src, dst, 17, u.length))));
  return ipv4(u, { ...f, protocol: 17 });
}

/** A TCP segment header only (no options, no data), checksum left zero: enough for selectors. */
export function tcpPacket(sport: number, dport: number, f: Ipv4Fields = {}): Uint8Array {
  const t = new Uint8Array(20);
  put16(t, 0, sport);
  put16(t, 2, dport);
  t[12] = 0x50;
  t[13] = 0x02;
  return ipv4(t, { ...f, protocol: 6 });
}

export interface Placed {
  buf: Uint8Array;
  span: PacketSpan;
}

/** The packet in a fresh buffer with room on both sides, and the span over it. */
export function place(packet: Uint8Array, headroom = 128, tailroom = 512): Placed {
  const buf = new Uint8Array(headroom + packet.length + tailroom);
  buf.set(packet, headroom);
  return { buf, span: new PacketSpan(headroom, packet.length, 0, buf.length) };
}

/** A copy of the bytes the span holds. */
export function taken(p: Placed): Uint8Array {
  return p.buf.slice(p.span.offset, p.span.offset + p.span.length);
}

/** An IV source that writes `iv` whatever the sequence number. */
export function fixedIv(iv: Uint8Array): IvSource {
  return (buf, at) => buf.set(iv, at);
}

export const GOLDEN_CRYPT: Record<string, 'aes-gcm-16' | 'aes-cbc' | 'null'> = {
  'AES-GCM': 'aes-gcm-16',
  'AES-CBC': 'aes-cbc',
  NULL: 'null',
};
export const GOLDEN_AUTH: Record<string, IntegrityAlgorithm> = {
  'SHA2-256-128': 'hmac-sha256-128',
  'SHA2-384-192': 'hmac-sha384-192',
  'SHA2-512-256': 'hmac-sha512-256',
  'HMAC-SHA1-96': 'hmac-sha1-96',
};

export function golden<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../fixtures/golden/${name}`, import.meta.url), 'utf8')) as T;
}

/** Keys for tests that do not compare against outside vectors. */
export const KEYS = {
  gcm128: bytes('000102030405060708090a0b0c0d0e0f10111213'),
  gcm256: bytes('202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243'),
  aes128: bytes('505152535455565758595a5b5c5d5e5f'),
  aes256: bytes('606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f'),
  sha256: bytes('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
};

export type SuiteName = 'gcm128' | 'gcm256' | 'cbc128' | 'cbc256' | 'null';
export const SUITES: readonly SuiteName[] = ['gcm128', 'gcm256', 'cbc128', 'cbc256', 'null'];

/** ESP SA parameters for a named suite. */
export function suite(
  name: SuiteName,
): Pick<EspSaParams, 'encryption' | 'encryptionKey' | 'integrity' | 'integrityKey'> {
  switch (name) {
    case 'gcm128':
      return { encryption: 'aes-gcm-16', encryptionKey: KEYS.gcm128 };
    case 'gcm256':
      return { encryption: 'aes-gcm-16', encryptionKey: KEYS.gcm256 };
    case 'cbc128':
      return {
        encryption: 'aes-cbc',
        encryptionKey: KEYS.aes128,
        integrity: 'hmac-sha256-128',
        integrityKey: KEYS.sha256,
      };
    case 'cbc256':
      return {
        encryption: 'aes-cbc',
        encryptionKey: KEYS.aes256,
        integrity: 'hmac-sha256-128',
        integrityKey: KEYS.sha256,
      };
    case 'null':
      return { encryption: 'null', integrity: 'hmac-sha256-128', integrityKey: KEYS.sha256 };
  }
}

export interface PairOptions {
  protocol?: IpsecProtocol;
  suite?: SuiteName;
  mode?: 'transport' | 'tunnel';
  spi?: number;
  esn?: boolean;
  replayWindow?: number;
  encap?: boolean;
  selector?: TrafficSelector;
}

/**
 * Two engines, a sender (this host) and a receiver (the peer), sharing one
 * SA pair and a protect policy for everything between SHARED and SERVER.
 */
export function enginePair(o: PairOptions = {}): {
  sender: IpsecEngine;
  receiver: IpsecEngine;
  out: EspSa | AhSa;
  in: EspSa | AhSa;
} {
  const protocol = o.protocol ?? 'esp';
  const mode = o.mode ?? 'transport';
  const spi = o.spi ?? 0x1000;
  const common = {
    spi,
    mode,
    esn: o.esn,
    replayWindow: o.replayWindow,
  };
  const make = (direction: 'inbound' | 'outbound', local: number, remote: number): EspSa | AhSa =>
    protocol === 'esp'
      ? new EspSa({
          ...common,
          direction,
          tunnel: mode === 'tunnel' ? { local, remote } : undefined,
          encap: o.encap ? { localPort: 4500, remotePort: 4500 } : undefined,
          ...suite(o.suite ?? 'gcm128'),
        })
      : new AhSa({
          ...common,
          direction,
          tunnel: mode === 'tunnel' ? { local, remote } : undefined,
          integrity: 'hmac-sha256-128',
          integrityKey: KEYS.sha256,
        } satisfies AhSaParams);
  const out = make('outbound', SHARED, SERVER);
  const inb = make('inbound', SERVER, SHARED);
  const sender = new IpsecEngine(new SecurityPolicyDatabase(), new SecurityAssociationDatabase());
  const receiver = new IpsecEngine(new SecurityPolicyDatabase(), new SecurityAssociationDatabase());
  const sel = o.selector ?? selector();
  const pOut = sender.spd.add(
    new SecurityPolicy({ name: 'p', selector: sel, action: 'protect', protect: [protocol] }),
  );
  // The receiver is the peer: its local side is SERVER.
  const pIn = receiver.spd.add(
    new SecurityPolicy({
      name: 'p',
      selector: {
        ...sel,
        local: sel.remote,
        remote: sel.local,
        localPort: sel.remotePort,
        remotePort: sel.localPort,
      },
      action: 'protect',
      protect: [protocol],
    }),
  );
  expectNull(sender.sad.add(out));
  sender.sad.bindOutbound(pOut, [out]);
  expectNull(receiver.sad.add(inb));
  receiver.sad.bindInbound(pIn, inb);
  return { sender, receiver, out, in: inb };
}

function expectNull(v: unknown): void {
  if (v !== null) throw new Error(`expected success, got ${String(v)}`);
}

/** A deterministic generator for seeded loops. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}
