import type { Clock } from '../util/clock.ts';

/**
 * Where a PAP message came from or goes to. Over UDP both fields matter; over
 * raw ICMP (types 32 and 33) there is no port and `port` is left out.
 */
export interface PapPeer {
  readonly address: string;
  readonly port?: number;
}

/**
 * The one thing PapServer and PapClient need from the network, so they run
 * unchanged over UDP 7032, raw ICMP, or memory in tests.
 */
export interface PapTransport {
  /** Sends one message. The transport must not keep `bytes` after returning. */
  send(bytes: Uint8Array, peer: PapPeer): void;
  /** Registers the receiver of every message that arrives. */
  onMessage(handler: (bytes: Uint8Array, peer: PapPeer) => void): void;
}

/** What the network does to one message in flight: deliver (after a delay), drop, or duplicate. */
export type Fate =
  { readonly drop: true } | { readonly drop?: false; readonly delayMs?: number; readonly copies?: number };

interface Endpoint {
  readonly peer: PapPeer;
  readonly handlers: Array<(bytes: Uint8Array, peer: PapPeer) => void>;
}

/**
 * A LAN in memory for tests: endpoints by address (and port), delivery on the
 * clock (never inside send, so no handler runs re-entrantly), and a hook that
 * decides each message's fate for loss, delay and duplication.
 */
export class MemoryNetwork {
  readonly #clock: Clock;
  readonly #endpoints: Endpoint[] = [];
  /** Decides the fate of each message; default: deliver after 1 ms. */
  fate: (bytes: Uint8Array, from: PapPeer, to: PapPeer) => Fate = () => ({ delayMs: 1 });
  /** Every message sent, in order, for assertions. */
  readonly log: Array<{ readonly from: PapPeer; readonly to: PapPeer; readonly bytes: Uint8Array }> = [];

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** A transport bound to `peer`: messages it sends come from `peer`. */
  endpoint(peer: PapPeer): PapTransport {
    const ep: Endpoint = { peer: { ...peer }, handlers: [] };
    this.#endpoints.push(ep);
    return {
      send: (bytes, to) => this.#send(ep.peer, bytes.slice(), to),
      onMessage: (handler) => {
        ep.handlers.push(handler);
      },
    };
  }

  #send(from: PapPeer, bytes: Uint8Array, to: PapPeer): void {
    this.log.push({ from, to, bytes });
    const fate = this.fate(bytes, from, to);
    if (fate.drop === true) return;
    const target = this.#endpoints.find(
      (e) => e.peer.address === to.address && (to.port === undefined || e.peer.port === to.port),
    );
    if (target === undefined) return;
    for (let i = 0; i < (fate.copies ?? 1); i++) {
      this.#clock.setTimeout(() => {
        for (const h of target.handlers) h(bytes.slice(), from);
      }, fate.delayMs ?? 1);
    }
  }
}
