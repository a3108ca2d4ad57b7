import type { PapMessage } from '../wire/pap.ts';
import {
  PAP_MESSAGE_LENGTH,
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
import type { HostAddress, LeaseAnswer, LeaseStatus } from './lease.ts';
import type { LeaseTable } from './lease-table.ts';
import type { PapPeer, PapTransport } from './transport.ts';

/** Wire status of each lease-table outcome. */
export const STATUS_CODE: Readonly<Record<LeaseStatus, number>> = {
  ok: PapStatus.Ok,
  'quota-exceeded': PapStatus.QuotaExceeded,
  'pool-exhausted': PapStatus.PoolExhausted,
  'unknown-lease': PapStatus.UnknownLease,
};

export interface PapServerCounters {
  /** Requests answered, by message kind. */
  readonly answered: Record<string, number>;
  /** Messages dropped without an answer, by reason. */
  readonly dropped: Record<string, number>;
  /** Renewals or invalidations that named another epoch. */
  staleEpoch: number;
  /** Withdraw messages sent. */
  withdrawn: number;
}

/**
 * The router's end of PAP: turns requests into lease-table calls and the
 * outcomes into responses. Transport-agnostic: `handle` works on parsed
 * messages, `receive` on bytes, `attach` binds a transport.
 *
 * Decisions the patent leaves open:
 * - a count of 0 in a request means the router's default block (as lease
 *   time 0 means its default lease);
 * - a request is served whatever epoch it names (it depends on no earlier
 *   state), while a renewal or invalidation naming another non-zero epoch is
 *   refused with stale-epoch: the block it names belongs to a router life
 *   that is gone;
 * - an invalidate of a block already released answers unknown-lease unless
 *   it repeats the transaction id of the original invalidate, which gets the
 *   original success again.
 */
export class PapServer {
  readonly counters: PapServerCounters = { answered: {}, dropped: {}, staleEpoch: 0, withdrawn: 0 };
  readonly #table: LeaseTable;
  readonly #transports = new Set<PapTransport>();
  /** Where each host was last heard from, to send it a withdraw. */
  readonly #peers = new Map<HostAddress, { peer: PapPeer; transport: PapTransport }>();

  constructor(table: LeaseTable) {
    this.#table = table;
  }

  /** Answers every request arriving on `transport`. */
  attach(transport: PapTransport): void {
    this.#transports.add(transport);
    transport.onMessage((bytes, peer) => {
      const reply = this.receive(bytes, peer, transport);
      if (reply !== undefined) transport.send(reply, peer);
    });
  }

  /** Parses, handles and encodes one message; undefined when nothing is to be sent back. */
  receive(bytes: Uint8Array, peer: PapPeer, via?: PapTransport): Uint8Array | undefined {
    const parsed = parsePap(bytes, 0, bytes.length);
    if (!parsed.ok) return this.#malformed(bytes, parsed.reason);
    if (via !== undefined) this.#peers.set(peer.address, { peer, transport: via });
    const reply = this.handle(parsed.value, peer.address);
    if (reply === undefined) return undefined;
    const out = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap(reply, out, 0);
    return out;
  }

  /** The response to one request from `host`, or undefined for messages a router does not answer. */
  handle(msg: PapMessage, host: HostAddress): PapMessage | undefined {
    const t = this.#table;
    const txid = msg.transactionId;
    let answer: LeaseAnswer;
    switch (msg.kind) {
      case 'port-request':
        answer = t.request(host, 'port', {
          count: msg.portsRequested,
          preference: msg.highPorts ? 'high' : 'low',
          leaseSeconds: msg.leaseTime,
          txid,
        });
        break;
      case 'spi-request':
        answer = t.request(host, 'spi', { count: msg.spisRequested, leaseSeconds: msg.leaseTime, txid });
        break;
      case 'port-renew':
        if (this.#stale(msg)) return this.#staleAnswer(msg, 'port', msg.lowestPort, msg.portCount);
        answer = t.renew(host, 'port', msg.lowestPort, msg.portCount, { leaseSeconds: msg.leaseTime, txid });
        break;
      case 'spi-renew':
        if (this.#stale(msg)) return this.#staleAnswer(msg, 'spi', msg.lowestSpi, msg.spiCount);
        answer = t.renew(host, 'spi', msg.lowestSpi, msg.spiCount, { leaseSeconds: msg.leaseTime, txid });
        break;
      case 'port-invalidate':
        if (this.#stale(msg)) return this.#staleAnswer(msg, 'port', msg.port, 0);
        answer = t.release(host, 'port', msg.port, { txid });
        break;
      case 'spi-invalidate':
        if (this.#stale(msg)) return this.#staleAnswer(msg, 'spi', msg.spi, 0);
        answer = t.release(host, 'spi', msg.spi, { txid });
        break;
      default:
        // Router-to-host messages arriving here: a confused or spoofing sender.
        this.#count(this.counters.dropped, 'not-a-request');
        return undefined;
    }
    this.#count(this.counters.answered, msg.kind);
    return responseOf(answer, STATUS_CODE[answer.status], txid);
  }

  /**
   * Takes a block back from its holder and tells the host (code 2 with R=1)
   * where it was last heard from. Returns false if no lease starts at lowest.
   */
  withdraw(kind: ResourceKind, lowest: number): boolean {
    const lease = this.#table.withdraw(kind, lowest);
    if (lease === undefined) return false;
    const where = this.#peers.get(lease.host);
    if (where !== undefined) {
      const common = { status: PapStatus.Ok, transactionId: 0, epoch: this.#table.epoch, leaseTime: 0 };
      const msg: PapMessage =
        kind === 'port'
          ? { kind: 'port-withdraw', lowestPort: lease.lowest, portCount: lease.count, ...common }
          : { kind: 'spi-withdraw', lowestSpi: lease.lowest, spiCount: lease.count, ...common };
      const out = new Uint8Array(PAP_MESSAGE_LENGTH);
      emitPap(msg, out, 0);
      where.transport.send(out, where.peer);
      this.counters.withdrawn++;
    }
    return true;
  }

  #stale(msg: PapMessage): boolean {
    return msg.epoch !== 0 && msg.epoch !== this.#table.epoch;
  }

  #staleAnswer(msg: PapMessage, kind: ResourceKind, lowest: number, count: number): PapMessage {
    this.counters.staleEpoch++;
    this.#count(this.counters.answered, msg.kind);
    const answer: LeaseAnswer = {
      status: 'unknown-lease',
      kind,
      lowest,
      count,
      leaseSeconds: 0,
      expiresAt: 0,
      epoch: this.#table.epoch,
    };
    return responseOf(answer, PapStatus.StaleEpoch, msg.transactionId);
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
    const out = new Uint8Array(PAP_MESSAGE_LENGTH);
    const common = {
      success: false,
      status: PapStatus.Malformed,
      transactionId: v.transactionId,
      epoch: this.#table.epoch,
      leaseTime: 0,
    };
    if (v.type === PAP_TYPE_PORTS)
      emitPap({ kind: 'port-response', lowestPort: 0, portCount: 0, ...common }, out, 0);
    else if (v.type === PAP_TYPE_SPI)
      emitPap({ kind: 'spi-response', lowestSpi: 0, spiCount: 0, ...common }, out, 0);
    else return undefined;
    return out;
  }

  #count(where: Record<string, number>, key: string): void {
    where[key] = (where[key] ?? 0) + 1;
  }
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
  return answer.kind === 'port'
    ? { kind: 'port-response', lowestPort: answer.lowest, portCount: answer.count, ...common }
    : { kind: 'spi-response', lowestSpi: answer.lowest, spiCount: answer.count, ...common };
}
