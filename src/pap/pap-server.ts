import type { PapMessage } from '../wire/pap.ts';
import {
  PAP_MESSAGE_LENGTH,
  papStatusName,
  PAP_TYPE_PORTS,
  PAP_TYPE_SPI,
  PAP_VERSION,
  PapStatus,
  PapView,
  emitPap,
  parsePap,
} from '../wire/pap.ts';
import type { WireError } from '../wire/result.ts';
import type { ResourceKind } from '../util/block.ts';
import { addressIndexOfSlot, portOfSlot, portSlot } from '../util/block.ts';
import { ipv4FromString } from '../wire/ipv4.ts';
import type { HostAddress, Lease, LeaseAnswer, LeaseStatus } from './lease.ts';
import type { LeaseBook, MaybePromise } from './lease-book.ts';
import { andThen } from './lease-book.ts';
import { contentFault } from './request-rules.ts';
import type { PapPeer, PapTransport } from './transport.ts';

/** Wire status of each lease-table outcome. */
export const STATUS_CODE: Readonly<Record<LeaseStatus, number>> = {
  ok: PapStatus.Ok,
  'quota-exceeded': PapStatus.QuotaExceeded,
  'pool-exhausted': PapStatus.PoolExhausted,
  'unknown-lease': PapStatus.UnknownLease,
  'try-later': PapStatus.TryLater,
};

export interface PapServerCounters {
  /** Requests answered, by message kind. */
  readonly answered: Record<string, number>;
  /** Answers that were failures, by status name. */
  readonly refused: Record<string, number>;
  /** Messages dropped without an answer, by reason. */
  readonly dropped: Record<string, number>;
  /** Renewals or invalidations that named another epoch and were refused for it. */
  staleEpoch: number;
  /** Blocks of an earlier router life given back to their holders during the hold-off. */
  reclaimed: number;
  /** Withdraw messages sent. */
  withdrawn: number;
  /** Port messages naming a shared address this router does not serve (also refused as unknown-address). */
  unknownAddress: number;
}

/**
 * The router's end of PAP: turns requests into lease-table calls and the
 * outcomes into responses. Transport-agnostic: `handle` works on parsed
 * messages, `receive` on bytes, `attach` binds a transport.
 *
 * What it decides itself, in this order (docs/pap.md 5.1 has the full
 * table): content that cannot name a block is malformed; a renew or
 * invalidate naming another non-zero epoch is a reclaim (renew) or names
 * nothing (invalidate) during the lease table's hold-off, and stale-epoch
 * after it; epoch 0 stands for the router's own. Everything else is the
 * lease table's to answer. A count of 0 in a request means the router's
 * default block (as lease time 0 means its default lease). An invalidate of
 * a block already released answers unknown-lease unless it repeats the
 * transaction id of the original invalidate, which gets the original
 * success again.
 */
export class PapServer {
  readonly counters: PapServerCounters = {
    answered: {},
    refused: {},
    dropped: {},
    staleEpoch: 0,
    reclaimed: 0,
    withdrawn: 0,
    unknownAddress: 0,
  };
  readonly #table: LeaseBook;
  readonly #transports = new Set<PapTransport>();
  /** Where each host was last heard from, to send it a withdraw. */
  readonly #peers = new Map<HostAddress, { peer: PapPeer; transport: PapTransport }>();

  /** The router's shared addresses, first first, as unsigned 32-bit numbers. */
  readonly #addresses: readonly number[];

  /**
   * `addresses`: the shared addresses the router serves; a port message
   * names one of them or 0 (the first). Empty: the address field is not
   * looked at, every port is the first address's.
   */
  constructor(table: LeaseBook, addresses: readonly number[] = []) {
    this.#table = table;
    this.#addresses = addresses;
  }

  /** The index of the shared address a port message names: -1 for one not served. */
  #addressIndex(address: number | undefined): number {
    if (address === undefined || address === 0 || this.#addresses.length === 0) return 0;
    return this.#addresses.indexOf(address >>> 0);
  }

