/**
 * One IKE SA: its SPIs, keys, peer and children, its timers, and how it
 * ends. Messages go through its MessageWindow (message-window.ts, RFC 7296
 * 2.1-2.3); the exchanges live in exchange-*.ts; the daemon routes
 * datagrams here by SPI.
 */
import type { X509Certificate } from 'node:crypto';
import type { Timer } from '../util/clock.ts';
import type { IkeContext, IkeEventOf } from './context.ts';
import { HeaderFlag } from './constants.ts';
import { IkeError } from './ike-error.ts';
import { MessageWindow, type WindowedSa } from './message-window.ts';
import type { PortBinding } from '../pki/index.ts';
import { spiHex } from './header.ts';
import type { IkeKeys, IkeSuite } from './keys.ts';
import { emitProtected, maxMessageFor } from './fragments.ts';
import type { HeaderFields, IkeMessage } from './message.ts';
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

export { IkeError };

/** The daemon's events, about its IKE SAs. */
export type IkeEvent = IkeEventOf<IkeSa>;

export class IkeSa implements WindowedSa {
  readonly ctx: IkeContext<IkeSa>;
  /** Who started this IKE SA (after a rekey: who started the rekey). Sets the I flag. */
  readonly role: 'initiator' | 'responder';
  spiI: bigint;
  spiR: bigint;
  state: IkeSaState;
  remote: Endpoint;
  /** Messages go over the NAT-T path (non-ESP marker). */
  natt = false;
  /** Both sides announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383): big messages go in SKF fragments. */
  fragmentation = false;
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
        /** How its AUTH was signed ("RSA-PSS-SHA256", "ECDSA-SHA256", ...). */
        readonly scheme: string;
      }
    | undefined;
  /**
   * The certificate we authenticated this SA with: a distnat host's
   * certificate is revoked when its blocks are withdrawn, and the SAs it
   * vouched for must go with it (docs/ike.md "Revocation").
   */
  ownCertificate: X509Certificate | undefined;
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

  readonly #window = new MessageWindow(this);
  readonly #timers = new Set<Timer>();
  #settled = false;
  readonly #waiters: { resolve: (sa: IkeSa) => void; reject: (e: IkeError) => void }[] = [];

  constructor(
    ctx: IkeContext<IkeSa>,
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

  /** Sends datagrams (a message, or its fragments) to the peer on the current path. */
  sendRaw(datagrams: readonly Buffer[]): void {
    for (const d of datagrams) this.ctx.transport.send(d, this.remote, this.natt);
  }

  /**
   * An encrypted message as the datagrams to send: one, or its SKF
   * fragments when fragmentation was negotiated and it would not fit the
   * configured datagram size on the current path.
   */
  seal(header: HeaderFields, payloads: readonly Payload[]): Buffer[] {
    const max = this.fragmentation ? maxMessageFor(this.ctx.config.fragmentSize, this.natt) : undefined;
    const datagrams = emitProtected(header, payloads, this.outCipher!, max);
    if (datagrams.length > 1) {
      this.ctx.count('fragmented-messages-sent');
      for (let i = 0; i < datagrams.length; i++) this.ctx.count('fragments-sent');
    }
    return datagrams;
  }

  get requestFlags(): number {
    return this.role === 'initiator' ? HeaderFlag.INITIATOR : 0;
  }

  /** A request of ours is waiting for its answer. */
  get busy(): boolean {
    return this.#window.busy;
  }

  /** Sends `datagrams` as request `id` and retransmits them until onResponse accepts an answer or the tries run out. */
  transmit(
    id: number,
    datagrams: readonly Buffer[],
    onResponse: (msg: IkeMessage) => boolean,
    onTimeout: () => void,
  ): void {
    this.#window.transmit(id, datagrams, onResponse, onTimeout);
  }

  /** The answer to our outstanding request, routed here by the daemon. */
  handleResponse(msg: IkeMessage): void {
    this.#window.handleResponse(msg);
  }

  /** Sets the first message IDs (ours 1 after IKE_SA_INIT, both 0 on a rekeyed SA). */
  setMessageIds(nextRequest: number, expectedRequest: number): void {
    this.#window.setMessageIds(nextRequest, expectedRequest);
  }

  /**
   * An encrypted request; resolves with the response's payloads. Rejects
   * with IkeError('timeout') when the peer never answers (the SA is then dead)
   * or IkeError('dead') when the SA goes first.
   */
  request(exchange: number, payloads: readonly Payload[]): Promise<Payload[]> {
    return this.#window.request(exchange, payloads);
  }

  /**
   * An encrypted request sent once, without waiting for or retransmitting
   * it: the courtesy notification before we drop an SA (AUTHENTICATION_FAILED
   * from the initiator, RFC 7296 2.21.2), or the Delete on shutdown.
   */
  notifyOnce(exchange: number, payloads: readonly Payload[]): void {
    this.#window.notifyOnce(exchange, payloads);
  }

  /** A request from the peer on this SA, routed here by the daemon. */
  handleRequest(msg: IkeMessage, from: Endpoint, natt: boolean): void {
    this.#window.handleRequest(msg, from, natt);
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
    this.#window.clear();
    for (const c of this.children.splice(0)) this.ctx.removeChild(this, c, 'ike-gone');
    this.ctx.unregister(this);
    if (!this.#settled) {
      this.#settled = true;
      for (const w of this.#waiters.splice(0)) w.reject(new IkeError('failed', reason));
    }
    // An SA that was up going away is the ike-down event's to report; one that never came up is a failure.
    this.ctx.log(wasEstablished ? 'debug' : 'warn', `${this.name}: gone (${reason})`);
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
