/**
 * The IKE daemon: one transport, many IKE SAs. It routes datagrams by SPI,
 * answers IKE_SA_INIT (with cookies under load), runs the timers that rekey
 * and check liveness, and is the API the host agent and `distnat peer` use.
 *
 *   const ike = new IkeDaemon({ transport, identity, trust, spis, sad });
 *   const sa = await ike.initiate({ address: '203.0.113.3', port: 500 });
 *   await ike.rekeyChild(sa, sa.children[0]);
 *
 * Routing (RFC 7296 2.2): the I flag says who sent a message relative to
 * the SA's original initiator; a message from the initiator is filed under
 * the responder's SPI (ours) and vice versa. IKE_SA_INIT requests carry no
 * responder SPI and go to the half-open logic instead.
 */
import { randomBytes } from 'node:crypto';
import { SystemClock, type Clock } from '../util/clock.ts';
import type { ChildSa } from './child-sa.ts';
import {
  resolveConfig,
  resolveIdentity,
  type ChildRequest,
  type IkeDaemonOptions,
  type LocalIdentity,
  type LogLevel,
  type ResolvedConfig,
} from './config.ts';
import { ExchangeType, IKE_MAJOR_VERSION, NotifyType, PayloadType, ProtocolId, nameOf } from './constants.ts';
import type { IkeContext } from './context.ts';
import { CookieJar } from './cookie.ts';
import { respondAuth } from './exchange-auth.ts';
import { FragmentBudget } from './fragment-reassembly.ts';
import { TokenBucket } from './rate-limit.ts';
import { createChildSa, rekeyChildSa, rekeyIkeSa, respondCreateChild } from './exchange-create.ts';
import { checkLiveness, deleteChildSa, deleteIkeSa, respondInformational } from './exchange-info.ts';
import { answerInit, startInitiator } from './exchange-init.ts';
import { fromInitiator, isResponse, spiHex } from './header.ts';
import type { ExchangeResult } from './exchange-result.ts';
import { IkeError, IkeSa, type IkeEvent } from './ike-sa.ts';
import { parseIkeMessage } from './message.ts';
import type { Endpoint } from './nat.ts';
import { notify, unsupportedCritical, type Payload } from './payloads.ts';
import type { IkeTransport } from './transport.ts';

export type IkeEventListener = (event: IkeEvent) => void;

export class IkeDaemon {
  #config: ResolvedConfig;
  readonly transport: IkeTransport;
  readonly clock: Clock;
  /** Drops and notable happenings by name ("init-cookie-sent", "malformed", "retransmit", ...). */
  readonly counters = new Map<string, number>();
  readonly #sas = new Map<bigint, IkeSa>();
  /** Half-open responder SAs by "address:port/SPIi", to spot retransmitted IKE_SA_INIT requests. */
  readonly #halfOpen = new Map<string, IkeSa>();
  readonly #listeners = new Set<IkeEventListener>();
  readonly #cookies: CookieJar;
  readonly #fragmentBudget: FragmentBudget;
  /** Paces the rekeys and liveness checks the daemon starts on its own. */
  readonly #maintenance: TokenBucket;
  readonly #ctx: IkeContext<IkeSa>;
  readonly #log: ((level: LogLevel, message: string) => void) | undefined;
  #childIds = 0;
  #closed = false;

  constructor(options: IkeDaemonOptions) {
    this.#config = resolveConfig(options);
    this.transport = options.transport;
    this.clock = options.clock ?? new SystemClock();
    this.#log = options.log;
    this.#cookies = new CookieJar(this.clock, { rotateMs: this.config.cookieRotateMs });
    this.#fragmentBudget = new FragmentBudget(this.config.fragmentLimits.memoryBytes);
    const fragmentBudget = this.#fragmentBudget;
    const rate = this.config.maintenanceRate;
    this.#maintenance = new TokenBucket(this.clock, rate.perSecond, rate.burst);
    const currentConfig = (): ResolvedConfig => this.#config;
    this.#ctx = {
      transport: this.transport,
      clock: this.clock,
      // A getter: exchanges started after setIdentity() sign with the new certificate.
      get config() {
        return currentConfig();
      },
      fragmentBudget,
      respond: (sa, exchange, payloads) => this.#respond(sa, exchange, payloads),
      register: (sa) => this.#register(sa),
      unregister: (sa) => this.#unregister(sa),
      removeChild: (sa, child, reason) => this.#removeChild(sa, child, reason),
      emit: (e) => this.#emit(e),
      log: (level, message) => this.#log?.(level, message),
      count: (what) => this.#count(what),
      newSpi: () => this.#newSpi(),
      nextChildId: () => ++this.#childIds,
      initialContact: (sa) => this.#initialContact(sa),
      firstContact: (sa) => !this.hasOtherSa(sa),
    };
    this.transport.onMessage((data, remote, natt) => this.#receive(data, remote, natt));
    this.#config.sad?.watchLifetimes?.((n, kind) => this.#childLifetime(n.id, kind));
  }