  /** Answers every request arriving on `transport`. */
  attach(transport: PapTransport): void {
    this.#transports.add(transport);
    transport.onMessage((bytes, peer) => {
      const reply = this.#receive(bytes, peer, transport);
      const send = (r: Uint8Array | undefined) => {
        if (r !== undefined) transport.send(r, peer);
      };
      if (!(reply instanceof Promise)) return send(reply);
      // A table shared with other routers answers once etcd has decided.
      reply.then(send, () => this.#count(this.counters.dropped, 'lease-table-error'));
    });
  }

  /**
   * Parses, handles and encodes one message; undefined when nothing is to be
   * sent back. For a lease table that answers at once (receiveAsync for any).
   */
  receive(bytes: Uint8Array, peer: PapPeer, via?: PapTransport): Uint8Array | undefined {
    return now(this.#receive(bytes, peer, via));
  }

  /** receive, whichever lease table answers. */
  async receiveAsync(bytes: Uint8Array, peer: PapPeer, via?: PapTransport): Promise<Uint8Array | undefined> {
    return this.#receive(bytes, peer, via);
  }

  #receive(bytes: Uint8Array, peer: PapPeer, via?: PapTransport): MaybePromise<Uint8Array | undefined> {
    const parsed = parsePap(bytes, 0, bytes.length);
    if (!parsed.ok) return this.#malformed(bytes, parsed.reason);
    if (via !== undefined) this.#peers.set(peer.address, { peer, transport: via });
    return andThen(this.#handle(parsed.value, peer.address), (reply) => {
      if (reply === undefined) return undefined;
      const out = new Uint8Array(PAP_MESSAGE_LENGTH);
      emitPap(reply, out, 0);
      return out;
    });
  }

