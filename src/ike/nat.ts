/**
 * NAT detection (RFC 7296 2.23): each side sends
 *
 *   NAT_DETECTION_SOURCE_IP      = SHA-1(SPIi | SPIr | source IP | source port)
 *   NAT_DETECTION_DESTINATION_IP = SHA-1(SPIi | SPIr | dest IP | dest port)
 *
 * as it believes the addresses to be (SPIr is zero in the first request). The
 * receiver recomputes them over the addresses it sees: a source mismatch
 * means the peer is behind a NAT, a destination mismatch that we are.
 *
 * A host behind distnat sends from the shared address and one of its leased
 * ports, which the router does not rewrite: the hashes match and no NAT is
 * found, so ESP stays plain ESP (the point of the patent). A peer that wants
 * ESP-in-UDP regardless (strongSwan's `encap = yes`) sends a deliberately
 * wrong source hash, and we follow it to UDP encapsulation.
 */
import { hash } from 'node:crypto';
import { FIRST_STATUS_NOTIFY, NotifyType } from './constants.ts';
import { findNotify, notifiesOf, notify, type NotifyPayload, type Payload } from './payloads.ts';

export interface Endpoint {
  /** Dotted IPv4 address. */
  readonly address: string;
  readonly port: number;
}

export function ipv4Bytes(address: string): Buffer {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new RangeError(`not an IPv4 address: ${address}`);
  return Buffer.from(parts);
}

export function natHash(spiI: bigint, spiR: bigint, at: Endpoint): Buffer {
  // One buffer and a one-shot digest: four of these per IKE_SA_INIT on each side.
  const input = Buffer.allocUnsafe(22);
  input.writeBigUInt64BE(spiI, 0);
  input.writeBigUInt64BE(spiR, 8);
  ipv4Bytes(at.address).copy(input, 16);
  input.writeUInt16BE(at.port, 20);
  return hash('sha1', input, 'buffer');
}

/** The two NAT detection notifications for a message from `local` to `remote`. */
export function natDetectionPayloads(
  spiI: bigint,
  spiR: bigint,
  local: Endpoint,
  remote: Endpoint,
): NotifyPayload[] {
  return [
    notify(NotifyType.NAT_DETECTION_SOURCE_IP, natHash(spiI, spiR, local)),
    notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natHash(spiI, spiR, remote)),
  ];
}

export interface NatVerdict {
  /** The peer sent NAT detection at all (without it, no NAT-T). */
  readonly supported: boolean;
  /** The peer's address or port is not what it believes: it is behind a NAT (or fakes one). */
  readonly peerBehindNat: boolean;
  /** We are not where the peer sees us. */
  readonly localBehindNat: boolean;
}

/** Compares the peer's NAT detection payloads with the addresses of the datagram that carried them. */
export function detectNat(
  payloads: readonly Payload[],
  spiI: bigint,
  spiR: bigint,
  local: Endpoint,
  remote: Endpoint,
): NatVerdict {
  const sources = notifiesOf(payloads).filter((n) => n.notifyType === NotifyType.NAT_DETECTION_SOURCE_IP);
  const destination = findNotify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP);
  if (sources.length === 0 || destination === undefined)
    return { supported: false, peerBehindNat: false, localBehindNat: false };
  const seenSource = natHash(spiI, spiR, remote);
  return {
    supported: true,
    // Several source hashes are allowed (multi-homed senders): any match will do.
    peerBehindNat: !sources.some((n) => n.data.equals(seenSource)),
    localBehindNat: !destination.data.equals(natHash(spiI, spiR, local)),
  };
}

/** Error notifications (type below 16384) in a message. */
export function errorNotifies(payloads: readonly Payload[]): NotifyPayload[] {
  return notifiesOf(payloads).filter((n) => n.notifyType < FIRST_STATUS_NOTIFY);
}
