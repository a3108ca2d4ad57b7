/**
 * A host with several routers sharing one lease table (docs/multi-router.md,
 * "Hosts with several routers"): it sends PAP and its tunnel through one of
 * them, and moves to the next when that one leaves a message unanswered for
 * `silentMs`. A router answers every PAP message it can read, whatever it
 * says, so silence is the only sign of its death that costs nothing to
 * watch; an idle host has no message out for minutes (renewals come at half
 * the lease), so after `probeMs` of quiet it renews a block as a probe.
 *
 * Defaults 1 s and 3 s: a dead router is left 3-4 s after the last answer.
 * Shorter would leave a router that is only slow: it answers a renewal once
 * etcd has taken it, and the etcd calls wait up to 2 s (etcd.callTimeoutSeconds).
 */
import type { HostLeases } from '../../pap/host-leases.ts';
import type { PapClient } from '../../pap/pap-client.ts';
import type { PapPeer } from '../../pap/transport.ts';
import type { Clock, Timer } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';

export interface RouterFailoverOptions {
  readonly client: PapClient;
  readonly leases: HostLeases;
  readonly clock: Clock;
  readonly log: Logger;
  /** Every router's PAP address, the one the client starts with first. */
  readonly routers: readonly PapPeer[];
  readonly probeMs: number;
  readonly silentMs: number;
  /** The tunnel follows: its outer destination becomes `to`. */
  readonly onSwitch: (to: PapPeer, from: PapPeer) => void;
}

export interface RouterSwitch {
  readonly from: string;
  readonly to: string;
  /** By the agent's clock. */
  readonly at: number;
  /** How long the router had been silent. */
  readonly silentMs: number;
}

export class RouterFailover {
  /** `router.switches` in status and metrics. */
  switches = 0;
  probes = 0;
  last: RouterSwitch | undefined;
  readonly #o: RouterFailoverOptions;
  #at = 0;
  #timer: Timer | undefined;
  #stopped = false;

  constructor(o: RouterFailoverOptions) {
    this.#o = o;
  }

  get current(): PapPeer {
    return this.#o.client.router;
  }

  start(): void {
    // A quarter of the shorter period: a switch comes at most that late.
    const every = Math.max(50, Math.min(this.#o.probeMs, this.#o.silentMs) / 4);
    const tick = (): void => {
      if (this.#stopped) return;
      this.tick();
      this.#timer = this.#o.clock.setTimeout(tick, every);
    };
    this.#timer = this.#o.clock.setTimeout(tick, every);
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  /** One look at the router: move on when it has been silent too long, probe when it has been quiet. */
  tick(): void {
    const { client, clock, routers } = this.#o;
    const now = clock.now();
    const silent = client.silentFor(now);
    if (silent >= this.#o.silentMs && routers.length > 1) {
      this.#switch(now, silent);
      return;
    }
    if (client.pending > 0 || now - client.lastAnswerAt < this.#o.probeMs) return;
    // The block ending first: renewing it early costs nothing it would not cost soon anyway.
    const block = this.#o.leases
      .blocks()
      .reduce<ReturnType<HostLeases['blocks']>[number] | undefined>(
        (a, b) => (a === undefined || b.expiresAt < a.expiresAt ? b : a),
        undefined,
      );
    if (block === undefined) return; // the request asking for one is the probe then
    this.probes++;
    void client.renew(block.kind, block.lowest, block.count);
  }

  #switch(now: number, silent: number): void {
    const { client, routers, log } = this.#o;
    const from = client.router;
    const i = routers.findIndex((r) => r.address === from.address);
    this.#at = (i < 0 ? this.#at : i + 1) % routers.length;
    const to = routers[this.#at]!;
    this.switches++;
    this.last = { from: from.address, to: to.address, at: now, silentMs: silent };
    log.warn('router stopped answering PAP; moving to the next router', {
      from: from.address,
      to: to.address,
      silentMs: Math.round(silent),
      heldBlocks: this.#o.leases.blocks().length,
      switches: this.switches,
    });
    // The tunnel first: the renewals sent next are answered by a router the data already goes to.
    this.#o.onSwitch(to, from);
    client.switchRouter(to);
  }
}
