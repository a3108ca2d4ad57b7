/**
 * One IKE SA: its SPIs, keys and children, and the request/response
 * discipline of RFC 7296 2.1-2.3 that every exchange rides on.
 *
 * - Window size 1 both ways: one request of ours outstanding at a time
 *   (later ones queue), and the peer's requests answered in message ID order.
 * - Our requests are retransmitted after timeout, timeout*base, ... and the
 *   peer is declared dead when the tries run out.
 * - The peer's retransmitted request (the message ID we last answered) gets
 *   the cached response again, byte for byte, without processing.
 * - A request that is being processed (IKE_AUTH waits for certificate
 *   checks) is not processed twice: its retransmissions are dropped until the
 *   response exists.
 *
 * The exchanges themselves live in exchange-*.ts; the daemon routes
 * datagrams here by SPI.
 */
import type { X509Certificate } from 'node:crypto';
import type { Timer } from '../util/clock.ts';
import type { IkeContext } from './context.ts';
import { ExchangeType, HeaderFlag, nameOf } from './constants.ts';
import type { PortBinding } from '../pki/index.ts';
import { spiHex } from './header.ts';
import type { IkeKeys, IkeSuite } from './keys.ts';
import { emitEncryptedIkeMessage, openIkeMessage, type IkeMessage } from './message.ts';
import type { Endpoint, NatVerdict } from './nat.ts';
import type { IdPayload, Payload } from './payloads.ts';
import type { ChildSa } from './child-sa.ts';
import type { SkCipher } from './sk-cipher.ts';
import type { DhExchange } from './dh.ts';
import type { ChildRequest } from './config.ts';

export type IkeSaState =
  | 'init-sent' // initiator: IKE_SA_INIT request out
  | 'auth-sent' // initiator: IKE_AUTH request out
  | 'half-open' // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
  | 'established'
  | 'rekeyed' // replaced by a new IKE SA, waiting for (or sending) its Delete
  | 'deleting'
  | 'dead';

export class IkeError extends Error {
  override readonly name = 'IkeError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface Outstanding {
  readonly id: number;
  readonly bytes: Buffer;
  tries: number;
  timer: Timer | undefined;
  /** Returns false for a message that is not the answer after all (it failed to decrypt). */
  readonly onResponse: (msg: IkeMessage) => boolean;
  readonly onTimeout: () => void;
}

/** What the responder side of an exchange returns: the response payloads, and what to do once it is sent. */
export interface ExchangeResult {
  readonly payloads: readonly Payload[];
  readonly after?: () => void;
}

export class IkeSa {
  readonly ctx: IkeContext;
  /** Who started this IKE SA (after a rekey: who started the rekey). Sets the I flag. */
  readonly role: 'initiator' | 'responder';
  spiI: bigint;
  spiR: bigint;
  state: IkeSaState;
  remote: Endpoint;
  /** Messages go over the NAT-T path (non-ESP marker). */
  natt = false;
  suite: IkeSuite | undefined;
  keys: IkeKeys | undefined;
  outCipher: SkCipher | undefined;
  inCipher: SkCipher | undefined;
  ni: Buffer = Buffer.alloc(0);
  nr: Buffer = Buffer.alloc(0);
  /** IKE_SA_INIT request and response as sent: AUTH signs them. */
  initRequest: Buffer | undefined;
  initResponse: Buffer | undefined;
  /** The peer's SIGNATURE_HASH_ALGORITHMS, if it sent any. */
  peerHashes: number[] | undefined;
  nat: NatVerdict | undefined;
  /** Set once the peer authenticated. */
  peer:
    | {
        readonly id: IdPayload;
        readonly path: readonly X509Certificate[];
        readonly binding: PortBinding | undefined;
      }
    | undefined;
  readonly children: ChildSa[] = [];
  readonly createdAt: number;
  establishedAt: number | undefined;
  lastHeard: number;
  /** Initiator during IKE_SA_INIT: our key pair, cookie and the child to make in IKE_AUTH. */
  dh: DhExchange | undefined;
  cookie: Buffer | undefined;
  firstChild: ChildRequest | null = null;
  /** Set when this SA replaced another by rekeying. */
  rekeyOf: IkeSa | undefined;
  /** Set on an old SA once its successor exists. */
  successor: IkeSa | undefined;
  /** We started an IKE rekey that has not finished. */
  ikeRekeyInFlight = false;

  #nextRequestId = 0;
  #expectedRequestId = 0;
  #lastResponse: { readonly id: number; readonly bytes: Buffer } | undefined;
  #outstanding: Outstanding | undefined;
  readonly #queue: (() => void)[] = [];
  #busy = false;
  readonly #timers = new Set<Timer>();
  #settled = false;
  readonly #waiters: { resolve: (sa: IkeSa) => void; reject: (e: IkeError) => void }[] = [];