  /**
   * The response to one request from `host`, or undefined for messages a
   * router does not answer. For a lease table that answers at once (answer
   * for any).
   */
  handle(msg: PapMessage, host: HostAddress): PapMessage | undefined {
    return now(this.#handle(msg, host));
  }

  /** handle, whichever lease table answers. */
  async answer(msg: PapMessage, host: HostAddress): Promise<PapMessage | undefined> {
    return this.#handle(msg, host);
  }

  #handle(msg: PapMessage, host: HostAddress): MaybePromise<PapMessage | undefined> {
    const t = this.#table;
    const txid = msg.transactionId;
    const isPorts = msg.kind.startsWith('port-');
    const address = isPorts && 'address' in msg ? msg.address : undefined;
    const a = this.#addressIndex(address);
    let reply: MaybePromise<PapMessage>;
    if (
      a < 0 &&
      (msg.kind === 'port-request' || msg.kind === 'port-renew' || msg.kind === 'port-invalidate')
    ) {
      this.counters.unknownAddress++;
      const lowest =
        msg.kind === 'port-renew' ? msg.lowestPort : msg.kind === 'port-invalidate' ? msg.port : 0;
      const count = msg.kind === 'port-renew' ? msg.portCount : 0;
      reply = this.#refuse('port', lowest, count, PapStatus.UnknownAddress, txid);
      this.#count(this.counters.answered, msg.kind);
      return { ...reply, address: address! } as PapMessage;
    }
    switch (msg.kind) {
      case 'port-request':
        reply = this.#respond(
          t.request(host, 'port', {
            count: msg.portsRequested,
            preference: msg.highPorts ? 'high' : 'low',
            leaseSeconds: msg.leaseTime,
            txid,
            ...(a === 0 ? {} : { address: a }),
          }),
          txid,
        );
        break;
      case 'spi-request':
        reply = this.#respond(
          t.request(host, 'spi', { count: msg.spisRequested, leaseSeconds: msg.leaseTime, txid }),
          txid,
        );
        break;
      case 'port-renew':
        reply = this.#renew(msg, host, 'port', portSlot(a, msg.lowestPort), msg.portCount);
        break;
      case 'spi-renew':
        reply = this.#renew(msg, host, 'spi', msg.lowestSpi, msg.spiCount);
        break;
      case 'port-invalidate':
        reply = this.#invalidate(msg, host, 'port', portSlot(a, msg.port));
        break;
      case 'spi-invalidate':
        reply = this.#invalidate(msg, host, 'spi', msg.spi);
        break;
      default:
        // Router-to-host messages arriving here: a confused or spoofing sender.
        this.#count(this.counters.dropped, 'not-a-request');
        return undefined;
    }
    return andThen(reply, (r) => {
      this.#count(this.counters.answered, msg.kind);
      // A port answer names the address the request named, or the one its block is on.
      if (!isPorts || (r as { address?: number }).address !== undefined || address === undefined) return r;
      return { ...r, address } as PapMessage;
    });
  }

  /**
   * Takes a block back from its holder and tells the host (code 2 with R=1)
   * where it was last heard from. Returns false if no lease starts at lowest.
   */
  withdraw(kind: ResourceKind, lowest: number): MaybePromise<boolean> {
    return andThen(this.#table.withdraw(kind, lowest), (lease) => this.#tellWithdrawn(kind, lease));
  }

  #tellWithdrawn(kind: ResourceKind, lease: Lease | undefined): boolean {
    if (lease === undefined) return false;
    const where = this.#peers.get(lease.host);
    if (where !== undefined) {
      const common = { status: PapStatus.Ok, transactionId: 0, epoch: this.#table.epoch, leaseTime: 0 };
      const address = kind === 'port' ? this.#addresses[addressIndexOfSlot(lease.lowest)] : undefined;
      const msg: PapMessage =
        kind === 'port'
          ? {
              kind: 'port-withdraw',
              lowestPort: portOfSlot(lease.lowest),
              portCount: lease.count,
              ...common,
              ...(address === undefined || this.#addresses.length < 2 ? {} : { address }),
            }
          : { kind: 'spi-withdraw', lowestSpi: lease.lowest, spiCount: lease.count, ...common };
      const out = new Uint8Array(PAP_MESSAGE_LENGTH);
      emitPap(msg, out, 0);
      where.transport.send(out, where.peer);
      this.counters.withdrawn++;
    }
    return true;
  }

  #renew(
    msg: PapMessage,
    host: HostAddress,
    kind: ResourceKind,
    lowest: number,
    count: number,
  ): MaybePromise<PapMessage> {
    const txid = msg.transactionId;
    if (contentFault(msg) !== undefined) return this.#refuse(kind, lowest, count, PapStatus.Malformed, txid);
    const params = { leaseSeconds: msg.leaseTime, txid };
    if (!this.#stale(msg)) return this.#respond(this.#table.renew(host, kind, lowest, count, params), txid);
    // Another router life's block: its holder may have it back while the table holds off.
    if (this.#table.holdOffUntil === undefined) return this.#staleEpoch(kind, lowest, count, txid);
    return andThen(this.#table.reclaim(host, kind, lowest, count, params), (answer) => {
      if (answer.status === 'ok') this.counters.reclaimed++;
      return this.#response(answer, txid);
    });
  }

  #invalidate(
    msg: PapMessage,
    host: HostAddress,
    kind: ResourceKind,
    value: number,
  ): MaybePromise<PapMessage> {
    const txid = msg.transactionId;
    if (contentFault(msg) !== undefined) return this.#refuse(kind, value, 0, PapStatus.Malformed, txid);
    if (!this.#stale(msg)) return this.#respond(this.#table.release(host, kind, value, { txid }), txid);
    // During the hold-off an earlier life's block is simply not held here; after it, that life is over.
    if (this.#table.holdOffUntil === undefined) return this.#staleEpoch(kind, value, 0, txid);
    return this.#refuse(kind, value, 0, PapStatus.UnknownLease, txid);
  }

  /** Epoch 0 stands for the router's own: the host has seen no other. */
  #stale(msg: PapMessage): boolean {
    return msg.epoch !== 0 && msg.epoch !== this.#table.epoch;
  }

  #staleEpoch(kind: ResourceKind, lowest: number, count: number, txid: number): PapMessage {
    this.counters.staleEpoch++;
    return this.#refuse(kind, lowest, count, PapStatus.StaleEpoch, txid);
  }

  /** A failure decided here, not by the lease table: the body as docs/pap.md 3 gives it, lease time 0. */
  #refuse(kind: ResourceKind, lowest: number, count: number, status: number, txid: number): PapMessage {
    this.#count(this.counters.refused, papStatusName(status) ?? String(status));
    return failureOf(kind, lowest, count, status, txid, this.#table.epoch);
  }

  #respond(pending: MaybePromise<LeaseAnswer>, txid: number): MaybePromise<PapMessage> {
    return andThen(pending, (answer) => this.#response(answer, txid));
  }

  #response(answer: LeaseAnswer, txid: number): PapMessage {
    const status = STATUS_CODE[answer.status];
    if (answer.status !== 'ok') this.#count(this.counters.refused, answer.status);
    return responseOf(answer, status, txid);
  }

  /**
   * A request with a code this version does not define still gets an answer
   * (failure, status malformed) so the host stops retransmitting it. Anything
   * that fails earlier checks (length, checksum, version) may not even be PAP
   * and is dropped.
   */
  #malformed(bytes: Uint8Array, reason: WireError): Uint8Array | undefined {
    this.#count(this.counters.dropped, reason);
    if (reason !== 'bad-code') return undefined;
    const v = new PapView(bytes, 0, bytes.length);
    if (v.isResponse || v.version !== PAP_VERSION) return undefined;
    const kind = v.type === PAP_TYPE_PORTS ? 'port' : v.type === PAP_TYPE_SPI ? 'spi' : undefined;
    if (kind === undefined) return undefined;
    const out = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap(this.#refuse(kind, 0, 0, PapStatus.Malformed, v.transactionId), out, 0);
    return out;
  }

  #count(where: Record<string, number>, key: string): void {
    where[key] = (where[key] ?? 0) + 1;
  }
}

