/**
 * Capture files of PAP messages for the dissector test: each message wrapped
 * in IPv4+UDP (port 7032) or IPv4 as the ICMP message itself, the two
 * transports of docs/pap.md section 1, written with the project's own pcap
 * writer (LINKTYPE_RAW).
 */
import { readFileSync } from 'node:fs';
import { PcapWriter } from '../../../src/io/pcap.ts';
import { emitIpv4, emitUdp, ipv4FromString } from '../../../src/wire/index.ts';

export interface PapVector {
  name: string;
  hex: string;
  kind?: string;
  reason?: string;
  fields?: Record<string, number | boolean>;
}

export interface PapGolden {
  valid: PapVector[];
  lenient: PapVector[];
  invalid: PapVector[];
}

export function loadPapGolden(path: string): PapGolden {
  return JSON.parse(readFileSync(path, 'utf8')) as PapGolden;
}

export type Transport = 'udp' | 'icmp';

export const HOST = '10.0.0.1';
export const ROUTER = '10.0.0.7';
export const HOST_PORT = 40000;

function addr(text: string): number {
  const a = ipv4FromString(text);
  if (a === undefined) throw new Error(`bad address ${text}`);
  return a;
}

/**
 * One IPv4 packet carrying `message`: from the host to the router when the
 * R flag (byte 13, bit 0x80) is clear, the other way when it is set.
 */
export function papPacket(
  message: Uint8Array,
  transport: Transport,
  opts: { udpPort?: number; identification?: number } = {},
): Uint8Array {
  const fromRouter = message.length > 13 && (message[13]! & 0x80) !== 0;
  const src = addr(fromRouter ? ROUTER : HOST);
  const dst = addr(fromRouter ? HOST : ROUTER);
  const papPort = opts.udpPort ?? 7032;
  const payloadLength = transport === 'udp' ? 8 + message.length : message.length;
  const packet = new Uint8Array(20 + payloadLength);
  emitIpv4(
    {
      tos: 0,
      identification: opts.identification ?? 1,
      flags: 0x2,
      fragmentOffset: 0,
      ttl: 64,
      protocol: transport === 'udp' ? 17 : 1,
      src,
      dst,
      options: [],
      payloadLength,
    },
    packet,
    0,
  );
  if (transport === 'udp') {
    emitUdp(
      {
        srcPort: fromRouter ? papPort : HOST_PORT,
        dstPort: fromRouter ? HOST_PORT : papPort,
        hasChecksum: true,
        payload: message,
      },
      packet,
      20,
      src,
      dst,
    );
  } else {
    packet.set(message, 20);
  }
  return packet;
}

/** Writes `packets` one second apart (so response times are whole seconds). */
export function writeCapture(
  path: string,
  packets: readonly Uint8Array[],
  startMs = 1_700_000_000_000,
): void {
  const w = PcapWriter.open(path);
  packets.forEach((p, i) => w.write(p, 0, p.length, startMs + i * 1000));
  w.close();
}