  constructor(
    ctx: IkeContext,
    role: 'initiator' | 'responder',
    spiI: bigint,
    spiR: bigint,
    remote: Endpoint,
    state: IkeSaState,
  ) {
    this.ctx = ctx;
    this.role = role;
    this.spiI = spiI;
    this.spiR = spiR;
    this.remote = remote;
    this.state = state;
    this.createdAt = ctx.clock.now();
    this.lastHeard = this.createdAt;
  }

  /** True once the SA has died (a getter, so checks after an await are not narrowed away). */
  get gone(): boolean {
    return this.state === 'dead';
  }

  /** Our SPI of this SA: the key the daemon files it under. */
  get ourSpi(): bigint {
    return this.role === 'initiator' ? this.spiI : this.spiR;
  }

  get name(): string {
    return `${spiHex(this.spiI)}_i ${spiHex(this.spiR)}_r`;
  }

  /** Resolves once established, rejects with IkeError if it never gets there. */
  whenEstablished(): Promise<IkeSa> {
    if (this.state === 'established') return Promise.resolve(this);
    if (this.#settled) return Promise.reject(new IkeError('dead', `IKE SA ${this.name} is gone`));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** `rekeyOf`: the SA this one replaces (no ike-up event then, the caller reports the rekey). */
  markEstablished(rekeyOf?: IkeSa): void {
    this.state = 'established';
    this.establishedAt = this.ctx.clock.now();
    this.rekeyOf = rekeyOf;
    this.#settled = true;
    for (const w of this.#waiters.splice(0)) w.resolve(this);
    if (rekeyOf === undefined) this.ctx.emit({ type: 'ike-up', sa: this });
  }

  /** A timer that dies with the SA. */
  schedule(callback: () => void, delayMs: number): Timer {
    const t = this.ctx.clock.setTimeout(() => {
      this.#timers.delete(t);
      callback();
    }, delayMs);
    this.#timers.add(t);
    return {
      cancel: () => {
        t.cancel();
        this.#timers.delete(t);
      },
    };
  }

  /** Sends a datagram to the peer on the current path. */
  sendRaw(bytes: Buffer): void {
    this.ctx.transport.send(bytes, this.remote, this.natt);
  }

  get requestFlags(): number {
    return this.role === 'initiator' ? HeaderFlag.INITIATOR : 0;
  }

  get busy(): boolean {
    return this.#outstanding !== undefined;
  }

  /**
   * Sends `bytes` as request `id` and retransmits it until onResponse
   * accepts an answer or the tries run out.
   */
  transmit(id: number, bytes: Buffer, onResponse: (msg: IkeMessage) => boolean, onTimeout: () => void): void {
    this.#outstanding?.timer?.cancel();
    const o: Outstanding = { id, bytes, tries: 0, timer: undefined, onResponse, onTimeout };
    this.#outstanding = o;
    this.sendRaw(bytes);
    this.#arm(o);
  }

  #arm(o: Outstanding): void {
    const r = this.ctx.config.retransmit;
    const wait = r.timeoutMs * r.base ** o.tries;
    o.timer = this.schedule(() => {
      if (this.#outstanding !== o) return;
      if (o.tries >= r.tries) {
        this.#outstanding = undefined;
        o.onTimeout();
        return;
      }
      o.tries++;
      this.ctx.count('retransmit');
      this.sendRaw(o.bytes);
      this.#arm(o);
    }, wait);
  }

  /** The answer to our outstanding request, routed here by the daemon. */
  handleResponse(msg: IkeMessage): void {
    const o = this.#outstanding;
    if (o === undefined || msg.header.messageId !== o.id) {
      this.ctx.count('unexpected-response');
      return;
    }
    if (!o.onResponse(msg)) return;
    o.timer?.cancel();
    if (this.#outstanding === o) this.#outstanding = undefined;
    this.#next();
  }

  #next(): void {
    if (this.#outstanding !== undefined) return;
    const start = this.#queue.shift();
    start?.();
  }

  /** Sets the first message ID our encrypted requests use (1 after IKE_SA_INIT, 0 on a rekeyed SA). */
  setMessageIds(nextRequest: number, expectedRequest: number): void {
    this.#nextRequestId = nextRequest;
    this.#expectedRequestId = expectedRequest;
  }

  /**
   * An encrypted request; resolves with the response's payloads. Rejects
   * with IkeError('timeout') when the peer never answers (the SA is then dead)
   * or IkeError('dead') when the SA goes first.
   */
  request(exchange: number, payloads: readonly Payload[]): Promise<Payload[]> {
    return new Promise((resolve, reject) => {
      const start = (): void => {
        if (this.state === 'dead' || this.outCipher === undefined) {
          reject(new IkeError('dead', `IKE SA ${this.name} is gone`));
          this.#next();
          return;
        }
        const id = this.#nextRequestId++;
        const bytes = emitEncryptedIkeMessage(
          { spiI: this.spiI, spiR: this.spiR, exchange, flags: this.requestFlags, messageId: id },
          payloads,
          this.outCipher,
        );
        this.ctx.log('debug', `${this.name}: request ${nameOf(ExchangeType, exchange, 'exchange')} #${id}`);
        this.transmit(
          id,
          bytes,
          (msg) => {
            if (msg.header.exchange !== exchange) return false;
            const opened = openIkeMessage(msg, this.inCipher!);
            if (!opened.ok) {
              this.ctx.count(`response-${opened.reason}`);
              return false;
            }
            this.lastHeard = this.ctx.clock.now();
            resolve(opened.payloads);
            return true;
          },
          () => {
            reject(
              new IkeError('timeout', `no answer to ${nameOf(ExchangeType, exchange, 'exchange')} #${id}`),
            );
            this.die('peer did not answer');
          },
        );
      };
      if (this.#outstanding === undefined) start();
      else this.#queue.push(start);
    });
  }

  /**
   * An encrypted request sent once, without waiting for or retransmitting
   * it: the courtesy notification before we drop an SA (AUTHENTICATION_FAILED
   * from the initiator, RFC 7296 2.21.2).
   */
  notifyOnce(exchange: number, payloads: readonly Payload[]): void {
    if (this.outCipher === undefined) return;
    const bytes = emitEncryptedIkeMessage(
      {
        spiI: this.spiI,
        spiR: this.spiR,
        exchange,
        flags: this.requestFlags,
        messageId: this.#nextRequestId++,
      },
      payloads,
      this.outCipher,
    );
    this.sendRaw(bytes);
  }

  /** A request from the peer on this SA, routed here by the daemon. */
  handleRequest(msg: IkeMessage, from: Endpoint, natt: boolean): void {
    const id = msg.header.messageId;
    if (this.#lastResponse !== undefined && id === this.#lastResponse.id) {
      this.ctx.count('retransmitted-request');
      this.ctx.transport.send(this.#lastResponse.bytes, from, natt);
      return;
    }
    if (id !== this.#expectedRequestId) {
      this.ctx.count('bad-message-id');
      return;
    }
    if (this.#busy) return;
    if (this.inCipher === undefined) {
      this.ctx.count('no-keys');
      return;
    }
    const opened = openIkeMessage(msg, this.inCipher);
    if (!opened.ok) {
      this.ctx.count(`request-${opened.reason}`);
      return;
    }
    // Authenticated: follow the peer to where it now sends from (RFC 7296 2.23).
    this.remote = from;
    this.natt = natt;
    this.lastHeard = this.ctx.clock.now();
    this.#busy = true;
    void this.#answer(msg.header.exchange, id, opened.payloads, from, natt);
  }

  async #answer(
    exchange: number,
    id: number,
    payloads: Payload[],
    from: Endpoint,
    natt: boolean,
  ): Promise<void> {
    let result: ExchangeResult;
    try {
      result = await this.ctx.respond(this, exchange, payloads);
    } catch (e) {
      this.ctx.log(
        'warn',
        `${this.name}: ${nameOf(ExchangeType, exchange, 'exchange')} failed: ${(e as Error).stack}`,
      );
      result = { payloads: [] };
    }
    this.#busy = false;
    if (this.state === 'dead' && result.payloads.length === 0) return;
    const bytes = emitEncryptedIkeMessage(
      {
        spiI: this.spiI,
        spiR: this.spiR,
        exchange,
        flags: this.requestFlags | HeaderFlag.RESPONSE,
        messageId: id,
      },
      result.payloads,
      this.outCipher!,
    );
    this.#lastResponse = { id, bytes };
    this.#expectedRequestId = id + 1;
    this.ctx.transport.send(bytes, from, natt);
    result.after?.();
  }

  /**
   * Ends the SA here (no message to the peer): timers stop, child SAs leave
   * the SA database (unless they moved to a successor), waiters are told.
   */
  die(reason: string): void {
    if (this.state === 'dead') return;
    const wasEstablished = this.establishedAt !== undefined;
    this.state = 'dead';
    for (const t of this.#timers) t.cancel();
    this.#timers.clear();
    this.#outstanding = undefined;
    for (const start of this.#queue.splice(0)) start();
    for (const c of this.children.splice(0)) this.ctx.removeChild(this, c, 'ike-gone');
    this.ctx.unregister(this);
    if (!this.#settled) {
      this.#settled = true;
      for (const w of this.#waiters.splice(0)) w.reject(new IkeError('failed', reason));
    }
    this.ctx.log(wasEstablished ? 'info' : 'warn', `${this.name}: gone (${reason})`);
    this.ctx.emit({ type: 'ike-down', sa: this, reason });
  }

  /** Fails an SA that is not yet established, with the reason the caller sees. */
  fail(reason: string, message: string): void {
    if (!this.#settled) {
      this.#settled = true;
      for (const w of this.#waiters.splice(0)) w.reject(new IkeError(reason, message));
    }
    this.die(message);
  }
}
