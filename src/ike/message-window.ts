/**
 * The request/response discipline of RFC 7296 2.1-2.3 for one IKE SA.
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
 * - Fragments (RFC 7383): a message may arrive as SKF fragments, each
 *   authenticated on its own and kept by a Reassembly (one for the peer's
 *   requests, one for its responses) until the message is whole. A
 *   retransmitted request in fragments gets the cached response again on
 *   its first fragment only (2.6.1), so that n fragments do not cost n
 *   responses.
 */
import type { Timer } from '../util/clock.ts';
import { ExchangeType, HeaderFlag, nameOf } from './constants.ts';
import type { IkeContext } from './context.ts';
import type { ExchangeResult } from './exchange-result.ts';
import { IkeError } from './ike-error.ts';
import { PayloadType } from './constants.ts';
import { Reassembly } from './fragment-reassembly.ts';
import { fragmentHeader, openFragment } from './fragments.ts';
import { openIkeMessage, type HeaderFields, type IkeMessage } from './message.ts';
import type { Endpoint } from './nat.ts';
import { parsePayloadChain, type Payload } from './payloads.ts';
import type { SkCipher } from './sk-cipher.ts';

/**
 * What the window needs of the IKE SA it serves (IkeSa implements it).
 * Declared here, so that the window depends only on what lies below the
 * SA; `this` is the SA itself, which the context's respond is handed back.
 */
export interface WindowedSa {
  readonly ctx: IkeContext<this>;
  readonly name: string;
  readonly state: string;
  readonly spiI: bigint;
  readonly spiR: bigint;
  /** The I flag of our messages (who started this IKE SA). */
  readonly requestFlags: number;
  /** Both ends said IKEV2_FRAGMENTATION_SUPPORTED. */
  readonly fragmentation: boolean;
  readonly outCipher: SkCipher | undefined;
  readonly inCipher: SkCipher | undefined;
  remote: Endpoint;
  natt: boolean;
  lastHeard: number;
  schedule(callback: () => void, delayMs: number): Timer;
  sendRaw(datagrams: readonly Buffer[]): void;
  /** One encrypted message, as one datagram or as fragments. */
  seal(header: HeaderFields, payloads: readonly Payload[]): Buffer[];
  die(reason: string): void;
}

/**
 * Returns false for a message that is not the answer after all (it failed
 * to decrypt). `reassembled` holds the inner payloads when the answer came
 * in fragments (already opened).
 */
type ResponseHandler = (msg: IkeMessage, reassembled?: Payload[]) => boolean;

interface Outstanding {
  readonly id: number;
  readonly datagrams: readonly Buffer[];
  tries: number;
  timer: Timer | undefined;
  readonly onResponse: ResponseHandler;
  readonly onTimeout: () => void;
}

export class MessageWindow {
  readonly #sa: WindowedSa;
  #nextRequestId = 0;
  #expectedRequestId = 0;
  #lastResponse: { readonly id: number; readonly datagrams: readonly Buffer[] } | undefined;
  #outstanding: Outstanding | undefined;
  readonly #queue: (() => void)[] = [];
  #busy = false;
  // Made on the first fragment: most SAs never see one.
  #requestFragments: Reassembly | undefined;
  #responseFragments: Reassembly | undefined;

  constructor(sa: WindowedSa) {
    this.#sa = sa;
  }

