/**
 * A child SA pair as the IKE SA keeps it: what was negotiated (handed to
 * the SA database), what was asked for (to rekey it alike), and where it
 * stands.
 */
import type { ChildRequest } from './config.ts';
import type { NegotiatedChildSa } from './policy.ts';
import type { Timer } from '../util/clock.ts';

export type ChildSaState = 'installed' | 'rekeying' | 'rekeyed' | 'deleting';

export class ChildSa {
  state: ChildSaState = 'installed';
  rekeyTimer: Timer | undefined;
  /** When the scheduled rekey is due (clock ms), so that it survives a move to a rekeyed IKE SA. */
  rekeyDue: number | undefined;
  /** Nonces of the CREATE_CHILD_SA exchange that made this SA by rekeying another (RFC 7296 2.8.1). */
  rekeyNonces: readonly Buffer[] | undefined;
  /**
   * While we rekey this SA: the SA that the peer's simultaneous rekey of it
   * makes, set when its request arrives (undefined if that fails).
   */
  collision: Promise<ChildSa | undefined> | undefined;
  readonly createdAt: number;

  constructor(
    readonly negotiated: NegotiatedChildSa,
    /** Selectors and mode to ask for again when rekeying. */
    readonly request: ChildRequest,
    now: number,
    /** We started the exchange that made it (and so rekey it on schedule). */
    readonly initiatedByUs: boolean,
  ) {
    this.createdAt = now;
  }

  get id(): number {
    return this.negotiated.id;
  }
  get inboundSpi(): number {
    return this.negotiated.inbound.spi;
  }
  get outboundSpi(): number {
    return this.negotiated.outbound.spi;
  }
  get name(): string {
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    return `child ${this.id} ${hex(this.inboundSpi)}_i ${hex(this.outboundSpi)}_o`;
  }
}
