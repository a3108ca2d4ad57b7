/**
 * Where IKE's child SAs meet the data plane: a ChildSaDatabase that turns
 * each negotiated pair into src/ipsec EspSas and SPD entries of a live
 * IpsecEngine, the one the host agent's forwarder or `distnat peer` runs.
 *
 * SPD layout, first match wins (RFC 4301 4.4.1):
 *
 *   [ fixed policies given at construction: IKE's own ports bypass ]
 *   [ child SA policies, newest first                              ]
 *   default action
 *
 * IKE's own datagrams must never be sealed into the SAs they negotiate, so
 * the bypass entries come first. When we started the rekey, the new child's
 * policies go in front of the old child's: the peer installed the new SA
 * before answering, so outbound traffic moves to it at once. When the peer
 * started it, the new policies go right behind the old ones: the peer
 * installs the new inbound SA only when our answer arrives, and what we
 * sealed with it before then would be lost; outbound moves over when the
 * peer deletes the old SA. Either way the old inbound SA keeps accepting
 * until IKE deletes it (RFC 7296 2.8).
 *
 * Inbound SAs are left unbound to a policy: the engine then checks a
 * decrypted packet against whichever child policy matches its selectors,
 * which is what lets the old and the new SA of a rekey both be valid.
 */
import { EspSa } from '../ipsec/sa.ts';
import { SecurityPolicy } from '../ipsec/spd.ts';
import type { IpsecEngine } from '../ipsec/engine.ts';
import type { TrafficSelector } from '../ipsec/selector.ts';
import { childSaParams } from './ipsec-bridge.ts';
import type { ChildSaDatabase, NegotiatedChildSa } from './policy.ts';
import type { Ipv4Selector } from './selectors.ts';

/**
 * A UDP port on which IKE talks: its datagrams bypass the SAs in both
 * directions. `side` says whose port it is: ours (the port our daemon is
 * bound to) or the peer's (500 and 4500, so that any other IKE speaker on
 * this machine, a test initiator say, is not sealed into our SAs either).
 */
export function ikeBypassPolicy(
  name: string,
  port: number,
  side: 'local' | 'remote' = 'local',
): SecurityPolicy {
  const one = { first: port, last: port };
  const any = { first: 0, last: 65535 };
  return new SecurityPolicy({
    name,
    action: 'bypass',
    selector: {
      local: { first: 0, last: 0xffff_ffff },
      remote: { first: 0, last: 0xffff_ffff },
      protocol: 17,
      localPort: side === 'local' ? one : any,
      remotePort: side === 'remote' ? one : any,
    },
  });
}

function trafficSelector(local: Ipv4Selector, remote: Ipv4Selector): TrafficSelector | undefined {
  // IKE gives each side its own protocol; a policy has one. Protocol 0 on one side takes the other's.
  if (local.protocol !== 0 && remote.protocol !== 0 && local.protocol !== remote.protocol) return undefined;
  return {
    local: { first: local.startAddress, last: local.endAddress },
    remote: { first: remote.startAddress, last: remote.endAddress },
    protocol: local.protocol || remote.protocol,
    localPort: { first: local.startPort, last: local.endPort },
    remotePort: { first: remote.startPort, last: remote.endPort },
  };
}

interface Installed {
  readonly inbound: EspSa;
  readonly outbound: EspSa;
  readonly policies: readonly string[];
}

export interface EngineSadOptions {
  /** Told after every install and removal (the caller recomputes MTU sums, logs, metrics). */
  readonly onChange?: (what: 'installed' | 'removed', child: NegotiatedChildSa) => void;
}

export class EngineChildSaDatabase implements ChildSaDatabase {
  readonly engine: IpsecEngine;
  readonly #fixed: number;
  readonly #installed = new Map<number, Installed>();
  readonly #onChange: EngineSadOptions['onChange'];
  #lifetimes: ((sa: NegotiatedChildSa, kind: 'soft' | 'hard') => void) | undefined;

  /** `engine`'s SPD holds the fixed policies already (bypass for IKE ports): child policies go after them. */
  constructor(engine: IpsecEngine, o: EngineSadOptions = {}) {
    this.engine = engine;
    this.#fixed = engine.spd.policies.length;
    this.#onChange = o.onChange;
  }

  watchLifetimes(listener: (sa: NegotiatedChildSa, kind: 'soft' | 'hard') => void): void {
    this.#lifetimes = listener;
  }

  /**
   * Chains the child's own report after whatever the SAD hooked onto the
   * SA. The data plane crosses a limit in the middle of a packet: IKE hears
   * of it on the next turn of the event loop, and only once per kind for
   * the pair, whichever direction crossed first.
   */
  #watch(c: NegotiatedChildSa, sas: readonly EspSa[]): void {
    if (c.lifetime === undefined) return;
    const told = new Set<'soft' | 'hard'>();
    for (const sa of sas) {
      const before = sa.onLifetime;
      sa.onLifetime = (s, kind) => {
        before?.(s, kind);
        if (told.has(kind)) return;
        told.add(kind);
        setImmediate(() => {
          if (this.#installed.has(c.id)) this.#lifetimes?.(c, kind);
        });
      };
    }
  }

  /** Child SAs installed now. */
  get size(): number {
    return this.#installed.size;
  }

  /** Throws (failing the child SA, so the peer is told) when the SAD refuses, e.g. an SPI not leased. */
  install(c: NegotiatedChildSa): void {
    const { spd, sad } = this.engine;
    const params = childSaParams(c);
    const inbound = new EspSa(params.inbound);
    const outbound = new EspSa(params.outbound);
    const refused = sad.add(inbound);
    if (refused !== null) throw new Error(`inbound SA 0x${c.inbound.spi.toString(16)}: ${refused}`);
    sad.add(outbound);
    const names: string[] = [];
    const at = this.#position(c);
    let k = 0;
    for (const l of c.localSelectors)
      for (const r of c.remoteSelectors) {
        const selector = trafficSelector(l, r);
        if (selector === undefined) continue;
        const policy = new SecurityPolicy({
          name: `ike-child-${c.id}.${k++}`,
          selector,
          action: 'protect',
          protect: ['esp'],
        });
        spd.add(policy, at + names.length);
        sad.bindOutbound(policy, [outbound]);
        names.push(policy.name);
      }
    this.#installed.set(c.id, { inbound, outbound, policies: names });
    this.#watch(c, [inbound, outbound]);
    this.#onChange?.('installed', c);
  }

  /** Where a child's policies go in the SPD (see the layout above). */
  #position(c: NegotiatedChildSa): number {
    const old = c.replaces === undefined ? undefined : this.#installed.get(c.replaces);
    if (old === undefined || c.role === 'initiator' || old.policies.length === 0) return this.#fixed;
    const list = this.engine.spd.policies;
    const last = list.findIndex((p) => p.name === old.policies[old.policies.length - 1]);
    return last < 0 ? this.#fixed : last + 1;
  }

  remove(c: NegotiatedChildSa): void {
    if (this.#drop(c.id)) this.#onChange?.('removed', c);
  }

  /** Removes every child SA (IKE daemon closed). */
  clear(): void {
    for (const id of [...this.#installed.keys()]) this.#drop(id);
  }

  #drop(id: number): boolean {
    const entry = this.#installed.get(id);
    if (entry === undefined) return false;
    this.#installed.delete(id);
    const { spd, sad } = this.engine;
    for (const name of entry.policies) spd.remove(name);
    sad.remove(entry.inbound);
    sad.remove(entry.outbound);
    return true;
  }
}