  get config(): ResolvedConfig {
    return this.#config;
  }

  /**
   * A new certificate (and key) for exchanges from now on: a distnat host's
   * certificate lives only as long as its lease and is issued again at each
   * renewal. SAs already up keep what they authenticated with.
   */
  setIdentity(identity: LocalIdentity): void {
    this.#config = { ...this.#config, identity: resolveIdentity(identity) };
  }

  /** Every live IKE SA (half-open ones included). */
  get sas(): IkeSa[] {
    return [...this.#sas.values()];
  }

  get halfOpenCount(): number {
    return this.#halfOpen.size;
  }

  /** Bytes of IKE fragments held for reassembly, across all SAs. */
  get fragmentBytesHeld(): number {
    return this.#fragmentBudget.held;
  }

  on(listener: IkeEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Starts an IKE SA with the peer; resolves once IKE_AUTH is through, with
   * the first child SA (if asked for and granted) in sa.children. Rejects with
   * IkeError (reason 'timeout', 'auth-failed', 'no-proposal', ...).
   */
  initiate(remote: Endpoint, child: ChildRequest | null = {}): Promise<IkeSa> {
    if (this.#closed) return Promise.reject(new IkeError('closed', 'the IKE daemon is closed'));
    const sa = new IkeSa(this.#ctx, 'initiator', this.#newSpi(), 0n, remote, 'init-sent');
    sa.firstChild = child;
    this.#register(sa);
    startInitiator(sa);
    return sa.whenEstablished();
  }

  createChild(sa: IkeSa, request: ChildRequest = {}): Promise<ChildSa> {
    return createChildSa(sa, request);
  }

  rekeyChild(sa: IkeSa, child: ChildSa): Promise<ChildSa> {
    return rekeyChildSa(sa, child);
  }

  rekeyIke(sa: IkeSa): Promise<IkeSa> {
    return rekeyIkeSa(sa);
  }

  deleteChild(sa: IkeSa, child: ChildSa): Promise<void> {
    return deleteChildSa(sa, child);
  }

  deleteIke(sa: IkeSa): Promise<void> {
    return deleteIkeSa(sa);
  }

  /** Liveness check (DPD): true when the peer answered. */
  checkLiveness(sa: IkeSa): Promise<boolean> {
    return checkLiveness(sa);
  }

  /**
   * Ends every SA and closes the transport. Established SAs get one Delete
   * each, not retransmitted: a peer that misses it finds out by its own
   * liveness check, and a shutdown does not hang on peers that are gone.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const sa of this.sas) {
      if (sa.state === 'established' || sa.state === 'rekeyed')
        sa.notifyOnce(ExchangeType.INFORMATIONAL, [
          { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] },
        ]);
      sa.die('closing');
    }
    // Let the deletes leave before the socket goes.
    await new Promise((r) => setImmediate(r));
    this.transport.close();
  }

  /** True when another live IKE SA with this peer address exists: INITIAL_CONTACT is only for the first. */
  hasOtherSa(sa: IkeSa): boolean {
    return this.sas.some((o) => o !== sa && o.state !== 'dead' && o.remote.address === sa.remote.address);
  }

  #count(what: string): void {
    this.counters.set(what, (this.counters.get(what) ?? 0) + 1);
  }

  #newSpi(): bigint {
    for (;;) {
      const spi = randomBytes(8).readBigUInt64BE(0);
      if (spi !== 0n && !this.#sas.has(spi)) return spi;
    }
  }

  #register(sa: IkeSa): void {
    this.#sas.set(sa.ourSpi, sa);
    if (sa.state === 'half-open') this.#halfOpen.set(halfOpenKey(sa.remote, sa.spiI), sa);
  }

  #unregister(sa: IkeSa): void {
    if (this.#sas.get(sa.ourSpi) === sa) this.#sas.delete(sa.ourSpi);
    for (const [k, v] of this.#halfOpen) if (v === sa) this.#halfOpen.delete(k);
  }

  #emit(e: IkeEvent): void {
    if (e.type === 'ike-up' || e.type === 'ike-rekeyed') {
      for (const [k, v] of this.#halfOpen) if (v === e.sa) this.#halfOpen.delete(k);
      this.#scheduleIke(e.sa);
    }
    // The children moved over; their timers died with the old SA.
    if (e.type === 'ike-rekeyed')
      for (const c of e.sa.children)
        if (c.rekeyDue !== undefined)
          c.rekeyTimer = e.sa.schedule(
            () => this.#rekeyChildPaced(c),
            Math.max(1, c.rekeyDue - this.clock.now()),
          );
    if (e.type === 'child-up') this.#scheduleChild(e.sa, e.child);
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#log?.('warn', `IKE event listener threw: ${(err as Error).message}`);
      }
    }
  }

  #removeChild(sa: IkeSa, child: ChildSa, reason: 'deleted' | 'rekeyed' | 'ike-gone'): void {
    const i = sa.children.indexOf(child);
    if (i >= 0) sa.children.splice(i, 1);
    child.rekeyTimer?.cancel();
    try {
      this.config.sad?.remove(child.negotiated, reason);
    } catch (e) {
      this.#log?.('warn', `SA database failed to remove ${child.name}: ${(e as Error).message}`);
    }
    this.config.spis.releaseSpi(child.inboundSpi);
    this.#emit({ type: 'child-down', sa, child, reason });
  }

