/**
 * What an IKE SA needs from the daemon that owns it. Exchanges reach the
 * transport, clock, configuration and hooks only through this, so the SA
 * logic has no idea how datagrams arrive or where events go.
 *
 * The SA is a type parameter (IkeSa, ike-sa.ts, binds it): the context only
 * carries SAs back to the daemon and to event listeners and never looks
 * inside one, so this module stays below the SA that depends on it.
 */
import type { Clock } from '../util/clock.ts';
import type { ChildSa } from './child-sa.ts';
import type { LogLevel, ResolvedConfig } from './config.ts';
import type { FragmentBudget } from './fragment-reassembly.ts';
import type { ExchangeResult } from './exchange-result.ts';
import type { Payload } from './payloads.ts';
import type { IkeTransport } from './transport.ts';

export type IkeEventOf<Sa> =
  | { readonly type: 'ike-up'; readonly sa: Sa }
  | { readonly type: 'ike-down'; readonly sa: Sa; readonly reason: string }
  | { readonly type: 'ike-rekeyed'; readonly old: Sa; readonly sa: Sa }
  | { readonly type: 'child-up'; readonly sa: Sa; readonly child: ChildSa }
  | { readonly type: 'child-down'; readonly sa: Sa; readonly child: ChildSa; readonly reason: string }
  | { readonly type: 'child-failed'; readonly sa: Sa; readonly reason: string }
  | { readonly type: 'auth-failed'; readonly sa: Sa; readonly reason: string };

export interface IkeContext<Sa> {
  readonly transport: IkeTransport;
  readonly clock: Clock;
  readonly config: ResolvedConfig;
  /** What all IKE SAs' fragment reassemblies may hold together. */
  readonly fragmentBudget: FragmentBudget;
  /** Runs the responder side of an exchange on an established (or half-open) SA. */
  respond(sa: Sa, exchange: number, payloads: Payload[]): Promise<ExchangeResult>;
  register(sa: Sa): void;
  unregister(sa: Sa): void;
  /** Takes a child SA out of the SA database and gives its SPI back. */
  removeChild(sa: Sa, child: ChildSa, reason: 'deleted' | 'rekeyed' | 'ike-gone'): void;
  emit(event: IkeEventOf<Sa>): void;
  log(level: LogLevel, message: string): void;
  count(what: string): void;
  /** A fresh IKE SPI, non-zero and not in use here. */
  newSpi(): bigint;
  nextChildId(): number;
  /** The peer said INITIAL_CONTACT: older SAs with the same identity are stale (RFC 7296 2.4). */
  initialContact(sa: Sa): void;
  /** No other IKE SA with this peer exists: our IKE_AUTH may say INITIAL_CONTACT. */
  firstContact(sa: Sa): boolean;
}
