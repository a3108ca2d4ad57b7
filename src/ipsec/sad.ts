/**
 * Security association database (RFC 4301 4.4.2).
 *
 * Inbound SAs are found by protocol and SPI alone (RFC 4301 4.1 allows it
 * for unicast; every inbound SPI on a distnat host is unique because the
 * router leased it to this host only), in a Map: O(1), no allocation.
 * Outbound SAs are found through the policy they protect: binding stores
 * the bundle on the SecurityPolicy, so the SPD lookup that picked the
 * policy has also found the SAs.
 *
 * Leased SPIs (patent FIG. 19-21): the router forwards an inbound ESP/AH
 * packet to the host that leased its SPI, so a host may only install an
 * inbound SA whose SPI came from its own leased block. The database takes
 * that test as a predicate (`isLeasedSpi`) from whoever holds the leases.
 * As the patent says, only the outermost SA of a nested inbound bundle is
 * seen by the router; an inner one (AH+ESP: the ESP SA) is installed with
 * `{ nested: true }` and needs no leased SPI.
 */
import type { AhSa, EspSa, SecurityAssociation } from './sa.ts';
import type { SecurityPolicy } from './spd.ts';

export type SaInstallError =
  | 'spi-not-leased' // inbound, outermost, and the SPI is not in this host's leased blocks
  | 'spi-in-use' // an inbound SA of the same protocol has this SPI already
  | 'installed'; // this very SA is in the database already

export interface SadOptions {
  /** Whether an inbound SPI belongs to this host's leased block. Default: every SPI. */
  readonly isLeasedSpi?: (spi: number) => boolean;
  /** Told once per SA when a soft or hard lifetime limit is first crossed (rekey / remove). */
  readonly onLifetime?: (sa: SecurityAssociation, kind: 'soft' | 'hard') => void;
}

export class SecurityAssociationDatabase {
  private readonly esp = new Map<number, EspSa>();
  private readonly ah = new Map<number, AhSa>();
  private readonly outboundSas = new Set<SecurityAssociation>();
  private readonly nestedSas = new Set<SecurityAssociation>();
  /**
   * The policy each bound SA protects (RFC 4301 4.4.2: an SA is made for a
   * policy's selectors). Kept here rather than on the SA so that SAs and
   * policies, which point at each other, do not import each other.
   */
  private readonly policies = new Map<SecurityAssociation, SecurityPolicy>();
  /** Inbound ESP-in-UDP SAs per local UDP port: which UDP datagrams may carry ESP. */
  private readonly encapRefs = new Uint32Array(65536);
  private readonly isLeasedSpi: (spi: number) => boolean;
  private readonly onLifetime: ((sa: SecurityAssociation, kind: 'soft' | 'hard') => void) | null;

  constructor(options: SadOptions = {}) {
    this.isLeasedSpi = options.isLeasedSpi ?? (() => true);
    this.onLifetime = options.onLifetime ?? null;
  }

  /** Installs an SA of either direction; null on success. */
  add(sa: SecurityAssociation, options: { nested?: boolean } = {}): SaInstallError | null {
    if (sa.direction === 'outbound') {
      if (this.outboundSas.has(sa)) return 'installed';
      this.outboundSas.add(sa);
      sa.onLifetime = this.onLifetime;
      return null;
    }
    const map: Map<number, SecurityAssociation> = sa.protocol === 'esp' ? this.esp : this.ah;
    const existing = map.get(sa.spi);
    if (existing === sa) return 'installed';
    if (existing !== undefined) return 'spi-in-use';
    const nested = options.nested === true;
    if (!nested && !this.isLeasedSpi(sa.spi)) return 'spi-not-leased';
    if (sa.protocol === 'esp') {
      this.esp.set(sa.spi, sa);
      if (sa.encap !== null) this.encapRefs[sa.encap.localPort]! += 1;
    } else {
      this.ah.set(sa.spi, sa);
    }
    if (nested) this.nestedSas.add(sa);
    sa.onLifetime = this.onLifetime;
    return null;
  }