  #initialContact(sa: IkeSa): void {
    const id = sa.peer?.id;
    if (id === undefined) return;
    for (const other of this.sas)
      if (
        other !== sa &&
        other.remote.address === sa.remote.address &&
        other.peer?.id.idType === id.idType &&
        other.peer.id.data.equals(id.data)
      )
        other.die('replaced after INITIAL_CONTACT');
  }

  /**
   * The data plane says a child SA carried its limit. Soft: rekey it, from
   * whichever end (both may; RFC 7296 2.8.1 sorts out a collision). Hard:
   * its SAs carry nothing more, so it is deleted, unless a rekey that will
   * replace it is under way.
   */
  #childLifetime(id: number, kind: 'soft' | 'hard'): void {
    const owner = this.sas.find((s) => s.children.some((c) => c.id === id));
    const child = owner?.children.find((c) => c.id === id);
    if (owner === undefined || child === undefined || owner.state !== 'established') return;
    if (kind === 'soft') {
      if (child.state !== 'installed') return;
      this.#count('child-rekey-by-volume');
      this.#log?.('info', `${child.name}: soft data limit reached, rekeying`);
      this.#rekeyChildPaced(child);
      return;
    }
    this.#count('child-expired-by-volume');
    if (child.state !== 'installed') return;
    this.#log?.('warn', `${child.name}: hard data limit reached, deleting`);
    deleteChildSa(owner, child).catch(() => undefined);
  }

  /**
   * Runs `work` now if the maintenance bucket has a token, else later when
   * it will (counted as deferred). `work` checks again that it still applies.
   */
  #paced(kind: 'rekey' | 'liveness', sa: IkeSa, work: () => void): void {
    if (sa.gone) return;
    if (this.#maintenance.take()) {
      this.#count(kind === 'rekey' ? 'rekeys-started' : 'liveness-checks-started');
      work();
      return;
    }
    this.#count(kind === 'rekey' ? 'rekey-deferred' : 'liveness-deferred');
    sa.schedule(() => this.#paced(kind, sa, work), Math.max(1, this.#maintenance.waitMs()));
  }

  /** The SA holding `child` now (children move to the successor of a rekeyed IKE SA). */
  #ownerOf(child: ChildSa): IkeSa | undefined {
    return this.sas.find((s) => s.children.includes(child));
  }

  #rekeyChildPaced(child: ChildSa): void {
    const owner = this.#ownerOf(child);
    if (owner === undefined) return;
    this.#paced('rekey', owner, () => {
      const now = this.#ownerOf(child);
      if (now?.state === 'established' && child.state === 'installed')
        rekeyChildSa(now, child).catch((e: Error) =>
          this.#log?.('warn', `${child.name}: rekey failed: ${e.message}`),
        );
      else if (now !== undefined && now !== owner) this.#rekeyChildPaced(child);
    });
  }

  #scheduleIke(sa: IkeSa): void {
    const { dpdIntervalMs, ikeRekeyMs } = this.config;
    if (dpdIntervalMs > 0) {
      const tick = (): void => {
        if (sa.state !== 'established') return;
        const idle = this.clock.now() - sa.lastHeard;
        if (idle >= dpdIntervalMs && !sa.busy)
          this.#paced('liveness', sa, () => {
            if (sa.state === 'established' && !sa.busy) void checkLiveness(sa);
          });
        sa.schedule(tick, Math.max(1, dpdIntervalMs - Math.min(idle, dpdIntervalMs - 1)));
      };
      sa.schedule(tick, dpdIntervalMs);
    }
    if (ikeRekeyMs > 0 && sa.role === 'initiator')
      sa.schedule(
        () =>
          this.#paced('rekey', sa, () => {
            if (sa.state === 'established')
              rekeyIkeSa(sa).catch((e: Error) =>
                this.#log?.('warn', `${sa.name}: IKE rekey failed: ${e.message}`),
              );
          }),
        ikeRekeyMs,
      );
  }

  #scheduleChild(sa: IkeSa, child: ChildSa): void {
    const { childRekeyMs } = this.config;
    if (childRekeyMs <= 0 || !child.initiatedByUs) return;
    child.rekeyDue = this.clock.now() + childRekeyMs;
    child.rekeyTimer = sa.schedule(() => this.#rekeyChildPaced(child), childRekeyMs);
  }

  #respond(sa: IkeSa, exchange: number, payloads: Payload[]): Promise<ExchangeResult> {
    const critical = unsupportedCritical(payloads);
    if (critical !== undefined) {
      const data = Buffer.from([critical]);
      return Promise.resolve({ payloads: [notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, data)] });
    }
    switch (exchange) {
      case ExchangeType.IKE_AUTH:
        return respondAuth(sa, payloads);
      case ExchangeType.CREATE_CHILD_SA:
        return respondCreateChild(sa, payloads);
      case ExchangeType.INFORMATIONAL:
        return Promise.resolve(respondInformational(sa, payloads));
      default:
        this.#count('unknown-exchange');
        return Promise.resolve({ payloads: [notify(NotifyType.INVALID_SYNTAX)] });
    }
  }

  #receive(data: Buffer, remote: Endpoint, natt: boolean): void {
    const parsed = parseIkeMessage(data);
    if (!parsed.ok) {
      this.#count(`malformed-${parsed.reason}`);
      return;
    }
    const msg = parsed.value;
    const h = msg.header;
    if (h.majorVersion !== IKE_MAJOR_VERSION) {
      this.#count('bad-version');
      return;
    }
    if (h.exchange === ExchangeType.IKE_SA_INIT && !isResponse(h)) {
      // Closing: no new SAs, but the deletes in flight still need their answers.
      if (this.#closed) return;
      if (!fromInitiator(h)) {
        this.#count('init-without-i-flag');
        return;
      }
      answerInit(
        {
          ctx: this.#ctx,
          cookies: this.#cookies,
          halfOpenCount: () => this.#halfOpen.size,
          findHalfOpen: (r, spiI) => this.#halfOpen.get(halfOpenKey(r, spiI)),
        },
        msg,
        remote,
        natt,
      );
      return;
    }
    const ours = fromInitiator(h) ? h.spiR : h.spiI;
    const sa = this.#sas.get(ours);
    if (sa === undefined) {
      this.#count('unknown-spi');
      this.#log?.(
        'debug',
        `no IKE SA ${spiHex(ours)} for ${nameOf(ExchangeType, h.exchange, 'exchange')} from ${remote.address}:${remote.port}`,
      );
      return;
    }
    // The peer's SPI must match too, except in the IKE_SA_INIT response that brings it.
    const theirs = fromInitiator(h) ? h.spiI : h.spiR;
    const known = fromInitiator(h) ? sa.spiI : sa.spiR;
    if (known !== 0n && theirs !== known) {
      this.#count('spi-mismatch');
      return;
    }
    // The I flag must say the sender is the other role.
    if (fromInitiator(h) === (sa.role === 'initiator')) {
      this.#count('wrong-i-flag');
      return;
    }
    if (isResponse(h)) sa.handleResponse(msg);
    else sa.handleRequest(msg, remote, natt);
  }
}

const halfOpenKey = (r: Endpoint, spiI: bigint): string => `${r.address}:${r.port}/${spiHex(spiI)}`;
