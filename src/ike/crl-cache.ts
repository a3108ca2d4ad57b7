/**
 * Revocation as a relying party sees it: the CRLs named by the distribution
 * points of the certificates a peer presents (a distnat host's certificate
 * points at its router's CRL), fetched when first needed and again once the
 * copy held is older than `maxAgeMs` or past its nextUpdate.
 *
 * The router revokes a host's certificate the moment it withdraws the
 * host's ports (docs/pki.md), so a short maximum age is what bounds how long
 * a peer keeps accepting a withdrawn host. A CRL that cannot be fetched
 * leaves the previous copy in use while it is current; with no usable copy
 * the authentication fails (fail closed, like strongSwan's
 * strictcrlpolicy=yes), because a host whose router cannot be reached is
 * not one whose port binding anybody can vouch for.
 */
import type { X509Certificate } from 'node:crypto';
import { x509 } from '../pki/x509.ts';
import { factsOf, pathRevocation } from './certs.ts';
import { portBindingAuthorizer, type PeerAuthorizer } from './policy.ts';

export type CrlFetch = (url: string) => Promise<Uint8Array>;

export interface CrlCacheOptions {
  /** Fetch again when the copy held is older than this. */
  readonly maxAgeMs: number;
  /** Default: HTTP GET with a 5 s timeout. */
  readonly fetch?: CrlFetch;
  readonly now?: () => number;
  readonly log?: (message: string) => void;
}

interface Held {
  readonly crl: x509.X509Crl;
  readonly fetchedAt: number;
}

const httpFetch: CrlFetch = async (url) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
};

export class CrlCache {
  readonly #held = new Map<string, Held>();
  readonly #pending = new Map<string, Promise<x509.X509Crl | undefined>>();
  readonly #o: CrlCacheOptions;
  readonly #fetch: CrlFetch;
  readonly #now: () => number;
  /** Fetches made, and those that failed. */
  fetches = 0;
  failures = 0;

  constructor(o: CrlCacheOptions) {
    this.#o = o;
    this.#fetch = o.fetch ?? httpFetch;
    this.#now = o.now ?? Date.now;
  }

  /** The CRL at `url`, fresh within the maximum age if it can be had; undefined when none is usable. */
  get(url: string): Promise<x509.X509Crl | undefined> {
    const now = this.#now();
    const held = this.#held.get(url);
    const current =
      held !== undefined && (held.crl.nextUpdate === undefined || held.crl.nextUpdate.getTime() > now);
    if (held !== undefined && current && now - held.fetchedAt < this.#o.maxAgeMs)
      return Promise.resolve(held.crl);
    const pending = this.#pending.get(url);
    if (pending !== undefined) return pending;
    const p = this.#refresh(url, current ? held : undefined).finally(() => this.#pending.delete(url));
    this.#pending.set(url, p);
    return p;
  }

  async #refresh(url: string, fallback: Held | undefined): Promise<x509.X509Crl | undefined> {
    this.fetches++;
    try {
      const crl = new x509.X509Crl(await this.#fetch(url));
      this.#held.set(url, { crl, fetchedAt: this.#now() });
      return crl;
    } catch (e) {
      this.failures++;
      this.#o.log?.(`cannot fetch the CRL ${url}: ${(e as Error).message}`);
      return fallback?.crl;
    }
  }
}

/**
 * An authorizer that first checks the peer's path against the CRLs its
 * certificates point to, then hands the fresh CRLs on to `inner` (by default
 * the port-binding check). A certificate with a distribution point whose CRL
 * cannot be had is refused.
 */
export function revocationCheckingAuthorizer(
  cache: CrlCache,
  inner: PeerAuthorizer = portBindingAuthorizer(),
): PeerAuthorizer {
  return async (peer) => {
    const crls: x509.X509Crl[] = [...(peer.trust.crls ?? [])];
    // The root is trusted as configured; every certificate below it names where its revocation is published.
    for (const cert of peer.path.slice(0, -1)) {
      for (const url of factsOf(cert).crlUrls) {
        const crl = await cache.get(url);
        if (crl === undefined) return { ok: false, reason: `no current CRL from ${url}` };
        crls.push(crl);
      }
    }
    const revoked = await pathRevocation(peer.path as X509Certificate[], crls, new Date());
    if (revoked !== undefined) return { ok: false, reason: revoked };
    return inner({ ...peer, trust: { ...peer.trust, crls } });
  };
}
