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
 */
import type { Timer } from '../util/clock.ts';
import { ExchangeType, HeaderFlag, nameOf } from './constants.ts';
import type { ExchangeResult, IkeSa } from './ike-sa.ts';
import { IkeError } from './ike-error.ts';
import { emitEncryptedIkeMessage, openIkeMessage, type IkeMessage } from './message.ts';
import type { Endpoint } from './nat.ts';
import type { Payload } from './payloads.ts';

interface Outstanding {
  readonly id: number;
  readonly bytes: Buffer;
  tries: number;
  timer: Timer | undefined;
  /** Returns false for a message that is not the answer after all (it failed to decrypt). */
  readonly onResponse: (msg: IkeMessage) => boolean;
  readonly onTimeout: () => void;
}

export class MessageWindow {
  readonly #sa: IkeSa;
  #nextRequestId = 0;
  #expectedRequestId = 0;
  #lastResponse: { readonly id: number; readonly bytes: Buffer } | undefined;
  #outstanding: Outstanding | undefined;
  readonly #queue: (() => void)[] = [];
  #busy = false;

  constructor(sa: IkeSa) {
    this.#sa = sa;
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

  /** Sends `bytes` as request `id` and retransmits it until onResponse accepts an answer or the tries run out. */
  transmit(id: number, bytes: Buffer, onResponse: (msg: IkeMessage) => boolean, onTimeout: () => void): void {
    this.#outstanding?.timer?.cancel();
    const o: Outstanding = { id, bytes, tries: 0, timer: undefined, onResponse, onTimeout };
    this.#outstanding = o;
    this.#sa.sendRaw(bytes);
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
        sa.sendRaw(o.bytes);
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
    if (!o.onResponse(msg)) return;
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
        const bytes = emitEncryptedIkeMessage(
          { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags, messageId: id },
          payloads,
          sa.outCipher,
        );
        sa.ctx.log('debug', `${sa.name}: request ${nameOf(ExchangeType, exchange, 'exchange')} #${id}`);
        this.transmit(
          id,
          bytes,
          (msg) => {
            if (msg.header.exchange !== exchange) return false;
            const opened = openIkeMessage(msg, sa.inCipher!);
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
    const bytes = emitEncryptedIkeMessage(
      { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags, messageId: this.#nextRequestId++ },
      payloads,
      sa.outCipher,
    );
    sa.sendRaw(bytes);
  }

  /** A request from the peer. */
  handleRequest(msg: IkeMessage, from: Endpoint, natt: boolean): void {
    const sa = this.#sa;
    const id = msg.header.messageId;
    if (this.#lastResponse !== undefined && id === this.#lastResponse.id) {
      sa.ctx.count('retransmitted-request');
      sa.ctx.transport.send(this.#lastResponse.bytes, from, natt);
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
    const opened = openIkeMessage(msg, sa.inCipher);
    if (!opened.ok) {
      sa.ctx.count(`request-${opened.reason}`);
      return;
    }
    // Authenticated: follow the peer to where it now sends from (RFC 7296 2.23).
    sa.remote = from;
    sa.natt = natt;
    sa.lastHeard = sa.ctx.clock.now();
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
    const bytes = emitEncryptedIkeMessage(
      { spiI: sa.spiI, spiR: sa.spiR, exchange, flags: sa.requestFlags | HeaderFlag.RESPONSE, messageId: id },
      result.payloads,
      sa.outCipher!,
    );
    this.#lastResponse = { id, bytes };
    this.#expectedRequestId = id + 1;
    sa.ctx.transport.send(bytes, from, natt);
    result.after?.();
  }

  /** Forgets the outstanding request and fails the queued ones (the SA is going). */
  clear(): void {
    this.#outstanding = undefined;
    for (const start of this.#queue.splice(0)) start();
  }
}