  #reassembly(): Reassembly {
    const sa = this.#sa;
    return new Reassembly(
      sa.ctx.fragmentBudget,
      sa.ctx.config.fragmentLimits,
      (cb, ms) => sa.schedule(cb, ms),
      (what) => sa.ctx.count(what),
    );
  }

  /** A request of ours is waiting for its answer. */
  get busy(): boolean {
    return this.#outstanding !== undefined;
  }

  /** Sets the first message IDs (ours 1 after IKE_SA_INIT, both 0 on a rekeyed SA). */
  setMessageIds(nextRequest: number, expectedRequest: number): void {
    this.#nextRequestId = nextRequest;
    this.#expectedRequestId = expectedRequest;
  }

  /** Sends `datagrams` as request `id` and retransmits them until onResponse accepts an answer or the tries run out. */
  transmit(
    id: number,
    datagrams: readonly Buffer[],
    onResponse: ResponseHandler,
    onTimeout: () => void,
  ): void {
    this.#outstanding?.timer?.cancel();
    this.#responseFragments?.clear();
    const o: Outstanding = { id, datagrams, tries: 0, timer: undefined, onResponse, onTimeout };
    this.#outstanding = o;
    this.#sa.sendRaw(datagrams);
    this.#arm(o);
  }

  #arm(o: Outstanding): void {
    const sa = this.#sa;
    const r = sa.ctx.config.retransmit;
    o.timer = sa.schedule(
      () => {
        if (this.#outstanding !== o) return;
        if (o.tries >= r.tries) {
          this.#outstanding = undefined;
          o.onTimeout();
          return;
        }
        o.tries++;
        sa.ctx.count('retransmit');
        sa.sendRaw(o.datagrams);
        this.#arm(o);
      },
      r.timeoutMs * r.base ** o.tries,
    );
  }

  /** The answer to our outstanding request. */
  handleResponse(msg: IkeMessage): void {
    const o = this.#outstanding;
    if (o === undefined || msg.header.messageId !== o.id) {
      this.#sa.ctx.count('unexpected-response');
      return;
    }
    let reassembled: Payload[] | undefined;
    if (msg.encrypted?.type === PayloadType.SKF) {
      reassembled = this.#reassemble(msg, (this.#responseFragments ??= this.#reassembly()));
      if (reassembled === undefined) return;
    }
    if (!o.onResponse(msg, reassembled)) return;
    o.timer?.cancel();
    if (this.#outstanding === o) this.#outstanding = undefined;
    this.#next();
  }

  #next(): void {
    if (this.#outstanding !== undefined) return;
    this.#queue.shift()?.();
  }

  /** An encrypted request; resolves with the response's payloads (see IkeSa.request). */
  request(exchange: number, payloads: readonly Payload[]): Promise<Payload[]> {
    const sa = this.#sa;
    return new Promise((resolve, reject) => {
      const start = (): void => {
        if (sa.state === 'dead' || sa.outCipher === undefined) {
          reject(new IkeError('dead', `IKE SA ${sa.name} is gone`));
          this.#next();
          return;
        }
        const id = this.#nextRequestId++;
        const datagrams = sa.seal(
          { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags, messageId: id },
          payloads,
        );
        sa.ctx.log('debug', `${sa.name}: request ${nameOf(ExchangeType, exchange, 'exchange')} #${id}`);
        this.transmit(
          id,
          datagrams,
          (msg, reassembled) => {
            if (msg.header.exchange !== exchange) return false;
            const opened =
              reassembled !== undefined
                ? { ok: true as const, payloads: reassembled }
                : openIkeMessage(msg, sa.inCipher!);
            if (!opened.ok) {
              sa.ctx.count(`response-${opened.reason}`);
              return false;
            }
            sa.lastHeard = sa.ctx.clock.now();
            resolve(opened.payloads);
            return true;
          },
          () => {
            reject(
              new IkeError('timeout', `no answer to ${nameOf(ExchangeType, exchange, 'exchange')} #${id}`),
            );
            sa.die('peer did not answer');
          },
        );
      };
      if (this.#outstanding === undefined) start();
      else this.#queue.push(start);
    });
  }

  /** An encrypted request sent once, not retransmitted and not waited for. */
  notifyOnce(exchange: number, payloads: readonly Payload[]): void {
    const sa = this.#sa;
    if (sa.outCipher === undefined) return;
    sa.sendRaw(
      sa.seal(
        { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags, messageId: this.#nextRequestId++ },
        payloads,
      ),
    );
  }

  /**
   * Authenticates one fragment and adds it to `into`; returns the inner
   * payloads once the message is whole, undefined while it is not or when
   * the fragment was dropped (counted by reason).
   */
  #reassemble(msg: IkeMessage, into: Reassembly): Payload[] | undefined {
    const sa = this.#sa;
    const count = (what: string): undefined => {
      sa.ctx.count(what);
      return undefined;
    };
    if (!sa.fragmentation) return count('fragment-not-negotiated');
    if (sa.inCipher === undefined) return count('no-keys');
    const h = fragmentHeader(msg);
    if (!h.ok) return count(`fragment-${h.reason}`);
    const opened = openFragment(msg, h.value, sa.inCipher);
    if (!opened.ok) return count(`fragment-${opened.reason}`);
    sa.ctx.count('fragments-received');
    const verdict = into.add(msg.header.messageId, h.value, opened.content);
    if (verdict.kind === 'dropped') return count(verdict.reason);
    if (verdict.kind === 'more') return undefined;
    const chain = parsePayloadChain(verdict.chain, 0, verdict.firstInner);
    if (!chain.ok) return count(`fragmented-message-${chain.reason}`);
    // Neither SK nor SKF belongs inside the reassembled message.
    if (chain.value.encrypted !== undefined) return count('fragmented-message-bad-value');
    sa.ctx.count('fragmented-messages-received');
    return chain.value.payloads;
  }

  /** A request from the peer. */
  handleRequest(msg: IkeMessage, from: Endpoint, natt: boolean): void {
    const sa = this.#sa;
    const id = msg.header.messageId;
    const fragment = msg.encrypted?.type === PayloadType.SKF;
    if (this.#lastResponse !== undefined && id === this.#lastResponse.id) {
      if (fragment && !isFirstFragment(msg)) {
        sa.ctx.count('retransmitted-fragment');
        return;
      }
      sa.ctx.count('retransmitted-request');
      for (const d of this.#lastResponse.datagrams) sa.ctx.transport.send(d, from, natt);
      return;
    }
    if (id !== this.#expectedRequestId) {
      sa.ctx.count('bad-message-id');
      return;
    }
    if (this.#busy) return;
    if (sa.inCipher === undefined) {
      sa.ctx.count('no-keys');
      return;
    }
    let payloads: Payload[];
    if (fragment) {
      const whole = this.#reassemble(msg, (this.#requestFragments ??= this.#reassembly()));
      if (whole === undefined) return;
      payloads = whole;
    } else {
      const opened = openIkeMessage(msg, sa.inCipher);
      if (!opened.ok) {
        sa.ctx.count(`request-${opened.reason}`);
        return;
      }
      payloads = opened.payloads;
    }
    // Authenticated: follow the peer to where it now sends from (RFC 7296 2.23).
    sa.remote = from;
    sa.natt = natt;
    sa.lastHeard = sa.ctx.clock.now();
    this.#busy = true;
    void this.#answer(msg.header.exchange, id, payloads, from, natt);
  }

  async #answer(
    exchange: number,
    id: number,
    payloads: Payload[],
    from: Endpoint,
    natt: boolean,
  ): Promise<void> {
    const sa = this.#sa;
    let result: ExchangeResult;
    try {
      result = await sa.ctx.respond(sa, exchange, payloads);
    } catch (e) {
      sa.ctx.log(
        'warn',
        `${sa.name}: ${nameOf(ExchangeType, exchange, 'exchange')} failed: ${(e as Error).stack}`,
      );
      result = { payloads: [] };
    }
    this.#busy = false;
    if (sa.state === 'dead' && result.payloads.length === 0) return;
    const datagrams = sa.seal(
      { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags | HeaderFlag.RESPONSE, messageId: id },
      result.payloads,
    );
    this.#lastResponse = { id, datagrams };
    this.#expectedRequestId = id + 1;
    for (const d of datagrams) sa.ctx.transport.send(d, from, natt);
    result.after?.();
  }

  /** Forgets the outstanding request and fails the queued ones (the SA is going). */
  clear(): void {
    this.#outstanding = undefined;
    this.#requestFragments?.clear();
    this.#responseFragments?.clear();
    for (const start of this.#queue.splice(0)) start();
  }
}

function isFirstFragment(msg: IkeMessage): boolean {
  const h = fragmentHeader(msg);
  return h.ok && h.value.number === 1;
}
