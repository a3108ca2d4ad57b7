/**
 * Where IPsec joins the host's data path. The patent's order (FIG. 19-21):
 * outbound, ports are translated first and the packet protected after, so
 * that ESP/AH cover the locally unique port the peer will see; inbound, the
 * packet is verified (and decrypted) first and translated back after.
 *
 *   TUN -> check -> MTU -> translate -> clamp MSS -> protect -> encapsulate -> LAN
 *   LAN -> decapsulate -> check -> verify -> translate back -> clamp MSS -> TUN
 *
 * The forwarder calls these in place on a packet in a slot. A step may move
 * the packet's start back into the headroom (an ESP header inserted after
 * the IPv4 header) or grow it into the slot's tail (trailer and ICV), and
 * reports where it now is in the span's offset and length. Neither call may
 * throw or allocate per packet; a packet the step refuses is dropped and
 * counted under the step's own reason.
 */
import type { PacketSpan } from '../../ipsec/types.ts';

/** Why the IPsec step refused a packet (counted as drop reasons by the forwarder). */
export type IpsecDropReason = 'ipsec-no-sa' | 'ipsec-auth-failed' | 'ipsec-replay' | 'ipsec-policy';

export interface IpsecStep {
  /**
   * Bytes protect() may add to a packet at most (ESP header, IV, padding,
   * trailer, ICV). The forwarder's path MTU check counts them, so the
   * "fragmentation needed" it sends quotes the packet as the local stack
   * sent it, before translation and protection.
   */
  readonly maxOverhead: number;
  /**
   * Outbound, after translation. The packet is buf[span.offset, +span.length)
   * with `headroom` bytes free before it and `tailroom` after it. Returns
   * null (span updated; untouched if no policy applies) or a drop reason.
   */
  protect(buf: Uint8Array, span: PacketSpan, headroom: number, tailroom: number): IpsecDropReason | null;
  /** Inbound, before translation back; same contract. A packet no policy covers passes. */
  verify(buf: Uint8Array, span: PacketSpan): IpsecDropReason | null;
}