/** A FIG. 5 / FIG. 5A failure with this body and status, lease time 0. */
export function failureOf(
  kind: ResourceKind,
  lowest: number,
  count: number,
  status: number,
  transactionId: number,
  epoch: number,
): PapMessage {
  const common = { success: false, status, transactionId, epoch, leaseTime: 0 };
  return kind === 'port'
    ? { kind: 'port-response', lowestPort: lowest, portCount: count, ...common }
    : { kind: 'spi-response', lowestSpi: lowest, spiCount: count, ...common };
}

/** The FIG. 5 / FIG. 5A response carrying a lease-table answer. */
export function responseOf(answer: LeaseAnswer, status: number, transactionId: number): PapMessage {
  const common = {
    success: answer.status === 'ok',
    status,
    transactionId,
    epoch: answer.epoch,
    leaseTime: answer.leaseSeconds,
  };
  const address = answer.address === undefined ? undefined : ipv4FromString(answer.address);
  return answer.kind === 'port'
    ? {
        kind: 'port-response',
        lowestPort: answer.lowest,
        portCount: answer.count,
        ...common,
        ...(address === undefined ? {} : { address }),
      }
    : { kind: 'spi-response', lowestSpi: answer.lowest, spiCount: answer.count, ...common };
}

/** The value of a table that answers at once; a shared table's callers use the async methods. */
function now<T>(v: MaybePromise<T>): T {
  if (v instanceof Promise) {
    void v.catch(() => undefined);
    throw new Error('this lease table answers asynchronously: use receiveAsync or answer');
  }
  return v;
}