  /** Removes an SA and unbinds it from its policy's outbound bundle. True when it was installed. */
  remove(sa: SecurityAssociation): boolean {
    if (sa.direction === 'outbound') {
      if (!this.outboundSas.delete(sa)) return false;
      const p = this.policies.get(sa);
      this.policies.delete(sa);
      if (p !== undefined && p.outbound.includes(sa)) p.outbound = [];
      return true;
    }
    if (sa.protocol === 'esp') {
      if (this.esp.get(sa.spi) !== sa) return false;
      this.esp.delete(sa.spi);
      if (sa.encap !== null) this.encapRefs[sa.encap.localPort]! -= 1;
    } else {
      if (this.ah.get(sa.spi) !== sa) return false;
      this.ah.delete(sa.spi);
    }
    this.nestedSas.delete(sa);
    this.policies.delete(sa);
    return true;
  }

  inboundEsp(spi: number): EspSa | undefined {
    return this.esp.get(spi);
  }

  inboundAh(spi: number): AhSa | undefined {
    return this.ah.get(spi);
  }

  /** Whether UDP datagrams to this local port are ESP-in-UDP (RFC 3948) for some inbound SA. */
  isEncapPort(port: number): boolean {
    return this.encapRefs[port]! > 0;
  }

  /**
   * Makes `bundle` (outermost first, one SA per template entry, all
   * outbound) the SAs that protect what `policy` selects. Replaces the
   * previous bundle: this is how a rekeyed SA takes over. Throws
   * RangeError when the bundle does not fit the policy (a caller's bug).
   */
  bindOutbound(policy: SecurityPolicy, bundle: readonly SecurityAssociation[]): void {
    if (policy.action !== 'protect') throw new RangeError(`policy ${policy.name} does not protect`);
    if (bundle.length !== policy.template.length) {
      throw new RangeError(`policy ${policy.name} needs ${policy.template.join('+')}`);
    }
    bundle.forEach((sa, i) => {
      if (sa.direction !== 'outbound' || sa.protocol !== policy.template[i]) {
        throw new RangeError(`policy ${policy.name}: SA ${sa.name} is not outbound ${policy.template[i]}`);
      }
      if (!this.outboundSas.has(sa)) throw new RangeError(`SA ${sa.name} is not installed`);
    });
    for (const sa of bundle) this.policies.set(sa, policy);
    policy.outbound = Object.freeze([...bundle]);
  }

  /** Marks an inbound SA as protecting what `policy` selects; the inbound check holds packets to it. */
  bindInbound(policy: SecurityPolicy, sa: SecurityAssociation): void {
    if (policy.action !== 'protect' || !policy.template.includes(sa.protocol) || sa.direction !== 'inbound') {
      throw new RangeError(`policy ${policy.name} cannot take inbound ${sa.protocol} SA ${sa.name}`);
    }
    this.policies.set(sa, policy);
  }

  /** The policy `sa` was bound to, if any. */
  policyOf(sa: SecurityAssociation): SecurityPolicy | null {
    return this.policies.get(sa) ?? null;
  }

  /** Forgets which policy `sa` protects, so that the SPD alone decides its packets. */
  unbind(sa: SecurityAssociation): void {
    this.policies.delete(sa);
  }

  /**
   * Removes the inbound outermost SAs whose SPI is no longer leased (after
   * the router withdrew or the host released a block) and returns them.
   */
  revalidateLeases(): SecurityAssociation[] {
    const gone: SecurityAssociation[] = [];
    for (const sa of [...this.esp.values(), ...this.ah.values()]) {
      if (!this.nestedSas.has(sa) && !this.isLeasedSpi(sa.spi)) {
        this.remove(sa);
        gone.push(sa);
      }
    }
    return gone;
  }

  /** Every installed SA, inbound first (for status output). */
  all(): SecurityAssociation[] {
    return [...this.esp.values(), ...this.ah.values(), ...this.outboundSas];
  }
}
