/**
 * PAP as the patent sends it, as ICMP types 32 and 33 (docs/pap.md 1), from
 * the host's side: a raw ICMP socket (every ICMP message to this namespace
 * arrives there, IPv4 header included; only types 32/33 are taken) that
 * also sends, with a header this module writes (IP_HDRINCL).
 */
import { u32 } from '../wire/bytes.ts';
import { emitIpv4, ipv4FromString, ipv4ToString } from '../wire/ipv4.ts';
import { IpProtocol } from '../wire/result.ts';
import { PAP_MESSAGE_LENGTH, PAP_TYPE_PORTS, PAP_TYPE_SPI } from '../wire/pap.ts';
import { openRawSocket } from '../io/raw.ts';
import type { PacketDevice } from '../io/types.ts';
import type { PapPeer } from '../pap/transport.ts';
import type { ClosablePapTransport } from './pap-udp.ts';

const IP_HEADER = 20;

/** A transport over `socket` (a raw protocol-1 socket, or a double of one) sending from `lanAddress`. */
export function papOverIcmp(socket: PacketDevice, lanAddress: string): ClosablePapTransport {
  const src = ipv4FromString(lanAddress);
  if (src === undefined) throw new Error(`not an IPv4 address: ${lanAddress}`);
  const handlers: ((bytes: Uint8Array, peer: PapPeer) => void)[] = [];
  const out = new Uint8Array(IP_HEADER + PAP_MESSAGE_LENGTH);
  const slots = socket.slots;
  socket.onBatch((count) => {
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      if (len < IP_HEADER || slots.bytes[off]! >> 4 !== 4) continue;
      const hl = (slots.bytes[off]! & 0x0f) << 2;
      const type = slots.bytes[off + hl];
      if (len - hl !== PAP_MESSAGE_LENGTH || (type !== PAP_TYPE_PORTS && type !== PAP_TYPE_SPI)) continue;
      const from = u32(slots.bytes, off + 12);
      const bytes = slots.bytes.slice(off + hl, off + len);
      for (const h of handlers) h(bytes, { address: ipv4ToString(from) });
    }
  });
  return {
    local: `${lanAddress} (ICMP)`,
    send(bytes: Uint8Array, peer: PapPeer): void {
      const dst = ipv4FromString(peer.address);
      if (dst === undefined || bytes.length !== PAP_MESSAGE_LENGTH) return;
      emitIpv4(
        {
          tos: 0,
          identification: 0,
          flags: 0,
          fragmentOffset: 0,
          ttl: 64,
          protocol: IpProtocol.ICMP,
          src,
          dst,
          options: [],
          payloadLength: PAP_MESSAGE_LENGTH,
        },
        out,
        0,
      );
      out.set(bytes, IP_HEADER);
      socket.send(out, 0, out.length);
    },
    onMessage(handler): void {
      handlers.push(handler);
    },
    close(): void {
      socket.close();
    },
  };
}

/** Opens the raw ICMP socket; throws EPERM without CAP_NET_RAW. */
export function openHostPapIcmp(lanAddress: string, onError: (err: Error) => void): ClosablePapTransport {
  return papOverIcmp(
    openRawSocket(IpProtocol.ICMP, { onError, rcvbuf: 256 * 1024, sndbuf: 64 * 1024 }),
    lanAddress,
  );
}
